//! TEST PEER ONLY: a minimal hand-made stand-in for a provisioning-mode node, used until
//! `choria-server` nodes can join these tests. It answers the `choria_provision`,
//! `rpcutil` and `discovery` requests over a real nats-server with real keys (ed25519
//! nonce proof, X25519, RSA CSR) and records what the provisioner sent.

#![allow(dead_code)]

use std::sync::{Arc, Mutex};

use ed25519_dalek::Signer;
use futures::StreamExt;
use rand::RngCore;
use serde_json::{json, Value};

use choria_provisioner::wire;

/// How the peer misbehaves, if at all.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quirk {
    /// Behaves.
    #[default]
    None,
    /// gen25519 returns a 16-byte public key (B2).
    ShortPublicKey,
    /// inventory `upgradable` is a string (B2).
    WrongTypes,
    /// An old server without the `shutdown` action (B6).
    OldServer,
    /// Upgradable; `release_update` changes the reported version and restarts.
    UpgradeWorks,
    /// Upgradable; `release_update` "restarts" but the version never changes (B12).
    UpgradeStuck,
}

/// Everything the provisioner asked of this peer.
#[derive(Debug, Default)]
pub struct Seen {
    /// (action, data) in order.
    pub calls: Vec<(String, Value)>,
    /// Public key from the last gen25519.
    pub ed25519_public: String,
}

