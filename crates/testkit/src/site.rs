//! `TestSite`: a whole Choria site's trust material plus a real running broker (JWT mode)
//! in a temp dir, with helpers to mint credentials and connect as nodes, provisioner, clients.
//!
//! [`TestSite::dir`] is laid out by [`choria_site`]; the broker's nats-server config, log
//! and JetStream store go in its `broker/`.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use async_nats::ConnectOptions;
use choria_broker::{Broker, BrokerSettings, RunningBroker};
use choria_connect::{parse_servers, Login, Tls, Token, UserPassword};
use choria_pki::CertificateAuthority;
use choria_site::{BrokerOptions, ProvisioningSigner};
use choria_tokens::{
    sign_chained_token, sign_token, ClientIdClaims, ClientPermissions, Ed25519Seed, NewClient,
    NewServer, ServerClaims, ServerPermissions, SigningKey,
};

use crate::{free_port, TestkitError};

/// The provisioning access token (`cht`) in the site's provisioning token.
pub const PROVISIONING_ACCESS_TOKEN: &str = "toomanysecrets";
/// Caller id of the provisioner's chain-issuer client token.
pub const PROVISIONER_CALLER: &str = "choria=provisioner";
pub use choria_site::SYSTEM_USER;
/// Lifetime of tokens minted by the site.
pub const TOKEN_VALIDITY: Duration = Duration::from_secs(24 * 3600);

/// Errors building or using a site (test code: every failure names the step).
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    /// A test-kit level failure (ports, files).
    #[error(transparent)]
    Testkit(#[from] TestkitError),
    /// Connecting to the broker failed (`nats_kind` tells why).
    #[error(transparent)]
    Connect(#[from] choria_connect::ConnectError),
    /// A step failed.
    #[error("{step}: {reason}")]
    Step {
        /// What was being done.
        step: &'static str,
        /// Why it failed.
        reason: String,
    },
}

fn step<E: std::fmt::Display>(step: &'static str) -> impl FnOnce(E) -> SiteError {
    move |e| SiteError::Step {
        step,
        reason: e.to_string(),
    }
}

/// Options of [`TestSite::start_with`].
#[derive(Debug, Clone, Default)]
pub struct SiteOptions {
    /// Run the broker in mTLS mode with an enrolment (websocket) listener.
    pub mtls: bool,
    /// Enable JetStream and the managed streams (including `CHORIA_LEADER_ELECTION`).
    pub streams: bool,
    /// Serve broker metrics on a free port.
    pub metrics: bool,
    /// Extra `key = value` lines appended to the broker config.
    pub extra_config: String,
}

/// A site: keys, certificates, tokens, a broker config and a running broker.
pub struct TestSite {
    /// Root temp directory; everything below is deleted when the site is dropped.
    pub dir: tempfile::TempDir,
    /// Organisation issuer seed (`plugin.security.issuer.choria.public` is its public key);
    /// verifies server and client tokens, directly or through chain issuers.
    pub org_issuer: Ed25519Seed,
    /// File holding the org issuer seed (hex, 0600).
    pub org_issuer_seed_path: PathBuf,
    /// Key that signs provisioning tokens (`provisioning.signer_cert` points at its public key).
    pub provisioning_signer: Ed25519Seed,
    /// File with the provisioning signer's public key (hex): the broker's `signer_cert`.
    pub provisioning_signer_public_path: PathBuf,
    /// The site CA.
    pub ca: CertificateAuthority,
    /// CA certificate (PEM) every client trusts: pass to `add_root_certificates`.
    pub ca_path: PathBuf,
    /// Broker certificate (PEM, names `localhost` and `127.0.0.1`).
    pub broker_cert_path: PathBuf,
    /// Broker private key (PEM, 0600).
    pub broker_key_path: PathBuf,
    /// Password of the `provisioner` broker user.
    pub provisioner_password: String,
    /// Provisioning token for nodes: `chu` = [`TestSite::broker_url`], `cht` =
    /// [`PROVISIONING_ACCESS_TOKEN`], signed by the provisioning signer, `ou` `choria`.
    pub provisioning_token: String,
    /// File holding [`TestSite::provisioning_token`] (what nodes read as provisioning.jwt).
    pub provisioning_token_path: PathBuf,
    /// The provisioner's ed25519 seed.
    pub provisioner_seed: Ed25519Seed,
    /// File holding the provisioner seed (hex, 0600).
    pub provisioner_seed_path: PathBuf,
    /// The provisioner's client token: chain issuer (`I-<org>`), permissions `provisioner`,
    /// `election_user`, `events_viewer`; it can sign server tokens via `sign_chained_token`.
    pub provisioner_token: String,
    /// Its parsed claims (needed by `sign_chained_token`).
    pub provisioner_claims: ClientIdClaims,
    /// File holding the provisioner token.
    pub provisioner_token_path: PathBuf,
    /// Password of the [`SYSTEM_USER`].
    pub system_password: String,
    /// The broker's Choria config file.
    pub broker_config_path: PathBuf,
    /// Broker client URL (`tls://127.0.0.1:<port>`).
    pub broker_url: String,
    /// Enrolment URL (`wss://127.0.0.1:<port>`) in mTLS mode.
    pub enrolment_url: Option<String>,
    /// Broker metrics address, when asked for.
    pub metrics_addr: Option<std::net::SocketAddr>,
    broker: Option<RunningBroker>,
}

impl std::fmt::Debug for TestSite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestSite")
            .field("dir", &self.dir.path())
            .field("broker_url", &self.broker_url)
            .finish_non_exhaustive()
    }
}

