//! The provisioner service: discovery (broadcast, lifecycle events, registration), the
//! worker pool over the shared registry, leader election wiring, metrics and status.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use choria_protocol::ddl::DdlError;
use choria_protocol::lifecycle::{EventType, LifecycleError, LifecycleEvent};
use choria_protocol::subjects::{
    self, SubjectError, PROVISIONER_COMPONENT, PROVISIONING_REGISTRATION_WILDCARD,
};
use choria_protocol::ProtocolError;
use futures::StreamExt;
use tokio::sync::{watch, Mutex, Notify};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::ddls::Ddls;
use crate::election::{self, ElectionConfig, Role};
use crate::helper::Helper;
use crate::keys::{KeyError, Keys};
use crate::metrics::{self, Metrics, Outcome};
use crate::pipeline::{PassResult, Pipeline};
use crate::registry::{AddOutcome, Registry, Source, QUEUE_CAPACITY, SUCCESS_HOLD};
use crate::retry::{self, Retries};
use crate::rpc::Rpc;
use crate::settings::Settings;
use crate::timeouts::{Timeouts, DISCOVERY_IDLE};

/// How long shutdown waits for in-flight passes (B11).
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Provisioner version reported in its startup event.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Why the service could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServiceError {
    /// The monitor port could not be bound.
    #[error("cannot listen on monitor_port {port}: {source}")]
    Monitor {
        /// Port.
        port: u16,
        /// Why.
        source: std::io::Error,
    },
    /// A subscription failed.
    #[error(transparent)]
    Subscribe(#[from] choria_connect::SubscribeError),
    /// `lifecycle_component` cannot be used in the startup event subject.
    #[error("invalid lifecycle component: {0}")]
    Component(#[source] SubjectError),
    /// A key file of the settings is unusable.
    #[error(transparent)]
    Keys(#[from] KeyError),
    /// An embedded agent DDL does not parse.
    #[error("embedded agent DDL: {0}")]
    Ddl(#[from] DdlError),
}

/// Why a discovery message (startup event or registration) was not used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// Not a lifecycle event.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// Not a Choria request.
    #[error(transparent)]
    Registration(#[from] ProtocolError),
    /// A registration request that names no sender.
    #[error("registration message without a sender")]
    NoSender,
}

/// Counters for the demo and `/healthz`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StatusSnapshot {
    /// `leader`, `standby` or `active` (no election).
    pub role: &'static str,
    /// Whether provisioning is paused.
    pub paused: bool,
    /// Distinct nodes queued from any source.
    pub discovered: u64,
    /// Nodes configured and restarted.
    pub provisioned: u64,
    /// Passes that failed.
    pub failed: u64,
    /// Passes the helper deferred.
    pub deferred: u64,
    /// Nodes shut down on request.
    pub shutdown: u64,
    /// Nodes sent an upgrade.
    pub upgraded: u64,
    /// Workers currently busy.
    pub busy: i64,
}

/// Shared live status.
#[derive(Debug, Default)]
pub struct Status {
    paused: AtomicBool,
    leader: AtomicBool,
    election: AtomicBool,
    discovered: AtomicU64,
    metrics: std::sync::OnceLock<Arc<Metrics>>,
}

impl Status {
    /// A point-in-time copy.
    pub fn snapshot(&self) -> StatusSnapshot {
        let m = self.metrics.get();
        let count = |o| m.map(|m| m.outcome_count(o)).unwrap_or(0);
        StatusSnapshot {
            role: if !self.election.load(Ordering::Relaxed) {
                "active"
            } else if self.leader.load(Ordering::Relaxed) {
                "leader"
            } else {
                "standby"
            },
            paused: self.paused.load(Ordering::Relaxed),
            discovered: self.discovered.load(Ordering::Relaxed),
            provisioned: count(Outcome::Provisioned),
            failed: count(Outcome::Failed),
            deferred: count(Outcome::Deferred),
            shutdown: count(Outcome::Shutdown),
            upgraded: count(Outcome::Upgraded),
            busy: m
                .map(|m| m.busy_workers.load(Ordering::Relaxed))
                .unwrap_or(0),
        }
    }
}

/// The provisioner; build with [`Provisioner::new`], then [`Provisioner::run`].
#[derive(Debug)]
pub struct Provisioner {
    settings: Arc<Settings>,
    client: async_nats::Client,
    identity: String,
    caller_id: String,
    metrics: Arc<Metrics>,
    status: Arc<Status>,
    election_api_prefix: String,
    version: crate::wire::Version,
    timeouts: Timeouts,
    monitor: Option<tokio::net::TcpListener>,
    connects: Option<choria_connect::Connects>,
}

/// The provisioner's login to `servers` as `identity` over `tls`: its inbox under its
/// reply prefix (so JetStream and request replies stay inside what the broker lets it
/// subscribe to), and the first connection retried in the background while the broker's
/// authorization service starts. Callers add the credentials.
pub fn login(
    identity: &str,
    caller_id: &str,
    servers: Vec<async_nats::ServerAddr>,
    tls: choria_connect::Tls,
) -> choria_connect::Login {
    choria_connect::Login {
        inbox_prefix: Some(crate::rpc::reply_prefix(caller_id)),
        reconnect: choria_connect::Reconnect::InBackground,
        ..choria_connect::Login::new(servers, identity, tls)
    }
}

impl Provisioner {
    /// A provisioner using `client` (see [`login`]), acting as `identity`
    /// with caller id `caller_id` (e.g. `choria=<identity>`).
    pub fn new(
        settings: Settings,
        client: async_nats::Client,
        identity: &str,
        caller_id: &str,
    ) -> Provisioner {
        let metrics = Arc::new(Metrics::new(&settings.site));
        let status = Arc::new(Status::default());
        let _ = status.metrics.set(metrics.clone());
        Provisioner {
            settings: Arc::new(settings),
            client,
            identity: identity.to_string(),
            caller_id: caller_id.to_string(),
            metrics,
            status,
            election_api_prefix: election::CHORIA_API_PREFIX.to_string(),
            version: crate::wire::Version::V1,
            timeouts: Timeouts::default(),
            monitor: None,
            connects: None,
        }
    }

    /// Uses another JetStream API prefix for the election's stream info (`$JS.API` on
    /// a plain JetStream server).
    pub fn with_election_api_prefix(mut self, prefix: &str) -> Provisioner {
        self.election_api_prefix = prefix.to_string();
        self
    }

    /// Speaks Choria protocol v2 (ed25519/JWT sites) instead of v1.
    pub fn with_protocol(mut self, version: crate::wire::Version) -> Provisioner {
        self.version = version;
        self
    }

    /// Uses the RPC and discovery timeouts of the Choria client config
    /// ([`crate::ClientSettings::timeouts`]) instead of the defaults.
    pub fn with_timeouts(mut self, timeouts: Timeouts) -> Provisioner {
        self.timeouts = timeouts;
        self
    }

    /// Serves metrics on an already bound listener instead of `monitor_port`.
    pub fn with_monitor_listener(mut self, listener: tokio::net::TcpListener) -> Provisioner {
        self.monitor = Some(listener);
        self
    }

    /// Rediscovers at once after every reconnect that `connects` counts: the count of the
    /// login `client` was made with ([`choria_connect::Login::connects`]).
    pub fn with_connects(mut self, connects: choria_connect::Connects) -> Provisioner {
        self.connects = Some(connects);
        self
    }

    /// Live status for the demo and health checks.
    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// Runs until `cancel`, then waits for in-flight passes (bounded).
    pub async fn run(mut self, cancel: CancellationToken) -> Result<(), ServiceError> {
        let s = self.settings.clone();
        let keys = Arc::new(Keys::load(&s)?);
        let ddls = Arc::new(Ddls::embedded()?);
        tracing::info!(
            "Choria Provisioner starting using configuration file {}. Discovery interval {:?} using {} workers",
            s.source.display(), s.interval, s.workers
        );
        for key in &s.ignored_keys {
            tracing::warn!("configuration key {key} is not used and was ignored");
        }
        let inner = cancel.child_token();
        let tasks = TaskTracker::new();

        let monitor = match self.monitor.take() {
            Some(l) => Some(l),
            None if s.monitor_port > 0 => Some(
                tokio::net::TcpListener::bind((s.monitor_listen, s.monitor_port))
                    .await
                    .map_err(|source| ServiceError::Monitor {
                        port: s.monitor_port,
                        source,
                    })?,
            ),
            None => None,
        };
        if let Some(listener) = monitor {
            let status = self.status.clone();
            let health: metrics::HealthFn =
                Arc::new(move || serde_json::to_string(&status.snapshot()).unwrap_or_default());
            let (m, c) = (self.metrics.clone(), inner.clone());
            tasks.spawn(async move {
                if let Err(err) = metrics::serve(listener, m, health, c).await {
                    tracing::error!("metrics listener failed: {err}");
                }
            });
        }

        let rpc = Rpc::start(
            self.client.clone(),
            &self.identity,
            &self.caller_id,
            self.version,
            inner.clone(),
        )
        .await
        .map_err(|source| choria_connect::SubscribeError {
            subject: crate::rpc::reply_prefix(&self.caller_id) + ".>",
            source,
        })?;
        publish_startup(&self.client, &self.identity).await;

        let paused = Arc::new(AtomicBool::new(s.leader_election));
        set_paused(&paused, &self.status, &self.metrics, s.leader_election);
        self.status
            .election
            .store(s.leader_election, Ordering::Relaxed);
        let (registry, queue) = Registry::new(QUEUE_CAPACITY, self.metrics.clone(), SUCCESS_HOLD);
        let discover_now = Arc::new(Notify::new());
        let retries = Retries::new(s.retry, s.interval);
        tasks.spawn(retries.clone().run(
            registry.clone(),
            paused.clone(),
            self.metrics.clone(),
            inner.clone(),
        ));
        if let Some(connects) = &self.connects {
            tasks.spawn(rediscover_on_reconnect(
                connects.subscribe(),
                discover_now.clone(),
                inner.clone(),
            ));
        }

        if s.leader_election {
            let (tx, mut rx) = watch::channel(Role::Standby);
            let config = ElectionConfig {
                api_prefix: self.election_api_prefix.clone(),
                ..ElectionConfig::provisioner(&self.identity, s.leader_election_ttl)
            };
            tasks.spawn(election::run(
                self.client.clone(),
                config,
                tx,
                self.metrics.clone(),
                inner.clone(),
            ));
            let (paused, status, metrics, registry, notify) = (
                paused.clone(),
                self.status.clone(),
                self.metrics.clone(),
                registry.clone(),
                discover_now.clone(),
            );
            let retries = retries.clone();
            tasks.spawn(async move {
                while rx.changed().await.is_ok() {
                    let role = *rx.borrow_and_update();
                    status.leader.store(role == Role::Leader, Ordering::Relaxed);
                    match role {
                        Role::Leader => {
                            set_paused(&paused, &status, &metrics, false);
                            notify.notify_one();
                            tracing::info!("Triggered a discovery after becoming leader");
                        }
                        Role::Standby => {
                            set_paused(&paused, &status, &metrics, true);
                            registry.clear();
                            retries.clear();
                        }
                    }
                }
            });
        }

        self.spawn_listener(
            &tasks,
            &inner,
            &registry,
            &paused,
            subjects::lifecycle_event(EventType::Startup.as_str(), &s.lifecycle_component)
                .map_err(ServiceError::Component)?,
            Source::Event,
        )
        .await?;
        self.spawn_listener(
            &tasks,
            &inner,
            &registry,
            &paused,
            PROVISIONING_REGISTRATION_WILDCARD.to_string(),
            Source::Registration,
        )
        .await?;

        let helper = Helper::new(s.helper.clone(), s.helper_mode, s.helper_timeout)
            .with_metrics(self.metrics.clone());
        let pipeline = Pipeline::new(
            rpc.clone(),
            s.clone(),
            keys,
            ddls,
            helper,
            self.metrics.clone(),
            paused.clone(),
        )
        .with_timeouts(self.timeouts);
        let queue = Arc::new(Mutex::new(queue));
        let workers = TaskTracker::new();
        for _ in 0..s.workers {
            workers.spawn(worker(
                queue.clone(),
                registry.clone(),
                pipeline.clone(),
                self.metrics.clone(),
                s.interval * 2,
                retries.clone(),
                inner.clone(),
            ));
        }
        workers.close();

        loop {
            if paused.load(Ordering::Relaxed) {
                tracing::debug!("Skipping discovery while paused");
            } else {
                self.metrics.discover_cycles.fetch_add(1, Ordering::Relaxed);
                match rpc
                    .discover(self.timeouts.discovery_window(), DISCOVERY_IDLE)
                    .await
                {
                    Ok(found) => {
                        for identity in found {
                            if registry.add(&identity, Source::Discovery) == AddOutcome::Queued {
                                self.metrics.discovered.fetch_add(1, Ordering::Relaxed);
                                self.status.discovered.fetch_add(1, Ordering::Relaxed);
                                tracing::info!(
                                    "Adding {identity} to the provision list after discovering it"
                                );
                            }
                        }
                    }
                    Err(err) => {
                        self.metrics
                            .discovery_errors
                            .fetch_add(1, Ordering::Relaxed);
                        tracing::error!("Could not discover nodes: {err}");
                    }
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(s.interval) => {}
                _ = discover_now.notified() => {}
            }
        }
        tracing::info!("Exiting on context interrupt");
        // Workers stop at their next safe point; in-flight passes get a bounded drain.
        inner.cancel();
        if tokio::time::timeout(DRAIN_TIMEOUT, workers.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                "workers did not finish within {DRAIN_TIMEOUT:?}; abandoning in-flight passes"
            );
        }
        tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(2), tasks.wait()).await;
        let _ = self.client.flush().await;
        Ok(())
    }

    async fn spawn_listener(
        &self,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
        registry: &Registry,
        paused: &Arc<AtomicBool>,
        subject: String,
        source: Source,
    ) -> Result<(), ServiceError> {
        let mut sub = choria_connect::subscribe(&self.client, &subject).await?;
        let (cancel, registry, paused, metrics, status) = (
            cancel.clone(),
            registry.clone(),
            paused.clone(),
            self.metrics.clone(),
            self.status.clone(),
        );
        tasks.spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = cancel.cancelled() => break,
                    m = sub.next() => match m { Some(m) => m, None => break },
                };
                if paused.load(Ordering::Relaxed) {
                    tracing::debug!("Skipping event processing while paused");
                    continue;
                }
                let identity = match source {
                    Source::Registration => registration_sender(&message.payload),
                    _ => startup_event_identity(&message.payload).map_err(EventError::from),
                };
                let identity = match identity {
                    Ok(id) => id,
                    Err(err) => {
                        tracing::warn!("could not handle message on {}: {err}", message.subject);
                        continue;
                    }
                };
                let Some(identity) = identity else { continue };
                if registry.add(&identity, source) == AddOutcome::Queued {
                    status.discovered.fetch_add(1, Ordering::Relaxed);
                    if source == Source::Event {
                        metrics.event_discovered.fetch_add(1, Ordering::Relaxed);
                    }
                    tracing::info!(
                        "Adding {identity} to the provision list after receiving an event"
                    );
                }
            }
        });
        Ok(())
    }
}

