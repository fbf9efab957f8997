//! The per-node provisioning pass (spec §1.6): RPCs with the exact inputs of §1.7 and the
//! retry budget of §1.8, bounded by an overall deadline and with no retries for errors
//! that cannot succeed on retry (B7). Every node reply is validated (B2).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use serde_json::{json, Value};

use choria_tokens::{
    parse_client_token_unverified, parse_provisioning_token, sign_chained_token, sign_token,
    verify_nonce, Ed25519Seed, PublicKey, ServerClaims, ServerPermissions, SignatureEncoding,
    SigningKey,
};

use crate::csr::{validate_csr, CsrError};
use crate::helper::{CsrInput, Ed25519Input, Helper, HelperError, HelperReply, HelperRequest};
use crate::keydelivery::{encrypt_for_node, KeyDeliveryError};
use crate::metrics::Metrics;
use crate::rpc::{Rpc, RpcError, RpcReply};
use crate::settings::{parse_duration, Settings};
use crate::timeouts::{Timeouts, PROVISION_DDL_TIMEOUT, RPCUTIL_DDL_TIMEOUT};

/// Upstream issuer of non-chained server tokens.
pub const PROVISIONER_ISSUER: &str = "Choria Provisioner";
/// FiveSec backoff steps (ms), spec §1.8.
const BACKOFF_MS: [u64; 11] = [
    500, 750, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000,
];

/// How a pass ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PassResult {
    /// Configured and restarted.
    Provisioned,
    /// Helper asked to defer.
    Deferred(String),
    /// Helper asked for shutdown and the node agreed.
    Shutdown,
    /// `release_update` issued; the node returns later.
    Upgraded(String),
}

