//! A login: brokers, name, inbox, TLS, what CONNECT presents, timeout and reconnects,
//! turned into `ConnectOptions` and a connected `async_nats::Client`.

use std::sync::Arc;
use std::time::Duration;

use async_nats::{Auth, ConnectOptions, ServerAddr};
use choria_tokens::Ed25519Seed;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use tokio_util::sync::CancellationToken;

use crate::error::ConnectError;
use crate::events::Connects;
use crate::tls::Tls;

/// Longest wait between reconnect attempts with [`Reconnect::Jittered`] (spec: jittered
/// backoff up to 20 s).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(20);
/// Longest wait between initial attempts of [`Login::connect_until_cancelled`].
pub const MAX_INITIAL_DELAY: Duration = Duration::from_secs(5);
/// Default connect timeout (`plugin.choria.network.connect_timeout`). Upstream's default is
/// 2 s; when thousands of machines power on at once, a broker needs longer than that for
/// each TLS handshake and authorization, and nodes that give up at 2 s only retry into the
/// same queue (docs/benchmarks.md, "Connection storms"). Set the key to 2s for upstream's
/// behaviour.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connect timeout `config` asks for (`plugin.choria.network.connect_timeout`), or
/// [`CONNECT_TIMEOUT`].
pub fn connect_timeout(
    config: &choria_config::Config,
) -> Result<Duration, choria_config::ConfigError> {
    config.get_duration_or("plugin.choria.network.connect_timeout", CONNECT_TIMEOUT)
}

/// Parses broker URLs (`tls://host:port`, `nats://host:port`, `wss://...`, or `host:port`).
pub fn parse_servers<S: AsRef<str>>(
    urls: impl IntoIterator<Item = S>,
) -> Result<Vec<ServerAddr>, ConnectError> {
    urls.into_iter()
        .map(|url| {
            let url = url.as_ref();
            url.parse().map_err(|source| ConnectError::InvalidServer {
                url: url.to_string(),
                source,
            })
        })
        .collect()
}

/// One connection to a broker as a Choria identity.
#[derive(Debug, Clone)]
pub struct Login {
    /// Brokers to try (async-nats also adds those the broker announces).
    pub servers: Vec<ServerAddr>,
    /// Connection name: the identity, shown in the broker's connection lists.
    pub name: String,
    /// Inbox prefix for request replies, when the broker only lets this identity
    /// subscribe under its reply subjects (`<collective>.reply.<md5 id>`).
    pub inbox_prefix: Option<String>,
    /// TLS.
    pub tls: Tls,
    /// CONNECT `user`/`pass`.
    pub user: Option<UserPassword>,
    /// CONNECT `auth_token` (and `jwt` plus `sig` for a signed token).
    pub token: Option<Token>,
    /// How long one attempt (TCP, TLS and CONNECT) may take.
    pub connect_timeout: Duration,
    /// What happens when the first attempt fails or the connection drops.
    pub reconnect: Reconnect,
    /// Messages buffered per subscription, and commands per client, before async-nats
    /// drops or waits; `None` keeps async-nats' defaults. Small values keep memory low in
    /// processes that hold thousands of connections (a simulated fleet).
    pub capacity: Option<usize>,
    /// Counts every successful (re)connect, for callers that act after each one.
    pub connects: Option<Connects>,
}

/// CONNECT `user` and `pass`.
#[derive(Debug, Clone)]
pub struct UserPassword {
    /// User name.
    pub user: String,
    /// Password.
    pub password: SecretString,
}

impl UserPassword {
    /// A user name and its password.
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> UserPassword {
        UserPassword {
            user: user.into(),
            password: SecretString::from(Into::<String>::into(password)),
        }
    }
}

/// The Choria JWT a connection presents; JWTs are bearer secrets.
#[derive(Debug, Clone)]
pub enum Token {
    /// Sent verbatim (not trimmed) as `auth_token`, without `jwt` or a nonce signature:
    /// the provisioning JWT of a node in provisioning mode (spec §4.5).
    Bearer(SecretString),
    /// A server or client JWT sent as `auth_token`, with the broker's nonce signed by
    /// `seed` (the key the JWT's `public_key` names) as `sig`.
    Signed {
        /// The JWT.
        jwt: SecretString,
        /// The ed25519 seed matching the JWT's public key.
        seed: Arc<Ed25519Seed>,
        /// Also send the JWT as CONNECT `jwt`, as Choria's connector does (spec
        /// choria-broker §2.1). Nothing reads it (nats-server in config mode discards it,
        /// the broker reads `auth_token`), but it doubles the CONNECT line.
        mirror_in_jwt: bool,
    },
}

impl Token {
    /// A JWT whose holder proves itself by signing the broker's nonce with `seed`, sent
    /// as Choria's connector sends it (in `auth_token` and `jwt`).
    pub fn signed(jwt: impl Into<String>, seed: Ed25519Seed) -> Token {
        Token::Signed {
            jwt: SecretString::from(Into::<String>::into(jwt)),
            seed: Arc::new(seed),
            mirror_in_jwt: true,
        }
    }
}

