//! The node runtime: one node = one NATS connection and a small task, so a simulator can
//! run thousands per process. It decides the mode, connects, serves agents, and on
//! `restart` comes back up in place by reading the configuration `configure` wrote.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio::sync::watch;
pub use tokio_util::sync::CancellationToken;

use choria_protocol::filter::{NodeView, Verdict};
use choria_protocol::subjects;
use choria_protocol::{RpcReply, RpcRequest, StatusCode};

use crate::agents::provision::{self, Effect, ProvisionAgent, ProvisionContext, RequestInfo};
use crate::agents::rpcutil::{self, NodeFacts, VERSION};
use crate::agents::{choria_util, discovery, ActionError};
use crate::connection::{self, ConnectSpec, Credentials};
use crate::resolve;
use crate::startup::{self, Mode, Startup, StartupInputs};
use crate::wire::{Codec, Incoming, Lifecycle, ReplyKey, Verification};

/// Largest facts file read.
pub const MAX_FACTS_BYTES: u64 = 1024 * 1024;
/// Largest classes file read.
pub const MAX_CLASSES_BYTES: u64 = 1024 * 1024;
/// The classes file when the configuration names none (`classesfile`, upstream's default).
pub const DEFAULT_CLASSES_FILE: &str = "/opt/puppetlabs/puppet/cache/state/classes.txt";
/// Lifecycle component while provisioning.
pub const PROVISION_COMPONENT: &str = subjects::PROVISION_MODE_COMPONENT;
/// Lifecycle component in normal mode.
pub const SERVER_COMPONENT: &str = "server";
/// Interval between registration publishes while provisioning.
pub const REGISTRATION_INTERVAL: Duration = Duration::from_secs(120);
/// Largest registration data file published.
pub const MAX_REGISTRATION_BYTES: u64 = 1024 * 1024;
/// Interval between `alive` events.
pub const ALIVE_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Where a node is in its life; observed through [`Node::phase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Deciding the mode or connecting.
    Starting,
    /// Connected to `provisioning`, waiting for the provisioner.
    Provisioning,
    /// `configure` succeeded; waiting for `restart`.
    Configured,
    /// Connected as a fleet member in `choria`.
    InFleet,
    /// Stopped on request.
    Stopped,
    /// Start-up or the connection failed for good.
    Failed(String),
}

/// What the node does when `restart` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Come back up in this task (simulated fleets).
    InPlace,
    /// Return [`NodeExit::Restart`] so the caller re-executes the process.
    Exit,
}

/// Why [`Node::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeExit {
    /// The cancellation token fired.
    Cancelled,
    /// The `shutdown` action was called.
    Shutdown,
    /// The `restart` action was called and the policy is [`RestartPolicy::Exit`].
    Restart,
}

/// Errors that stop a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Start-up could not decide what to do.
    #[error(transparent)]
    Startup(#[from] startup::StartupError),
    /// No broker could be resolved.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] connection::ConnectError),
    /// The identity cannot be used in NATS subjects.
    #[error("invalid node identity: {0}")]
    Identity(#[source] subjects::SubjectError),
    /// A collective cannot be used in NATS subjects.
    #[error("invalid subject: {0}")]
    Subject(#[from] subjects::SubjectError),
    /// Normal mode lacks something it needs.
    #[error("cannot run in normal mode: {0}")]
    NormalMode(String),
    /// A NATS operation failed.
    #[error("NATS {what} failed: {reason}")]
    Nats {
        /// What was being done.
        what: &'static str,
        /// Why.
        reason: String,
    },
}

/// How to run one node.
#[derive(Clone)]
pub struct NodeOptions {
    /// The configuration file (`--config`), also where `configure` writes.
    pub config_file: PathBuf,
    /// The provisioning JWT (`--provisioning-jwt`).
    pub provisioning_jwt: Option<PathBuf>,
    /// Identity when the configuration names none.
    pub identity: Option<String>,
    /// What `restart` does.
    pub restart: RestartPolicy,
    /// The wire codec.
    pub codec: Arc<dyn Codec>,
}

/// One node.
pub struct Node {
    options: NodeOptions,
    phase: watch::Sender<Phase>,
    resolver: Option<resolve::Resolver>,
}

enum Outcome {
    Cancelled,
    Shutdown,
    Restart,
}

impl Node {
    /// A node that has not started yet.
    pub fn new(options: NodeOptions) -> Node {
        Node {
            options,
            phase: watch::Sender::new(Phase::Starting),
            resolver: None,
        }
    }

    /// Looks up SRV records through `resolver` instead of the system configuration.
    pub fn with_resolver(mut self, resolver: resolve::Resolver) -> Node {
        self.resolver = Some(resolver);
        self
    }

    /// A receiver that sees every phase change.
    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// Runs until cancelled, shut down, or (with [`RestartPolicy::Exit`]) restarted.
    pub async fn run(&self, cancel: CancellationToken) -> Result<NodeExit, NodeError> {
        loop {
            self.phase.send_replace(Phase::Starting);
            let result = self.run_once(&cancel).await;
            match result {
                Ok(Outcome::Restart) if self.options.restart == RestartPolicy::InPlace => continue,
                Ok(Outcome::Restart) => return Ok(NodeExit::Restart),
                Ok(Outcome::Shutdown) => {
                    self.phase.send_replace(Phase::Stopped);
                    return Ok(NodeExit::Shutdown);
                }
                Ok(Outcome::Cancelled) => {
                    self.phase.send_replace(Phase::Stopped);
                    return Ok(NodeExit::Cancelled);
                }
                Err(err) => {
                    self.phase.send_replace(Phase::Failed(err.to_string()));
                    return Err(err);
                }
            }
        }
    }

    async fn run_once(&self, cancel: &CancellationToken) -> Result<Outcome, NodeError> {
        let inputs = StartupInputs {
            config_file: self.options.config_file.clone(),
            provisioning_jwt: self.options.provisioning_jwt.clone(),
            default_identity: self.options.identity.clone(),
        };
        let startup = startup::decide(&inputs, SystemTime::now())?;
        subjects::validate_identity(&startup.identity).map_err(NodeError::Identity)?;
        tracing::info!(identity = %startup.identity, mode = ?startup.mode, reason = %startup.reason, "starting node");
        match startup.mode {
            Mode::Provisioning => self.provisioning(startup, cancel).await,
            Mode::Normal => self.normal(startup, cancel).await,
        }
    }

    async fn provisioning(
        &self,
        startup: Startup,
        cancel: &CancellationToken,
    ) -> Result<Outcome, NodeError> {
        let settings = &startup.settings;
        let servers = resolve::provisioning::targets(
            &settings.broker_urls,
            &settings.srv_domain,
            self.resolver.as_ref(),
            cancel,
        )
        .await?;
        tracing::info!(
            "Entering provision mode with servers {}",
            servers
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        let user = (!settings.username.is_empty() && !settings.password.is_empty())
            .then(|| (settings.username.clone(), settings.password.clone()));
        let spec = ConnectSpec {
            servers,
            name: startup.identity.clone(),
            inbox_prefix: subjects::unhashed_reply_prefix(subjects::PROVISIONING_COLLECTIVE)?,
            credentials: Credentials::Provisioning {
                jwt: settings.jwt.clone().unwrap_or_default(),
                user,
            },
            ca: None,
            connect_timeout: connection::connect_timeout(&startup.config)
                .map_err(startup::StartupError::from)?,
        };
        let agents = vec![
            "choria_provision".to_string(),
            "choria_util".to_string(),
            "discovery".to_string(),
            "rpcutil".to_string(),
        ];
        let facts = load_facts(&settings.facts);
        let context = ProvisionContext {
            identity: startup.identity.clone(),
            config_file: Some(self.options.config_file.clone()),
            jwt_file: settings.jwt_file.clone(),
            token: settings.token.clone(),
            provision_mode: true,
            allow_update: settings.allow_update,
            ssldir: None,
            logfile: startup.config.get("logfile").map(str::to_string),
            registration_data_file: startup
                .config
                .get("plugin.choria.registration.file_content.data")
                .map(str::to_string),
            provision_registration_data: !settings.registration_data.is_empty(),
        };
        let mut subscriptions = vec![subjects::node(
            subjects::PROVISIONING_COLLECTIVE,
            &startup.identity,
        )?];
        for agent in subjects::PROVISIONING_AGENTS {
            subscriptions.push(subjects::broadcast_agent(
                subjects::PROVISIONING_COLLECTIVE,
                agent,
            )?);
        }
        let session = Session {
            identity: startup.identity.clone(),
            classes_file: classes_file(&startup.config),
            component: PROVISION_COMPONENT,
            verification: Verification::Skip,
            node: NodeFacts {
                agents,
                facts,
                collectives: vec!["provisioning".into()],
                main_collective: "provisioning".into(),
                upgradable: settings.allow_update,
            },
            agent: Some(ProvisionAgent::new(context)),
            reply_key: None,
            registration: (!settings.registration_data.is_empty())
                .then(|| PathBuf::from(&settings.registration_data)),
            last_mtime: None,
        };
        self.serve(session, &spec, &subscriptions, Phase::Provisioning, cancel)
            .await
    }

    async fn normal(
        &self,
        startup: Startup,
        cancel: &CancellationToken,
    ) -> Result<Outcome, NodeError> {
        let config = &startup.config;
        let config_dir = std::path::absolute(&self.options.config_file)
            .ok()
            .and_then(|p| p.parent().map(std::path::Path::to_path_buf))
            .unwrap_or_else(|| PathBuf::from("."));
        let hosts = config
            .get("plugin.choria.middleware_hosts")
            .ok_or_else(|| {
                NodeError::NormalMode("plugin.choria.middleware_hosts is not set".into())
            })?;
        let servers = resolve::parse_urls(hosts)?;
        let ssldir = config
            .get("plugin.choria.ssldir")
            .map(PathBuf::from)
            .unwrap_or_else(|| config_dir.join("ssl"));
        let ca = config
            .get("plugin.security.choria.ca")
            .or_else(|| config.get("plugin.security.file.ca"))
            .map(PathBuf::from)
            .or_else(|| Some(ssldir.join("ca.pem")).filter(|p| p.exists()));
        let (credentials, collectives, trust, reply_key) = match startup::token_and_seed(
            config,
            &config_dir,
        ) {
            Some((token_file, seed_file)) => {
                let claims =
                    startup::check_token_and_seed(&token_file, &seed_file, SystemTime::now())
                        .map_err(NodeError::NormalMode)?;
                let jwt = choria_config::files::read_capped_string(
                    &token_file,
                    crate::settings::MAX_TOKEN_BYTES,
                )
                .map_err(|e| NodeError::NormalMode(e.to_string()))?
                .trim()
                .to_string();
                let seed = choria_tokens::Ed25519Seed::from_file(&seed_file)
                    .map_err(|e| NodeError::NormalMode(e.to_string()))?;
                // Replies are signed unless plugin.security.choria.sign_replies is false.
                let sign = config
                    .get_bool("plugin.security.choria.sign_replies")
                    .ok()
                    .flatten()
                    .unwrap_or(true);
                let reply_key =
                    sign.then(|| seed_signing_key(&seed))
                        .flatten()
                        .map(|key| ReplyKey {
                            key,
                            jwt: jwt.clone(),
                        });
                let certificate = match (
                        config.get("plugin.security.choria.certificate"),
                        config.get("plugin.security.choria.key"),
                    ) {
                        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
                        (None, None) => None,
                        _ => {
                            return Err(NodeError::NormalMode(
                                "plugin.security.choria.certificate and plugin.security.choria.key must be set together".into(),
                            ))
                        }
                    };
                (
                    Credentials::ServerJwt {
                        jwt,
                        seed: Box::new(seed),
                        certificate,
                    },
                    claims.collectives,
                    trust_from(config, ca.clone()),
                    reply_key,
                )
            }
            None => {
                let cert = ssldir.join("certificate.pem");
                let key = ssldir.join("private.pem");
                if !cert.exists() || !key.exists() || ca.is_none() {
                    return Err(NodeError::NormalMode(format!(
                        "no server JWT configured and no certificate, key and CA in {}",
                        ssldir.display()
                    )));
                }
                let collectives = config
                    .get_list("collectives")
                    .unwrap_or_else(|| vec!["mcollective".into()]);
                (
                    Credentials::Certificate { cert, key },
                    collectives,
                    trust_from(config, ca.clone()),
                    None,
                )
            }
        };
        if collectives.is_empty() {
            return Err(NodeError::NormalMode(
                "the server has no collectives".into(),
            ));
        }
        let main = config
            .get("main_collective")
            .map(str::to_string)
            .unwrap_or_else(|| collectives[0].clone());
        let spec = ConnectSpec {
            servers,
            name: startup.identity.clone(),
            inbox_prefix: subjects::reply_prefix(&main, &startup.identity, false)?,
            credentials,
            ca,
            connect_timeout: connection::connect_timeout(config)
                .map_err(startup::StartupError::from)?,
        };
        let mut agents = vec![
            "choria_util".to_string(),
            "discovery".to_string(),
            "rpcutil".to_string(),
        ];
        let mut subscriptions = Vec::new();
        for collective in &collectives {
            subscriptions.push(subjects::node(collective, &startup.identity)?);
            for agent in [discovery::AGENT, rpcutil::AGENT, choria_util::AGENT] {
                subscriptions.push(subjects::broadcast_agent(collective, agent)?);
            }
        }
        // A node that still has its provisioning token keeps the agent (spec §4.8).
        let agent = startup.settings.supports_provisioning().then(|| {
            agents.push("choria_provision".into());
            for collective in &collectives {
                // The collectives were checked when the node subjects were built.
                if let Ok(subject) = subjects::broadcast_agent(collective, provision::AGENT) {
                    subscriptions.push(subject);
                }
            }
            ProvisionAgent::new(ProvisionContext {
                identity: startup.identity.clone(),
                config_file: Some(self.options.config_file.clone()),
                jwt_file: startup.settings.jwt_file.clone(),
                token: startup.settings.token.clone(),
                provision_mode: false,
                logfile: config.get("logfile").map(str::to_string),
                registration_data_file: config
                    .get("plugin.choria.registration.file_content.data")
                    .map(str::to_string),
                ..ProvisionContext::default()
            })
        });
        let session = Session {
            identity: startup.identity.clone(),
            classes_file: classes_file(config),
            component: SERVER_COMPONENT,
            verification: Verification::Required(trust),
            node: NodeFacts {
                agents,
                facts: load_facts(config.get("plugin.yaml").unwrap_or_default()),
                collectives: collectives.clone(),
                main_collective: main,
                upgradable: false,
            },
            agent,
            registration: None,
            last_mtime: None,
            reply_key,
        };
        self.serve(session, &spec, &subscriptions, Phase::InFleet, cancel)
            .await
    }

    async fn serve(
        &self,
        mut session: Session,
        spec: &ConnectSpec,
        subjects: &[String],
        phase: Phase,
        cancel: &CancellationToken,
    ) -> Result<Outcome, NodeError> {
        let client = connection::connect(spec, cancel).await?;
        let mut streams = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let sub = client
                .subscribe(subject.clone())
                .await
                .map_err(|e| NodeError::Nats {
                    what: "subscribe",
                    reason: format!("{subject}: {e}"),
                })?;
            streams.push(sub);
        }
        let mut messages = futures::stream::select_all(streams);
        let codec = self.options.codec.clone();
        self.lifecycle(&client, &session, Lifecycle::Startup).await;
        tracing::info!(node = %session.identity, phase = ?phase, subjects = subjects.len(), "node ready");
        self.phase.send_replace(phase);
        let mut alive = tokio::time::interval_at(
            tokio::time::Instant::now() + ALIVE_INTERVAL.mul_f64(rand::random::<f64>()),
            ALIVE_INTERVAL,
        );
        let mut registration = tokio::time::interval_at(
            tokio::time::Instant::now()
                + Duration::from_millis(rand::Rng::gen_range(&mut rand::thread_rng(), 1000..4000)),
            REGISTRATION_INTERVAL,
        );
        loop {
            let message = tokio::select! {
                _ = registration.tick(), if session.registration.is_some() => {
                    self.publish_registration(&client, &mut session).await;
                    continue;
                }
                () = cancel.cancelled() => {
                    self.lifecycle(&client, &session, Lifecycle::Shutdown).await;
                    let _ = client.flush().await;
                    return Ok(Outcome::Cancelled);
                }
                _ = alive.tick(), if session.component == SERVER_COMPONENT => {
                    self.lifecycle(&client, &session, Lifecycle::Alive).await;
                    continue;
                }
                message = messages.next() => match message {
                    Some(message) => message,
                    None => return Err(NodeError::Nats { what: "subscription", reason: "closed by the client".into() }),
                },
            };
            let request = match codec.decode_request(&message.payload, &session.verification) {
                Ok(request) => request,
                Err(reason) => {
                    tracing::warn!(node = %session.identity, subject = %message.subject, %reason, "dropping request");
                    continue;
                }
            };
            if !session.accepts(&request) {
                continue;
            }
            let (payload, effect) = session.dispatch(&request).await;
            if let Some(reply_to) = &request.reply_to {
                match codec.encode_reply(
                    &request,
                    &session.identity,
                    &payload,
                    session.reply_key.as_ref(),
                ) {
                    Ok(bytes) => {
                        if let Err(err) = client.publish(reply_to.clone(), bytes.into()).await {
                            tracing::warn!(node = %session.identity, error = %err, "could not publish reply");
                        }
                    }
                    Err(reason) => {
                        tracing::warn!(node = %session.identity, %reason, "could not encode reply")
                    }
                }
                let _ = client.flush().await;
            }
            match effect {
                Effect::None => {}
                Effect::Provisioned => {
                    self.lifecycle(&client, &session, Lifecycle::Provisioned)
                        .await;
                    self.phase.send_replace(Phase::Configured);
                }
                Effect::Restart { after } => {
                    self.lifecycle(&client, &session, Lifecycle::Shutdown).await;
                    let _ = client.flush().await;
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(Outcome::Cancelled),
                        () = tokio::time::sleep(after) => {}
                    }
                    let _ = client.drain().await;
                    return Ok(Outcome::Restart);
                }
                Effect::Shutdown { after } => {
                    tokio::select! {
                        () = cancel.cancelled() => return Ok(Outcome::Cancelled),
                        () = tokio::time::sleep(after) => {}
                    }
                    self.lifecycle(&client, &session, Lifecycle::Shutdown).await;
                    let _ = client.drain().await;
                    return Ok(Outcome::Shutdown);
                }
            }
        }
    }

    async fn publish_registration(&self, client: &async_nats::Client, session: &mut Session) {
        let Some(path) = session.registration.clone() else {
            return;
        };
        let file = path.display().to_string();
        let mtime = match std::fs::metadata(&path).and_then(|m| m.modified()) {
            Ok(time) => time
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0),
            Err(err) => {
                tracing::error!(node = %session.identity, %file, error = %err, "registration data file is not readable, skipping");
                return;
            }
        };
        let bytes = match choria_config::files::read_capped(&path, MAX_REGISTRATION_BYTES) {
            Ok(bytes) if !bytes.is_empty() => bytes,
            Ok(_) => {
                tracing::error!(node = %session.identity, %file, "registration data file is empty, skipping");
                return;
            }
            Err(err) => {
                tracing::error!(node = %session.identity, %file, error = %err, "could not read registration data, skipping");
                return;
            }
        };
        let updated = session.last_mtime.is_some_and(|last| mtime > last);
        session.last_mtime = Some(mtime);
        match self
            .options
            .codec
            .registration(&session.identity, &file, mtime, updated, &bytes)
        {
            Ok(body) => {
                if let Err(err) = client
                    .publish(subjects::PROVISIONING_REGISTRATION_SUBJECT, body.into())
                    .await
                {
                    tracing::warn!(node = %session.identity, error = %err, "could not publish registration data");
                }
            }
            Err(reason) => {
                tracing::warn!(node = %session.identity, %reason, "could not build registration data")
            }
        }
    }

    async fn lifecycle(&self, client: &async_nats::Client, session: &Session, event: Lifecycle) {
        match self
            .options
            .codec
            .lifecycle(event, &session.identity, session.component, VERSION)
        {
            Ok((subject, body)) => {
                if let Err(err) = client.publish(subject, body.into()).await {
                    tracing::warn!(node = %session.identity, error = %err, "could not publish lifecycle event");
                }
            }
            Err(reason) => {
                tracing::warn!(node = %session.identity, %reason, "could not build lifecycle event")
            }
        }
    }
}

struct Session {
    identity: String,
    classes_file: PathBuf,
    component: &'static str,
    verification: Verification,
    node: NodeFacts,
    agent: Option<ProvisionAgent>,
    registration: Option<PathBuf>,
    last_mtime: Option<i64>,
    reply_key: Option<ReplyKey>,
}

impl Session {
    /// Whether the request's filter selects this node (spec §6.6 step 4).
    fn accepts(&self, request: &Incoming) -> bool {
        // Upstream reads the classes file for every request that filters on classes.
        let classes = if request.filter.cf_class.is_empty() {
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
        match request.filter.check(&view) {
            Verdict::Match => true,
            Verdict::NoMatch => false,
            Verdict::Unsupported => {
                tracing::debug!(node = %self.identity, request = %request.request_id, "compound filters are not evaluated, so the request matches no node");
                false
            }
        }
    }

    async fn dispatch(&mut self, request: &Incoming) -> (Vec<u8>, Effect) {
        if request.agent == discovery::AGENT {
            return (discovery::handle(&request.payload), Effect::None);
        }
        let (reply, effect) = self.rpc(request).await;
        (rpc_bytes(&reply), effect)
    }

    async fn rpc(&mut self, request: &Incoming) -> (RpcReply, Effect) {
        let rpc = match RpcRequest::decode(&request.payload) {
            Ok(rpc) => rpc,
            Err(err) => return (RpcReply::unparseable(&err.to_string()), Effect::None),
        };
        if rpc.agent != request.agent {
            let failure = ActionError::new(
                StatusCode::InvalidData,
                format!(
                    "request for agent {} carries a payload for agent {}",
                    request.agent, rpc.agent
                ),
            );
            return (failure.into_reply(&rpc.action), Effect::None);
        }
        let RpcRequest { action, data, .. } = rpc;
        let data = Value::Object(data);
        match request.agent.as_str() {
            rpcutil::AGENT => {
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                (
                    rpcutil::handle(&self.node, &action, &data, now),
                    Effect::None,
                )
            }
            choria_util::AGENT => (choria_util::handle(&action), Effect::None),
            provision::AGENT => match self.agent.take() {
                Some(mut agent) => {
                    let info = RequestInfo {
                        request_id: request.request_id.clone(),
                        sender: request.sender.clone(),
                        caller: request.caller.clone(),
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
                            // The agent panicked or was cancelled; it is gone, and the node
                            // stays in its mode without it rather than crashing.
                            let failure = ActionError::new(
                                StatusCode::UnknownError,
                                format!("choria_provision#{action} failed: {err}"),
                            );
                            (failure.into_reply(&action), Effect::None)
                        }
                    }
                }
                None => {
                    let failure = ActionError::new(
                        StatusCode::UnknownAction,
                        "agent choria_provision is not available on this node",
                    );
                    (failure.into_reply(&action), Effect::None)
                }
            },
            other => {
                let failure =
                    ActionError::new(StatusCode::UnknownAction, format!("Unknown agent {other}"));
                (failure.into_reply(&action), Effect::None)
            }
        }
    }
}

fn seed_signing_key(seed: &choria_tokens::Ed25519Seed) -> Option<ed25519_dalek::SigningKey> {
    let bytes: [u8; 32] = hex::decode(seed.to_hex()).ok()?.try_into().ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&bytes))
}

