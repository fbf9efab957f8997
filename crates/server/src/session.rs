//! One connected node's request handling, free of network I/O: decode and verify a
//! request, apply its filter, run the agent, and build the reply, registration and
//! lifecycle messages, all with `choria-protocol`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use choria_protocol::filter::{NodeView, Verdict};
use choria_protocol::lifecycle::{EventType, LifecycleError, LifecycleEvent};
use choria_protocol::message::{self, DecodedRequest, ReplyMeta, ReplySigner, RequestMeta};
use choria_protocol::message::{RequestSigner, Routing};
use choria_protocol::registration::FileContent;
use choria_protocol::{ids::AgeError, subjects, ProtocolError, Version};
use choria_protocol::{RpcReply, RpcRequest, StatusCode};

use crate::agents::provision::{self, Effect, ProvisionAgent, RequestInfo};
use crate::agents::rpcutil::{self, NodeFacts, VERSION};
use crate::agents::{choria_util, discovery, ActionError};
use crate::startup::Plan;
use crate::verify::{self, Refusal, Verification};

/// Largest classes file read.
pub const MAX_CLASSES_BYTES: u64 = 1024 * 1024;
/// Largest registration data file published.
pub const MAX_REGISTRATION_BYTES: u64 = 1024 * 1024;

/// A provisioned node's reply-signing material (v2, `sign_replies`). The JWT goes out in
/// every signed reply, and the key's Debug leaves out the secret half.
#[derive(Debug, Clone)]
pub struct ReplyKey {
    /// The node's ed25519 key.
    pub key: ed25519_dalek::SigningKey,
    /// The node's server JWT.
    pub jwt: String,
}

impl ReplyKey {
    /// The key of `seed`, naming `jwt` in signed replies.
    pub fn from_seed(seed: &choria_tokens::Ed25519Seed, jwt: String) -> Option<ReplyKey> {
        let bytes: [u8; 32] = hex::decode(seed.to_hex()).ok()?.try_into().ok()?;
        Some(ReplyKey {
            key: ed25519_dalek::SigningKey::from_bytes(&bytes),
            jwt,
        })
    }
}

/// Why a request was dropped before it reached an agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// Not a well-formed Choria request.
    #[error("malformed request: {0}")]
    Malformed(#[source] ProtocolError),
    /// Too old, or from the future.
    #[error("request {id} refused: {source}")]
    Age {
        /// The request id.
        id: String,
        /// Why.
        #[source]
        source: AgeError,
    },
    /// The trust policy refused it.
    #[error("request {id} refused: {source}")]
    Refused {
        /// The request id.
        id: String,
        /// Why.
        #[source]
        source: Refusal,
    },
}

/// Decodes a request and, per `verification`, checks who signed it, at `now`.
pub fn decode_request(
    bytes: &[u8],
    verification: &Verification,
    now: SystemTime,
) -> Result<DecodedRequest, RequestError> {
    let request = message::decode_request(bytes).map_err(RequestError::Malformed)?;
    let id = || request.meta.id.clone();
    request
        .meta
        .check_age(now)
        .map_err(|source| RequestError::Age { id: id(), source })?;
    if let Verification::Required(trust) = verification {
        verify::verify_request(&request, trust, now)
            .map_err(|source| RequestError::Refused { id: id(), source })?;
    }
    Ok(request)
}

