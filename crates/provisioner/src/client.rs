//! The provisioner as a Choria client (spec §3.4): identity, brokers, credentials and
//! `discovery_timeout` from the Choria `key = value` client config, and the NATS
//! connection built from them. Brokers come from `plugin.choria.middleware_hosts`, or
//! when that is empty from SRV records looked up when connecting.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use choria_config::Config;
use choria_connect::{ClientCertificate, Login, Tls, Token, UserPassword};
use choria_resolve::{middleware, ResolveError, Resolver};
use choria_tokens::{parse_client_token_unverified, Ed25519Seed};
use secrecy::{ExposeSecret, SecretString};

use crate::settings::Settings;
use crate::timeouts::Timeouts;

/// SRV lookups tried when connecting before giving up (with backoff in between).
pub const SRV_ATTEMPTS: u32 = 3;

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
    /// `plugin.choria.middleware_hosts` is empty and SRV found no broker.
    #[error("no broker to connect to: plugin.choria.middleware_hosts is empty and {source}; set plugin.choria.middleware_hosts, or publish those SRV records (their domain is plugin.choria.srv_domain, else this host's domain)")]
    NoBrokers {
        /// What the lookups found.
        source: ResolveError,
    },
    /// Connecting failed (or a broker URL is unusable).
    #[error(transparent)]
    Connect(choria_connect::ConnectError),
}

/// How the provisioner authenticates to the broker.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Client JWT + ed25519 seed (`plugin.security.provider = choria`).
    Jwt {
        /// The client JWT (sent as `auth_token` and `jwt`).
        token: SecretString,
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

/// Where the brokers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Brokers {
    /// `plugin.choria.middleware_hosts`.
    Urls(Vec<String>),
    /// SRV records `_mcollective-server._tcp.<domain>` or
    /// `_x-puppet-mcollective._tcp.<domain>`, looked up when connecting.
    Srv {
        /// `plugin.choria.srv_domain`, else this host's domain.
        domain: String,
    },
}

/// Everything needed to connect as the provisioner.
#[derive(Debug, Clone)]
pub struct ClientSettings {
    /// Provisioner identity (sender id, election candidate).
    pub identity: String,
    /// Caller id (`choria=<identity>` or the JWT `callerid`).
    pub caller_id: String,
    /// Where the brokers come from.
    pub brokers: Brokers,
    /// CA bundle to verify the broker, if any.
    pub ca: Option<PathBuf>,
    /// Whether TLS is used.
    pub tls: bool,
    /// Credentials.
    pub credentials: Credentials,
    /// Password of user `provisioner` (empty = none).
    pub password: SecretString,
    /// RPC and discovery timeouts (`discovery_timeout`).
    pub timeouts: Timeouts,
}