fn set_paused(flag: &AtomicBool, status: &Status, metrics: &Metrics, paused: bool) {
    flag.store(paused, Ordering::Relaxed);
    status.paused.store(paused, Ordering::Relaxed);
    metrics.paused.store(i64::from(paused), Ordering::Relaxed);
}

async fn worker(
    queue: Arc<Mutex<tokio::sync::mpsc::Receiver<crate::registry::Ticket>>>,
    registry: Registry,
    pipeline: Pipeline,
    metrics: Arc<Metrics>,
    stale_after: Duration,
    retries: Retries,
    cancel: CancellationToken,
) {
    loop {
        let ticket = {
            let mut rx = queue.lock().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                t = rx.recv() => match t { Some(t) => t, None => return },
            }
        };
        let identity = ticket.identity.clone();
        match registry.start(&ticket, stale_after) {
            Ok(()) => {}
            Err(crate::registry::StartRefused::NotCurrent) => continue,
            Err(crate::registry::StartRefused::Stale(idle)) => {
                retries.forget(&identity);
                metrics.provision_errors.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Failed, "stale");
                tracing::warn!(
                    "Could not provision {identity}: skipping node that's been waiting {idle:?}"
                );
                continue;
            }
        }
        metrics.busy_workers.fetch_add(1, Ordering::Relaxed);
        // Each pass runs in its own task so a bug can only fail that node (B2).
        let p = pipeline.clone();
        let id = identity.clone();
        let result = tokio::spawn(async move { p.provision(&id).await }).await;
        metrics.busy_workers.fetch_sub(1, Ordering::Relaxed);
        let retry = match &result {
            Ok(Ok(PassResult::Deferred(_))) => true,
            Ok(Err(err)) => retry::worth_retrying(err),
            _ => false,
        };
        let hold = match result {
            Ok(Ok(PassResult::Provisioned)) => {
                metrics.provisioned.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Provisioned, "");
                tracing::info!("Provisioned {identity}");
                true
            }
            Ok(Ok(PassResult::Shutdown)) => {
                metrics.provisioned.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Shutdown, "");
                true
            }
            Ok(Ok(PassResult::Upgraded(version))) => {
                metrics.provisioned.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Upgraded, "");
                tracing::info!("Upgrading {identity} to {version}");
                false
            }
            Ok(Ok(PassResult::Deferred(msg))) => {
                metrics.provision_errors.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Deferred, "");
                tracing::info!("Could not provision {identity}: configuration defered: {msg}");
                false
            }
            Ok(Err(err)) => {
                metrics.provision_errors.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Failed, err.reason());
                tracing::error!("Could not provision {identity}: {err}");
                false
            }
            Err(join) => {
                metrics.provision_errors.fetch_add(1, Ordering::Relaxed);
                metrics.outcome(Outcome::Failed, "internal");
                tracing::error!("Could not provision {identity}: pass aborted: {join}");
                false
            }
        };
        registry.finish(&ticket, hold);
        // After finish, so a retry due at once finds the node free to queue.
        if retry {
            retries.failed(&identity);
        } else {
            retries.forget(&identity);
        }
    }
}

