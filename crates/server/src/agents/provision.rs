//! The `choria_provision` agent (spec §4.8): every action with its lock, mode and token
//! checks in upstream order, and the files it writes. Side effects on the process
//! (restart, shutdown, lifecycle events) are returned as an [`Effect`] for the runtime.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant};

use ed25519_dalek::{Signer, SigningKey};
use rand::rngs::OsRng;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use choria_config::files::{self, SECRET_MODE};

use choria_protocol::{RpcReply, StatusCode};

use crate::agents::ActionError;
use crate::conf;
use crate::lock::{holder_key, ProvisionLock};
use choria_pki::key_transfer::{decrypt_rsa_key_pem, EcdhKeyPair};

/// The agent's name on the wire.
pub const AGENT: &str = "choria_provision";
/// Mode of certificates, CA bundles and CSRs.
pub const PUBLIC_MODE: u32 = 0o644;
/// Mode of policy files (read-only for the owner, as upstream).
pub const POLICY_MODE: u32 = 0o400;
/// Largest provisioning JWT file we read.
pub const MAX_JWT_FILE: u64 = 64 * 1024;
/// Default restart splay in seconds when `splay` is 0 or absent.
pub const DEFAULT_SPLAY: i64 = 10;

const NOT_IN_MODE: &str = "Cannot reconfigure a server that is not in provisioning mode";

/// What the agent knows about the node it runs in; refreshed by the runtime.
#[derive(Debug, Clone, Default)]
pub struct ProvisionContext {
    /// The node's identity (certname).
    pub identity: String,
    /// The files the agent reads and rewrites.
    pub files: NodeFiles,
    /// The token every action must carry (`cht`); empty means any token passes.
    pub token: SecretString,
    /// Whether the node is in provisioning mode (`ProvisionMode()`).
    pub provision_mode: bool,
    /// `plugin.choria.server.provision.allow_update` as currently effective.
    pub allow_update: bool,
    /// What `reprovision` carries over from the current configuration.
    pub kept: KeptSettings,
    /// Whether the build/JWT sets provisioning registration data (`chrd`).
    pub provision_registration_data: bool,
}

/// The node's files the agent manages.
#[derive(Debug, Clone, Default)]
pub struct NodeFiles {
    /// The configuration file the node was started with and that `configure` replaces.
    pub config_file: Option<PathBuf>,
    /// Where the provisioning JWT lives (`ProvisionJWTFile`).
    pub jwt_file: Option<PathBuf>,
    /// `plugin.choria.ssldir` if configured.
    pub ssldir: Option<PathBuf>,
}

/// Settings of the current configuration that `reprovision` writes into the new one.
#[derive(Debug, Clone, Default)]
pub struct KeptSettings {
    /// `logfile`.
    pub logfile: Option<String>,
    /// `plugin.choria.registration.file_content.data`.
    pub registration_data_file: Option<String>,
}

/// Facts about the request the agent needs: who asks, and under which request id.
#[derive(Debug, Clone)]
pub struct RequestInfo {
    /// The request id (quoted in the written configuration's header).
    pub request_id: String,
    /// `senderid` / `sender` of the request.
    pub sender: String,
    /// `callerid` / `caller` of the request.
    pub caller: String,
}

/// What the runtime must do after replying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing.
    None,
    /// `configure` succeeded: publish the `provisioned` lifecycle event.
    Provisioned,
    /// Publish `shutdown`, wait, then come back up reading the configuration again.
    Restart {
        /// Delay before restarting.
        after: Duration,
    },
    /// Wait, publish `shutdown`, and stop for good.
    Shutdown {
        /// Delay before stopping.
        after: Duration,
    },
}

/// Why a name from a `configure` request cannot be used as a file or directory name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathInputError {
    /// A policy file name lacks its extension.
    #[error("expected \"{name}\" to have {extension} extension")]
    Extension {
        /// The name given.
        name: String,
        /// The extension it needs (`.policy`, `.rego`).
        extension: String,
    },
    /// A policy file name is not one plain file name.
    #[error("invalid file name {0:?}: it must be a plain file name without path separators or leading dots")]
    NotPlain(String),
    /// The `ssldir` climbs out with `..` (or holds a NUL).
    #[error("invalid ssldir {0:?}: \"..\" is not allowed")]
    ParentDir(String),
}