fn rpc_bytes(reply: &RpcReply) -> Vec<u8> {
    reply.encode().unwrap_or_else(|_| b"{}".to_vec())
}

/// The classes file the configuration names (`classesfile`), or upstream's default.
fn classes_file(config: &choria_config::Config) -> PathBuf {
    PathBuf::from(config.get("classesfile").unwrap_or(DEFAULT_CLASSES_FILE))
}

/// The normal-mode trust policy from the configuration; `ca` is the node's CA file.
fn trust_from(config: &choria_config::Config, ca: Option<PathBuf>) -> crate::wire::Trust {
    let mut issuers = Vec::new();
    for name in config
        .get_list("plugin.security.issuer.names")
        .unwrap_or_default()
    {
        if let Some(key) = config.get(&format!("plugin.security.issuer.{name}.public")) {
            issuers.push(key.to_string());
        }
    }
    crate::wire::Trust {
        org_issuers: issuers,
        trusted_signers: config.get_list_or_empty("plugin.security.choria.trusted_signers"),
        ca,
    }
}

/// The node's classes from `path`; a missing file means no classes, as upstream.
fn load_classes(path: &std::path::Path) -> Vec<String> {
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

fn load_facts(path: &str) -> Value {
    if path.is_empty() {
        return json!({});
    }
    match choria_config::files::read_capped(std::path::Path::new(path), MAX_FACTS_BYTES) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| {
                tracing::warn!(%path, "facts file is not a JSON object, using no facts");
                json!({})
            }),
        Err(err) => {
            tracing::warn!(%path, error = %err, "could not read facts");
            json!({})
        }
    }
}