/// Triggers a discovery after every reconnect: startup events published while this
/// provisioner was away were lost, and nodes should not wait for the next interval.
async fn rediscover_on_reconnect(
    mut connects: watch::Receiver<u64>,
    discover_now: Arc<Notify>,
    cancel: CancellationToken,
) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            changed = connects.changed() => if changed.is_err() { return },
        }
        // The first connect is followed by the first discovery anyway.
        if *connects.borrow_and_update() > 1 {
            discover_now.notify_one();
            tracing::info!("Triggered a discovery after reconnecting to the broker");
        }
    }
}

/// The identity in a startup lifecycle event (classic or CloudEvents); `None` for other
/// event types. The component may be missing: the subscription subject names it.
pub fn startup_event_identity(payload: &[u8]) -> Result<Option<String>, LifecycleError> {
    let event = LifecycleEvent::parse_subscribed(payload)?;
    Ok((event.event_type == EventType::Startup).then_some(event.identity))
}

/// The sender of a registration message (a request to the `registration` agent, v1
/// or v2), decoded through every protocol layer.
pub fn registration_sender(payload: &[u8]) -> Result<Option<String>, EventError> {
    let request = choria_protocol::message::decode_request(payload)?;
    if request.meta.sender.is_empty() {
        return Err(EventError::NoSender);
    }
    Ok(Some(request.meta.sender))
}