/// Why a lifecycle event could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The identity or component cannot be a subject token.
    #[error(transparent)]
    Subject(#[from] subjects::SubjectError),
    /// The event does not encode.
    #[error(transparent)]
    Encode(#[from] LifecycleError),
}

/// What handling one request produced.
#[derive(Debug)]
pub struct Handled {
    /// Where to publish the reply and its bytes, when the request wants one.
    pub reply: Option<(String, Result<Vec<u8>, ProtocolError>)>,
    /// What the node must do next.
    pub effect: Effect,
}

/// The serving state of one connected node: its plan's agents and facts.
#[derive(Debug)]
pub struct Session {
    /// The node identity.
    pub identity: String,
    /// Lifecycle component.
    pub component: &'static str,
    verification: Verification,
    node: NodeFacts,
    classes_file: PathBuf,
    agent: Option<ProvisionAgent>,
    reply_key: Option<ReplyKey>,
    registration: Option<PathBuf>,
    last_mtime: Option<i64>,
}

impl Session {
    /// The session a plan describes.
    pub fn new(plan: &Plan) -> Session {
        Session {
            identity: plan.identity.clone(),
            component: plan.component,
            verification: plan.verification.clone(),
            node: plan.node.clone(),
            classes_file: plan.classes_file.clone(),
            agent: plan.provision.clone().map(ProvisionAgent::new),
            reply_key: plan.reply_key.clone(),
            registration: plan.registration.clone(),
            last_mtime: None,
        }
    }

    /// Whether registration data is published (provisioning with `chrd`).
    pub fn registers(&self) -> bool {
        self.registration.is_some()
    }

    /// Handles one message body: decode, verify, filter, run, reply.
    /// `None` when the request is dropped (malformed, refused, or not for this node).
    pub async fn handle(&mut self, bytes: &[u8], now: SystemTime) -> Option<Handled> {
        let request = match decode_request(bytes, &self.verification, now) {
            Ok(request) => request,
            Err(err) => {
                tracing::warn!(node = %self.identity, error = %err, "dropping request");
                return None;
            }
        };
        if !self.accepts(&request) {
            return None;
        }
        let (payload, effect) = self.dispatch(&request).await;
        let reply = Some(request.routing.reply_to.clone())
            .filter(|to| !to.is_empty())
            .map(|to| (to, self.encode_reply(&request, &payload, now)));
        Some(Handled { reply, effect })
    }

    /// Whether the request's filter selects this node (spec §6.6 step 4).
    fn accepts(&self, request: &DecodedRequest) -> bool {
        let filter = &request.meta.filter;
        // Upstream reads the classes file for every request that filters on classes.
        let classes = if filter.cf_class.is_empty() {
            Vec::new()
        } else {
            load_classes(&self.classes_file)
        };
        let view = NodeView {
            identity: &self.identity,
            agents: &self.node.agents,
            facts: &self.node.facts,
            classes: &classes,
        };
        match filter.check(&view) {
            Verdict::Match => true,
            Verdict::NoMatch => false,
            Verdict::Unsupported => {
                tracing::debug!(node = %self.identity, request = %request.meta.id, "compound filters are not evaluated, so the request matches no node");
                false
            }
        }
    }

    async fn dispatch(&mut self, request: &DecodedRequest) -> (Vec<u8>, Effect) {
        if request.meta.agent == discovery::AGENT {
            return (discovery::handle(&request.payload), Effect::None);
        }
        let (reply, effect) = self.rpc(request).await;
        (reply.encode().unwrap_or_else(|_| b"{}".to_vec()), effect)
    }

    async fn rpc(&mut self, request: &DecodedRequest) -> (RpcReply, Effect) {
        let rpc = match RpcRequest::decode(&request.payload) {
            Ok(rpc) => rpc,
            Err(err) => return (RpcReply::unparseable(&err.to_string()), Effect::None),
        };
        let agent = request.meta.agent.as_str();
        if rpc.agent != agent {
            let message = format!(
                "request for agent {agent} carries a payload for agent {}",
                rpc.agent
            );
            let failure = ActionError::new(StatusCode::InvalidData, message);
            return (failure.into_reply(&rpc.action), Effect::None);
        }
        let RpcRequest { action, data, .. } = rpc;
        let data = Value::Object(data);
        let (code, message) = match agent {
            rpcutil::AGENT => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                return (
                    rpcutil::handle(&self.node, &action, &data, now),
                    Effect::None,
                );
            }
            choria_util::AGENT => return (choria_util::handle(&action), Effect::None),
            provision::AGENT => match self.agent.take() {
                Some(agent) => return self.provision(agent, request, action, data).await,
                None => (
                    StatusCode::UnknownAction,
                    "agent choria_provision is not available on this node".to_string(),
                ),
            },
            other => (StatusCode::UnknownAction, format!("Unknown agent {other}")),
        };
        (
            ActionError::new(code, message).into_reply(&action),
            Effect::None,
        )
    }

    async fn provision(
        &mut self,
        mut agent: ProvisionAgent,
        request: &DecodedRequest,
        action: String,
        data: Value,
    ) -> (RpcReply, Effect) {
        let info = RequestInfo {
            request_id: request.meta.id.clone(),
            sender: request.meta.sender.clone(),
            caller: request.meta.caller.clone(),
        };
        let name = action.clone();
        // Key generation and fsync block: keep them off the async workers.
        let joined = tokio::task::spawn_blocking(move || {
            let result = agent.handle(&name, &data, &info, Instant::now());
            (agent, result)
        })
        .await;
        match joined {
            Ok((agent, result)) => {
                self.agent = Some(agent);
                result
            }
            Err(err) => {
                // The agent panicked or was cancelled; it is gone, and the node stays in
                // its mode without it rather than crashing.
                let failure = ActionError::new(
                    StatusCode::UnknownError,
                    format!("choria_provision#{action} failed: {err}"),
                );
                (failure.into_reply(&action), Effect::None)
            }
        }
    }

    /// Encodes `payload` as this node's reply to `request`; v2 replies are signed when
    /// the node has a key, v1 replies never are.
    fn encode_reply(
        &self,
        request: &DecodedRequest,
        payload: &[u8],
        now: SystemTime,
    ) -> Result<Vec<u8>, ProtocolError> {
        let meta = ReplyMeta::for_request(&request.meta, &self.identity, now);
        let signer = match (request.version, &self.reply_key) {
            (Version::V2, Some(reply_key)) => ReplySigner::Ed25519 {
                key: &reply_key.key,
                sender_jwt: &reply_key.jwt,
            },
            _ => ReplySigner::None,
        };
        let routing = Routing {
            reply_to: String::new(),
            sender: self.identity.clone(),
            hops: Vec::new(),
        };
        message::encode_reply(request.version, &meta, payload, &signer, &routing)
    }

    /// Subject and body of the lifecycle event `kind` for this node.
    pub fn lifecycle(
        &self,
        kind: EventType,
        now: SystemTime,
    ) -> Result<(String, Vec<u8>), EventError> {
        let event = LifecycleEvent::new(kind, &self.identity, self.component, Some(VERSION), now);
        Ok((event.subject()?, event.to_cloudevent_json()?))
    }

    /// The next registration message (spec §4.7), or `None` when the data file cannot
    /// be used this time (logged).
    pub fn registration(&mut self, now: SystemTime) -> Option<Vec<u8>> {
        let path = self.registration.as_deref()?;
        let file = path.display().to_string();
        let mtime = match std::fs::metadata(path).and_then(|m| m.modified()) {
            Ok(time) => time
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            Err(err) => {
                tracing::error!(node = %self.identity, %file, error = %err, "registration data file is not readable, skipping");
                return None;
            }
        };
        let bytes = match choria_config::files::read_capped(path, MAX_REGISTRATION_BYTES) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => {
                tracing::error!(node = %self.identity, %file, "registration data file is empty, skipping");
                return None;
            }
            Err(err) => {
                tracing::error!(node = %self.identity, %file, error = %err, "could not read registration data, skipping");
                return None;
            }
        };
        let updated = self.last_mtime.is_some_and(|last| mtime > last);
        self.last_mtime = Some(mtime);
        match registration_request(&self.identity, &file, mtime, updated, &bytes, now) {
            Ok(body) => Some(body),
            Err(err) => {
                tracing::warn!(node = %self.identity, %file, error = %err, "could not build registration data");
                None
            }
        }
    }
}