impl TestSite {
    /// A JWT-mode site without JetStream.
    pub async fn start() -> Result<TestSite, SiteError> {
        TestSite::start_with(SiteOptions::default()).await
    }

    /// A site with options.
    pub async fn start_with(options: SiteOptions) -> Result<TestSite, SiteError> {
        let dir = tempfile::tempdir().map_err(step("creating the site directory"))?;
        let port = free_port()?;
        let enrolment_port = if options.mtls {
            Some(free_port()?)
        } else {
            None
        };
        let stats_port = if options.metrics {
            Some(free_port()?)
        } else {
            None
        };
        let provisioning_signer = Ed25519Seed::generate();
        let mut site_options =
            choria_site::SiteOptions::new(dir.path(), "Test Site", "testsite.local", port);
        site_options.broker = BrokerOptions {
            enrolment_port,
            stats_port,
            jetstream: options.streams,
            extra_config: options.extra_config,
            ..BrokerOptions::new(port)
        };
        site_options.provisioning.signer = ProvisioningSigner::Ed25519(provisioning_signer.clone());
        site_options.provisioning.access_token = Some(PROVISIONING_ACCESS_TOKEN.into());
        site_options.provisioning.validity = TOKEN_VALIDITY;
        site_options.provisioner.callerid = PROVISIONER_CALLER.into();
        site_options.provisioner.permissions = ClientPermissions {
            provisioner: true,
            election_user: true,
            events_viewer: true,
            ..Default::default()
        };
        site_options.provisioner.validity = TOKEN_VALIDITY;
        let site =
            choria_site::Site::generate(&site_options).map_err(step("generating the site"))?;
        let broker_config_path = site.broker_config_path.clone();
        let broker_dir = dir.path().join("broker");

        let parsed = choria_config::Config::load(&broker_config_path)
            .map_err(step("reading the broker config"))?;
        let settings = BrokerSettings::from_config(&parsed).map_err(step("broker settings"))?;
        let broker = Broker::start(settings, &broker_dir)
            .await
            .map_err(step("starting the broker"))?;
        let enrolment_url = broker.enrolment_url().map(str::to_string);
        let metrics_addr = broker.metrics_addr();

        let provisioner = site.provisioner;
        Ok(TestSite {
            dir,
            org_issuer: site.org_issuer,
            org_issuer_seed_path: site.org_issuer_seed_path,
            provisioning_signer,
            provisioning_signer_public_path: site.provisioning_signer_public_path,
            ca: site.ca,
            ca_path: site.ca_path,
            broker_cert_path: site.broker_cert_path,
            broker_key_path: site.broker_key_path,
            provisioner_password: site.provisioner_password,
            provisioning_token: site.provisioning_token,
            provisioning_token_path: site.provisioning_token_path,
            provisioner_seed: provisioner.seed,
            provisioner_seed_path: provisioner.seed_path,
            provisioner_token: provisioner.token,
            provisioner_claims: provisioner.claims,
            provisioner_token_path: provisioner.token_path,
            system_password: site.system_password,
            broker_config_path,
            broker_url: site.broker_url,
            enrolment_url,
            metrics_addr,
            broker: Some(broker),
        })
    }

