//! Typed, validated broker settings read from a Choria config (spec §4): every error names
//! the key, and nothing starts until the whole configuration is known to be usable.

use std::path::PathBuf;
use std::time::Duration;

use choria_config::{Config, ConfigError};
use secrecy::SecretString;

use crate::decision::TlsMode;

/// Prefix of the broker network keys.
const N: &str = "plugin.choria.network.";

/// Default client port (spec §4.2).
pub const DEFAULT_CLIENT_PORT: u16 = 4222;
/// Default listen address.
pub const DEFAULT_LISTEN_ADDRESS: &str = "::";
/// Default cluster port when peers are set.
pub const DEFAULT_PEER_PORT: u16 = 5222;
/// Default TLS and auth timeouts (`tls_timeout`, `auth_timeout`). Upstream's 2 s lets a
/// power-on storm livelock: handshakes queued behind thousands of others are cut off, the
/// nodes retry, and the broker spends its CPU on connections nobody waits for (10,000 nodes
/// at once: none in the fleet after 240 s with 2 s, all in 74 s with 10 s on broker and
/// nodes; docs/benchmarks.md). Set the keys to 2s for upstream's behaviour.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default number of authorization requests handled at once.
pub const DEFAULT_AUTH_CONCURRENCY: usize = 64;

/// Default `stream.leader_election_ttl`: a crashed provisioner leader is replaced within
/// about this long (upstream defaults to a minute; `1m` in the config restores that).
pub const DEFAULT_LEADER_ELECTION_TTL: Duration = Duration::from_secs(8);

/// Why the settings are not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A value could not be read.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A required key is missing.
    #[error("{key} is required: {why}")]
    Missing {
        /// The key.
        key: String,
        /// Why it is needed.
        why: &'static str,
    },
    /// A value is not acceptable.
    #[error("{key}: {reason}")]
    Invalid {
        /// The key.
        key: String,
        /// What is wrong.
        reason: String,
    },
}

/// The TLS material of the broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// `plugin.security.file.certificate`: the broker certificate (PEM).
    pub certificate: PathBuf,
    /// `plugin.security.file.key`: its private key (PEM).
    pub key: PathBuf,
    /// `plugin.security.file.ca`: the CA that client certificates must chain to (mTLS).
    pub ca: PathBuf,
}

/// Retention and replicas of the managed streams (spec §1.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSettings {
    /// `stream.store`: JetStream store directory.
    pub store: PathBuf,
    /// `stream.manage_streams`.
    pub manage: bool,
    /// `stream.event_retention` (24h).
    pub event_retention: Duration,
    /// `stream.machine_retention` (24h).
    pub machine_retention: Duration,
    /// `stream.advisory_retention` (168h).
    pub advisory_retention: Duration,
    /// `stream.executor_retention` (24h).
    pub executor_retention: Duration,
    /// `stream.leader_election_ttl` ([`DEFAULT_LEADER_ELECTION_TTL`]; upstream's is 1m).
    pub leader_election_ttl: Duration,
    /// Replicas for every stream (`-1` in config = number of peers, min 1).
    pub replicas: usize,
}

/// Cluster routes (spec §1.6).
#[derive(Debug, Clone)]
pub struct ClusterSettings {
    /// `peers`: route URLs (`nats://host:port` or `host:port`).
    pub peers: Vec<String>,
    /// `peer_port`.
    pub port: u16,
    /// `peer_user` (empty: no route auth).
    pub user: String,
    /// `peer_password`.
    pub password: SecretString,
}

