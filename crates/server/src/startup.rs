//! Deciding at start-up whether a node provisions (spec §4.2): load the configuration if
//! any, apply the provisioning JWT, check the server token and seed, and pick the mode.
//!
//! Deviation from upstream (spec §4.2 quirk): when the on-disk configuration is replaced
//! because it is missing or its token/seed are unusable, the node always enters
//! provisioning mode instead of falling back to built-in defaults.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use choria_config::files::FileError;
use choria_config::{Config, ConfigError};
use choria_protocol::subjects::SubjectError;
use choria_tokens::TokenError;
use secrecy::ExposeSecret;

use crate::node::NodeOptions;
use crate::resolve::ResolveError;
use crate::settings::{
    ProvisionSettings, ResolverError, TokenOverrides, DEFAULT_PROVISION_JWT_FILE, MAX_TOKEN_BYTES,
};

pub mod plan;

pub use plan::{plan, Plan};

/// Config key naming the provisioning JWT (our addition, so tests and simulators need no root).
pub const JWT_FILE_KEY: &str = "plugin.choria.server.provision.jwt_file";

/// Which mode the node runs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Connect to the `provisioning` account and wait to be configured.
    Provisioning,
    /// Connect to the `choria` account as a fleet member.
    Normal,
}

/// The outcome of start-up.
#[derive(Debug, Clone)]
pub struct Startup {
    /// The chosen mode.
    pub mode: Mode,
    /// Provisioning settings after the JWT was applied.
    pub settings: ProvisionSettings,
    /// The effective configuration (empty when it was replaced by a provisioning config).
    pub config: Config,
    /// The node identity.
    pub identity: String,
    /// Whether the on-disk configuration was discarded (and its token/seed deleted).
    pub replaced: bool,
    /// Why the mode was chosen, for the log.
    pub reason: String,
}