    /// The running broker.
    pub fn broker(&self) -> Option<&RunningBroker> {
        self.broker.as_ref()
    }

    /// nats-server's log so far (print it when a test fails).
    pub fn broker_log(&self) -> String {
        self.broker
            .as_ref()
            .map(RunningBroker::log_tail)
            .unwrap_or_default()
    }

    /// Stops the broker cleanly (dropping the site also stops it).
    pub async fn shutdown(mut self) {
        if let Some(broker) = self.broker.take() {
            broker.shutdown().await;
        }
    }

    /// A new ed25519 seed written to `<dir>/<name>.seed` (0600); returns seed and path.
    pub fn new_seed(&self, name: &str) -> Result<(Ed25519Seed, PathBuf), SiteError> {
        let seed = Ed25519Seed::generate();
        let path = write_secret(self.dir.path(), &format!("{name}.seed"), &seed.to_hex())?;
        Ok((seed, path))
    }

    /// A server token for `identity` holding `public_key`, issued by the provisioner through
    /// the org chain (what the provisioner gives a node), collectives `["choria"]`.
    pub fn mint_server_token(
        &self,
        identity: &str,
        public_key: [u8; 32],
        permissions: Option<ServerPermissions>,
    ) -> Result<String, SiteError> {
        let mut claims = ServerClaims::new(
            NewServer {
                identity: identity.into(),
                collectives: vec!["choria".into()],
                permissions,
                public_key: Some(public_key),
                validity: TOKEN_VALIDITY,
                ..Default::default()
            },
            SystemTime::now(),
        )
        .map_err(step("making server claims"))?;
        sign_chained_token(
            &mut claims,
            &self.provisioner_claims,
            &self.provisioner_seed,
        )
        .map_err(step("signing a server token"))
    }

    /// A client token for `callerid` holding `public_key`, signed by the org issuer.
    pub fn mint_client_token(
        &self,
        callerid: &str,
        public_key: [u8; 32],
        permissions: Option<ClientPermissions>,
    ) -> Result<String, SiteError> {
        let claims = ClientIdClaims::new(
            NewClient {
                callerid: callerid.into(),
                permissions,
                public_key: Some(public_key),
                validity: TOKEN_VALIDITY,
                ..Default::default()
            },
            SystemTime::now(),
        )
        .map_err(step("making client claims"))?;
        sign_token(&claims, &SigningKey::Ed25519(self.org_issuer.clone()))
            .map_err(step("signing a client token"))
    }

    /// TLS trusting the site CA.
    pub fn tls(&self) -> Tls {
        Tls::verified(&self.ca_path)
    }

    /// `options` with TLS trusting the site CA, for tests that write their own auth
    /// callback (anything else: [`TestSite::login`]).
    pub fn tls_options(&self, options: ConnectOptions) -> Result<ConnectOptions, SiteError> {
        Ok(self
            .tls()
            .apply(options)
            .map_err(choria_connect::ConnectError::from)?)
    }

    /// A login to `url` (client or enrolment listener) as `name` presenting `credentials`,
    /// TLS trusting the site CA: change its fields, or take its `options()`, to go further.
    pub fn login(
        &self,
        url: &str,
        credentials: Credentials,
        name: &str,
    ) -> Result<Login, SiteError> {
        Ok(Login {
            user: credentials
                .user
                .map(|(user, password)| UserPassword::new(user, password)),
            token: match (credentials.token, credentials.seed) {
                // Exactly what the test gives: the token once, in `auth_token`.
                (Some(jwt), Some(seed)) => Some(Token::Signed {
                    jwt: jwt.into(),
                    seed: std::sync::Arc::new(seed),
                    mirror_in_jwt: false,
                }),
                (Some(jwt), None) => Some(Token::Bearer(jwt.into())),
                // A signature without a token proves nothing to the broker.
                (None, _) => None,
            },
            ..Login::new(parse_servers([url])?, name, self.tls())
        })
    }