/// What happens when the first attempt fails and when an established connection drops.
/// Dropped connections are always retried, forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reconnect {
    /// [`Login::connect`] reports a failed first attempt; a dropped connection is retried
    /// with async-nats' backoff (up to 4 s).
    #[default]
    Default,
    /// [`Login::connect`] returns at once and async-nats makes the first connection in the
    /// background, retrying as for drops: the provisioner, which may start before the
    /// broker's authorization service does.
    InBackground,
    /// A dropped connection is retried with jittered backoff doubling from 0.5 s up to
    /// [`MAX_RECONNECT_DELAY`], so a fleet does not reconnect in lockstep after a broker
    /// restart: nodes.
    Jittered,
}

impl Login {
    /// A login to `servers` as `name` over `tls` presenting no credentials, with
    /// [`CONNECT_TIMEOUT`], [`Reconnect::Default`], no inbox prefix and default capacities.
    pub fn new(servers: Vec<ServerAddr>, name: impl Into<String>, tls: Tls) -> Login {
        Login {
            servers,
            name: name.into(),
            inbox_prefix: None,
            tls,
            user: None,
            token: None,
            connect_timeout: CONNECT_TIMEOUT,
            reconnect: Reconnect::Default,
            capacity: None,
            connects: None,
        }
    }

    /// The async-nats options for this login (everything but the servers), for callers
    /// that add to them; TLS files are read now.
    pub fn options(&self) -> Result<ConnectOptions, ConnectError> {
        let (user, token) = (self.user.clone(), self.token.clone());
        let mut options = ConnectOptions::with_auth_callback(move |nonce: Vec<u8>| {
            let auth = authenticate(user.as_ref(), token.as_ref(), &nonce);
            async move { Ok(auth) }
        });
        options = self
            .tls
            .apply(options)?
            .name(&self.name)
            .connection_timeout(self.connect_timeout)
            .max_reconnects(None);
        if let Some(prefix) = &self.inbox_prefix {
            options = options.custom_inbox_prefix(prefix);
        }
        if let Some(capacity) = self.capacity {
            options = options
                .subscription_capacity(capacity)
                .client_capacity(capacity);
        }
        if let Some(connects) = self.connects.clone() {
            options = options.event_callback(move |event| {
                if matches!(event, async_nats::Event::Connected) {
                    connects.connected();
                }
                async {}
            });
        }
        Ok(match self.reconnect {
            Reconnect::Default => options,
            Reconnect::InBackground => options.retry_on_initial_connect(),
            Reconnect::Jittered => options.reconnect_delay_callback(|attempts| {
                jitter(
                    Duration::from_millis(500).saturating_mul(1 << attempts.min(6) as u32),
                    MAX_RECONNECT_DELAY,
                )
            }),
        })
    }

    /// Connects (one attempt, or in the background with [`Reconnect::InBackground`]).
    pub async fn connect(&self) -> Result<async_nats::Client, ConnectError> {
        if self.servers.is_empty() {
            return Err(ConnectError::NoServers);
        }
        self.options()?
            .connect(self.servers.as_slice())
            .await
            .map_err(|source| self.failed(source))
    }