/// Everything the broker needs, validated.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// `identity`: nats-server name.
    pub identity: String,
    /// `plugin.choria.network.listen_address`.
    pub listen_address: String,
    /// `plugin.choria.network.client_port`.
    pub client_port: u16,
    /// `plugin.choria.network.tls_mode`: `jwt` (default) or `mtls`.
    pub tls_mode: TlsMode,
    /// TLS certificate, key and CA.
    pub tls: TlsFiles,
    /// `plugin.choria.network.enrolment_port`: the websocket enrolment listener (mtls mode).
    pub enrolment_port: Option<u16>,
    /// `plugin.choria.network.tls_timeout`.
    pub tls_timeout: Duration,
    /// `plugin.choria.network.auth_timeout`.
    pub auth_timeout: Duration,
    /// `plugin.choria.network.provisioning.client_password`.
    pub provisioning_password: Option<SecretString>,
    /// `plugin.choria.network.provisioning.signer_cert`.
    pub provisioning_signer: Option<PathBuf>,
    /// `plugin.choria.network.provisioning.provisioner_without_token`.
    pub provisioner_without_token: bool,
    /// `plugin.choria.network.system.user` / `.password`.
    pub system: Option<(String, SecretString)>,
    /// `plugin.choria.network.server_signer_cert`: hex keys or key files.
    pub server_signers: Vec<String>,
    /// `plugin.choria.network.client_signer_cert`: hex keys or key files.
    pub client_signers: Vec<String>,
    /// `plugin.security.issuer.names` with each `plugin.security.issuer.<name>.public`.
    pub issuers: Vec<(String, String)>,
    /// `plugin.security.issuer.<name>.chain_issuers`: token files of the chain issuers each
    /// issuer delegated to; their grants bound what the tokens they issue may grant.
    pub chain_issuers: Vec<(String, PathBuf)>,
    /// `plugin.security.choria.ca` is set (P_PUBSUB for verified mTLS in issuer mode).
    pub pubsub_for_mtls: bool,
    /// `plugin.choria.network.client_hosts` (upstream's allow list; see spec §2.8).
    pub client_hosts: Vec<String>,
    /// `plugin.choria.network.deny_server_connections`.
    pub deny_server_connections: bool,
    /// JetStream, when `plugin.choria.network.stream.store` is set.
    pub streams: Option<StreamSettings>,
    /// Cluster routes, when peers are set.
    pub cluster: Option<ClusterSettings>,
    /// `plugin.choria.network.gateway_name` (cluster name).
    pub cluster_name: String,
    /// `plugin.choria.network.write_deadline`.
    pub write_deadline: Duration,
    /// `plugin.choria.stats_port` (metrics) and `plugin.choria.stats_address`.
    pub stats: Option<(String, u16)>,
    /// `plugin.choria.network.auth_service.concurrency`: requests decided at once.
    pub auth_concurrency: usize,
    /// `plugin.choria.network.fips`: reply-subject ACLs use only sha256.
    pub fips: bool,
    /// `plugin.choria.network.mapping.names` with each `.<name>.source` / `.destination`:
    /// subject mappings in the `choria` account (spec §1.4).
    pub mappings: Vec<(String, String)>,
}