/// The agent's state: the lock, the in-memory X25519 half, and whether an exit is
/// already scheduled. Callers serialise access (one action at a time per node).
#[derive(Debug, Default)]
pub struct ProvisionAgent {
    /// Node facts used by the checks; the runtime keeps them current.
    pub context: ProvisionContext,
    lock: ProvisionLock,
    ecdh: Option<EcdhKeyPair>,
    exit_scheduled: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct TokenInput {
    token: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct GencsrInput {
    token: String,
    cn: String,
    #[serde(rename = "C")]
    country: String,
    #[serde(rename = "L")]
    locality: String,
    #[serde(rename = "O")]
    organization: String,
    #[serde(rename = "OU")]
    unit: String,
    #[serde(rename = "ST")]
    #[allow(dead_code)] // accepted and ignored, as upstream (spec §7 quirk 6)
    state: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct Gen25519Input {
    token: String,
    nonce: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct ConfigureInput {
    token: String,
    config: String,
    certificate: String,
    ca: String,
    ssldir: String,
    key: String,
    ecdh_public: String,
    action_policies: HashMap<String, String>,
    opa_policies: HashMap<String, String>,
    server_jwt: String,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct RestartInput {
    token: String,
    splay: Option<i64>,
}

impl ProvisionAgent {
    /// An agent for a node described by `context`.
    pub fn new(context: ProvisionContext) -> ProvisionAgent {
        ProvisionAgent {
            context,
            ..ProvisionAgent::default()
        }
    }

    /// The names of the actions this agent implements.
    pub fn actions() -> &'static [&'static str] {
        &[
            "configure",
            "gen25519",
            "gencsr",
            "jwt",
            "release_update",
            "reprovision",
            "restart",
            "shutdown",
        ]
    }

    /// Runs `action` with inputs `data` for the request `request`, at time `now`.
    pub fn handle(
        &mut self,
        action: &str,
        data: &Value,
        request: &RequestInfo,
        now: Instant,
    ) -> (RpcReply, Effect) {
        let locked = matches!(
            action,
            "configure" | "gen25519" | "gencsr" | "jwt" | "release_update"
        );
        if locked
            && !self
                .lock
                .try_acquire(&holder_key(&request.sender, &request.caller), now)
        {
            return (
                ActionError::aborted("Could not obtain provisioning lock").into_reply(action),
                Effect::None,
            );
        }
        let result = match action {
            "gencsr" => self.gencsr(data).map(|r| (r, Effect::None)),
            "jwt" => self.jwt(data).map(|r| (r, Effect::None)),
            "gen25519" => self.gen25519(data).map(|r| (r, Effect::None)),
            "configure" => self.configure(data, request),
            "restart" => self.restart(data),
            "shutdown" => self.shutdown(data),
            "reprovision" => self.reprovision(data, request),
            "release_update" => self.release_update(data).map(|r| (r, Effect::None)),
            other => Err(ActionError::new(
                StatusCode::UnknownAction,
                format!("Unknown action {other} for agent {AGENT}"),
            )),
        };
        match result {
            Ok((outputs, effect)) => (RpcReply::success(action, outputs), effect),
            Err(failure) => (failure.into_reply(action), Effect::None),
        }
    }

    fn check_token(&self, given: &str) -> Result<(), ActionError> {
        let token = self.context.token.expose_secret();
        if token.is_empty() || given == token {
            Ok(())
        } else {
            Err(ActionError::aborted("Incorrect provision token supplied"))
        }
    }

    fn require_mode(&self) -> Result<(), ActionError> {
        if self.context.provision_mode {
            Ok(())
        } else {
            Err(ActionError::aborted(NOT_IN_MODE))
        }
    }

    fn config_dir(&self) -> Option<PathBuf> {
        let file = self.context.files.config_file.as_ref()?;
        let absolute = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        Some(
            absolute
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| PathBuf::from("/")),
        )
    }

    fn gencsr(&mut self, data: &Value) -> Result<Value, ActionError> {
        self.require_mode()?;
        if self.context.files.config_file.is_none() && self.context.files.ssldir.is_none() {
            return Err(ActionError::aborted("Cannot determine where to store SSL data, no configure file given and no SSL directory configured"));
        }
        let input: GencsrInput = decode("gencsr", data)?;
        self.check_token(&input.token)?;
        let ssldir = match (&self.context.files.ssldir, self.config_dir()) {
            (Some(dir), _) => dir.clone(),
            (None, Some(dir)) => dir.join("ssl"),
            // Unreachable by the check above; answer rather than panic.
            (None, None) => return Err(ActionError::aborted("Cannot determine where to store SSL data, no configure file given and no SSL directory configured")),
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o771)
            .create(&ssldir)
            .map_err(|err| {
                ActionError::aborted(format!(
                    "Could not create SSL Directory {}: {err}",
                    ssldir.display()
                ))
            })?;
        let cn = if input.cn.is_empty() {
            self.context.identity.clone()
        } else {
            input.cn.clone()
        };
        let csr = crate::csr::generate(&crate::csr::CsrSubject {
            common_name: cn,
            country: input.country,
            locality: input.locality,
            organization: input.organization,
            unit: input.unit,
        })
        .map_err(|err| ActionError::aborted(err.to_string()))?;
        files::write_atomic(
            &ssldir.join("private.pem"),
            csr.private_key_pem.as_bytes(),
            SECRET_MODE,
        )
        .map_err(|err| ActionError::aborted(format!("Could not store private key: {err}")))?;
        files::write_atomic(&ssldir.join("csr.pem"), csr.csr_pem.as_bytes(), PUBLIC_MODE)
            .map_err(|err| ActionError::aborted(format!("Could not store CSR: {err}")))?;
        Ok(json!({
            "csr": csr.csr_pem,
            "public_key": csr.public_key_pem,
            "ssldir": ssldir.display().to_string(),
        }))
    }

    fn jwt(&mut self, data: &Value) -> Result<Value, ActionError> {
        self.require_mode()?;
        let input: TokenInput = decode("jwt", data)?;
        self.check_token(&input.token)?;
        let path =
            self.context.files.jwt_file.clone().ok_or_else(|| {
                ActionError::aborted("No Provisioning JWT file has been configured")
            })?;
        if !path.exists() {
            return Err(ActionError::aborted("Provisioning JWT file does not exist"));
        }
        let bytes = files::read_capped_string(&path, MAX_JWT_FILE).map_err(|err| {
            ActionError::aborted(format!("Could not read Provisioning JWT: {err}"))
        })?;
        let keys = EcdhKeyPair::generate();
        let public = keys.public_hex();
        self.ecdh = Some(keys);
        Ok(json!({"jwt": bytes, "ecdh_public": public}))
    }

    fn gen25519(&mut self, data: &Value) -> Result<Value, ActionError> {
        self.require_mode()?;
        let dir = self.config_dir().ok_or_else(|| {
            ActionError::aborted(
                "Cannot determine where to store secure data, no configure file given",
            )
        })?;
        let input: Gen25519Input = decode("gen25519", data)?;
        self.check_token(&input.token)?;
        let jwt_path = dir.join("server.jwt");
        // Upstream replies twice when this fails; we stop here instead.
        remove_if_exists(&jwt_path).map_err(|err| {
            ActionError::aborted(format!(
                "Could not remove existing jwt file: {}: {err}",
                jwt_path.display()
            ))
        })?;
        let key = SigningKey::generate(&mut OsRng);
        let seed_path = dir.join("server.seed");
        files::write_atomic(
            &seed_path,
            hex::encode(key.to_bytes()).as_bytes(),
            SECRET_MODE,
        )
        .map_err(|err| {
            ActionError::aborted(format!(
                "Could not write key {}: {err}",
                seed_path.display()
            ))
        })?;
        let signature = key.sign(input.nonce.as_bytes());
        Ok(json!({
            "public_key": hex::encode(key.verifying_key().as_bytes()),
            "directory": dir.display().to_string(),
            "signature": hex::encode(signature.to_bytes()),
        }))
    }

    fn configure(
        &mut self,
        data: &Value,
        request: &RequestInfo,
    ) -> Result<(Value, Effect), ActionError> {
        self.require_mode()?;
        let config_file = self.context.files.config_file.clone().ok_or_else(|| {
            ActionError::aborted("Cannot determine the configuration file to manage")
        })?;
        let dir = self.config_dir().ok_or_else(|| {
            ActionError::aborted("Cannot determine the configuration file to manage")
        })?;
        let input: ConfigureInput = decode("configure", data)?;
        self.check_token(&input.token)?;
        if input.config.is_empty() {
            return Err(ActionError::aborted(
                "Did not receive any configuration to write, cannot write a empty configuration file",
            ));
        }
        if !input.key.is_empty() && input.ecdh_public.is_empty() {
            return Err(ActionError::aborted(
                "EDCH Public Key not supplied while providing a private key",
            ));
        }
        let settings: BTreeMap<String, String> =
            serde_json::from_str(&input.config).map_err(|err| {
                ActionError::aborted(format!("Could not decode configuration data: {err}"))
            })?;
        let rendered = conf::render(&settings, request)
            .map_err(|err| ActionError::aborted(format!("Could not write config: {err}")))?;
        // Validate every name before touching the disk, so a bad request changes nothing.
        let action_policies = policy_files(&input.action_policies, ".policy").map_err(|err| {
            ActionError::aborted(format!("Could not save Action Policies: {err}"))
        })?;
        let opa_policies = policy_files(&input.opa_policies, ".rego").map_err(|err| {
            ActionError::aborted(format!("Could not save Open Policy Agent Policies: {err}"))
        })?;
        let ssldir = if input.ssldir.is_empty() {
            None
        } else {
            Some(
                safe_dir(&dir, &input.ssldir)
                    .map_err(|err| ActionError::aborted(format!("TLS Setup Failed: {err}")))?,
            )
        };
        // The private key is decrypted before anything is written for the same reason.
        let private_key = if input.key.is_empty() {
            None
        } else {
            let keys = self.ecdh.as_ref().ok_or_else(|| {
                ActionError::aborted(
                    "TLS Setup Failed: could not decrypt private key: private key not set",
                )
            })?;
            let decrypted = keys
                .shared_secret(&input.ecdh_public)
                .and_then(|secret| decrypt_rsa_key_pem(&input.key, &secret))
                .map_err(|err| {
                    ActionError::aborted(format!(
                        "TLS Setup Failed: could not decrypt private key: {err}"
                    ))
                })?;
            Some(decrypted)
        };

        // Everything that makes the node leave provisioning mode is written last: the
        // configuration. A kill before that leaves a node that still provisions.
        if let (false, false, Some(ssldir)) = (
            input.certificate.is_empty(),
            input.ca.is_empty(),
            ssldir.as_ref(),
        ) {
            let tls = |err: String| ActionError::aborted(format!("TLS Setup Failed: {err}"));
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(ssldir)
                .map_err(|err| tls(format!("could not create {}: {err}", ssldir.display())))?;
            files::write_atomic(
                &ssldir.join("certificate.pem"),
                input.certificate.as_bytes(),
                PUBLIC_MODE,
            )
            .map_err(|err| tls(err.to_string()))?;
            files::write_atomic(&ssldir.join("ca.pem"), input.ca.as_bytes(), PUBLIC_MODE)
                .map_err(|err| tls(err.to_string()))?;
            if let Some(key) = &private_key {
                files::write_atomic(&ssldir.join("private.pem"), key.as_bytes(), SECRET_MODE)
                    .map_err(|err| tls(err.to_string()))?;
                remove_if_exists(&ssldir.join("csr.pem")).map_err(|err| tls(err.to_string()))?;
            }
        }
        if !input.server_jwt.is_empty() {
            files::write_atomic(
                &dir.join("server.jwt"),
                input.server_jwt.as_bytes(),
                SECRET_MODE,
            )
            .map_err(|err| ActionError::aborted(format!("JWT Setup Failed: {err}")))?;
        }
        if !action_policies.is_empty() {
            write_policies(&dir.join("policies"), &action_policies).map_err(|err| {
                ActionError::aborted(format!("Could not save Action Policies: {err}"))
            })?;
        }
        if !opa_policies.is_empty() {
            write_policies(&dir.join("policies").join("rego"), &opa_policies).map_err(|err| {
                ActionError::aborted(format!("Could not save Open Policy Agent Policies: {err}"))
            })?;
        }
        conf::write_config(&config_file, &rendered)
            .map_err(|err| ActionError::aborted(format!("Could not write config: {err}")))?;
        let outputs = json!({
            "message": format!("Wrote {} lines to {}", settings.len() + 1, config_file.display()),
        });
        Ok((outputs, Effect::Provisioned))
    }

    fn restart(&mut self, data: &Value) -> Result<(Value, Effect), ActionError> {
        self.require_exit_guard("restart")?;
        let input: RestartInput = decode("restart", data)?;
        self.check_token(&input.token)?;
        let splay = match input.splay {
            None | Some(0) => DEFAULT_SPLAY,
            Some(n) if n < 0 => {
                return Err(ActionError::new(
                    StatusCode::InvalidData,
                    format!("splay must be 0 or more seconds, got {n}"),
                ))
            }
            Some(n) => n.min(3600),
        };
        let config_file = self.context.files.config_file.clone().ok_or_else(|| {
            ActionError::aborted("Cannot determine the configuration file to manage")
        })?;
        let parsed = conf::load(&config_file).map_err(|err| {
            ActionError::aborted(format!(
                "Configuration {} could not be parsed, restart cannot continue: {err}",
                config_file.display()
            ))
        })?;
        if conf::provision_enabled(&parsed) == Some(true) {
            return Err(ActionError::aborted(format!(
                "Configuration {} enables provisioning, restart cannot continue",
                config_file.display()
            )));
        }
        let seconds = rand::thread_rng().gen_range(0..splay) as u64 + 2;
        self.schedule_exit(
            format!("Restarting Choria Server after {seconds}s"),
            Effect::Restart {
                after: Duration::from_secs(seconds),
            },
        )
    }

    fn shutdown(&mut self, data: &Value) -> Result<(Value, Effect), ActionError> {
        self.require_exit_guard("shutdown")?;
        let input: TokenInput = decode("shutdown", data)?;
        self.check_token(&input.token)?;
        let seconds = rand::thread_rng().gen_range(0..10u64);
        self.schedule_exit(
            format!("Shutting Choria Server down after {seconds}s"),
            Effect::Shutdown {
                after: Duration::from_secs(seconds),
            },
        )
    }

    fn reprovision(
        &mut self,
        data: &Value,
        request: &RequestInfo,
    ) -> Result<(Value, Effect), ActionError> {
        if self.context.provision_mode {
            return Err(ActionError::aborted(
                "Server is already in provisioning mode, cannot enable provisioning mode again",
            ));
        }
        let config_file = self.context.files.config_file.clone().ok_or_else(|| {
            ActionError::aborted("Cannot determine the configuration file to manage")
        })?;
        let input: TokenInput = decode("reprovision", data)?;
        self.check_token(&input.token)?;
        let mut settings = BTreeMap::new();
        settings.insert(
            "plugin.choria.server.provision".to_string(),
            "1".to_string(),
        );
        settings.insert("loglevel".to_string(), "debug".to_string());
        if let Some(logfile) = &self.context.kept.logfile {
            settings.insert("logfile".to_string(), logfile.clone());
        }
        if let (false, Some(file)) = (
            self.context.provision_registration_data,
            &self.context.kept.registration_data_file,
        ) {
            settings.insert("registration".to_string(), "file_content".to_string());
            settings.insert(
                "plugin.choria.registration.file_content.data".to_string(),
                file.clone(),
            );
        }
        conf::render(&settings, request)
            .and_then(|text| conf::write_config(&config_file, &text))
            .map_err(|err| ActionError::aborted(format!("Could not write config: {err}")))?;
        let seconds = rand::thread_rng().gen_range(2..12u64);
        self.schedule_exit(
            format!("Restarting after {seconds}s"),
            Effect::Restart {
                after: Duration::from_secs(seconds),
            },
        )
    }

    fn release_update(&mut self, data: &Value) -> Result<Value, ActionError> {
        if !self.context.provision_mode {
            return Err(ActionError::aborted(
                "Cannot update a server that is not in provisioning mode",
            ));
        }
        if !self.context.allow_update {
            return Err(ActionError::aborted(
                "Version updates is not enabled in the configuration",
            ));
        }
        let input: TokenInput = decode("release_update", data)?;
        self.check_token(&input.token)?;
        Err(ActionError::aborted(
            "release_update is not supported by this server: in-place binary updates are not implemented, upgrade the package and restart instead",
        ))
    }

    /// `restart` and `shutdown` are open to anyone on a provisioning node, but a
    /// provisioned node only lets them through when a token guards them.
    fn require_exit_guard(&self, action: &str) -> Result<(), ActionError> {
        if !self.context.provision_mode && self.context.token.expose_secret().is_empty() {
            return Err(ActionError::aborted(format!(
                "Cannot {action} a server that is not in provisioning mode or with no token set"
            )));
        }
        Ok(())
    }

    /// Schedules the node's one restart or shutdown (`effect`), answering `message`.
    fn schedule_exit(
        &mut self,
        message: String,
        effect: Effect,
    ) -> Result<(Value, Effect), ActionError> {
        if self.exit_scheduled {
            return Err(ActionError::aborted(
                "A restart or shutdown is already scheduled",
            ));
        }
        self.exit_scheduled = true;
        Ok((json!({ "message": message }), effect))
    }
}

fn decode<T: DeserializeOwned + Default>(action: &str, data: &Value) -> Result<T, ActionError> {
    if data.is_null() {
        return Ok(T::default());
    }
    T::deserialize(data).map_err(|err| {
        ActionError::new(
            StatusCode::InvalidData,
            format!("Could not parse request data for {AGENT}#{action}: {err}"),
        )
    })
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => Err(err),
        _ => Ok(()),
    }
}

/// Checks that `name` is one plain file name ending in `extension` (no separators, no
/// `..`), so a policy can never be written outside its directory.
pub fn check_file_name(name: &str, extension: &str) -> Result<(), PathInputError> {
    if !name.ends_with(extension) {
        return Err(PathInputError::Extension {
            name: name.to_string(),
            extension: extension.to_string(),
        });
    }
    let mut components = Path::new(name).components();
    let single = matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    );
    if !single || name.contains(['/', '\\', '\0']) || name.starts_with('.') {
        return Err(PathInputError::NotPlain(name.to_string()));
    }
    Ok(())
}

fn policy_files(
    policies: &HashMap<String, String>,
    extension: &str,
) -> Result<BTreeMap<String, String>, PathInputError> {
    let mut out = BTreeMap::new();
    for (name, body) in policies {
        if name.is_empty() || body.is_empty() {
            continue;
        }
        check_file_name(name, extension)?;
        out.insert(name.clone(), body.clone());
    }
    Ok(out)
}

fn write_policies(dir: &Path, policies: &BTreeMap<String, String>) -> io::Result<()> {
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    for (name, body) in policies {
        files::write_atomic(&dir.join(name), body.as_bytes(), POLICY_MODE)
            .map_err(io::Error::other)?;
    }
    Ok(())
}

/// Resolves the `ssldir` input: absolute as given, relative to the configuration
/// directory otherwise; `..` components are refused.
fn safe_dir(config_dir: &Path, given: &str) -> Result<PathBuf, PathInputError> {
    let path = Path::new(given);
    if path.components().any(|c| matches!(c, Component::ParentDir)) || given.contains('\0') {
        return Err(PathInputError::ParentDir(given.to_string()));
    }
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        config_dir.join(path)
    })
}