    /// Connects, retrying failed first attempts with jittered 0.5–5 s backoff until
    /// `cancel` fires. TLS files are read again for every attempt, so files that appear
    /// or change meanwhile are picked up; a file that cannot be used ends the retries.
    pub async fn connect_until_cancelled(
        &self,
        cancel: &CancellationToken,
    ) -> Result<async_nats::Client, ConnectError> {
        if self.servers.is_empty() {
            return Err(ConnectError::NoServers);
        }
        let mut attempt = 0u32;
        loop {
            let options = self.options()?;
            tokio::select! {
                () = cancel.cancelled() => return Err(ConnectError::Cancelled),
                result = options.connect(self.servers.as_slice()) => match result {
                    Ok(client) => return Ok(client),
                    Err(err) => {
                        tracing::warn!(name = %self.name, error = %err, attempt, "could not connect to the broker, retrying");
                    }
                }
            }
            attempt = attempt.saturating_add(1);
            let delay = jitter(
                Duration::from_millis(500).saturating_mul(1 << attempt.min(4)),
                MAX_INITIAL_DELAY,
            );
            tokio::select! {
                () = cancel.cancelled() => return Err(ConnectError::Cancelled),
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    fn failed(&self, source: async_nats::ConnectError) -> ConnectError {
        ConnectError::Nats {
            servers: self
                .servers
                .iter()
                .map(ServerAddr::as_url_str)
                .collect::<Vec<_>>()
                .join(","),
            source,
        }
    }
}

/// The CONNECT fields for `user` and `token`, given the nonce of the broker's INFO.
fn authenticate(user: Option<&UserPassword>, token: Option<&Token>, nonce: &[u8]) -> Auth {
    let mut auth = Auth::new();
    if let Some(user) = user {
        auth.username = Some(user.user.clone());
        auth.password = Some(user.password.expose_secret().to_string());
    }
    match token {
        None => {}
        Some(Token::Bearer(jwt)) => auth.token = Some(jwt.expose_secret().to_string()),
        Some(Token::Signed {
            jwt,
            seed,
            mirror_in_jwt,
        }) => {
            let jwt = jwt.expose_secret();
            auth.token = Some(jwt.to_string());
            auth.jwt = mirror_in_jwt.then(|| jwt.to_string());
            // async-nats sends it base64url without padding, as the broker expects.
            auth.signature = Some(seed.sign(nonce).to_vec());
        }
    }
    auth
}

fn jitter(base: Duration, cap: Duration) -> Duration {
    let base = base.min(cap);
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.0))
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    use super::*;

    #[test]
    fn a_provisioning_token_goes_verbatim_in_auth_token_without_a_signature() {
        let user = UserPassword::new("chusr", "chpwd");
        let token = Token::Bearer("prov.jwt\n".into());
        let auth = authenticate(Some(&user), Some(&token), b"nonce");
        assert_eq!(auth.token.as_deref(), Some("prov.jwt\n"));
        assert_eq!(auth.jwt, None);
        assert_eq!(auth.signature, None);
        assert_eq!(auth.username.as_deref(), Some("chusr"));
        assert_eq!(auth.password.as_deref(), Some("chpwd"));
    }

    #[test]
    fn a_signed_token_fills_auth_token_jwt_and_the_nonce_signature() {
        let seed = Ed25519Seed::generate();
        let public = seed.public_key_hex();
        let token = Token::signed("server.jwt", seed);
        let auth = authenticate(None, Some(&token), b"the-nonce");
        assert_eq!(auth.token.as_deref(), Some("server.jwt"));
        assert_eq!(auth.jwt.as_deref(), Some("server.jwt"));
        assert_eq!(auth.username, None);
        let signature = auth.signature.expect("signature");
        // What the broker checks: base64url of the raw signature over the nonce's bytes.
        let encoded = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(signature);
        choria_tokens::verify_nonce(
            &public,
            b"the-nonce",
            &encoded,
            choria_tokens::SignatureEncoding::Base64Url,
        )
        .expect("verifies");
    }

    #[test]
    fn an_unmirrored_signed_token_leaves_jwt_empty() {
        let token = Token::Signed {
            jwt: "client.jwt".into(),
            seed: Arc::new(Ed25519Seed::generate()),
            mirror_in_jwt: false,
        };
        let auth = authenticate(None, Some(&token), b"the-nonce");
        assert_eq!(auth.token.as_deref(), Some("client.jwt"));
        assert_eq!(auth.jwt, None);
        assert!(auth.signature.is_some());
    }

    #[test]
    fn nothing_to_present_leaves_connect_empty() {
        let auth = authenticate(None, None, b"n");
        assert_eq!(
            (auth.token, auth.jwt, auth.username, auth.signature),
            (None, None, None, None)
        );
    }

    #[test]
    fn debug_output_holds_no_secret() {
        let seed = Ed25519Seed::generate();
        let login = Login {
            user: Some(UserPassword::new("provisioner", "s3cret-password")),
            token: Some(Token::signed("eyJhbGciOi.secret-jwt.sig", seed.clone())),
            ..Login::new(
                parse_servers(["tls://127.0.0.1:4222"]).unwrap(),
                "n1",
                Tls::Anonymous,
            )
        };
        let text = format!("{login:?} {:?}", Token::Bearer("prov-secret-jwt".into()));
        for secret in [
            "s3cret-password",
            "secret-jwt",
            "prov-secret-jwt",
            &seed.to_hex(),
        ] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("provisioner"), "{text}");
    }

    #[test]
    fn servers_that_do_not_parse_are_named() {
        let err = parse_servers(["tls://ok:4222", "tls://bad host:4222"]).unwrap_err();
        assert!(
            matches!(&err, ConnectError::InvalidServer { url, .. } if url == "tls://bad host:4222"),
            "{err:?}"
        );
    }

    #[tokio::test]
    async fn no_servers_is_refused_before_any_attempt() {
        let login = Login::new(Vec::new(), "n1", Tls::Anonymous);
        assert!(matches!(
            login.connect().await,
            Err(ConnectError::NoServers)
        ));
        assert!(matches!(
            login
                .connect_until_cancelled(&CancellationToken::new())
                .await,
            Err(ConnectError::NoServers)
        ));
    }

    #[test]
    fn options_fail_on_unusable_tls_files() {
        let login = Login::new(
            parse_servers(["tls://127.0.0.1:4222"]).unwrap(),
            "n1",
            Tls::verified("/nonexistent/ca.pem"),
        );
        assert!(matches!(
            login.options(),
            Err(ConnectError::Tls(crate::TlsError::Read { .. }))
        ));
    }
}
