//! A node's login (spec §4.5) as the node agent describes it: anonymous TLS plus the
//! provisioning JWT while provisioning, CA-verified TLS plus server JWT (or mTLS) after.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use choria_resolve::BrokerUrl;
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::error::ConnectError;
use crate::login::{Login, Reconnect, Token, UserPassword};
use crate::tls::{ClientCertificate, Tls};

/// Messages buffered per subscription before NATS drops them (keeps per-node memory small).
pub const SUBSCRIPTION_CAPACITY: usize = 64;

/// How a node authenticates.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Provisioning mode: the provisioning JWT verbatim as `auth_token`, optional user/pass.
    Provisioning {
        /// The file's contents (sent unmodified).
        jwt: SecretString,
        /// `chusr`/`chpwd` when both are set.
        user: Option<(String, SecretString)>,
    },
    /// Normal mode with JWT security: server JWT in `auth_token` and `jwt`, nonce signed.
    ServerJwt {
        /// The server JWT (trimmed).
        jwt: SecretString,
        /// The node's seed (boxed: it dwarfs the other variants).
        seed: Box<choria_tokens::Ed25519Seed>,
        /// Client certificate and key shown to brokers in mtls mode
        /// (`plugin.security.choria.certificate` / `.key`).
        certificate: Option<(PathBuf, PathBuf)>,
    },
    /// Normal mode with mTLS: the certificate is the credential.
    Certificate {
        /// Certificate PEM path.
        cert: PathBuf,
        /// Private key PEM path.
        key: PathBuf,
    },
}

/// Everything needed to connect one node.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Brokers to try.
    pub servers: Vec<BrokerUrl>,
    /// Connection name (the identity).
    pub name: String,
    /// Inbox prefix (`<collective>.reply[.<md5 id>]`).
    pub inbox_prefix: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// CA to verify the broker with; `None` means unverified anonymous TLS.
    pub ca: Option<PathBuf>,
    /// How long one connection attempt (TCP, TLS and CONNECT) may take.
    pub connect_timeout: Duration,
}

impl ConnectSpec {
    /// The login: always TLS (`nats://` brokers are dialled as `tls://`), anonymous
    /// without a CA; jittered reconnects; small buffers, as one process runs many nodes.
    /// Broker URLs async-nats cannot use are left out.
    pub fn login(&self) -> Login {
        let servers = self
            .servers
            .iter()
            .filter_map(|url| {
                let scheme = if url.scheme == "nats" {
                    "tls"
                } else {
                    url.scheme.as_str()
                };
                format!("{scheme}://{}:{}", bracket(&url.host), url.port)
                    .parse()
                    .ok()
            })
            .collect();
        let (user, token, client) = match &self.credentials {
            Credentials::Provisioning { jwt, user } => (
                user.as_ref().map(|(user, password)| UserPassword {
                    user: user.clone(),
                    password: password.clone(),
                }),
                Some(Token::Bearer(jwt.clone())),
                None,
            ),
            Credentials::ServerJwt {
                jwt,
                seed,
                certificate,
            } => (
                None,
                Some(Token::Signed {
                    jwt: jwt.clone(),
                    seed: Arc::new(seed.as_ref().clone()),
                    mirror_in_jwt: true,
                }),
                certificate.as_ref().map(|(cert, key)| ClientCertificate {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
            ),
            Credentials::Certificate { cert, key } => (
                None,
                None,
                Some(ClientCertificate {
                    cert: cert.clone(),
                    key: key.clone(),
                }),
            ),
        };
        let tls = match &self.ca {
            None => Tls::Anonymous,
            Some(ca) => Tls::Verified {
                ca: ca.clone(),
                client,
            },
        };
        Login {
            inbox_prefix: Some(self.inbox_prefix.clone()),
            user,
            token,
            connect_timeout: self.connect_timeout,
            reconnect: Reconnect::Jittered,
            capacity: Some(SUBSCRIPTION_CAPACITY),
            ..Login::new(servers, &self.name, tls)
        }
    }
}

/// Connects a node, retrying the initial connection with 0.5–5 s backoff until `cancel`
/// fires ([`Login::connect_until_cancelled`] of [`ConnectSpec::login`]).
pub async fn connect(
    spec: &ConnectSpec,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, ConnectError> {
    spec.login().connect_until_cancelled(cancel).await
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn spec(credentials: Credentials, ca: Option<PathBuf>) -> ConnectSpec {
        ConnectSpec {
            servers: choria_resolve::parse_urls("nats://b1:4222,tls://[::1]:4223").unwrap(),
            name: "n1.example.net".into(),
            inbox_prefix: "provisioning.reply".into(),
            credentials,
            ca,
            connect_timeout: Duration::from_secs(3),
        }
    }

    #[test]
    fn provisioning_is_anonymous_tls_with_the_token_verbatim() {
        let login = spec(
            Credentials::Provisioning {
                jwt: "prov.jwt\n".into(),
                user: Some(("chusr".into(), "chpwd".into())),
            },
            None,
        )
        .login();
        assert_eq!(login.tls, Tls::Anonymous);
        assert!(
            matches!(&login.token, Some(Token::Bearer(jwt)) if jwt.expose_secret() == "prov.jwt\n")
        );
        assert_eq!(
            login
                .user
                .as_ref()
                .map(|u| (u.user.as_str(), u.password.expose_secret())),
            Some(("chusr", "chpwd"))
        );
        let urls: Vec<&str> = login.servers.iter().map(|s| s.as_url_str()).collect();
        assert_eq!(urls, ["tls://b1:4222", "tls://[::1]:4223"]);
        assert_eq!(login.inbox_prefix.as_deref(), Some("provisioning.reply"));
        assert_eq!(login.reconnect, Reconnect::Jittered);
        assert_eq!(login.capacity, Some(SUBSCRIPTION_CAPACITY));
        assert_eq!(login.connect_timeout, Duration::from_secs(3));
    }

    #[test]
    fn a_provisioned_node_verifies_the_broker_and_signs_the_nonce() {
        let certificate = Some(("c.pem".into(), "k.pem".into()));
        let login = spec(
            Credentials::ServerJwt {
                jwt: "server.jwt".into(),
                seed: Box::new(choria_tokens::Ed25519Seed::generate()),
                certificate,
            },
            Some("ca.pem".into()),
        )
        .login();
        assert!(
            matches!(&login.token, Some(Token::Signed { jwt, .. }) if jwt.expose_secret() == "server.jwt")
        );
        assert_eq!(
            login.tls,
            Tls::Verified {
                ca: "ca.pem".into(),
                client: Some(ClientCertificate {
                    cert: "c.pem".into(),
                    key: "k.pem".into()
                })
            }
        );
        let login = spec(
            Credentials::Certificate {
                cert: "c.pem".into(),
                key: "k.pem".into(),
            },
            Some("ca.pem".into()),
        )
        .login();
        assert!(login.token.is_none() && login.user.is_none());
        assert!(matches!(
            login.tls,
            Tls::Verified {
                client: Some(_),
                ..
            }
        ));
    }

    #[test]
    fn debug_names_the_kind_only() {
        let text = format!(
            "{:?}",
            spec(
                Credentials::Provisioning {
                    jwt: "secret-token".into(),
                    user: Some(("u".into(), "secret-pass".into())),
                },
                None,
            )
        );
        assert!(!text.contains("secret"), "{text}");
    }
}