/// Publishes our own startup event (spec §1.1 step 9.3): classic format, failure only logged.
async fn publish_startup(client: &async_nats::Client, identity: &str) {
    let event = LifecycleEvent::new(
        EventType::Startup,
        identity,
        PROVISIONER_COMPONENT,
        Some(VERSION),
        SystemTime::now(),
    );
    let encoded = event
        .subject()
        .map_err(LifecycleError::from)
        .and_then(|subject| Ok((subject, event.to_choria_json()?)));
    let published = match encoded {
        Ok((subject, body)) => client.publish(subject, body.into()).await,
        Err(err) => {
            tracing::warn!("could not encode startup event: {err}");
            return;
        }
    };
    if let Err(err) = published {
        tracing::warn!("could not publish startup event: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_lifecycle_formats_parse() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/lifecycle");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("vectors") {
            let path = entry.expect("entry").path();
            let bytes = std::fs::read(&path).expect("read");
            let parsed = startup_event_identity(&bytes);
            assert!(parsed.is_ok(), "{}: {parsed:?}", path.display());
            seen += 1;
        }
        assert!(seen >= 2);
        let classic = br#"{"protocol":"io.choria.lifecycle.v1.startup","identity":"n1","component":"provision_mode_server"}"#;
        assert_eq!(
            startup_event_identity(classic).ok(),
            Some(Some("n1".into()))
        );
        let cloud = br#"{"specversion":"1.0","source":"io.choria.lifecycle","type":"io.choria.lifecycle.v1.startup","data":{"protocol":"io.choria.lifecycle.v1.startup","identity":"n2"}}"#;
        assert_eq!(startup_event_identity(cloud).ok(), Some(Some("n2".into())));
        let legacy = br#"{"protocol":"choria:lifecycle:startup:1","identity":"n3"}"#;
        assert_eq!(startup_event_identity(legacy).ok(), Some(Some("n3".into())));
        let shutdown = br#"{"protocol":"io.choria.lifecycle.v1.shutdown","identity":"n1"}"#;
        assert_eq!(startup_event_identity(shutdown).ok(), Some(None));
        assert!(startup_event_identity(b"{\"identity\":1}").is_err());
        assert!(startup_event_identity(
            br#"{"protocol":"io.choria.lifecycle.v1.startup","identity":5}"#
        )
        .is_err());
    }
}
