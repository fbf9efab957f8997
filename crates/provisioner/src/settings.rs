//! The provisioner's own YAML/JSON configuration file (spec §3): every upstream key with
//! its upstream name, plus a few opt-in extensions, validated completely at start-up (B13).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use choria_config::duration::{parse_duration_upstream, DurationError};
use choria_config::files::{read_capped_string, FileError};
use secrecy::SecretString;
use serde::Deserialize;

/// Default discovery interval (spec §3.2).
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(60);
/// Smallest discovery interval upstream accepts.
pub const MIN_INTERVAL: Duration = Duration::from_secs(60);
/// Default server JWT validity: one year of 365 days.
pub const DEFAULT_SERVER_JWT_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Default helper timeout (spec §2.1).
pub const DEFAULT_HELPER_TIMEOUT: Duration = Duration::from_secs(10);
/// Default overall time one node pass may take (P2; upstream has none).
pub const DEFAULT_NODE_DEADLINE: Duration = Duration::from_secs(120);
/// Default leader election TTL used when the bucket's own TTL cannot be read.
pub const DEFAULT_ELECTION_TTL: Duration = Duration::from_secs(8);
/// Default lifecycle component of node startup events.
pub const DEFAULT_LIFECYCLE_COMPONENT: &str = "provision_mode_server";
/// Largest config file we read.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Default certificate name deny list (spec §3.2).
pub const DEFAULT_DENY_LIST: [&str; 4] = [
    r"\.privileged.mcollective$",
    r"\.privileged.choria$",
    r"\.mcollective$",
    r"\.choria$",
];

/// Why a configuration could not be loaded; each variant names the key or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// The file does not exist.
    #[error("file {0} not found")]
    NotFound(PathBuf),
    /// The file could not be read.
    #[error("config file could not be read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: FileError,
    },
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("config file {0} is larger than {MAX_CONFIG_BYTES} bytes")]
    TooLarge(PathBuf),
    /// The YAML/JSON could not be parsed or had a wrong type.
    #[error("could not parse config file {} as YAML: {source}", path.display())]
    Parse {
        /// The file (or `<string>`).
        path: PathBuf,
        /// Parser error with line/column.
        source: serde_yaml_ng::Error,
    },
    /// A duration key is not a duration (spec §3.3).
    #[error("invalid value for {key}: {source}")]
    Duration {
        /// The config key, e.g. `interval`.
        key: &'static str,
        /// Why.
        source: DurationError,
    },
    /// The helper command line cannot be split into words.
    #[error("invalid value for helper: cannot parse helper command: {0}")]
    HelperCommand(#[source] shell_words::ParseError),
    /// A `cert_deny_list` pattern is not a regular expression.
    #[error("invalid value for cert_deny_list: pattern {pattern:?} is invalid: {source}")]
    DenyPattern {
        /// The pattern as written.
        pattern: String,
        /// Why.
        source: regex::Error,
    },
    /// A key holds an unusable value.
    #[error("invalid value for {key}: {reason}")]
    Invalid {
        /// The config key, e.g. `interval` or `features.ed25519`.
        key: &'static str,
        /// What is wrong and how to fix it.
        reason: String,
    },
}

impl SettingsError {
    /// The config key at fault, for errors about one key.
    pub fn key(&self) -> Option<&'static str> {
        match self {
            SettingsError::Invalid { key, .. } | SettingsError::Duration { key, .. } => Some(key),
            SettingsError::HelperCommand(_) => Some("helper"),
            SettingsError::DenyPattern { .. } => Some("cert_deny_list"),
            SettingsError::NotFound(_)
            | SettingsError::Read { .. }
            | SettingsError::TooLarge(_)
            | SettingsError::Parse { .. } => None,
        }
    }
}

fn invalid(key: &'static str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        key,
        reason: reason.into(),
    }
}