/// A path key the chosen security provider cannot do without (`needed_by` names it).
fn required_path(
    config: &Config,
    key: &'static str,
    needed_by: &str,
) -> Result<PathBuf, ClientError> {
    config.get_path(key)?.ok_or_else(|| ClientError::Invalid {
        key,
        reason: format!("required with {needed_by}"),
    })
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
        let brokers = brokers_from(config, middleware::host_domain)?;
        let timeouts = Timeouts::from_config(config).map_err(|err| ClientError::Invalid {
            key: crate::timeouts::DISCOVERY_TIMEOUT_KEY,
            reason: err.to_string(),
        })?;
        let provider = config.get_string_or("plugin.security.provider", "file");
        let (credentials, caller_id, ca) = if settings.choria_insecure {
            (Credentials::None, format!("choria={identity}"), None)
        } else if provider == "choria" {
            const NEEDED_BY: &str = "plugin.security.provider = choria";
            let token_file = required_path(config, "plugin.security.choria.token_file", NEEDED_BY)?;
            let seed_file = required_path(config, "plugin.security.choria.seed_file", NEEDED_BY)?;
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
                    token: token.into(),
                    seed: Arc::new(seed),
                    certificate,
                },
                claims.callerid,
                ca,
            )
        } else {
            const NEEDED_BY: &str = "plugin.security.provider = file";
            let cert = required_path(config, "plugin.security.file.certificate", NEEDED_BY)?;
            let key = required_path(config, "plugin.security.file.key", NEEDED_BY)?;
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
            brokers,
            ca,
            tls: !settings.choria_insecure,
            credentials,
            password: settings.broker_provisioning_password.clone(),
            timeouts,
        })
    }

    /// The protocol version matching the credentials: v2 with a client JWT.
    pub fn protocol(&self) -> crate::wire::Version {
        match self.credentials {
            Credentials::Jwt { .. } => crate::wire::Version::V2,
            _ => crate::wire::Version::V1,
        }
    }

    /// The broker URLs: `plugin.choria.middleware_hosts`, or the SRV records asked
    /// through `resolver` (default: the system's) up to [`SRV_ATTEMPTS`] times.
    pub async fn broker_urls(
        &self,
        resolver: Option<&Resolver>,
    ) -> Result<Vec<String>, ClientError> {
        let domain = match &self.brokers {
            Brokers::Urls(urls) => return Ok(urls.clone()),
            Brokers::Srv { domain } => domain,
        };
        let resolver = Resolver::given_or_system(resolver)
            .map_err(|source| ClientError::NoBrokers { source })?;
        let mut attempt = 0;
        loop {
            match middleware::brokers(&resolver, domain).await {
                Ok(found) => {
                    let urls: Vec<String> = found.iter().map(ToString::to_string).collect();
                    tracing::info!(
                        "Found brokers {} through the SRV records of {domain}",
                        urls.join(", ")
                    );
                    return Ok(urls);
                }
                Err(source) if attempt + 1 >= SRV_ATTEMPTS => {
                    return Err(ClientError::NoBrokers { source })
                }
                Err(err) => {
                    tracing::warn!("Looking up brokers through SRV failed, retrying: {err}");
                    tokio::time::sleep(choria_resolve::backoff::backoff(attempt)).await;
                    attempt += 1;
                }
            }
        }
    }

    /// Connects (retrying until the broker accepts us), finding brokers through the
    /// system's DNS when `plugin.choria.middleware_hosts` is empty.
    pub async fn connect(&self) -> Result<async_nats::Client, ClientError> {
        self.connect_with(None).await
    }

    /// [`ClientSettings::connect`] with SRV questions sent through `resolver`.
    pub async fn connect_with(
        &self,
        resolver: Option<&Resolver>,
    ) -> Result<async_nats::Client, ClientError> {
        self.connect_counting(resolver, None).await
    }

    /// [`ClientSettings::connect_with`], counting the connection's (re)connects in
    /// `connects` (for [`crate::Provisioner::with_connects`]).
    pub async fn connect_counting(
        &self,
        resolver: Option<&Resolver>,
        connects: Option<choria_connect::Connects>,
    ) -> Result<async_nats::Client, ClientError> {
        let broker_urls = self.broker_urls(resolver).await?;
        let servers = choria_connect::parse_servers(&broker_urls).map_err(ClientError::Connect)?;
        Login {
            connects,
            ..self.login(servers)
        }
        .connect()
        .await
        .map_err(ClientError::Connect)
    }

    /// The login: TLS verified with the configured CA (the system's roots when there is
    /// none), the client JWT signing the nonce or the client certificate, and user
    /// `provisioner` when a provisioner password is set.
    fn login(&self, servers: Vec<async_nats::ServerAddr>) -> Login {
        let (token, certificate) = match &self.credentials {
            Credentials::Jwt {
                token,
                seed,
                certificate,
            } => (
                Some(Token::Signed {
                    jwt: token.clone(),
                    seed: seed.clone(),
                    mirror_in_jwt: true,
                }),
                certificate.clone(),
            ),
            Credentials::Certificate { cert, key } => (None, Some((cert.clone(), key.clone()))),
            Credentials::None => (None, None),
        };
        let client = certificate.map(|(cert, key)| ClientCertificate { cert, key });
        let tls = match (&self.ca, self.tls) {
            (_, false) => Tls::Off,
            (Some(ca), true) => Tls::Verified {
                ca: ca.clone(),
                client,
            },
            (None, true) => Tls::SystemRoots { client },
        };
        Login {
            user: (!self.password.expose_secret().is_empty()).then(|| UserPassword {
                user: "provisioner".into(),
                password: self.password.clone(),
            }),
            token,
            ..crate::service::login(&self.identity, &self.caller_id, servers, tls)
        }
    }
}