/// A running peer.
pub struct TestPeerNode {
    /// Identity.
    pub identity: String,
    /// What it saw.
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestPeerNode {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TestPeerNode {
    /// Starts answering as `identity`; `jwt` is the provisioning token it hands out.
    pub async fn start(
        url: &str,
        identity: &str,
        token: &str,
        jwt: &str,
        quirk: Quirk,
    ) -> TestPeerNode {
        let client = async_nats::connect(url).await.expect("peer connect");
        let mut direct = client
            .subscribe(format!("provisioning.node.{identity}"))
            .await
            .expect("sub");
        let mut broadcast = client
            .subscribe("provisioning.broadcast.agent.discovery")
            .await
            .expect("sub");
        client.flush().await.expect("flush");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let (id, token, jwt, seen2) = (
            identity.to_string(),
            token.to_string(),
            jwt.to_string(),
            seen.clone(),
        );
        let task = tokio::spawn(async move {
            let mut version = "0.1.0".to_string();
            loop {
                let msg = tokio::select! {
                    m = direct.next() => m,
                    m = broadcast.next() => m,
                };
                let Some(msg) = msg else { break };
                let Ok(req) = wire::decode_request(&msg.payload) else {
                    continue;
                };
                let reply_message = if req.agent == "discovery" {
                    "pong".to_string()
                } else {
                    let body: Value = serde_json::from_str(&req.message).expect("simplerpc");
                    let action = body["action"].as_str().unwrap_or_default().to_string();
                    let data = body["data"].clone();
                    seen2
                        .lock()
                        .expect("lock")
                        .calls
                        .push((action.clone(), data.clone()));
                    let token_ok = data
                        .get("token")
                        .and_then(Value::as_str)
                        .is_none_or(|t| t == token);
                    let (code, msg_text, out) = if req.agent == "choria_provision" && !token_ok {
                        (
                            1,
                            "Incorrect provision token supplied".to_string(),
                            json!({}),
                        )
                    } else {
                        match (req.agent.as_str(), action.as_str()) {
                            ("choria_provision", "jwt") => {
                                let public =
                                    choria_pki::key_transfer::EcdhKeyPair::generate().public_hex();
                                (0, "OK".into(), json!({"jwt": jwt, "ecdh_public": public}))
                            }
                            ("choria_provision", "gen25519") => {
                                let mut seed = [0u8; 32];
                                rand::rngs::OsRng.fill_bytes(&mut seed);
                                let key = ed25519_dalek::SigningKey::from_bytes(&seed);
                                let nonce = data["nonce"].as_str().unwrap_or_default();
                                let sig = key.sign(nonce.as_bytes());
                                let mut public = hex::encode(key.verifying_key().to_bytes());
                                if quirk == Quirk::ShortPublicKey {
                                    public.truncate(32);
                                }
                                seen2.lock().expect("lock").ed25519_public = public.clone();
                                (
                                    0,
                                    "OK".into(),
                                    json!({"public_key": public, "directory": format!("/etc/choria/{id}"), "signature": hex::encode(sig.to_bytes())}),
                                )
                            }
                            ("rpcutil", "inventory") => {
                                let upgradable = match quirk {
                                    Quirk::WrongTypes => json!("yes"),
                                    Quirk::UpgradeWorks | Quirk::UpgradeStuck => json!(true),
                                    _ => json!(false),
                                };
                                (
                                    0,
                                    "OK".into(),
                                    json!({"agents": ["choria_provision", "discovery", "rpcutil"], "classes": [], "collectives": ["provisioning"], "data_plugins": [], "facts": {}, "machines": [], "main_collective": "provisioning", "version": version, "upgradable": upgradable}),
                                )
                            }
                            ("choria_provision", "gencsr") => {
                                let key = rcgen::KeyPair::generate().expect("key");
                                let mut params =
                                    rcgen::CertificateParams::new(Vec::<String>::new())
                                        .expect("params");
                                params.distinguished_name = rcgen::DistinguishedName::new();
                                params.distinguished_name.push(
                                    rcgen::DnType::CommonName,
                                    data["cn"].as_str().unwrap_or_default(),
                                );
                                let csr = params
                                    .serialize_request(&key)
                                    .expect("csr")
                                    .pem()
                                    .expect("pem");
                                (
                                    0,
                                    "OK".into(),
                                    json!({"csr": csr, "public_key": key.public_key_pem(), "ssldir": format!("/etc/choria/{id}/ssl")}),
                                )
                            }
                            ("choria_provision", "configure") => (
                                0,
                                "OK".into(),
                                json!({"message": "Wrote 3 lines to /etc/choria/server.conf"}),
                            ),
                            ("choria_provision", "release_update") => {
                                if quirk == Quirk::UpgradeWorks {
                                    version =
                                        data["version"].as_str().unwrap_or_default().to_string();
                                }
                                // Comes back in provisioning mode and says so.
                                let event = json!({"protocol": "io.choria.lifecycle.v1.startup", "identity": id, "component": "provision_mode_server", "version": version});
                                let c = client.clone();
                                tokio::spawn(async move {
                                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                                    let _ = c
                                        .publish(
                                            "choria.lifecycle.event.startup.provision_mode_server",
                                            event.to_string().into(),
                                        )
                                        .await;
                                });
                                (
                                    0,
                                    "OK".into(),
                                    json!({"message": "Restarting Choria Server after 2s"}),
                                )
                            }
                            ("choria_provision", "restart") => (
                                0,
                                "OK".into(),
                                json!({"message": "Restarting Choria Server after 2s"}),
                            ),
                            ("choria_provision", "shutdown") if quirk == Quirk::OldServer => {
                                (2, "Unknown action shutdown".into(), json!({}))
                            }
                            ("choria_provision", "shutdown") => (
                                0,
                                "OK".into(),
                                json!({"message": "Shutting Choria Server down after 1s"}),
                            ),
                            _ => (2, "Unknown action".into(), json!({})),
                        }
                    };
                    json!({"action": action, "statuscode": code, "statusmsg": msg_text, "data": out}).to_string()
                };
                let reply = wire::encode_reply(&req, &id, &reply_message).expect("encode");
                let _ = client.publish(req.reply_to.clone(), reply.into()).await;
            }
        });
        TestPeerNode {
            identity: identity.to_string(),
            seen,
            task,
        }
    }

    /// Actions called so far.
    pub fn actions(&self) -> Vec<String> {
        self.seen
            .lock()
            .expect("lock")
            .calls
            .iter()
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Data of the last call of `action`.
    pub fn last(&self, action: &str) -> Option<Value> {
        self.seen
            .lock()
            .expect("lock")
            .calls
            .iter()
            .rev()
            .find(|(a, _)| a == action)
            .map(|(_, d)| d.clone())
    }
}