/// A v1 insecure request carrying `file`'s content from `identity` to `dev.null`.
fn registration_request(
    identity: &str,
    file: &str,
    mtime: i64,
    updated: bool,
    bytes: &[u8],
    now: SystemTime,
) -> Result<Vec<u8>, ProtocolError> {
    let payload = FileContent::new(file, mtime, updated, bytes, true)?.encode()?;
    let meta = RequestMeta::new(
        identity,
        &format!("choria={identity}"),
        subjects::PROVISIONING_COLLECTIVE,
        "registration",
        Duration::from_secs(60),
        now,
    );
    let routing = Routing {
        reply_to: subjects::DEV_NULL.to_string(),
        sender: identity.to_string(),
        hops: Vec::new(),
    };
    message::encode_request(
        Version::V1,
        &meta,
        &payload,
        &RequestSigner::Insecure,
        &routing,
    )
}

/// The node's classes from `path`; a missing file means no classes, as upstream.
fn load_classes(path: &Path) -> Vec<String> {
    match choria_config::files::read_capped_string(path, MAX_CLASSES_BYTES) {
        Ok(text) => choria_protocol::filter::parse_classes(&text),
        Err(err) => {
            if path.exists() {
                tracing::warn!(path = %path.display(), error = %err, "could not read classes");
            }
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Map};

    use choria_protocol::{Filter, RpcReply};

    use crate::agents::provision::{NodeFiles, ProvisionContext};
    use crate::startup::plan::{Brokers, PROVISION_COMPONENT};

    use super::*;

    fn plan(dir: &Path) -> Plan {
        Plan {
            mode: crate::startup::Mode::Provisioning,
            identity: "n1.example.net".into(),
            brokers: Brokers::Fixed(Vec::new()),
            credentials: crate::connection::Credentials::Provisioning {
                jwt: "".into(),
                user: None,
            },
            ca: None,
            inbox_prefix: "provisioning.reply".into(),
            connect_timeout: Duration::from_secs(1),
            subjects: Vec::new(),
            verification: Verification::Skip,
            component: PROVISION_COMPONENT,
            node: NodeFacts {
                agents: vec!["choria_provision".into(), "rpcutil".into()],
                facts: json!({"role": "web"}),
                collectives: vec!["provisioning".into()],
                main_collective: "provisioning".into(),
                upgradable: false,
            },
            classes_file: dir.join("classes.txt"),
            provision: Some(ProvisionContext {
                identity: "n1.example.net".into(),
                files: NodeFiles {
                    config_file: Some(dir.join("server.conf")),
                    ..NodeFiles::default()
                },
                token: "t".into(),
                provision_mode: true,
                ..ProvisionContext::default()
            }),
            reply_key: None,
            registration: None,
        }
    }

    fn request(agent: &str, payload: &[u8], filter: Filter, now: SystemTime) -> (String, Vec<u8>) {
        let mut meta = RequestMeta::new(
            "prov.example.net",
            "choria=provisioner",
            "provisioning",
            agent,
            Duration::from_secs(60),
            now,
        );
        meta.filter = filter;
        let routing = Routing {
            reply_to: subjects::reply("provisioning", &meta.caller, &meta.id, false).unwrap(),
            sender: meta.sender.clone(),
            hops: Vec::new(),
        };
        let bytes = message::encode_request(
            Version::V1,
            &meta,
            payload,
            &RequestSigner::Insecure,
            &routing,
        )
        .unwrap();
        (routing.reply_to, bytes)
    }

    fn rpc(agent: &str, action: &str, data: Value) -> Vec<u8> {
        let Value::Object(data) = data else { panic!() };
        RpcRequest::new(agent, action, data).encode().unwrap()
    }

    fn decoded(handled: &Handled) -> (String, Vec<u8>) {
        let (to, bytes) = handled.reply.as_ref().unwrap();
        let reply = message::decode_reply(bytes.as_ref().unwrap()).unwrap();
        assert_eq!(reply.meta.sender, "n1.example.net");
        (to.clone(), reply.payload)
    }

    #[tokio::test]
    async fn requests_are_dispatched_and_replied_to_the_request_reply_subject() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Session::new(&plan(dir.path()));
        let now = SystemTime::now();

        let (to, bytes) = request(
            "rpcutil",
            &rpc("rpcutil", "ping", json!({})),
            Filter::default(),
            now,
        );
        let handled = session.handle(&bytes, now).await.unwrap();
        assert_eq!(handled.effect, Effect::None);
        let (subject, payload) = decoded(&handled);
        assert_eq!(subject, to);
        let reply = RpcReply::decode(&payload).unwrap();
        assert!(reply.is_ok(), "{}", reply.statusmsg);
        assert_eq!(reply.action, "ping");

        let (_, bytes) = request("discovery", b"ping", Filter::for_agent("rpcutil"), now);
        let handled = session.handle(&bytes, now).await.unwrap();
        assert_eq!(decoded(&handled).1, b"pong");

        let (_, bytes) = request(
            "puppet",
            &rpc("puppet", "run", json!({})),
            Filter::default(),
            now,
        );
        let reply =
            RpcReply::decode(&decoded(&session.handle(&bytes, now).await.unwrap()).1).unwrap();
        assert_eq!(reply.statuscode, StatusCode::UnknownAction);
        assert_eq!(reply.statusmsg, "Unknown agent puppet");

        let (_, bytes) = request(
            "rpcutil",
            &rpc("choria_util", "info", json!({})),
            Filter::default(),
            now,
        );
        let reply =
            RpcReply::decode(&decoded(&session.handle(&bytes, now).await.unwrap()).1).unwrap();
        assert_eq!(reply.statuscode, StatusCode::InvalidData);
    }

    #[tokio::test]
    async fn filters_decide_which_requests_this_node_handles() {
        let dir = tempfile::tempdir().unwrap();
        let mut session = Session::new(&plan(dir.path()));
        let now = SystemTime::now();
        let ping = rpc("rpcutil", "ping", json!({}));
        let mut compound = Map::new();
        compound.insert("expr".into(), json!("with('rpcutil')"));
        let only_compound = Filter {
            compound: vec![vec![compound]],
            ..Filter::default()
        };
        let (_, bytes) = request("rpcutil", &ping, only_compound, now);
        assert!(
            session.handle(&bytes, now).await.is_none(),
            "compound matches no node"
        );

        let class = Filter {
            cf_class: vec!["role::web".into()],
            ..Filter::default()
        };
        let (_, bytes) = request("rpcutil", &ping, class.clone(), now);
        assert!(
            session.handle(&bytes, now).await.is_none(),
            "no classes file, no classes"
        );
        std::fs::write(dir.path().join("classes.txt"), "role::web\n").unwrap();
        let (_, bytes) = request("rpcutil", &ping, class, now);
        assert!(session.handle(&bytes, now).await.is_some());

        let fact = Filter {
            fact: vec![choria_protocol::envelope::FactFilter {
                fact: "role".into(),
                operator: "=~".into(),
                value: "/^w/".into(),
            }],
            identity: vec!["/^n1\\./".into()],
            ..Filter::default()
        };
        let (_, bytes) = request("rpcutil", &ping, fact, now);
        assert!(session.handle(&bytes, now).await.is_some());
    }

    #[tokio::test]
    async fn stale_unsigned_and_malformed_requests_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let ping = rpc("rpcutil", "ping", json!({}));
        let now = SystemTime::now();
        let mut session = Session::new(&plan(dir.path()));
        let (_, old) = request(
            "rpcutil",
            &ping,
            Filter::default(),
            now - Duration::from_secs(3600),
        );
        assert!(session.handle(&old, now).await.is_none());
        assert!(session.handle(b"{", now).await.is_none());
        let mut normal = plan(dir.path());
        normal.verification = Verification::Required(Default::default());
        let mut session = Session::new(&normal);
        let (_, unsigned) = request("rpcutil", &ping, Filter::default(), now);
        assert!(matches!(
            decode_request(&unsigned, &normal.verification, now),
            Err(RequestError::Refused {
                source: Refusal::Unsigned { .. },
                ..
            })
        ));
        assert!(session.handle(&unsigned, now).await.is_none());
    }

    #[tokio::test]
    async fn provisioning_actions_return_their_effect() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("server.conf"),
            "plugin.choria.server.provision = false\n",
        )
        .unwrap();
        let mut session = Session::new(&plan(dir.path()));
        let now = SystemTime::now();
        let (_, bytes) = request(
            "choria_provision",
            &rpc(
                "choria_provision",
                "restart",
                json!({"token": "t", "splay": 1}),
            ),
            Filter::default(),
            now,
        );
        let handled = session.handle(&bytes, now).await.unwrap();
        let reply = RpcReply::decode(&decoded(&handled).1).unwrap();
        assert!(reply.is_ok(), "{}", reply.statusmsg);
        assert!(matches!(handled.effect, Effect::Restart { .. }));
        let event = session.lifecycle(EventType::Shutdown, now).unwrap();
        assert_eq!(
            event.0,
            "choria.lifecycle.event.shutdown.provision_mode_server"
        );
    }
}