/// Which provisioning features are enabled (`features.*`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Features {
    /// Fetch and validate a CSR; deliver certificate and CA.
    pub pki: bool,
    /// Fetch and verify the provisioning JWT (also enables ECDH key delivery).
    pub jwt: bool,
    /// ed25519 key proof and server JWT issuing; forces `jwt`.
    pub ed25519: bool,
    /// Honour the helper's `upgrade` version.
    pub upgrades: bool,
}

/// How the helper program is run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum HelperMode {
    /// Upstream: one process per node, JSON on stdin, JSON on stdout.
    #[default]
    Exec,
    /// One long-running process speaking one JSON document per line each way.
    Persistent,
}

/// Where log lines go (`logfile`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output (the default, B4).
    Stdout,
    /// Standard error.
    Stderr,
    /// Nowhere.
    Discard,
    /// A file, JSON lines, appended.
    File(PathBuf),
}

/// Where the monitor port listens unless `monitor_listen` says otherwise: metrics name nodes
/// and sites, so they stay on the host unless the operator opens them.
pub const DEFAULT_MONITOR_LISTEN: std::net::Ipv4Addr = std::net::Ipv4Addr::LOCALHOST;

/// The validated provisioner configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The file this came from (for logs).
    pub source: PathBuf,
    /// Concurrent workers (≥ 1).
    pub workers: usize,
    /// Discovery interval.
    pub interval: Duration,
    /// Log destination.
    pub logfile: LogTarget,
    /// Log level name (`debug`, `info`, `warn`, `error`, `fatal`).
    pub loglevel: String,
    /// The helper command line split into program and arguments.
    pub helper: Vec<String>,
    /// The helper command line as written.
    pub helper_line: String,
    /// Exec or persistent helper.
    pub helper_mode: HelperMode,
    /// Helper timeout per request.
    pub helper_timeout: Duration,
    /// Overall deadline of one node pass.
    pub node_deadline: Duration,
    /// Token sent in every `choria_provision` request.
    pub token: SecretString,
    /// Component of node startup events to subscribe to.
    pub lifecycle_component: String,
    /// Plain NATS, insecure protocol signatures.
    pub choria_insecure: bool,
    /// `site` label of every metric.
    pub site: String,
    /// Port of `/metrics` and `/healthz`; 0 = off.
    pub monitor_port: u16,
    /// `monitor_listen`: the address the monitor port binds ([`DEFAULT_MONITOR_LISTEN`];
    /// upstream binds every interface, `0.0.0.0` does that).
    pub monitor_listen: std::net::IpAddr,
    /// Password of the NATS user `provisioner`.
    pub broker_provisioning_password: SecretString,
    /// CSR name deny patterns (slashes stripped, compiled).
    pub cert_deny_list: Vec<regex::Regex>,
    /// How to verify provisioning JWTs (path or hex ed25519 key).
    pub jwt_verify_cert: String,
    /// Key that signs server JWTs.
    pub jwt_signing_key: Option<PathBuf>,
    /// Chain issuer token for chained server JWTs.
    pub jwt_signing_token: Option<PathBuf>,
    /// Default server JWT lifetime.
    pub server_jwt_validity: Duration,
    /// Active/standby HA.
    pub leader_election: bool,
    /// Election TTL used when the bucket's TTL cannot be read.
    pub leader_election_ttl: Duration,
    /// go-updater repository URL.
    pub upgrades_repository: String,
    /// Continue when an upgrade fails.
    pub upgrades_optional: bool,
    /// Enabled features (with `jwt` forced on by `ed25519`).
    pub features: Features,
    /// Keys present in the file that we ignore (warned at start-up).
    pub ignored_keys: Vec<String>,
    /// Per-node retries of failed and deferred passes (`retry_backoff`,
    /// `retry_backoff_max`; ours, upstream waits for the next discovery).
    pub retry: crate::retry::Backoff,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RawSettings {
    workers: Option<i64>,
    interval: Option<String>,
    logfile: Option<String>,
    loglevel: Option<String>,
    helper: Option<String>,
    helper_mode: Option<String>,
    helper_timeout: Option<String>,
    node_deadline: Option<String>,
    token: Option<String>,
    lifecycle_component: Option<String>,
    choria_insecure: Option<bool>,
    site: Option<String>,
    monitor_port: Option<i64>,
    monitor_listen: Option<String>,
    broker_port: Option<i64>,
    broker_provisioning_password: Option<String>,
    cert_deny_list: Option<Vec<String>>,
    jwt_verify_cert: Option<String>,
    jwt_signing_key: Option<String>,
    jwt_signing_token: Option<String>,
    server_jwt_validity: Option<String>,
    rego_policy: Option<String>,
    leader_election: Option<bool>,
    leader_election_ttl: Option<String>,
    upgrades_repository: Option<String>,
    upgrades_optional: Option<bool>,
    features: Option<Features>,
    retry_backoff: Option<String>,
    retry_backoff_max: Option<String>,
    #[serde(flatten)]
    unknown: BTreeMap<String, serde_yaml_ng::Value>,
}