/// Where the brokers come from: `plugin.choria.middleware_hosts`, else (unless
/// `plugin.choria.use_srv` is false) SRV under `plugin.choria.srv_domain` or, when that
/// is unset, `host_domain()`.
fn brokers_from(
    config: &Config,
    host_domain: impl FnOnce() -> Option<String>,
) -> Result<Brokers, ClientError> {
    let urls = config.get_list_or_empty("plugin.choria.middleware_hosts");
    if !urls.is_empty() {
        return Ok(Brokers::Urls(urls));
    }
    if !config.get_bool_or("plugin.choria.use_srv", true)? {
        return Err(ClientError::Invalid {
            key: "plugin.choria.middleware_hosts",
            reason: "no broker configured and SRV lookups are off (plugin.choria.use_srv = false); set plugin.choria.middleware_hosts or enable plugin.choria.use_srv".into(),
        });
    }
    let domain = config
        .get_string("plugin.choria.srv_domain")
        .map(|d| d.trim().trim_end_matches('.').to_string())
        .filter(|d| !d.is_empty())
        .or_else(host_domain)
        .ok_or(ClientError::Invalid {
            key: "plugin.choria.srv_domain",
            reason: "plugin.choria.middleware_hosts is empty and this host's name has no domain to look up SRV records under; set plugin.choria.middleware_hosts or plugin.choria.srv_domain".into(),
        })?;
    Ok(Brokers::Srv { domain })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> Config {
        Config::parse_str(text, "client.conf").expect("valid config")
    }

    #[test]
    fn middleware_hosts_win() {
        let brokers = brokers_from(
            &config("plugin.choria.middleware_hosts = nats://a:4222, b:4222\nplugin.choria.srv_domain = x.net\n"),
            || None,
        )
        .expect("brokers");
        assert_eq!(
            brokers,
            Brokers::Urls(vec!["nats://a:4222".into(), "b:4222".into()])
        );
    }

    #[test]
    fn srv_uses_the_srv_domain_then_the_host_domain() {
        let brokers = brokers_from(&config("plugin.choria.srv_domain = example.net.\n"), || {
            Some("host.example".into())
        })
        .expect("brokers");
        assert_eq!(
            brokers,
            Brokers::Srv {
                domain: "example.net".into()
            }
        );
        let brokers = brokers_from(&config("identity = p\n"), || Some("dc1.example".into()))
            .expect("brokers");
        assert_eq!(
            brokers,
            Brokers::Srv {
                domain: "dc1.example".into()
            }
        );
    }

    #[test]
    fn no_way_to_find_brokers_names_the_keys() {
        let err = brokers_from(&config("identity = p\n"), || None).expect_err("no domain");
        let text = err.to_string();
        assert!(
            text.contains("plugin.choria.srv_domain")
                && text.contains("plugin.choria.middleware_hosts"),
            "{text}"
        );
        let err = brokers_from(
            &config("plugin.choria.use_srv = false\nplugin.choria.srv_domain = example.net\n"),
            || None,
        )
        .expect_err("srv off");
        let text = err.to_string();
        assert!(text.contains("plugin.choria.use_srv"), "{text}");
        assert!(brokers_from(&config("plugin.choria.use_srv = maybe\n"), || None).is_err());
    }

    #[test]
    fn discovery_timeout_is_read_and_validated() {
        let settings = Settings::parse_str(
            "helper: /bin/true\nchoria_insecure: true\n",
            Path::new("provisioner.yaml"),
        )
        .expect("settings");
        let base = "identity = p\nplugin.choria.middleware_hosts = nats://127.0.0.1:4222\n";
        let client = ClientSettings::from_config(&config(base), &settings).expect("client");
        assert_eq!(client.timeouts, Timeouts::default());
        let client = ClientSettings::from_config(
            &config(&format!("{base}discovery_timeout = 8\n")),
            &settings,
        )
        .expect("client");
        assert_eq!(
            client.timeouts.attempt(std::time::Duration::from_secs(20)),
            std::time::Duration::from_secs(28)
        );
        let err = ClientSettings::from_config(
            &config(&format!("{base}discovery_timeout = 0\n")),
            &settings,
        )
        .expect_err("zero refused");
        assert!(
            matches!(
                err,
                ClientError::Invalid {
                    key: "discovery_timeout",
                    ..
                }
            ),
            "{err}"
        );
    }
}