impl BrokerSettings {
    /// Reads and validates the broker settings.
    pub fn from_config(cfg: &Config) -> Result<BrokerSettings, SettingsError> {
        if !cfg.get_bool_or("plugin.choria.broker_network", false)? {
            return Err(SettingsError::Invalid {
                key: "plugin.choria.broker_network".into(),
                reason: "must be true to run a broker".into(),
            });
        }
        let key = |k: &str| format!("{N}{k}");
        let identity = cfg
            .get_string("identity")
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "choria_broker".into());
        let tls_mode = match cfg.get_string_or(&key("tls_mode"), "jwt").as_str() {
            "jwt" | "" => TlsMode::Jwt,
            "mtls" => TlsMode::Mtls,
            other => {
                return Err(SettingsError::Invalid {
                    key: key("tls_mode"),
                    reason: format!("{other:?} is not one of \"jwt\", \"mtls\""),
                })
            }
        };
        let tls = TlsFiles {
            certificate: required_file(cfg, "plugin.security.file.certificate")?,
            key: required_file(cfg, "plugin.security.file.key")?,
            ca: required_file(cfg, "plugin.security.file.ca")?,
        };
        let enrolment_port = cfg.get_int::<u16>(&key("enrolment_port"), 1..=65535)?;
        if tls_mode == TlsMode::Mtls && enrolment_port.is_none() {
            return Err(SettingsError::Missing {
                key: key("enrolment_port"),
                why: "mtls mode needs the enrolment listener for provisioning-mode servers",
            });
        }
        let timeout_range = Duration::from_millis(1)..=Duration::from_secs(60);
        let provisioning_password =
            non_empty(cfg, &key("provisioning.client_password")).map(SecretString::from);
        let provisioning_signer = cfg.get_path(&key("provisioning.signer_cert"))?;
        if let Some(path) = &provisioning_signer {
            if !path.is_file() {
                return Err(SettingsError::Invalid {
                    key: key("provisioning.signer_cert"),
                    reason: format!(
                        "provisioning signer certificate {} does not exist",
                        path.display()
                    ),
                });
            }
        }
        let system = match (
            non_empty(cfg, &key("system.user")),
            non_empty(cfg, &key("system.password")),
        ) {
            (Some(u), Some(p)) => Some((u, p.into())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(SettingsError::Missing {
                    key: key("system.password"),
                    why: "the system user needs a password",
                })
            }
            (None, Some(_)) => {
                return Err(SettingsError::Missing {
                    key: key("system.user"),
                    why: "a system password was given without a user",
                })
            }
        };
        let mut issuers = Vec::new();
        let mut chain_issuers = Vec::new();
        for name in cfg.get_list_or_empty("plugin.security.issuer.names") {
            let k = format!("plugin.security.issuer.{name}.public");
            let Some(public) = non_empty(cfg, &k) else {
                return Err(SettingsError::Missing {
                    key: k,
                    why: "every issuer name needs its hex ed25519 public key",
                });
            };
            if public.len() != 64 || hex::decode(&public).is_err() {
                return Err(SettingsError::Invalid {
                    key: k,
                    reason: "expected 64 hex characters (an ed25519 public key)".into(),
                });
            }
            for file in
                cfg.get_list_or_empty(&format!("plugin.security.issuer.{name}.chain_issuers"))
            {
                chain_issuers.push((name.clone(), PathBuf::from(file)));
            }
            issuers.push((name, public));
        }
        let server_signers = cfg.get_list_or_empty(&key("server_signer_cert"));
        let client_signers = cfg.get_list_or_empty(&key("client_signer_cert"));
        if !issuers.is_empty() {
            if !client_signers.is_empty() {
                return Err(SettingsError::Invalid { key: key("client_signer_cert"), reason: "cannot set trusted client signers using plugin.choria.network.client_signer_cert when an issuer is configured".into() });
            }
            if !server_signers.is_empty() {
                return Err(SettingsError::Invalid { key: key("server_signer_cert"), reason: "cannot set trusted server signers using plugin.choria.network.server_signer_cert when an issuer is configured".into() });
            }
            if !cfg
                .get_list_or_empty("plugin.security.choria.trusted_signers")
                .is_empty()
            {
                return Err(SettingsError::Invalid { key: "plugin.security.choria.trusted_signers".into(), reason: "cannot set trusted client signers using plugin.security.choria.trusted_signers when an issuer is configured".into() });
            }
        }
        let peers = cfg.get_list_or_empty(&key("peers"));
        let cluster = if peers.is_empty() {
            None
        } else {
            Some(ClusterSettings {
                peers,
                port: cfg.get_int_or(&key("peer_port"), 1..=65535, DEFAULT_PEER_PORT)?,
                user: cfg.get_string_or(&key("peer_user"), ""),
                password: cfg.get_string_or(&key("peer_password"), "").into(),
            })
        };
        let replicas_default = cluster.as_ref().map_or(1, |c| c.peers.len().max(1));
        let streams = match cfg.get_path(&key("stream.store"))? {
            None => None,
            Some(store) => {
                let replicas: i64 = cfg.get_int_or(&key("stream.event_replicas"), -1..=5, -1)?;
                Some(StreamSettings {
                    store,
                    manage: cfg.get_bool_or(&key("stream.manage_streams"), true)?,
                    event_retention: cfg.get_duration_or(
                        &key("stream.event_retention"),
                        Duration::from_secs(86400),
                    )?,
                    machine_retention: cfg.get_duration_or(
                        &key("stream.machine_retention"),
                        Duration::from_secs(86400),
                    )?,
                    advisory_retention: cfg.get_duration_or(
                        &key("stream.advisory_retention"),
                        Duration::from_secs(7 * 86400),
                    )?,
                    executor_retention: cfg.get_duration_or(
                        &key("stream.executor_retention"),
                        Duration::from_secs(86400),
                    )?,
                    leader_election_ttl: cfg.get_duration_or(
                        &key("stream.leader_election_ttl"),
                        DEFAULT_LEADER_ELECTION_TTL,
                    )?,
                    replicas: usize::try_from(replicas).unwrap_or(replicas_default).max(1),
                })
            }
        };
        let mut mappings = Vec::new();
        for name in cfg.get_list_or_empty(&key("mapping.names")) {
            let mut pair = Vec::with_capacity(2);
            for part in ["source", "destination"] {
                let k = key(&format!("mapping.{name}.{part}"));
                match non_empty(cfg, &k) {
                    Some(v) => pair.push(v),
                    None => {
                        return Err(SettingsError::Missing {
                            key: k,
                            why: "every mapping name needs a source and a destination",
                        })
                    }
                }
            }
            if let [source, destination] = pair.as_slice() {
                mappings.push((source.clone(), destination.clone()));
            }
        }
        let stats_port: u16 = cfg.get_int_or("plugin.choria.stats_port", 0..=65535, 0)?;
        Ok(BrokerSettings {
            identity,
            listen_address: cfg.get_string_or(&key("listen_address"), DEFAULT_LISTEN_ADDRESS),
            client_port: cfg.get_int_or(&key("client_port"), 1..=65535, DEFAULT_CLIENT_PORT)?,
            tls_mode,
            tls,
            enrolment_port,
            tls_timeout: cfg
                .get_duration_in(&key("tls_timeout"), timeout_range.clone())?
                .unwrap_or(DEFAULT_TIMEOUT),
            auth_timeout: cfg
                .get_duration_in(&key("auth_timeout"), timeout_range)?
                .unwrap_or(DEFAULT_TIMEOUT),
            provisioning_password,
            provisioning_signer,
            provisioner_without_token: cfg
                .get_bool_or(&key("provisioning.provisioner_without_token"), false)?,
            system,
            server_signers,
            client_signers,
            issuers,
            chain_issuers,
            pubsub_for_mtls: non_empty(cfg, "plugin.security.choria.ca").is_some(),
            client_hosts: cfg.get_list_or_empty(&key("client_hosts")),
            deny_server_connections: cfg.get_bool_or(&key("deny_server_connections"), false)?,
            streams,
            cluster,
            cluster_name: cfg.get_string_or(&key("gateway_name"), "CHORIA"),
            write_deadline: cfg.get_duration_or(&key("write_deadline"), Duration::from_secs(10))?,
            stats: (stats_port > 0).then(|| {
                (
                    cfg.get_string_or("plugin.choria.stats_address", "127.0.0.1"),
                    stats_port,
                )
            }),
            auth_concurrency: cfg.get_int_or(
                &key("auth_service.concurrency"),
                1..=65536,
                DEFAULT_AUTH_CONCURRENCY,
            )?,
            fips: cfg.get_bool_or(&key("fips"), false)?,
            mappings,
        })
    }

    /// The host clients should dial for a listener bound to [`Self::listen_address`].
    pub fn dial_host(&self) -> String {
        match self.listen_address.as_str() {
            "::" | "0.0.0.0" | "" => "127.0.0.1".into(),
            host if host.contains(':') => format!("[{host}]"),
            host => host.into(),
        }
    }
}