/// Why a pass failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PassError {
    /// Provisioning is paused (not leader).
    #[error("provisioning is paused, cannot perform {0}")]
    Paused(&'static str),
    /// The overall per-node deadline passed.
    #[error("node pass exceeded its deadline of {0:?}")]
    Deadline(Duration),
    /// An action failed after its retries.
    #[error("{rpc} failed: {source}")]
    Rpc {
        /// `agent#action`.
        rpc: &'static str,
        /// Last error.
        source: RpcError,
    },
    /// The node's provisioning JWT did not verify.
    #[error("could not validate JWT: {0}")]
    Jwt(String),
    /// The JWT's `cht` is not our token (S3).
    #[error("provisioning JWT token (cht) does not match the configured token")]
    TokenMismatch,
    /// The ed25519 proof failed.
    #[error("could not fetch ed25519 public key: {0}")]
    Ed25519(String),
    /// CSR refused.
    #[error("invalid CSR: {0}")]
    Csr(#[from] CsrError),
    /// Helper failed.
    #[error("could not invoke configure helper: {0}")]
    Helper(#[from] HelperError),
    /// Server JWT could not be issued.
    #[error("could not issue server JWT: {0}")]
    ServerJwt(String),
    /// Key delivery failed.
    #[error("could not encrypt private key: {0}")]
    KeyDelivery(#[from] KeyDeliveryError),
    /// Upgrade failed and is not optional.
    #[error("upgrade failed: {0}")]
    Upgrade(String),
    /// The helper asked for shutdown but the node refused (B6).
    #[error("node refused shutdown: {0}")]
    ShutdownRefused(String),
    /// Helper configuration unusable.
    #[error("helper returned an empty configuration")]
    EmptyConfiguration,
}

impl PassError {
    /// Short reason label for `choria_provisioner_outcomes`.
    pub fn reason(&self) -> &'static str {
        match self {
            PassError::Paused(_) => "paused",
            PassError::Deadline(_) => "deadline",
            PassError::Rpc { rpc, .. } => rpc,
            PassError::Jwt(_) | PassError::TokenMismatch => "jwt",
            PassError::Ed25519(_) => "ed25519",
            PassError::Csr(_) => "csr",
            PassError::Helper(_) | PassError::EmptyConfiguration => "helper",
            PassError::ServerJwt(_) => "server_jwt",
            PassError::KeyDelivery(_) => "key_delivery",
            PassError::Upgrade(_) => "upgrade",
            PassError::ShutdownRefused(_) => "shutdown_refused",
        }
    }
}

/// Runs passes for nodes; shared by all workers.
#[derive(Debug, Clone)]
pub struct Pipeline {
    rpc: Rpc,
    settings: Arc<Settings>,
    helper: Helper,
    metrics: Arc<Metrics>,
    paused: Arc<AtomicBool>,
    timeouts: Timeouts,
    /// Upgrades we asked for (identity → target), to catch upgrade loops (B12).
    upgrades: Arc<std::sync::Mutex<std::collections::HashMap<String, String>>>,
}

/// Most remembered upgrade requests before the memory is reset.
const MAX_REMEMBERED_UPGRADES: usize = 100_000;

struct Action {
    rpc: &'static str,
    agent: &'static str,
    action: &'static str,
    tries: u32,
    /// The agent's DDL timeout; an attempt waits `discovery_timeout` longer (§1.8).
    ddl_timeout: Duration,
}

const JWT: Action = Action {
    rpc: "choria_provision#jwt",
    agent: "choria_provision",
    action: "jwt",
    tries: 3,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};
const GEN25519: Action = Action {
    rpc: "choria_provision#gen25519",
    agent: "choria_provision",
    action: "gen25519",
    tries: 5,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};
const INVENTORY: Action = Action {
    rpc: "rpcutil#inventory",
    agent: "rpcutil",
    action: "inventory",
    tries: 5,
    ddl_timeout: RPCUTIL_DDL_TIMEOUT,
};
const GENCSR: Action = Action {
    rpc: "choria_provision#gencsr",
    agent: "choria_provision",
    action: "gencsr",
    tries: 1,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};
const RELEASE_UPDATE: Action = Action {
    rpc: "choria_provision#release_update",
    agent: "choria_provision",
    action: "release_update",
    tries: 3,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};
const CONFIGURE: Action = Action {
    rpc: "choria_provision#configure",
    agent: "choria_provision",
    action: "configure",
    tries: 5,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};
const RESTART: Action = Action {
    rpc: "choria_provision#restart",
    agent: "choria_provision",
    action: "restart",
    tries: 3,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};
const SHUTDOWN: Action = Action {
    rpc: "choria_provision#shutdown",
    agent: "choria_provision",
    action: "shutdown",
    tries: 3,
    ddl_timeout: PROVISION_DDL_TIMEOUT,
};

fn string_field(reply: &RpcReply, key: &str) -> Result<String, RpcError> {
    match reply.data.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(RpcError::Malformed {
            sender: reply.sender.clone(),
            message: format!("{key} is {}, not a string", type_name(other)),
        }),
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn now_unix() -> i64 {
    choria_tokens::clock::unix_seconds(SystemTime::now())
}

impl Pipeline {
    /// A pipeline over a shared RPC client.
    pub fn new(
        rpc: Rpc,
        settings: Arc<Settings>,
        helper: Helper,
        metrics: Arc<Metrics>,
        paused: Arc<AtomicBool>,
    ) -> Pipeline {
        Pipeline {
            rpc,
            settings,
            helper,
            metrics,
            paused,
            timeouts: Timeouts::default(),
            upgrades: Default::default(),
        }
    }

    /// Uses `timeouts` (from the Choria client config) instead of the defaults.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Pipeline {
        self.timeouts = timeouts;
        self
    }

    fn remembered_upgrades(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, String>> {
        // Plain inserts and removes only; a poisoned map is still consistent.
        self.upgrades
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn check_paused(&self, what: &'static str) -> Result<(), PassError> {
        if self.paused.load(Ordering::Relaxed) {
            return Err(PassError::Paused(what));
        }
        Ok(())
    }

    /// Provisions `identity` once, within the configured deadline.
    pub async fn provision(&self, identity: &str) -> Result<PassResult, PassError> {
        let deadline = self.settings.node_deadline;
        match tokio::time::timeout(deadline, self.pass(identity)).await {
            Ok(result) => result,
            Err(_) => Err(PassError::Deadline(deadline)),
        }
    }

    async fn call(
        &self,
        identity: &str,
        action: &Action,
        data: impl Fn() -> Value,
    ) -> Result<RpcReply, PassError> {
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.check_paused(action.rpc)?;
            let started = Instant::now();
            let result = self
                .rpc
                .call(
                    identity,
                    action.agent,
                    action.action,
                    data(),
                    self.timeouts.attempt(action.ddl_timeout),
                )
                .await;
            self.metrics.observe_rpc(action.rpc, started.elapsed());
            match result {
                Ok(reply) => return Ok(reply),
                Err(err) if err.retryable() && attempt < action.tries => {
                    tracing::debug!(
                        "{} to {identity} attempt {attempt} failed, retrying: {err}",
                        action.rpc
                    );
                    let step = BACKOFF_MS[(attempt as usize).min(BACKOFF_MS.len() - 1)];
                    let jitter = rand::thread_rng().gen_range(0.5..1.5);
                    tokio::time::sleep(Duration::from_millis(step).mul_f64(jitter)).await;
                }
                Err(err) => {
                    self.metrics.rpc_failed(action.rpc);
                    return Err(PassError::Rpc {
                        rpc: action.rpc,
                        source: err,
                    });
                }
            }
        }
    }

    fn malformed(&self, action: &Action, err: RpcError) -> PassError {
        self.metrics.rpc_failed(action.rpc);
        PassError::Rpc {
            rpc: action.rpc,
            source: err,
        }
    }

    async fn pass(&self, identity: &str) -> Result<PassResult, PassError> {
        let s = self.settings.clone();
        let token = s.token.clone();
        let stage = |name: &str, t: Instant| self.metrics.observe_stage(name, t.elapsed());

        // 1-2: provisioning JWT.
        let mut jwt_claims = None;
        let mut node_ecdh = String::new();
        if s.features.jwt {
            let t = Instant::now();
            let reply = self
                .call(identity, &JWT, || json!({"token": token}))
                .await?;
            let jwt = string_field(&reply, "jwt").map_err(|e| self.malformed(&JWT, e))?;
            node_ecdh = string_field(&reply, "ecdh_public").map_err(|e| self.malformed(&JWT, e))?;
            jwt_claims = Some(self.verify_jwt(&jwt)?);
            stage("jwt", t);
        }

        // 3: ed25519 proof of possession.
        let mut ed25519 = None;
        if s.features.ed25519 {
            let t = Instant::now();
            ed25519 = Some(self.gen25519(identity, &token).await?);
            stage("gen25519", t);
        }

        // 4: inventory.
        let t = Instant::now();
        let reply = self.call(identity, &INVENTORY, || json!({})).await?;
        let version = string_field(&reply, "version").map_err(|e| self.malformed(&INVENTORY, e))?;
        let upgradable = match reply.data.get("upgradable") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(self.malformed(
                    &INVENTORY,
                    RpcError::Malformed {
                        sender: reply.sender.clone(),
                        message: format!("upgradable is {}, not a boolean", type_name(other)),
                    },
                ))
            }
        };
        // serde_json's map is ordered, so this is the sorted-key text upstream sends.
        let inventory = Value::Object(reply.data.clone()).to_string();
        stage("inventory", t);

        // 5-6: CSR.
        let mut csr = None;
        if s.features.pki {
            let t = Instant::now();
            let reply = self
                .call(
                    identity,
                    &GENCSR,
                    || json!({"token": token, "cn": identity}),
                )
                .await?;
            let input = CsrInput {
                csr: string_field(&reply, "csr").map_err(|e| self.malformed(&GENCSR, e))?,
                public_key: string_field(&reply, "public_key")
                    .map_err(|e| self.malformed(&GENCSR, e))?,
                ssldir: string_field(&reply, "ssldir").map_err(|e| self.malformed(&GENCSR, e))?,
            };
            validate_csr(&input.csr, identity, &s.cert_deny_list)?;
            csr = Some(input);
            stage("gencsr", t);
        }

        // 7: helper.
        self.check_paused("helper")?;
        let request = HelperRequest {
            identity: identity.to_string(),
            csr: csr.clone(),
            ed25519_pubkey: ed25519.clone(),
            inventory,
            jwt: jwt_claims,
        };
        let t = Instant::now();
        let result = self.helper.run(&request).await;
        self.metrics.observe_helper(t.elapsed());
        stage("helper", t);
        let reply = match result {
            Ok(reply) => reply,
            Err(err) => {
                self.metrics.helper_errors.fetch_add(1, Ordering::Relaxed);
                return Err(err.into());
            }
        };

        // 8-9: defer wins over shutdown.
        if reply.defer {
            return Ok(PassResult::Deferred(reply.msg));
        }
        if reply.shutdown {
            tracing::warn!("Shutting down host based on helper output: {}", reply.msg);
            let answer = self
                .call(identity, &SHUTDOWN, || json!({"token": token}))
                .await;
            return match answer {
                Ok(ok) => {
                    self.metrics
                        .helper_shutdown_requests
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!(
                        "Shutdown response: {}",
                        string_field(&ok, "message").unwrap_or_default()
                    );
                    Ok(PassResult::Shutdown)
                }
                Err(PassError::Rpc {
                    source: RpcError::Status { message, code, .. },
                    ..
                }) => Err(PassError::ShutdownRefused(format!("{message} ({code})"))),
                Err(other) => Err(other),
            };
        }
        if reply.configuration.is_empty() {
            return Err(PassError::EmptyConfiguration);
        }

        // 10: server JWT.
        let mut server_jwt = String::new();
        if let Some(ed) = &ed25519 {
            let t = Instant::now();
            server_jwt = self.server_jwt(identity, ed, &reply)?;
            stage("server_jwt", t);
        }

        // 11: key delivery.
        let (mut key, mut ecdh_public) = (String::new(), String::new());
        if !reply.key.is_empty() {
            if !s.features.jwt {
                return Err(KeyDeliveryError::NoNodeKey.into());
            }
            let delivered = encrypt_for_node(&reply.key, &node_ecdh)?;
            key = delivered.encrypted_pem;
            ecdh_public = delivered.ecdh_public;
        }

        // 12: upgrades.
        if s.features.upgrades && !reply.upgrade.is_empty() {
            match self
                .upgrade(identity, &token, &version, upgradable, &reply.upgrade)
                .await
            {
                Ok(true) => return Ok(PassResult::Upgraded(reply.upgrade.clone())),
                Ok(false) => {}
                Err(err) if s.upgrades_optional => {
                    tracing::warn!(
                        "Could not upgrade {identity} to {}, continuing: {err}",
                        reply.upgrade
                    );
                }
                Err(err) => return Err(err),
            }
        }

        // 13: configure.
        let ssldir = match &csr {
            Some(c) if !c.ssldir.is_empty() => c.ssldir.clone(),
            _ => reply.ssldir.clone(),
        };
        let config_text = serde_json::to_string(&reply.configuration)
            .map_err(|e| PassError::Helper(HelperError::Encode(e.to_string())))?;
        let t = Instant::now();
        self.call(identity, &CONFIGURE, || {
            json!({
                "config": config_text,
                "token": token,
                "ca": reply.ca,
                "certificate": reply.certificate,
                "ssldir": ssldir,
                "key": key,
                "ecdh_public": ecdh_public,
                "action_policies": reply.action_policies,
                "opa_policies": reply.opa_policies,
                "server_jwt": server_jwt,
            })
        })
        .await?;
        stage("configure", t);

        // 14: restart.
        let t = Instant::now();
        self.call(identity, &RESTART, || json!({"token": token, "splay": 1}))
            .await?;
        stage("restart", t);
        Ok(PassResult::Provisioned)
    }

    fn verify_jwt(&self, jwt: &str) -> Result<Value, PassError> {
        if jwt.trim().is_empty() {
            return Err(PassError::Jwt("no JWT received".into()));
        }
        let setting = self.settings.jwt_verify_cert.trim();
        let path = std::path::Path::new(setting);
        let key = if path.is_file() {
            let bytes = std::fs::read(path)
                .map_err(|e| PassError::Jwt(format!("cannot read {setting}: {e}")))?;
            PublicKey::from_key_file_bytes(&bytes)
        } else {
            PublicKey::ed25519_from_hex(setting)
        }
        .map_err(|e| PassError::Jwt(format!("jwt_verify_cert: {e}")))?;
        let claims = parse_provisioning_token(jwt.trim(), &key, SystemTime::now())
            .map_err(|e| PassError::Jwt(e.to_string()))?;
        if !claims.cht.is_empty() && claims.cht != self.settings.token {
            return Err(PassError::TokenMismatch);
        }
        serde_json::to_value(&claims).map_err(|e| PassError::Jwt(e.to_string()))
    }

    async fn gen25519(&self, identity: &str, token: &str) -> Result<Ed25519Input, PassError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let nonce = crate::rpc::request_id();
            let reply = self
                .call(
                    identity,
                    &Action {
                        tries: 1,
                        ..GEN25519
                    },
                    || json!({"nonce": nonce, "token": token}),
                )
                .await;
            let reply = match reply {
                Ok(r) => r,
                Err(PassError::Rpc { source, .. })
                    if source.retryable() && attempt < GEN25519.tries =>
                {
                    continue
                }
                Err(e) => return Err(e),
            };
            let public_key =
                string_field(&reply, "public_key").map_err(|e| self.malformed(&GEN25519, e))?;
            let signature =
                string_field(&reply, "signature").map_err(|e| self.malformed(&GEN25519, e))?;
            let directory =
                string_field(&reply, "directory").map_err(|e| self.malformed(&GEN25519, e))?;
            // Validation failures are deterministic for this reply: no retry (B7).
            verify_nonce(
                &public_key,
                nonce.as_bytes(),
                &signature,
                SignatureEncoding::Hex,
            )
            .map_err(|e| PassError::Ed25519(e.to_string()))?;
            return Ok(Ed25519Input {
                public_key: public_key.to_lowercase(),
                directory,
                signature,
            });
        }
    }

    async fn upgrade(
        &self,
        identity: &str,
        token: &str,
        version: &str,
        upgradable: bool,
        target: &str,
    ) -> Result<bool, PassError> {
        let s = &self.settings;
        if s.upgrades_repository.is_empty() {
            return Err(PassError::Upgrade(
                "updates_repository not configured for upgrades feature".into(),
            ));
        }
        if version.is_empty() {
            return Err(PassError::Upgrade(
                "did not receive a version in inventory".into(),
            ));
        }
        if !upgradable {
            return Err(PassError::Upgrade("does not support upgrades".into()));
        }
        if crate::version::same(version, target) {
            self.remembered_upgrades().remove(identity);
            return Ok(false);
        }
        // B12: we already sent this node to `target` and it came back reporting another
        // version; asking again would loop forever.
        if self
            .remembered_upgrades()
            .get(identity)
            .is_some_and(|t| t == target)
        {
            self.remembered_upgrades().remove(identity);
            return Err(PassError::Upgrade(format!(
                "node was upgraded to {target} but still reports version {version}; check the helper's upgrade value"
            )));
        }
        self.call(
            identity,
            &RELEASE_UPDATE,
            || json!({"repository": s.upgrades_repository, "token": token, "version": target}),
        )
        .await
        .map_err(|e| PassError::Upgrade(format!("update to {target} failed: {e}")))?;
        let mut remembered = self.remembered_upgrades();
        if remembered.len() >= MAX_REMEMBERED_UPGRADES {
            remembered.clear();
        }
        remembered.insert(identity.to_string(), target.to_string());
        Ok(true)
    }

    fn server_jwt(
        &self,
        identity: &str,
        ed: &Ed25519Input,
        reply: &HelperReply,
    ) -> Result<String, PassError> {
        let s = &self.settings;
        let spec = server_claims_spec(identity, ed, reply, s.server_jwt_validity, now_unix())?;
        let mut claims = ServerClaims::new(spec, SystemTime::now())
            .map_err(|e| PassError::ServerJwt(e.to_string()))?;
        let key_path = s.jwt_signing_key.as_ref().ok_or_else(|| {
            PassError::ServerJwt("no jwt signing key configured using jwt_signing_key".into())
        })?;
        match &s.jwt_signing_token {
            Some(token_path) => {
                let text = std::fs::read_to_string(token_path).map_err(|e| {
                    PassError::ServerJwt(format!("cannot read {}: {e}", token_path.display()))
                })?;
                let issuer = parse_client_token_unverified(text.trim())
                    .map_err(|e| PassError::ServerJwt(e.to_string()))?;
                if issuer.standard.tcs.is_empty() {
                    return Err(PassError::ServerJwt(
                        "no Trust Chain Signature claim in JWT Signing Token".into(),
                    ));
                }
                let seed = Ed25519Seed::from_file(key_path)
                    .map_err(|e| PassError::ServerJwt(e.to_string()))?;
                // S3: refuse to chain with a seed that does not belong to the token.
                if !issuer
                    .standard
                    .public_key
                    .eq_ignore_ascii_case(&seed.public_key_hex())
                {
                    return Err(PassError::ServerJwt(
                        "jwt_signing_key does not match the public key of jwt_signing_token".into(),
                    ));
                }
                if issuer.standard.exp.is_some_and(|exp| exp <= now_unix()) {
                    return Err(PassError::ServerJwt("jwt_signing_token has expired".into()));
                }
                sign_chained_token(&mut claims, &issuer, &seed)
                    .map_err(|e| PassError::ServerJwt(e.to_string()))
            }
            None => {
                claims.standard.iss = PROVISIONER_ISSUER.to_string();
                let key = SigningKey::from_file(key_path)
                    .map_err(|e| PassError::ServerJwt(e.to_string()))?;
                sign_token(&claims, &key).map_err(|e| PassError::ServerJwt(e.to_string()))
            }
        }
    }
}

