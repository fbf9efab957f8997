//! The provisioner as a Choria client (spec §3.4): identity, brokers and credentials from
//! the Choria `key = value` client config, and the NATS connection built from them.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use choria_config::Config;
use choria_tokens::{parse_client_token_unverified, Ed25519Seed};

use crate::settings::Settings;

/// Why the client side could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The Choria config could not be read.
    #[error("Could not load Choria Configuration: {0}")]
    Config(#[from] choria_config::ConfigError),
    /// A required key is missing or unusable.
    #[error("Choria configuration {key}: {reason}")]
    Invalid {
        /// Key.
        key: &'static str,
        /// Why.
        reason: String,
    },
    /// Connecting failed.
    #[error("could not connect to {urls}: {message}")]
    Connect {
        /// Brokers tried.
        urls: String,
        /// Why.
        message: String,
    },
}

/// How the provisioner authenticates to the broker.
#[derive(Clone)]
pub enum Credentials {
    /// Client JWT + ed25519 seed (`plugin.security.provider = choria`).
    Jwt {
        /// The client JWT (sent as `auth_token` and `jwt`).
        token: String,
        /// Seed that signs the server nonce.
        seed: Arc<Ed25519Seed>,
        /// Client certificate and key (`plugin.security.choria.certificate`/`.key`), for
        /// brokers whose client port demands one (mtls mode).
        certificate: Option<(PathBuf, PathBuf)>,
    },
    /// x509 client certificate (`plugin.security.provider = file`).
    Certificate {
        /// Certificate PEM path.
        cert: PathBuf,
        /// Key PEM path.
        key: PathBuf,
    },
    /// Nothing but the optional provisioner password (`choria_insecure`).
    None,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Jwt { .. } => f.write_str("Credentials::Jwt"),
            Credentials::Certificate { cert, .. } => {
                write!(f, "Credentials::Certificate({})", cert.display())
            }
            Credentials::None => f.write_str("Credentials::None"),
        }
    }
}

/// Everything needed to connect as the provisioner.
#[derive(Clone)]
pub struct ClientSettings {
    /// Provisioner identity (sender id, election candidate).
    pub identity: String,
    /// Caller id (`choria=<identity>` or the JWT `callerid`).
    pub caller_id: String,
    /// Broker URLs.
    pub urls: Vec<String>,
    /// CA bundle to verify the broker, if any.
    pub ca: Option<PathBuf>,
    /// Whether TLS is used.
    pub tls: bool,
    /// Credentials.
    pub credentials: Credentials,
    /// Password of user `provisioner` (secret; empty = none).
    pub password: String,
}

impl std::fmt::Debug for ClientSettings {
    // Hand-written: the password never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSettings")
            .field("identity", &self.identity)
            .field("caller_id", &self.caller_id)
            .field("urls", &self.urls)
            .field("ca", &self.ca)
            .field("tls", &self.tls)
            .field("credentials", &self.credentials)
            .field("password_set", &!self.password.is_empty())
            .finish()
    }
}

impl ClientSettings {
    /// Reads the Choria client config at `path` and applies the provisioner overrides.
    pub fn load(path: &Path, settings: &Settings) -> Result<ClientSettings, ClientError> {
        ClientSettings::from_config(&Config::load(path)?, settings)
    }