fn non_empty(cfg: &Config, key: &str) -> Option<String> {
    cfg.get_string(key).filter(|s| !s.is_empty())
}

fn required_file(cfg: &Config, key: &str) -> Result<PathBuf, SettingsError> {
    let Some(path) = cfg.get_path(key)? else {
        return Err(SettingsError::Missing {
            key: key.into(),
            why: "the broker only serves TLS",
        });
    };
    if !path.is_file() {
        return Err(SettingsError::Invalid {
            key: key.into(),
            reason: format!("{} does not exist or is not a file", path.display()),
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(dir: &std::path::Path) -> String {
        for f in ["cert.pem", "key.pem", "ca.pem"] {
            std::fs::write(dir.join(f), "x").expect("write");
        }
        format!(
            "plugin.choria.broker_network = true\nplugin.security.file.certificate = {0}/cert.pem\nplugin.security.file.key = {0}/key.pem\nplugin.security.file.ca = {0}/ca.pem\n",
            dir.display()
        )
    }

    fn parse(text: &str) -> Result<BrokerSettings, SettingsError> {
        BrokerSettings::from_config(&Config::parse_str(text, "test.conf").expect("parse"))
    }

    #[test]
    fn defaults_are_jwt_mode_on_4222() {
        let dir = tempfile::tempdir().expect("dir");
        let s = parse(&base(dir.path())).expect("settings");
        assert_eq!(s.client_port, 4222);
        assert_eq!(s.tls_mode, TlsMode::Jwt);
        assert!(s.provisioning_password.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().expect("dir");
        let b = base(dir.path());
        let err = parse(&format!("{b}plugin.choria.network.tls_mode = maybe\n")).expect_err("bad");
        assert!(
            err.to_string().contains("plugin.choria.network.tls_mode"),
            "{err}"
        );
        let err = parse(&format!("{b}plugin.choria.network.tls_mode = mtls\n")).expect_err("bad");
        assert!(err.to_string().contains("enrolment_port"), "{err}");
        let err =
            parse(&format!("{b}plugin.choria.network.system.user = system\n")).expect_err("bad");
        assert!(err.to_string().contains("system.password"), "{err}");
        let err = parse(&format!("{b}plugin.choria.network.client_port = 0\n")).expect_err("bad");
        assert!(err.to_string().contains("client_port"), "{err}");
        let err = parse(&format!("{b}plugin.security.issuer.names = choria\n")).expect_err("bad");
        assert!(
            err.to_string()
                .contains("plugin.security.issuer.choria.public"),
            "{err}"
        );
        let err = parse("plugin.choria.broker_network = true\n").expect_err("no tls");
        assert!(
            err.to_string().contains("plugin.security.file.certificate"),
            "{err}"
        );
    }

    #[test]
    fn debug_never_shows_a_password() {
        let dir = tempfile::tempdir().expect("dir");
        let s = parse(&format!(
            "{}plugin.choria.network.provisioning.client_password = provS3cret
             plugin.choria.network.system.user = system
             plugin.choria.network.system.password = sysS3cret
             plugin.choria.network.peers = b2:5222
             plugin.choria.network.peer_user = routes
             plugin.choria.network.peer_password = peerS3cret
",
            base(dir.path())
        ))
        .expect("settings");
        let text = format!("{s:?}");
        for secret in ["provS3cret", "sysS3cret", "peerS3cret"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("routes"), "{text}");
    }

    #[test]
    fn issuers_conflict_with_signers() {
        let dir = tempfile::tempdir().expect("dir");
        let b = base(dir.path());
        let k = "a".repeat(64);
        let err = parse(&format!("{b}plugin.security.issuer.names = choria\nplugin.security.issuer.choria.public = {k}\nplugin.choria.network.client_signer_cert = {k}\n")).expect_err("conflict");
        assert!(
            err.to_string()
                .contains("cannot set trusted client signers"),
            "{err}"
        );
    }
}