impl Settings {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Settings, SettingsError> {
        // Only a regular file is read (a FIFO could hold start-up forever), and at most the
        // cap, however large the file grows while we read it.
        let text = read_capped_string(path, MAX_CONFIG_BYTES).map_err(|e| match e {
            FileError::Io { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                SettingsError::NotFound(path.to_path_buf())
            }
            FileError::TooLarge { .. } => SettingsError::TooLarge(path.to_path_buf()),
            other => SettingsError::Read {
                path: path.to_path_buf(),
                source: other,
            },
        })?;
        Settings::parse_str(&text, path)
    }

    /// Parses and validates configuration text; `path` is used in messages and to
    /// resolve nothing else.
    pub fn parse_str(text: &str, path: &Path) -> Result<Settings, SettingsError> {
        let raw: RawSettings = if text.trim().is_empty() {
            RawSettings::default()
        } else {
            serde_yaml_ng::from_str(text).map_err(|source| SettingsError::Parse {
                path: path.to_path_buf(),
                source,
            })?
        };
        Settings::from_raw(raw, path)
    }

    fn from_raw(raw: RawSettings, path: &Path) -> Result<Settings, SettingsError> {
        let workers = match raw.workers {
            None | Some(0) => default_workers(),
            Some(n) if n < 1 => {
                return Err(invalid(
                    "workers",
                    format!("{n} workers cannot provision anything; use 1 or more"),
                ))
            }
            Some(n) => usize::try_from(n).map_err(|_| invalid("workers", "too large"))?,
        };

        let interval = match raw.interval.as_deref() {
            None => DEFAULT_INTERVAL,
            Some(text) => {
                parse_duration_upstream(text).map_err(|source| SettingsError::Duration {
                    key: "interval",
                    source,
                })?
            }
        };
        if interval < MIN_INTERVAL {
            return Err(invalid(
                "interval",
                "interval is too small, minimum is 1 minute. Valid example values are 10m or 10h",
            ));
        }

        let logfile = match raw.logfile.as_deref().map(str::trim) {
            None | Some("") => LogTarget::Stdout,
            Some(v) if v.eq_ignore_ascii_case("stdout") => LogTarget::Stdout,
            Some(v) if v.eq_ignore_ascii_case("stderr") => LogTarget::Stderr,
            Some(v) if v.eq_ignore_ascii_case("discard") => LogTarget::Discard,
            Some(v) => LogTarget::File(PathBuf::from(v)),
        };
        let loglevel = match raw.loglevel.as_deref().map(str::trim) {
            None | Some("") => "info".to_string(),
            Some(level) => {
                let level = level.to_ascii_lowercase();
                if !["debug", "info", "warn", "error", "fatal"].contains(&level.as_str()) {
                    return Err(invalid(
                        "loglevel",
                        format!("unknown level {level:?}; use debug, info, warn, error or fatal"),
                    ));
                }
                level
            }
        };

        let helper_line = raw.helper.unwrap_or_default();
        let helper = if helper_line.trim().is_empty() {
            return Err(invalid(
                "helper",
                "no helper configured; set helper to the program that decides each node's configuration",
            ));
        } else {
            shell_words::split(&helper_line).map_err(SettingsError::HelperCommand)?
        };
        if helper.is_empty() {
            return Err(invalid("helper", "cannot parse helper command: empty"));
        }
        let helper_mode = match raw.helper_mode.as_deref().map(str::trim) {
            None | Some("") | Some("exec") => HelperMode::Exec,
            Some("persistent") => HelperMode::Persistent,
            Some(other) => {
                return Err(invalid(
                    "helper_mode",
                    format!("unknown mode {other:?}; use exec or persistent"),
                ))
            }
        };
        let helper_timeout = optional_duration(
            raw.helper_timeout.as_deref(),
            "helper_timeout",
            DEFAULT_HELPER_TIMEOUT,
        )?;
        let node_deadline = optional_duration(
            raw.node_deadline.as_deref(),
            "node_deadline",
            DEFAULT_NODE_DEADLINE,
        )?;

        let lifecycle_component = match raw.lifecycle_component.as_deref() {
            None | Some("") => DEFAULT_LIFECYCLE_COMPONENT.to_string(),
            Some(c) if c.contains(['.', '>', '*']) || c.contains(char::is_whitespace) => {
                return Err(invalid(
                    "lifecycle_component",
                    format!("invalid lifecycle component: {c}"),
                ))
            }
            Some(c) => c.to_string(),
        };

        let monitor_port = match raw.monitor_port {
            None => 0,
            Some(p) => u16::try_from(p)
                .map_err(|_| invalid("monitor_port", format!("{p} is not a TCP port")))?,
        };

        let monitor_listen = match raw.monitor_listen.as_deref().map(str::trim) {
            None | Some("") => std::net::IpAddr::from(DEFAULT_MONITOR_LISTEN),
            Some(a) => a
                .parse()
                .map_err(|_| invalid("monitor_listen", format!("{a} is not an IP address")))?,
        };

        let deny_patterns: Vec<String> = match raw.cert_deny_list {
            Some(list) if !list.is_empty() => list,
            _ => DEFAULT_DENY_LIST.iter().map(|s| s.to_string()).collect(),
        };
        let mut cert_deny_list = Vec::with_capacity(deny_patterns.len());
        for pattern in deny_patterns {
            let trimmed = pattern
                .strip_prefix('/')
                .and_then(|p| p.strip_suffix('/'))
                .unwrap_or(&pattern);
            // Upstream silently ignores bad patterns; a deny list that quietly denies
            // nothing is a security hole, so refuse to start instead.
            let re = regex::Regex::new(trimmed).map_err(|source| SettingsError::DenyPattern {
                pattern: pattern.clone(),
                source,
            })?;
            cert_deny_list.push(re);
        }

        let mut features = raw.features.unwrap_or_default();
        if features.pki && features.ed25519 {
            return Err(invalid(
                "features.ed25519",
                "can only enable one of pki or ed25519 features",
            ));
        }
        if features.ed25519 {
            features.jwt = true;
        }

        let jwt_verify_cert = raw.jwt_verify_cert.unwrap_or_default();
        if features.jwt && jwt_verify_cert.trim().is_empty() {
            return Err(invalid(
                "jwt_verify_cert",
                "features.jwt is enabled but no JWT verification certificate or key is configured",
            ));
        }
        let jwt_signing_key = non_empty_path(raw.jwt_signing_key);
        let jwt_signing_token = non_empty_path(raw.jwt_signing_token);
        if features.ed25519 && jwt_signing_key.is_none() {
            return Err(invalid(
                "jwt_signing_key",
                "features.ed25519 is enabled but no jwt signing key configured using jwt_signing_key",
            ));
        }
        if let Some(key) = &jwt_signing_key {
            if features.ed25519 && !key.is_file() {
                return Err(invalid(
                    "jwt_signing_key",
                    format!("{} is not a readable file", key.display()),
                ));
            }
        }
        if let Some(token) = &jwt_signing_token {
            if !token.is_file() {
                return Err(invalid(
                    "jwt_signing_token",
                    format!("{} is not a readable file", token.display()),
                ));
            }
        }

        let server_jwt_validity = optional_duration(
            raw.server_jwt_validity.as_deref(),
            "server_jwt_validity",
            DEFAULT_SERVER_JWT_VALIDITY,
        )?;
        if server_jwt_validity.is_zero() {
            return Err(invalid(
                "server_jwt_validity",
                "no default validity configured",
            ));
        }
        let leader_election_ttl = optional_duration(
            raw.leader_election_ttl.as_deref(),
            "leader_election_ttl",
            DEFAULT_ELECTION_TTL,
        )?;
        if leader_election_ttl < Duration::from_secs(1) {
            return Err(invalid("leader_election_ttl", "must be at least 1s"));
        }

        let retry = retry_backoff(
            raw.retry_backoff.as_deref(),
            raw.retry_backoff_max.as_deref(),
        )?;

        let mut ignored_keys: Vec<String> = raw.unknown.into_keys().collect();
        if raw.broker_port.is_some() {
            ignored_keys.push("broker_port".into());
        }
        if raw.rego_policy.is_some() {
            ignored_keys.push("rego_policy".into());
        }

        Ok(Settings {
            source: path.to_path_buf(),
            workers,
            interval,
            logfile,
            loglevel,
            helper,
            helper_line,
            helper_mode,
            helper_timeout,
            node_deadline,
            token: raw.token.unwrap_or_default().into(),
            lifecycle_component,
            choria_insecure: raw.choria_insecure.unwrap_or(false),
            site: raw.site.unwrap_or_default(),
            monitor_port,
            monitor_listen,
            broker_provisioning_password: raw
                .broker_provisioning_password
                .unwrap_or_default()
                .into(),
            cert_deny_list,
            jwt_verify_cert,
            jwt_signing_key,
            jwt_signing_token,
            server_jwt_validity,
            leader_election: raw.leader_election.unwrap_or(false),
            leader_election_ttl,
            upgrades_repository: raw.upgrades_repository.unwrap_or_default(),
            upgrades_optional: raw.upgrades_optional.unwrap_or(false),
            features,
            ignored_keys,
            retry,
        })
    }
}

