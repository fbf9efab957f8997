//! The per-node provisioning pass (spec §1.6): RPCs with the exact inputs of §1.7 and the
//! retry budget of §1.8, bounded by an overall deadline and with no retries for errors
//! that cannot succeed on retry (B7). Every node reply gets its agent DDL's output defaults
//! and is validated (B2).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use rand::Rng;
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde_json::{json, Map, Value};

use choria_protocol::ddl::{self, DdlError};
use choria_tokens::{
    parse_provisioning_token, verify_nonce, PublicKey, SignatureEncoding, TokenError,
};

use crate::csr::{validate_csr, CsrError};
use crate::ddls::{Agent, Ddls};
use crate::helper::{CsrInput, Ed25519Input, Helper, HelperError, HelperRequest};
use crate::issue::{self, IssueError};
use crate::keydelivery::{encrypt_for_node, KeyDeliveryError};
use crate::keys::Keys;
use crate::metrics::Metrics;
use crate::replies::{CsrReply, Gen25519Reply, InventoryReply, JwtReply, MessageReply};
use crate::rpc::{Rpc, RpcError};
use crate::settings::Settings;
use crate::timeouts::Timeouts;

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
    /// The agent's DDL has no such action (the embedded DDLs and the pass disagree).
    #[error("{rpc} is not in the agent's DDL: {source}")]
    Ddl {
        /// `agent#action`.
        rpc: &'static str,
        /// What the DDL lookup said.
        source: DdlError,
    },
    /// The node sent no provisioning JWT.
    #[error("could not validate JWT: no JWT received")]
    NoJwt,
    /// The node's provisioning JWT did not verify.
    #[error("could not validate JWT: {0}")]
    Jwt(#[source] TokenError),
    /// The verified claims could not be handed to the helper.
    #[error("could not encode JWT claims: {0}")]
    JwtClaims(#[source] serde_json::Error),
    /// The JWT's `cht` is not our token (S3).
    #[error("provisioning JWT token (cht) does not match the configured token")]
    TokenMismatch,
    /// The ed25519 proof failed.
    #[error("could not fetch ed25519 public key: {0}")]
    Ed25519(choria_tokens::NonceError),
    /// CSR refused.
    #[error("invalid CSR: {0}")]
    Csr(#[from] CsrError),
    /// Helper failed.
    #[error("could not invoke configure helper: {0}")]
    Helper(#[from] HelperError),
    /// Server JWT could not be issued.
    #[error("could not issue server JWT: {0}")]
    ServerJwt(#[from] IssueError),
    /// Key delivery failed.
    #[error("could not encrypt private key: {0}")]
    KeyDelivery(#[from] KeyDeliveryError),
    /// Upgrade failed and is not optional.
    #[error("upgrade failed: {0}")]
    Upgrade(#[from] UpgradeError),
    /// The helper asked for shutdown but the node refused (B6).
    #[error("node refused shutdown: {0}")]
    ShutdownRefused(String),
    /// Helper configuration unusable.
    #[error("helper returned an empty configuration")]
    EmptyConfiguration,
}

/// Why a node could not be upgraded (spec §1.6 step 12).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpgradeError {
    /// `upgrades_repository` is empty.
    #[error("updates_repository not configured for upgrades feature")]
    NoRepository,
    /// The inventory had no version.
    #[error("did not receive a version in inventory")]
    NoVersion,
    /// The inventory says `upgradable: false`.
    #[error("does not support upgrades")]
    NotUpgradable,
    /// B12: the node came back from an upgrade to `target` with another version.
    #[error("node was upgraded to {target} but still reports version {version}; check the helper's upgrade value")]
    Stuck {
        /// Version we asked for.
        target: String,
        /// Version it reports.
        version: String,
    },
    /// `release_update` failed.
    #[error("update to {target} failed: {source}")]
    Failed {
        /// Version we asked for.
        target: String,
        /// The failed RPC.
        source: Box<PassError>,
    },
}

impl PassError {
    /// Short reason label for `choria_provisioner_outcomes_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            PassError::Paused(_) => "paused",
            PassError::Deadline(_) => "deadline",
            PassError::Rpc { rpc, .. } => rpc,
            PassError::Ddl { .. } => "ddl",
            PassError::NoJwt
            | PassError::Jwt(_)
            | PassError::JwtClaims(_)
            | PassError::TokenMismatch => "jwt",
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
    keys: Arc<Keys>,
    ddls: Arc<Ddls>,
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
    agent: Agent,
    action: &'static str,
    tries: u32,
}

impl Action {
    /// This action's DDL. Inputs are sent as built and not checked against it: upstream's
    /// client does not check them either, and a helper's configuration may be longer than the
    /// DDL's `maxlength`.
    fn ddl<'d>(&self, ddls: &'d Ddls) -> Result<&'d ddl::Action, PassError> {
        ddls.agent(self.agent)
            .action(self.action)
            .map_err(|source| PassError::Ddl {
                rpc: self.rpc,
                source,
            })
    }
}

/// `action!(Agent = "agent", "action", tries)`: an [`Action`] named `agent#action`.
macro_rules! action {
    ($agent:ident = $name:literal, $action:literal, $tries:literal) => {
        Action {
            rpc: concat!($name, "#", $action),
            agent: Agent::$agent,
            action: $action,
            tries: $tries,
        }
    };
}

const JWT: Action = action!(ChoriaProvision = "choria_provision", "jwt", 3);
const GEN25519: Action = action!(ChoriaProvision = "choria_provision", "gen25519", 5);
const INVENTORY: Action = action!(Rpcutil = "rpcutil", "inventory", 5);
const GENCSR: Action = action!(ChoriaProvision = "choria_provision", "gencsr", 1);
const RELEASE_UPDATE: Action = action!(ChoriaProvision = "choria_provision", "release_update", 3);
const CONFIGURE: Action = action!(ChoriaProvision = "choria_provision", "configure", 5);
const RESTART: Action = action!(ChoriaProvision = "choria_provision", "restart", 3);
const SHUTDOWN: Action = action!(ChoriaProvision = "choria_provision", "shutdown", 3);

/// SimpleRPC inputs as an object: `inputs!{"token": token}`.
macro_rules! inputs {
    ($($key:literal : $value:expr),* $(,)?) => {{
        #[allow(unused_mut)]
        let mut data = Map::new();
        $(data.insert($key.to_string(), json!($value));)*
        data
    }};
}

impl Pipeline {
    /// A pipeline over a shared RPC client.
    pub fn new(
        rpc: Rpc,
        settings: Arc<Settings>,
        keys: Arc<Keys>,
        ddls: Arc<Ddls>,
        helper: Helper,
        metrics: Arc<Metrics>,
        paused: Arc<AtomicBool>,
    ) -> Pipeline {
        Pipeline {
            rpc,
            settings,
            keys,
            ddls,
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

    /// Runs `action` with its retry budget and decodes the reply's data as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        identity: &str,
        action: &Action,
        data: Map<String, Value>,
    ) -> Result<T, PassError> {
        let reply = self.call_data(identity, action, data).await?;
        self.decode(identity, action, reply)
    }

    /// B2: a reply of the wrong shape fails the action without a retry.
    fn decode<T: DeserializeOwned>(
        &self,
        identity: &str,
        action: &Action,
        data: Map<String, Value>,
    ) -> Result<T, PassError> {
        serde_json::from_value(Value::Object(data)).map_err(|e| {
            self.malformed(
                action,
                RpcError::Malformed {
                    sender: identity.to_string(),
                    message: format!("{} reply: {e}", action.rpc),
                },
            )
        })
    }

    /// Runs `action` with its retry budget; the reply's data object with the DDL's output
    /// defaults filled in, as upstream's client fills them before decoding.
    async fn call_data(
        &self,
        identity: &str,
        action: &Action,
        data: Map<String, Value>,
    ) -> Result<Map<String, Value>, PassError> {
        let ddl = action.ddl(&self.ddls)?;
        let timeout = self.timeouts.attempt(self.ddls.timeout(action.agent));
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            self.check_paused(action.rpc)?;
            let started = Instant::now();
            let result = self
                .rpc
                .call(
                    identity,
                    action.agent.name(),
                    action.action,
                    data.clone(),
                    timeout,
                )
                .await;
            self.metrics.observe_rpc(action.rpc, started.elapsed());
            match result {
                Ok(mut reply) => {
                    ddl.apply_output_defaults(&mut reply);
                    return Ok(reply);
                }
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
        let token = s.token.expose_secret().to_string();
        let stage = |name: &str, t: Instant| self.metrics.observe_stage(name, t.elapsed());

        // 1-2: provisioning JWT (features.jwt, whose verify key Keys::load read).
        let mut jwt_claims = None;
        let mut node_ecdh = String::new();
        if let Some(verify_key) = &self.keys.jwt_verify {
            let t = Instant::now();
            let reply: JwtReply = self.call(identity, &JWT, inputs! {"token": token}).await?;
            jwt_claims = Some(self.verify_jwt(&reply.jwt, verify_key)?);
            node_ecdh = reply.ecdh_public;
            stage("jwt", t);
        }

        // 3: ed25519 proof of possession.
        let mut ed25519 = None;
        if s.features.ed25519 {
            let t = Instant::now();
            ed25519 = Some(self.gen25519(identity, &token).await?);
            stage("gen25519", t);
        }

        // 4: inventory; the helper gets all of it, the pipeline reads two fields.
        let t = Instant::now();
        let data = self.call_data(identity, &INVENTORY, inputs! {}).await?;
        let InventoryReply {
            version,
            upgradable,
        } = self.decode(identity, &INVENTORY, data.clone())?;
        // serde_json's map is ordered, so this is the sorted-key text upstream sends.
        let inventory = Value::Object(data).to_string();
        stage("inventory", t);

        // 5-6: CSR.
        let mut csr = None;
        if s.features.pki {
            let t = Instant::now();
            let reply: CsrReply = self
                .call(identity, &GENCSR, inputs! {"token": token, "cn": identity})
                .await?;
            validate_csr(&reply.csr, identity, &s.cert_deny_list)?;
            csr = Some(CsrInput {
                csr: reply.csr,
                public_key: reply.public_key,
                ssldir: reply.ssldir,
            });
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
            let answer: Result<MessageReply, _> = self
                .call(identity, &SHUTDOWN, inputs! {"token": token})
                .await;
            return match answer {
                Ok(ok) => {
                    self.metrics
                        .helper_shutdown_requests
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::info!("Shutdown response: {}", ok.message);
                    Ok(PassResult::Shutdown)
                }
                Err(PassError::Rpc {
                    source: RpcError::Status { message, code, .. },
                    ..
                }) => Err(PassError::ShutdownRefused(format!(
                    "{message} ({})",
                    code.code()
                ))),
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
            server_jwt = issue::server_jwt(
                self.keys.server_jwt.as_ref(),
                identity,
                ed,
                &reply,
                s.server_jwt_validity,
                SystemTime::now(),
            )?;
            stage("server_jwt", t);
        }

        // 11: key delivery.
        let (mut key, mut ecdh_public) = (String::new(), String::new());
        if !reply.key.expose_secret().is_empty() {
            if !s.features.jwt {
                return Err(KeyDeliveryError::NoNodeKey.into());
            }
            let delivered = encrypt_for_node(reply.key.expose_secret(), &node_ecdh)?;
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
            .map_err(|e| PassError::Helper(HelperError::Encode(e)))?;
        let t = Instant::now();
        let _: MessageReply = self
            .call(
                identity,
                &CONFIGURE,
                inputs! {
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
                },
            )
            .await?;
        stage("configure", t);

        // 14: restart.
        let t = Instant::now();
        let _: MessageReply = self
            .call(identity, &RESTART, inputs! {"token": token, "splay": 1})
            .await?;
        stage("restart", t);
        Ok(PassResult::Provisioned)
    }

    fn verify_jwt(&self, jwt: &str, key: &PublicKey) -> Result<Value, PassError> {
        if jwt.trim().is_empty() {
            return Err(PassError::NoJwt);
        }
        let claims =
            parse_provisioning_token(jwt.trim(), key, SystemTime::now()).map_err(PassError::Jwt)?;
        if !claims.cht.is_empty() && claims.cht != self.settings.token.expose_secret() {
            return Err(PassError::TokenMismatch);
        }
        serde_json::to_value(&claims).map_err(PassError::JwtClaims)
    }

    async fn gen25519(&self, identity: &str, token: &str) -> Result<Ed25519Input, PassError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let nonce = choria_protocol::ids::new_request_id();
            let reply: Result<Gen25519Reply, _> = self
                .call(
                    identity,
                    &Action {
                        tries: 1,
                        ..GEN25519
                    },
                    inputs! {"nonce": nonce, "token": token},
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
            // Validation failures are deterministic for this reply: no retry (B7).
            verify_nonce(
                &reply.public_key,
                nonce.as_bytes(),
                &reply.signature,
                SignatureEncoding::Hex,
            )
            .map_err(PassError::Ed25519)?;
            return Ok(Ed25519Input {
                public_key: reply.public_key.to_lowercase(),
                directory: reply.directory,
                signature: reply.signature,
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
            return Err(UpgradeError::NoRepository.into());
        }
        if version.is_empty() {
            return Err(UpgradeError::NoVersion.into());
        }
        if !upgradable {
            return Err(UpgradeError::NotUpgradable.into());
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
            return Err(UpgradeError::Stuck {
                target: target.to_string(),
                version: version.to_string(),
            }
            .into());
        }
        let _: MessageReply = self
            .call(
                identity,
                &RELEASE_UPDATE,
                inputs! {"repository": s.upgrades_repository, "token": token, "version": target},
            )
            .await
            .map_err(|e| UpgradeError::Failed {
                target: target.to_string(),
                source: Box::new(e),
            })?;
        let mut remembered = self.remembered_upgrades();
        if remembered.len() >= MAX_REMEMBERED_UPGRADES {
            remembered.clear();
        }
        remembered.insert(identity.to_string(), target.to_string());
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ddls() -> Ddls {
        Ddls::embedded().expect("ddls")
    }

    #[test]
    fn every_action_is_in_its_ddl_and_the_pass_inputs_satisfy_it() {
        let ddls = ddls();
        let token = "s3cret";
        let configure_unset = inputs! {
            "config": "{\"identity\":\"n1\"}", "token": "", "ca": "", "certificate": "",
            "ssldir": "", "key": "", "ecdh_public": "", "action_policies": json!({}),
            "opa_policies": json!({}), "server_jwt": "",
        };
        let configure_set = inputs! {
            "config": "{\"identity\":\"n1\"}", "token": token,
            "ca": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "ssldir": "/etc/choria/ssl",
            "key": "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n",
            "ecdh_public": "ab".repeat(32), "action_policies": json!({"a.policy": "x"}),
            "opa_policies": json!({}), "server_jwt": "a.b.c",
        };
        let cases = [
            (&JWT, inputs! {"token": token}),
            (&JWT, inputs! {"token": ""}),
            (
                &GEN25519,
                inputs! {"nonce": choria_protocol::ids::new_request_id(), "token": token},
            ),
            (&INVENTORY, inputs! {}),
            (&GENCSR, inputs! {"token": token, "cn": "n1.example.net"}),
            (&GENCSR, inputs! {"token": token, "cn": "node_1"}),
            (
                &RELEASE_UPDATE,
                inputs! {"repository": "https://r.example.net/", "token": token, "version": "0.29.4"},
            ),
            (&CONFIGURE, configure_unset),
            (&CONFIGURE, configure_set),
            (&RESTART, inputs! {"token": token, "splay": 1}),
            (&SHUTDOWN, inputs! {"token": token}),
        ];
        for (action, data) in cases {
            let checked = action
                .ddl(&ddls)
                .map_err(|e| e.to_string())
                .and_then(|ddl| ddl.validate_request(&data).map_err(|e| e.to_string()));
            assert!(checked.is_ok(), "{} {data:?}: {checked:?}", action.rpc);
        }
    }

    #[test]
    fn a_reply_missing_an_output_gets_the_ddls_default() {
        let ddls = ddls();
        let ddl = INVENTORY.ddl(&ddls).expect("ddl");
        let mut reply = inputs! {"version": "0.29.4", "agents": ["rpcutil"]};
        ddl.apply_output_defaults(&mut reply);
        assert_eq!(reply.get("upgradable"), Some(&json!(false)));
        // Outputs with a null default stay absent; a sent value is kept.
        assert!(!reply.contains_key("facts"));
        assert_eq!(reply.get("version"), Some(&json!("0.29.4")));
        let typed: InventoryReply = serde_json::from_value(Value::Object(reply)).expect("decode");
        assert_eq!(typed.version, "0.29.4");
        assert!(!typed.upgradable);

        let ddl = JWT.ddl(&ddls).expect("ddl");
        let mut reply = inputs! {"jwt": "a.b.c"};
        ddl.apply_output_defaults(&mut reply);
        assert_eq!(reply, inputs! {"jwt": "a.b.c", "ecdh_public": ""});
        let ddl = GEN25519.ddl(&ddls).expect("ddl");
        let mut reply = Map::new();
        ddl.apply_output_defaults(&mut reply);
        assert_eq!(
            reply,
            inputs! {"public_key": "", "directory": "", "signature": ""}
        );
    }
}