/// Errors that stop start-up: deciding the mode ([`decide`]) or planning the node it
/// decided on ([`plan()`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartupError {
    /// The configuration file cannot be parsed, or one of its values is malformed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No configuration and nothing to provision with.
    #[error("configuration file {0} was not found and provisioning is disabled (no provisioning JWT found)")]
    NothingToRun(PathBuf),
    /// Provisioning is required but the JWT is unusable.
    #[error("provisioning is required but the provisioning JWT {} is unusable: {source}", .path.display())]
    BadProvisioningJwt {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: JwtError,
    },
    /// No identity could be determined.
    #[error("could not determine the node identity: set `identity` in the configuration")]
    NoIdentity,
    /// A collective or the identity cannot be used in subjects.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// Normal mode without `plugin.choria.middleware_hosts`.
    #[error("cannot run in normal mode: plugin.choria.middleware_hosts is not set")]
    NoBrokers,
    /// `plugin.choria.middleware_hosts` is malformed.
    #[error(transparent)]
    Brokers(#[from] ResolveError),
    /// The server token or seed is unusable.
    #[error("cannot run in normal mode: {0}")]
    Token(#[from] TokenSeedError),
    /// Only one of the client certificate and key is set.
    #[error("cannot run in normal mode: plugin.security.choria.certificate and plugin.security.choria.key must be set together")]
    CertificateWithoutKey,
    /// Neither a server JWT nor a certificate, key and CA.
    #[error("cannot run in normal mode: no server JWT configured and no certificate, key and CA in {}", .ssldir.display())]
    NoCredentials {
        /// Where the certificate was looked for.
        ssldir: PathBuf,
    },
    /// The server belongs to no collective.
    #[error("cannot run in normal mode: the server has no collectives")]
    NoCollectives,
}

/// Why a server token and seed cannot be used (the node then provisions again).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenSeedError {
    /// The seed file is missing or malformed.
    #[error("seed {}: {source}", .path.display())]
    Seed {
        /// The seed file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// The token file cannot be read.
    #[error("{source}")]
    Unreadable {
        /// The token file.
        path: PathBuf,
        /// Why.
        #[source]
        source: FileError,
    },
    /// The token is not a server token, or its public key is malformed.
    #[error("token {}: {source}", .path.display())]
    Token {
        /// The token file.
        path: PathBuf,
        /// Why.
        #[source]
        source: TokenError,
    },
    /// The token names another key than the seed's.
    #[error("token {} does not match seed {}", .token.display(), .seed.display())]
    KeyMismatch {
        /// The token file.
        token: PathBuf,
        /// The seed file.
        seed: PathBuf,
    },
    /// The token has expired.
    #[error("token {} has expired", .0.display())]
    Expired(PathBuf),
}

/// Why the provisioning JWT could not be applied.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwtError {
    /// The file cannot be read.
    #[error(transparent)]
    Unreadable(#[from] FileError),
    /// It is not a provisioning token.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// Its claims cannot be used.
    #[error(transparent)]
    Claims(#[from] ResolverError),
    /// It was applied but carries no provisioning token.
    #[error("it carries no provisioning token")]
    NoProvisioningToken,
}

/// The directory holding `config_file` (where `server.jwt`, `server.seed` and `ssl/` live).
pub fn config_dir(config_file: &Path) -> PathBuf {
    std::path::absolute(config_file)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The token and seed files a configuration uses for JWT security, if any.
pub fn token_and_seed(config: &Config, config_dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let path = |key: &str| config.get(key).filter(|v| !v.is_empty()).map(PathBuf::from);
    if config
        .get_bool("plugin.security.server_anon_tls")
        .ok()
        .flatten()
        == Some(true)
    {
        return Some((
            path("plugin.choria.security.server.token_file")
                .unwrap_or_else(|| config_dir.join("server.jwt")),
            path("plugin.choria.security.server.seed_file")
                .unwrap_or_else(|| config_dir.join("server.seed")),
        ));
    }
    if config.get("plugin.security.provider") == Some("choria") {
        let token = path("plugin.security.choria.token_file")?;
        let seed =
            path("plugin.security.choria.seed_file").unwrap_or_else(|| token.with_extension("key"));
        return Some((token, seed));
    }
    None
}

/// Checks the server token against its seed: both exist, the token parses as a server
/// token, its `public_key` matches the seed and it has not expired.
pub fn check_token_and_seed(
    token_file: &Path,
    seed_file: &Path,
    now: SystemTime,
) -> Result<choria_tokens::ServerClaims, TokenSeedError> {
    let seed = choria_tokens::Ed25519Seed::from_file(seed_file).map_err(|source| {
        TokenSeedError::Seed {
            path: seed_file.to_path_buf(),
            source,
        }
    })?;
    let text = choria_config::files::read_capped_string(token_file, MAX_TOKEN_BYTES).map_err(
        |source| TokenSeedError::Unreadable {
            path: token_file.to_path_buf(),
            source,
        },
    )?;
    let token_error = |source| TokenSeedError::Token {
        path: token_file.to_path_buf(),
        source,
    };
    let claims = choria_tokens::parse_server_token_unverified(text.trim()).map_err(token_error)?;
    if !claims
        .is_matching_public_key(&seed.public_key_bytes())
        .map_err(token_error)?
    {
        return Err(TokenSeedError::KeyMismatch {
            token: token_file.to_path_buf(),
            seed: seed_file.to_path_buf(),
        });
    }
    if claims.standard.is_expired(now) {
        return Err(TokenSeedError::Expired(token_file.to_path_buf()));
    }
    Ok(claims)
}

/// Decides the start-up mode of the node started with `options`.
pub fn decide(options: &NodeOptions, now: SystemTime) -> Result<Startup, StartupError> {
    let config_dir = config_dir(&options.config_file);
    let on_disk = if options.config_file.exists() {
        Some(Config::load(&options.config_file)?)
    } else {
        None
    };
    let jwt_file = options
        .provisioning_jwt
        .clone()
        .or_else(|| {
            on_disk
                .as_ref()
                .and_then(|c| c.get(JWT_FILE_KEY))
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PROVISION_JWT_FILE));
    let mut settings = ProvisionSettings {
        jwt_file: Some(jwt_file.clone()),
        ..ProvisionSettings::default()
    };
    let jwt_error = apply_jwt(&mut settings, &jwt_file).err();
    if let Some(reason) = &jwt_error {
        if jwt_file.exists() {
            tracing::warn!(path = %jwt_file.display(), %reason, "provisioning JWT not applied");
        }
    }

    let (replaced, config, reason) = match on_disk {
        Some(config) => {
            let check = token_and_seed(&config, &config_dir).map(|(token, seed)| {
                (
                    token.clone(),
                    seed.clone(),
                    check_token_and_seed(&token, &seed, now),
                )
            });
            match check {
                Some((token, seed, Err(why))) if settings.supports_provisioning() => {
                    for file in [&token, &seed] {
                        if let Err(err) = std::fs::remove_file(file) {
                            if err.kind() != std::io::ErrorKind::NotFound {
                                tracing::warn!(path = %file.display(), error = %err, "could not remove");
                            }
                        }
                    }
                    (
                        true,
                        Config::new(),
                        format!("server token unusable ({why}), provisioning"),
                    )
                }
                _ => (false, config, String::new()),
            }
        }
        None if jwt_file.exists() || !settings.broker_urls.is_empty() => (
            true,
            Config::new(),
            format!(
                "no configuration at {}, provisioning",
                options.config_file.display()
            ),
        ),
        None => return Err(StartupError::NothingToRun(options.config_file.clone())),
    };

    let identity = config
        .get("identity")
        .filter(|id| !id.is_empty())
        .map(str::to_string)
        .or_else(|| options.identity.clone())
        .or_else(hostname)
        .ok_or(StartupError::NoIdentity)?;

    let (mode, reason) = if replaced {
        (Mode::Provisioning, reason)
    } else {
        runtime_mode(&settings, &config, &config_dir, &identity)
    };
    if mode == Mode::Provisioning && !settings.supports_provisioning() {
        return Err(StartupError::BadProvisioningJwt {
            path: jwt_file,
            source: jwt_error.unwrap_or(JwtError::NoProvisioningToken),
        });
    }
    Ok(Startup {
        mode,
        settings,
        config,
        identity,
        replaced,
        reason,
    })
}

/// The runtime decision (B) for a kept configuration.
fn runtime_mode(
    settings: &ProvisionSettings,
    config: &Config,
    config_dir: &Path,
    identity: &str,
) -> (Mode, String) {
    if settings.broker_urls.is_empty()
        && settings.jwt_file.is_none()
        && settings.token.expose_secret().is_empty()
    {
        return (
            Mode::Normal,
            "provisioning not supported by this build".into(),
        );
    }
    if let Ok(Some(value)) = config.get_bool("plugin.choria.server.provision") {
        let mode = if value {
            Mode::Provisioning
        } else {
            Mode::Normal
        };
        return (mode, format!("plugin.choria.server.provision is {value}"));
    }
    if let Some((token, _)) = token_and_seed(config, config_dir) {
        if let Ok(text) = choria_config::files::read_capped_string(&token, MAX_TOKEN_BYTES) {
            if let Ok(claims) = choria_tokens::parse_server_token_unverified(text.trim()) {
                if claims.identity != identity {
                    return (
                        Mode::Provisioning,
                        format!("identity {} from server token does not match identity {identity}, enabling provisioning", claims.identity),
                    );
                }
            }
        }
    }
    let mode = if settings.mode_default {
        Mode::Provisioning
    } else {
        Mode::Normal
    };
    (
        mode,
        format!("provisioning default is {}", settings.mode_default),
    )
}

/// Reads the provisioning JWT at `path` (unverified) and applies its claims.
pub fn apply_jwt(settings: &mut ProvisionSettings, path: &Path) -> Result<(), JwtError> {
    let raw = choria_config::files::read_capped_string(path, MAX_TOKEN_BYTES)?;
    let claims = choria_tokens::parse_provisioning_token_unverified(raw.trim())?;
    let overrides = TokenOverrides {
        cht: claims.cht,
        chs: claims.chs,
        chu: claims.chu,
        chsrv: claims.chsrv,
        chpd: claims.chpd,
        chrd: claims.chrd,
        chf: claims.chf,
        chusr: claims.chusr,
        chpwd: claims.chpwd,
        v2: claims.v2,
        update: claims.update,
    };
    Ok(settings.apply(&overrides, raw)?)
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use choria_tokens::{sign_token, Ed25519Seed, NewServer, ServerClaims, SigningKey};

    use super::*;

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
    }

    fn inputs(dir: &Path) -> NodeOptions {
        NodeOptions {
            config_file: dir.join("server.conf"),
            provisioning_jwt: Some(dir.join("provisioning.jwt")),
            identity: Some("n1.example.net".into()),
            restart: crate::node::RestartPolicy::InPlace,
        }
    }

    fn install_rsa_vector(dir: &Path) {
        std::fs::copy(
            vectors().join("tokens/rsa/good-provisioning.jwt"),
            dir.join("provisioning.jwt"),
        )
        .unwrap();
    }

    #[test]
    fn no_config_with_a_token_provisions() {
        let dir = tempfile::tempdir().unwrap();
        install_rsa_vector(dir.path());
        let startup = decide(&inputs(dir.path()), SystemTime::now()).unwrap();
        assert_eq!(startup.mode, Mode::Provisioning);
        assert!(startup.replaced);
        assert_eq!(startup.settings.token.expose_secret(), "toomanysecrets");
        assert_eq!(startup.settings.broker_urls, "nats://example.net:4222");
        assert_eq!(startup.identity, "n1.example.net");
    }

    #[test]
    fn no_config_and_no_token_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let err = decide(&inputs(dir.path()), SystemTime::now()).unwrap_err();
        assert!(matches!(err, StartupError::NothingToRun(_)), "{err}");
    }

    fn provisioned_config(dir: &Path, identity: &str, validity: Duration) {
        let seed = Ed25519Seed::generate();
        let org = Ed25519Seed::generate();
        let claims = ServerClaims::new(
            NewServer {
                identity: identity.into(),
                collectives: vec!["choria".into()],
                public_key: Some(seed.public_key_bytes()),
                validity,
                ..Default::default()
            },
            SystemTime::now(),
        )
        .unwrap();
        let token = sign_token(&claims, &SigningKey::Ed25519(org)).unwrap();
        std::fs::write(dir.join("server.jwt"), token).unwrap();
        std::fs::write(dir.join("server.seed"), seed.to_hex()).unwrap();
        std::fs::write(
            dir.join("server.conf"),
            "identity = n1.example.net\nplugin.security.server_anon_tls = true\nplugin.choria.server.provision = false\n",
        )
        .unwrap();
    }

    #[test]
    fn a_good_token_and_seed_run_normally() {
        let dir = tempfile::tempdir().unwrap();
        install_rsa_vector(dir.path());
        provisioned_config(dir.path(), "n1.example.net", Duration::from_secs(3600));
        let startup = decide(&inputs(dir.path()), SystemTime::now()).unwrap();
        assert_eq!(startup.mode, Mode::Normal, "{}", startup.reason);
        assert!(!startup.replaced);
    }

    #[test]
    fn an_expired_token_sends_the_node_back_to_provisioning() {
        let dir = tempfile::tempdir().unwrap();
        install_rsa_vector(dir.path());
        provisioned_config(dir.path(), "n1.example.net", Duration::from_secs(60));
        let later = SystemTime::now() + Duration::from_secs(3600);
        let startup = decide(&inputs(dir.path()), later).unwrap();
        assert_eq!(startup.mode, Mode::Provisioning);
        assert!(startup.replaced);
        assert!(!dir.path().join("server.jwt").exists());
        assert!(!dir.path().join("server.seed").exists());
    }

    #[test]
    fn provision_true_in_the_config_provisions() {
        let dir = tempfile::tempdir().unwrap();
        install_rsa_vector(dir.path());
        std::fs::write(
            dir.path().join("server.conf"),
            "plugin.choria.server.provision = 1\n",
        )
        .unwrap();
        let startup = decide(&inputs(dir.path()), SystemTime::now()).unwrap();
        assert_eq!(startup.mode, Mode::Provisioning);
        assert!(!startup.replaced);
    }
}