/// Builds the server token spec of spec §4.3 from the helper reply; `now` is Unix seconds.
pub fn server_claims_spec(
    identity: &str,
    ed: &Ed25519Input,
    reply: &HelperReply,
    default_validity: Duration,
    now: i64,
) -> Result<choria_tokens::claims::NewServer, PassError> {
    let mut org = "choria".to_string();
    let mut validity = default_validity;
    let mut collectives = vec!["mcollective".to_string()];
    if reply
        .configuration
        .get("plugin.security.provider")
        .map(String::as_str)
        == Some("choria")
    {
        collectives = vec!["choria".to_string()];
    }
    if let Some(list) = reply.configuration.get("collectives") {
        // B9: trim around commas.
        let parsed: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        if !parsed.is_empty() {
            collectives = parsed;
        }
    }
    let mut pub_subjects = Vec::new();
    let mut permissions = None;
    if let Some(c) = &reply.server_claims {
        if !c.ou.is_empty() {
            org = c.ou.clone();
        }
        if let Some(text) = &c.validity {
            validity = parse_duration(text)
                .map_err(|e| PassError::ServerJwt(format!("server_claims.validity: {e}")))?;
        } else if let Some(exp) = c.exp {
            if exp > now {
                validity = Duration::from_secs((exp - now) as u64);
            } else if exp > 0 {
                // B3: upstream's sample helper sends relative seconds here.
                tracing::warn!("server_claims.exp {exp} is in the past; treating it as a validity of {exp} seconds");
                validity = Duration::from_secs(exp as u64);
            }
        }
        if !c.collectives.is_empty() {
            collectives = c.collectives.clone();
        }
        pub_subjects = c.pub_subjects.clone();
        permissions = c.permissions.map(|p| ServerPermissions {
            submission: p.submission,
            streams: p.streams,
            governor: p.governor,
            service_host: p.service_host,
        });
    }
    if validity <= Duration::from_secs(3600) {
        tracing::warn!("server JWT validity {validity:?} is 1 hour or less, using the default {default_validity:?}");
        validity = default_validity;
    }
    let public_key = hex::decode(&ed.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| PassError::ServerJwt("no ed25519 public key set".into()))?;
    Ok(choria_tokens::claims::NewServer {
        identity: identity.to_string(),
        collectives,
        org,
        permissions,
        pub_subjects,
        public_key: Some(public_key),
        issuer: PROVISIONER_ISSUER.to_string(),
        validity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::ServerClaimsInput;

    fn ed() -> Ed25519Input {
        Ed25519Input {
            public_key: "11".repeat(32),
            directory: "/etc/choria".into(),
            signature: String::new(),
        }
    }

    #[test]
    fn server_claims_follow_spec_4_3() {
        let day = Duration::from_secs(86400);
        let mut reply = HelperReply::default();
        reply
            .configuration
            .insert("collectives".into(), "one, two".into());
        let spec = server_claims_spec("n1", &ed(), &reply, day * 365, 1_000_000).expect("spec");
        assert_eq!(spec.collectives, vec!["one", "two"], "B9 trims");
        assert_eq!(spec.org, "choria");
        assert_eq!(spec.validity, day * 365);

        let mut reply = HelperReply::default();
        reply
            .configuration
            .insert("plugin.security.provider".into(), "choria".into());
        reply.server_claims = Some(ServerClaimsInput {
            exp: Some(5 * 365 * 86400),
            ..Default::default()
        });
        let spec = server_claims_spec("n1", &ed(), &reply, day, 2_000_000_000).expect("spec");
        assert_eq!(spec.collectives, vec!["choria"]);
        assert_eq!(spec.validity, day * 365 * 5, "B3: relative exp honoured");

        reply.server_claims = Some(ServerClaimsInput {
            exp: Some(2_000_000_000 + 7200),
            ..Default::default()
        });
        let spec = server_claims_spec("n1", &ed(), &reply, day, 2_000_000_000).expect("spec");
        assert_eq!(spec.validity, Duration::from_secs(7200), "absolute exp");

        reply.server_claims = Some(ServerClaimsInput {
            validity: Some("30m".into()),
            ..Default::default()
        });
        let spec = server_claims_spec("n1", &ed(), &reply, day, 0).expect("spec");
        assert_eq!(spec.validity, day, "≤ 1h falls back to the default");
    }
}