    /// Builds client settings from a parsed Choria config.
    pub fn from_config(
        config: &Config,
        settings: &Settings,
    ) -> Result<ClientSettings, ClientError> {
        let identity = config
            .get_string("identity")
            .filter(|s| !s.trim().is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .ok_or(ClientError::Invalid {
                key: "identity",
                reason: "no identity configured".into(),
            })?;
        let urls = config.get_list_or_empty("plugin.choria.middleware_hosts");
        if urls.is_empty() {
            return Err(ClientError::Invalid {
                key: "plugin.choria.middleware_hosts",
                reason:
                    "no broker configured; SRV lookups are not supported by this provisioner yet"
                        .into(),
            });
        }
        let provider = config.get_string_or("plugin.security.provider", "file");
        let (credentials, caller_id, ca) = if settings.choria_insecure {
            (Credentials::None, format!("choria={identity}"), None)
        } else if provider == "choria" {
            let token_file = config
                .get_path("plugin.security.choria.token_file")?
                .ok_or(ClientError::Invalid {
                    key: "plugin.security.choria.token_file",
                    reason: "required with plugin.security.provider = choria".into(),
                })?;
            let seed_file = config.get_path("plugin.security.choria.seed_file")?.ok_or(
                ClientError::Invalid {
                    key: "plugin.security.choria.seed_file",
                    reason: "required with plugin.security.provider = choria".into(),
                },
            )?;
            let token = std::fs::read_to_string(&token_file)
                .map_err(|e| ClientError::Invalid {
                    key: "plugin.security.choria.token_file",
                    reason: format!("{}: {e}", token_file.display()),
                })?
                .trim()
                .to_string();
            let claims =
                parse_client_token_unverified(&token).map_err(|e| ClientError::Invalid {
                    key: "plugin.security.choria.token_file",
                    reason: e.to_string(),
                })?;
            let seed = Ed25519Seed::from_file(&seed_file).map_err(|e| ClientError::Invalid {
                key: "plugin.security.choria.seed_file",
                reason: e.to_string(),
            })?;
            let ca = config.get_path("plugin.security.choria.ca")?;
            let certificate = match (
                config.get_path("plugin.security.choria.certificate")?,
                config.get_path("plugin.security.choria.key")?,
            ) {
                (Some(cert), Some(key)) => Some((cert, key)),
                (None, None) => None,
                (Some(_), None) => {
                    return Err(ClientError::Invalid {
                        key: "plugin.security.choria.key",
                        reason: "required with plugin.security.choria.certificate".into(),
                    })
                }
                (None, Some(_)) => {
                    return Err(ClientError::Invalid {
                        key: "plugin.security.choria.certificate",
                        reason: "required with plugin.security.choria.key".into(),
                    })
                }
            };
            (
                Credentials::Jwt {
                    token,
                    seed: Arc::new(seed),
                    certificate,
                },
                claims.callerid,
                ca,
            )
        } else {
            let cert = config.get_path("plugin.security.file.certificate")?.ok_or(
                ClientError::Invalid {
                    key: "plugin.security.file.certificate",
                    reason: "required with plugin.security.provider = file".into(),
                },
            )?;
            let key = config
                .get_path("plugin.security.file.key")?
                .ok_or(ClientError::Invalid {
                    key: "plugin.security.file.key",
                    reason: "required with plugin.security.provider = file".into(),
                })?;
            let ca = config.get_path("plugin.security.file.ca")?;
            (
                Credentials::Certificate { cert, key },
                format!("choria={identity}"),
                ca,
            )
        };
        Ok(ClientSettings {
            identity,
            caller_id,
            urls,
            ca,
            tls: !settings.choria_insecure,
            credentials,
            password: settings.broker_provisioning_password.clone(),
        })
    }

    /// The protocol version matching the credentials: v2 with a client JWT.
    pub fn protocol(&self) -> crate::wire::Version {
        match self.credentials {
            Credentials::Jwt { .. } => crate::wire::Version::V2,
            _ => crate::wire::Version::V1,
        }
    }

    /// Connects (retrying until the broker accepts us).
    pub async fn connect(&self) -> Result<async_nats::Client, ClientError> {
        let mut options = match &self.credentials {
            Credentials::Jwt {
                token,
                seed,
                certificate,
            } => {
                let (token, seed, password) = (token.clone(), seed.clone(), self.password.clone());
                let options =
                    async_nats::ConnectOptions::with_auth_callback(move |nonce: Vec<u8>| {
                        let (token, seed, password) =
                            (token.clone(), seed.clone(), password.clone());
                        async move {
                            let mut auth = async_nats::Auth::new();
                            auth.token = Some(token.clone());
                            auth.jwt = Some(token);
                            auth.signature = Some(seed.sign(&nonce).to_vec());
                            if !password.is_empty() {
                                auth.username = Some("provisioner".into());
                                auth.password = Some(password);
                            }
                            Ok(auth)
                        }
                    });
                match certificate {
                    Some((cert, key)) => options.add_client_certificate(cert.clone(), key.clone()),
                    None => options,
                }
            }
            Credentials::Certificate { cert, key } => {
                let mut o = async_nats::ConnectOptions::new()
                    .add_client_certificate(cert.clone(), key.clone());
                if !self.password.is_empty() {
                    o = o.user_and_password("provisioner".into(), self.password.clone());
                }
                o
            }
            Credentials::None => {
                let mut o = async_nats::ConnectOptions::new();
                if !self.password.is_empty() {
                    o = o.user_and_password("provisioner".into(), self.password.clone());
                }
                o
            }
        };
        if self.tls {
            options = options.require_tls(true);
            if let Some(ca) = &self.ca {
                options = options.add_root_certificates(ca.clone());
            }
        }
        let options =
            crate::service::configure_connection(options, &self.identity, &self.caller_id);
        let urls: Vec<async_nats::ServerAddr> = self
            .urls
            .iter()
            .map(|u| u.parse())
            .collect::<Result<_, _>>()
            .map_err(|e: std::io::Error| ClientError::Connect {
                urls: self.urls.join(","),
                message: e.to_string(),
            })?;
        options
            .connect(urls.as_slice())
            .await
            .map_err(|e| ClientError::Connect {
                urls: self.urls.join(","),
                message: e.to_string(),
            })
    }
}