/// `retry_backoff` (the first wait, `0s` for no retries) and `retry_backoff_max`.
fn retry_backoff(
    first: Option<&str>,
    max: Option<&str>,
) -> Result<crate::retry::Backoff, SettingsError> {
    let backoff = crate::retry::Backoff {
        first: optional_duration(first, "retry_backoff", crate::retry::DEFAULT_RETRY_BACKOFF)?,
        max: optional_duration(
            max,
            "retry_backoff_max",
            crate::retry::DEFAULT_RETRY_BACKOFF_MAX,
        )?,
    };
    if backoff.enabled() && backoff.max < backoff.first {
        return Err(invalid(
            "retry_backoff_max",
            format!(
                "{:?} is shorter than retry_backoff ({:?})",
                backoff.max, backoff.first
            ),
        ));
    }
    Ok(backoff)
}

/// Default worker count: 4 × CPUs (RPC-bound work, not CPU-bound).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        * 4
}

fn non_empty_path(value: Option<String>) -> Option<PathBuf> {
    value
        .filter(|v| !v.trim().is_empty())
        .map(|v| PathBuf::from(v.trim()))
}

fn optional_duration(
    value: Option<&str>,
    key: &'static str,
    default: Duration,
) -> Result<Duration, SettingsError> {
    match value {
        None => Ok(default),
        Some(text) if text.trim().is_empty() => Ok(default),
        Some(text) => {
            parse_duration_upstream(text).map_err(|source| SettingsError::Duration { key, source })
        }
    }
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    fn parse(text: &str) -> Result<Settings, SettingsError> {
        Settings::parse_str(text, Path::new("test.yaml"))
    }

    fn key_of(err: SettingsError) -> &'static str {
        match err.key() {
            Some(key) => key,
            None => panic!("expected an error about one key, got {err:?}"),
        }
    }

    #[test]
    fn minimal_config_gets_documented_defaults() {
        let s = parse("helper: /bin/true\n").expect("valid");
        assert_eq!(s.interval, DEFAULT_INTERVAL);
        assert_eq!(s.logfile, LogTarget::Stdout, "B4: default logs to stdout");
        assert_eq!(s.loglevel, "info");
        assert_eq!(s.workers, default_workers());
        assert_eq!(s.lifecycle_component, "provision_mode_server");
        assert_eq!(s.cert_deny_list.len(), 4);
        assert_eq!(s.server_jwt_validity, DEFAULT_SERVER_JWT_VALIDITY);
        assert_eq!(s.helper_mode, HelperMode::Exec);
    }

    #[test]
    fn monitor_listen_is_an_ip_address() {
        let s = parse("helper: /bin/true\nmonitor_listen: 0.0.0.0\n").expect("valid");
        assert_eq!(s.monitor_listen, std::net::IpAddr::from([0, 0, 0, 0]));
        let s = parse("helper: /bin/true\nmonitor_listen: \"::1\"\n").expect("valid");
        assert!(s.monitor_listen.is_loopback());
        let err = parse("helper: /bin/true\nmonitor_listen: everywhere\n").expect_err("not an ip");
        assert_eq!(key_of(err), "monitor_listen");
    }

    #[test]
    fn shipped_packaged_config_parses() {
        let dir = tempfile::tempdir().expect("dir");
        let verify = dir.path().join("jwt-verify.pem");
        std::fs::write(&verify, "x").expect("write");
        let text = format!(
            "workers: 4\ninterval: 5m\nlogfile: \"/var/log/choria-provisioner.log\"\nloglevel: info\n\
             helper: /etc/choria-provisioner/helper\ntoken: toomanysecrets\nchoria_insecure: true\n\
             site: TEST\nmonitor_port: 8080\njwt_verify_cert: {}\nfeatures:\n  pki: true\n  jwt: true\n",
            verify.display()
        );
        let s = parse(&text).expect("valid");
        assert_eq!(s.workers, 4);
        assert_eq!(s.interval, Duration::from_secs(300));
        assert!(s.features.pki && s.features.jwt && !s.features.ed25519);
        assert_eq!(s.site, "TEST");
        assert_eq!(s.monitor_port, 8080);
        assert_eq!(
            s.monitor_listen,
            std::net::IpAddr::from(DEFAULT_MONITOR_LISTEN),
            "loopback unless asked"
        );
        assert_eq!(s.token.expose_secret(), "toomanysecrets");
        assert!(
            !format!("{s:?}").contains("toomanysecrets"),
            "token must not be in Debug"
        );
    }

    #[test]
    fn b13_startup_errors_name_the_key() {
        assert_eq!(
            key_of(parse("interval: 1m\n").expect_err("no helper")),
            "helper"
        );
        assert_eq!(
            key_of(parse("helper: x\nworkers: -2\n").expect_err("neg workers")),
            "workers"
        );
        assert_eq!(
            key_of(parse("helper: x\ninterval: 10s\n").expect_err("small")),
            "interval"
        );
        assert_eq!(
            key_of(parse("helper: x\ninterval: 10q\n").expect_err("unit")),
            "interval"
        );
        assert_eq!(
            key_of(parse("helper: x\nserver_jwt_validity: forever\n").expect_err("bad")),
            "server_jwt_validity"
        );
        assert_eq!(
            key_of(parse("helper: x\nfeatures: {jwt: true}\n").expect_err("verify")),
            "jwt_verify_cert"
        );
        assert_eq!(
            key_of(
                parse("helper: x\njwt_verify_cert: abcd\nfeatures: {ed25519: true}\n")
                    .expect_err("signing key")
            ),
            "jwt_signing_key"
        );
        assert_eq!(
            key_of(parse("helper: x\nfeatures: {pki: true, ed25519: true}\n").expect_err("both")),
            "features.ed25519"
        );
        assert_eq!(
            key_of(parse("helper: x\nlifecycle_component: a.b\n").expect_err("component")),
            "lifecycle_component"
        );
        assert_eq!(
            key_of(parse("helper: \"'unterminated\"\n").expect_err("quote")),
            "helper"
        );
    }

    #[test]
    fn wrong_scalar_type_is_a_parse_error() {
        let err = parse("helper: x\nworkers: many\n").expect_err("type");
        assert!(matches!(err, SettingsError::Parse { .. }), "{err:?}");
    }

    #[test]
    fn ed25519_forces_jwt_and_helper_is_shell_split() {
        let dir = tempfile::tempdir().expect("dir");
        let seed = dir.path().join("signer.seed");
        std::fs::write(&seed, "00".repeat(32)).expect("write");
        let text = format!(
            "helper: \"/usr/bin/env python3 '/a b/helper.py' --x\"\njwt_verify_cert: abcd\n\
             jwt_signing_key: {}\nfeatures:\n  ed25519: true\nbroker_port: 1\nsurprise: 1\n",
            seed.display()
        );
        let s = parse(&text).expect("valid");
        assert!(s.features.jwt);
        assert_eq!(
            s.helper,
            vec!["/usr/bin/env", "python3", "/a b/helper.py", "--x"]
        );
        assert!(s.ignored_keys.contains(&"broker_port".to_string()));
        assert!(s.ignored_keys.contains(&"surprise".to_string()));
    }

    #[test]
    fn deny_list_strips_slashes_and_rejects_bad_patterns() {
        let s = parse("helper: x\ncert_deny_list: ['/\\.evil$/']\n").expect("valid");
        assert!(s.cert_deny_list[0].is_match("a.evil"));
        let err = parse("helper: x\ncert_deny_list: ['(']\n").expect_err("bad regex");
        assert_eq!(key_of(err), "cert_deny_list");
    }

    #[test]
    fn duration_syntax_matches_spec() {
        let parse_duration = parse_duration_upstream;
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("2d"), Ok(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("1w"), Ok(Duration::from_secs(604_800)));
        assert_eq!(parse_duration("1M"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_duration("1y"), Ok(Duration::from_secs(31_536_000)));
        assert_eq!(parse_duration("0.5d"), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_duration(" "), Ok(Duration::ZERO));
        assert!(parse_duration("5x").is_err());
        assert!(parse_duration("H").is_err());
        assert!(parse_duration("-1d").is_err());
    }

    #[test]
    fn retry_backoff_defaults_parses_and_turns_off() {
        let s = parse("helper: x\n").expect("valid");
        assert_eq!(s.retry, crate::retry::Backoff::default());
        let s = parse("helper: x\nretry_backoff: 250ms\nretry_backoff_max: 1m\n").expect("valid");
        assert_eq!(s.retry.first, Duration::from_millis(250));
        assert_eq!(s.retry.max, Duration::from_secs(60));
        let s = parse("helper: x\nretry_backoff: 0s\n").expect("valid");
        assert!(!s.retry.enabled());
        let err = parse("helper: x\nretry_backoff: 10s\nretry_backoff_max: 5s\n")
            .expect_err("cap below first");
        assert_eq!(key_of(err), "retry_backoff_max");
        let err = parse("helper: x\nretry_backoff: soon\n").expect_err("not a duration");
        assert_eq!(key_of(err), "retry_backoff");
    }
}