    /// Connects as a provisioning-mode node named `identity` with the site's provisioning
    /// token (no nonce signature, as upstream nodes do).
    pub async fn connect_provisioning_node(
        &self,
        identity: &str,
    ) -> Result<async_nats::Client, SiteError> {
        self.connect_with(
            Credentials {
                token: Some(self.provisioning_token.clone()),
                ..Default::default()
            },
            identity,
        )
        .await
    }

    /// Connects as the provisioner: user `provisioner`, its password, its client token and
    /// a nonce signature with its seed.
    pub async fn connect_provisioner(&self) -> Result<async_nats::Client, SiteError> {
        self.connect_with(
            Credentials {
                user: Some((
                    choria_site::PROVISIONER_USER.into(),
                    self.provisioner_password.clone(),
                )),
                token: Some(self.provisioner_token.clone()),
                seed: Some(self.provisioner_seed.clone()),
            },
            "choria-provisioner",
        )
        .await
    }

    /// Connects as a fleet client (or a provisioned server) with a client or server token
    /// and the seed matching its `public_key`.
    pub async fn connect_jwt(
        &self,
        token: &str,
        seed: &Ed25519Seed,
        name: &str,
    ) -> Result<async_nats::Client, SiteError> {
        self.connect_with(
            Credentials {
                token: Some(token.into()),
                seed: Some(seed.clone()),
                ..Default::default()
            },
            name,
        )
        .await
    }

    /// As [`TestSite::connect_jwt`], with the Choria inbox prefix
    /// `<collective>.reply.<md5(id)>` (id = caller id or server identity) so request/reply
    /// works within the reply subjects the broker grants to JWT identities.
    pub async fn connect_jwt_with_inbox(
        &self,
        token: &str,
        seed: &Ed25519Seed,
        name: &str,
        collective: &str,
        id: &str,
    ) -> Result<async_nats::Client, SiteError> {
        let credentials = Credentials {
            token: Some(token.into()),
            seed: Some(seed.clone()),
            ..Default::default()
        };
        let mut login = self.login(&self.broker_url, credentials, name)?;
        login.inbox_prefix = Some(format!(
            "{collective}.reply.{}",
            choria_protocol::subjects::md5_hex(id)
        ));
        Ok(login.connect().await?)
    }

    /// Connects as the system user (JWT mode: a client token with `system_user` + nonce).
    pub async fn connect_system(&self) -> Result<async_nats::Client, SiteError> {
        let seed = Ed25519Seed::generate();
        let token = self.mint_client_token(
            "choria=system",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                system_user: true,
                ..Default::default()
            }),
        )?;
        self.connect_with(
            Credentials {
                user: Some((SYSTEM_USER.into(), self.system_password.clone())),
                token: Some(token),
                seed: Some(seed),
            },
            "system",
        )
        .await
    }

    /// Connects to [`TestSite::broker_url`] with arbitrary credentials.
    pub async fn connect_with(
        &self,
        credentials: Credentials,
        name: &str,
    ) -> Result<async_nats::Client, SiteError> {
        let url = self.broker_url.clone();
        self.connect_url(&url, credentials, name).await
    }

    /// Connects to `url` (client or enrolment listener) with arbitrary credentials.
    pub async fn connect_url(
        &self,
        url: &str,
        credentials: Credentials,
        name: &str,
    ) -> Result<async_nats::Client, SiteError> {
        Ok(self.login(url, credentials, name)?.connect().await?)
    }
}

impl Drop for TestSite {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("---- broker nats-server log ----\n{}", self.broker_log());
        }
    }
}

/// What a connection presents, in any combination (tests also present wrong ones); a
/// token with a seed signs the nonce. Secrets: not `Debug`.
#[derive(Clone, Default)]
pub struct Credentials {
    /// CONNECT `user`/`pass`.
    pub user: Option<(String, String)>,
    /// CONNECT `auth_token` (a Choria JWT).
    pub token: Option<String>,
    /// Seed that signs the server nonce (CONNECT `sig`).
    pub seed: Option<Ed25519Seed>,
}

fn write_secret(dir: &Path, name: &str, content: &str) -> Result<PathBuf, SiteError> {
    let path = dir.join(name);
    choria_config::files::write_secret(&path, content.as_bytes())
        .map_err(step("writing a secret file"))?;
    Ok(path)
}
