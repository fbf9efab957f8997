//! Watching the fleet the way an operator would, through the broker: lifecycle events
//! count nodes waiting and provisioned, and a node is "in the fleet" only once it has
//! answered a signed `rpcutil#ping` in the `choria` account, sent in a collective the node
//! serves in (whatever its helper gave it: `choria`, upstream's default `mcollective`, ...).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use choria_protocol::envelope::Version;
use choria_protocol::lifecycle::{EventType, LifecycleEvent};
use choria_protocol::message::{decode_reply, encode_request, RequestMeta, RequestSigner, Routing};
use choria_protocol::rpc::{RpcReply, RpcRequest};
use choria_protocol::subjects;

use crate::connect::ClientCredentials;
use crate::DemoError;

/// How often nodes that should be in the fleet but have not answered are pinged again.
const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Pings sent per sweep at most, so a large fleet does not flood the broker at once.
const SWEEP_BATCH: usize = 2_000;

/// How long a ping request stays valid.
const PING_TTL: Duration = Duration::from_secs(60);

/// Counts shown on the progress bar and in the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FleetStatus {
    /// Nodes seen waiting in provisioning mode and not yet provisioned.
    pub waiting: usize,
    /// Nodes a provisioner configured.
    pub provisioned: usize,
    /// Nodes that answered a signed ping in the `choria` account.
    pub in_fleet: usize,
}

#[derive(Default)]
struct State {
    waiting: HashSet<String>,
    provisioned: HashSet<String>,
    started_normal: HashSet<String>,
    in_fleet: HashMap<String, Instant>,
    start_times: HashMap<String, Instant>,
    collectives: HashMap<String, watch::Receiver<Vec<String>>>,
    pending: HashMap<String, (String, Instant)>,
    last_arrival: Option<Instant>,
}

struct Shared {
    state: Mutex<State>,
    changed: Notify,
    client: async_nats::Client,
    credentials: ClientCredentials,
    signing_key: ed25519_dalek::SigningKey,
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock only means another task panicked mid-update; the counts
        // are still the best we have.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    async fn ping(&self, identity: &str) -> Result<(), DemoError> {
        let collective = {
            let state = self.state();
            let served = state
                .collectives
                .get(identity)
                .map(|rx| rx.borrow().clone());
            ping_collective(served.as_deref().unwrap_or_default()).to_string()
        };
        let meta = RequestMeta::new(
            "demo.local",
            self.credentials.callerid(),
            &collective,
            "rpcutil",
            PING_TTL,
            SystemTime::now(),
        );
        let payload = RpcRequest::new("rpcutil", "ping", serde_json::Map::new())
            .encode()
            .map_err(|err| DemoError::Internal(err.to_string()))?;
        let signer = RequestSigner::Ed25519 {
            key: &self.signing_key,
            caller_jwt: self.credentials.token(),
            signer_jwt: None,
        };
        let routing = Routing {
            // A node may only reply within its own collectives.
            reply_to: format!("{}.{}", self.credentials.inbox_prefix(&collective), meta.id),
            sender: "demo.local".into(),
            hops: Vec::new(),
        };
        let bytes = encode_request(Version::V2, &meta, &payload, &signer, &routing)
            .map_err(|err| DemoError::Internal(err.to_string()))?;
        let subject = subjects::node(&collective, identity)
            .map_err(|err| DemoError::Internal(err.to_string()))?;
        self.state()
            .pending
            .insert(meta.id.clone(), (identity.to_string(), Instant::now()));
        self.client
            .publish(subject, bytes.into())
            .await
            .map_err(|err| DemoError::Internal(format!("publishing a ping: {err}")))
    }
}

/// Records node boots for a [`FleetWatch`]; cheap to clone.
#[derive(Clone)]
pub struct BootRecorder {
    shared: Arc<Shared>,
}

impl BootRecorder {
    /// Notes that `identity` booted at `at` and serves in the collectives `collectives`
    /// reports (see `choria_server::node::Node::collectives`).
    pub fn record(&self, identity: String, at: Instant, collectives: watch::Receiver<Vec<String>>) {
        let mut state = self.shared.state();
        state.collectives.insert(identity.clone(), collectives);
        state.start_times.insert(identity, at);
    }
}

/// Watches lifecycle events and ping replies until stopped.
pub struct FleetWatch {
    shared: Arc<Shared>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl FleetWatch {
    /// Subscribes to lifecycle events and ping replies on `client` (connected as the
    /// fleet client) and starts the background tasks.
    pub async fn start(
        client: async_nats::Client,
        credentials: ClientCredentials,
        expected_nodes: usize,
    ) -> Result<FleetWatch, DemoError> {
        let seed = hex::decode(credentials.seed().to_hex())
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| DemoError::Internal("fleet client seed is not 32 bytes".into()))?;
        // Replies come back in whichever collective the node was pinged in.
        let replies_subject = format!("*.reply.{}.>", subjects::md5_hex(credentials.callerid()));
        let subscribe_err =
            |err: async_nats::SubscribeError| DemoError::Internal(format!("subscribing: {err}"));
        let events = client
            .subscribe("choria.lifecycle.event.>")
            .await
            .map_err(subscribe_err)?;
        let replies = client
            .subscribe(replies_subject)
            .await
            .map_err(subscribe_err)?;
        client
            .flush()
            .await
            .map_err(|err| DemoError::Internal(format!("flushing: {err}")))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: HashMap::with_capacity(expected_nodes),
                ..State::default()
            }),
            changed: Notify::new(),
            client,
            credentials,
            signing_key: ed25519_dalek::SigningKey::from_bytes(&seed),
        });
        let cancel = CancellationToken::new();
        let tasks = vec![
            tokio::spawn(watch_events(shared.clone(), events, cancel.clone())),
            tokio::spawn(watch_replies(shared.clone(), replies, cancel.clone())),
            tokio::spawn(sweep(shared.clone(), cancel.clone())),
        ];
        Ok(FleetWatch {
            shared,
            cancel,
            tasks,
        })
    }

    /// A handle the fleet uses to record when each node boots, for per-node latency.
    pub fn boots(&self) -> BootRecorder {
        BootRecorder {
            shared: self.shared.clone(),
        }
    }

    /// How many nodes have booted so far.
    pub fn booted(&self) -> usize {
        self.shared.state().start_times.len()
    }

    /// The current counts.
    pub fn status(&self) -> FleetStatus {
        let state = self.shared.state();
        FleetStatus {
            waiting: state.waiting.len(),
            provisioned: state.provisioned.len().max(state.in_fleet.len()),
            in_fleet: state.in_fleet.len(),
        }
    }

    /// Resolves when the counts may have changed.
    pub async fn changed(&self) {
        self.shared.changed.notified().await;
    }

    /// When the last node arrived in the fleet.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.shared.state().last_arrival
    }

    /// Start-to-fleet latency of every node that made it.
    pub fn latencies(&self) -> Vec<Duration> {
        let state = self.shared.state();
        state
            .in_fleet
            .iter()
            .filter_map(|(identity, arrived)| {
                state
                    .start_times
                    .get(identity)
                    .map(|start| arrived.saturating_duration_since(*start))
            })
            .collect()
    }

    /// Identities that never made it into the fleet.
    pub fn missing(&self) -> Vec<String> {
        let state = self.shared.state();
        let mut missing: Vec<String> = state
            .start_times
            .keys()
            .filter(|identity| !state.in_fleet.contains_key(*identity))
            .cloned()
            .collect();
        missing.sort();
        missing
    }

    /// Stops the background tasks and drains the client.
    pub async fn stop(self) {
        self.cancel.cancel();
        for task in self.tasks {
            let _ = task.await;
        }
        let _ = self.shared.client.drain().await;
    }
}

/// The collective to ping a node in: the first it serves in other than `provisioning`,
/// else `choria` (a node not yet known to be provisioned).
fn ping_collective(served: &[String]) -> &str {
    served
        .iter()
        .map(String::as_str)
        .find(|c| *c != subjects::PROVISIONING_COLLECTIVE)
        .unwrap_or("choria")
}

/// The subscription's next message; `None` once it ends or `cancel` fires.
async fn next_message(
    subscriber: &mut async_nats::Subscriber,
    cancel: &CancellationToken,
) -> Option<async_nats::Message> {
    tokio::select! {
        message = subscriber.next() => message,
        _ = cancel.cancelled() => None,
    }
}

async fn watch_events(
    shared: Arc<Shared>,
    mut events: async_nats::Subscriber,
    cancel: CancellationToken,
) {
    while let Some(message) = next_message(&mut events, &cancel).await {
        let Ok(event) = LifecycleEvent::parse(&message.payload) else {
            tracing::debug!(subject = %message.subject, "ignoring an unparseable lifecycle event");
            continue;
        };
        let ping_now = {
            let mut state = shared.state();
            match (event.event_type, event.component.as_str()) {
                (EventType::Startup, "provision_mode_server") => {
                    if !state.provisioned.contains(&event.identity) {
                        state.waiting.insert(event.identity.clone());
                    }
                    false
                }
                (EventType::Provisioned, _) => {
                    state.waiting.remove(&event.identity);
                    state.provisioned.insert(event.identity.clone());
                    false
                }
                (EventType::Startup, _) => {
                    state.waiting.remove(&event.identity);
                    state.started_normal.insert(event.identity.clone());
                    !state.in_fleet.contains_key(&event.identity)
                }
                _ => false,
            }
        };
        shared.changed.notify_waiters();
        if ping_now {
            if let Err(err) = shared.ping(&event.identity).await {
                tracing::warn!(identity = %event.identity, "could not ping: {err}");
            }
        }
    }
}

async fn watch_replies(
    shared: Arc<Shared>,
    mut replies: async_nats::Subscriber,
    cancel: CancellationToken,
) {
    while let Some(message) = next_message(&mut replies, &cancel).await {
        let reply = match decode_reply(&message.payload) {
            Ok(reply) => reply,
            Err(err) => {
                tracing::warn!(subject = %message.subject, "undecodable reply: {err}");
                continue;
            }
        };
        let ok = RpcReply::decode(&reply.payload)
            .map(|rpc| rpc.is_ok())
            .unwrap_or(false);
        let mut state = shared.state();
        let Some((identity, _)) = state.pending.remove(&reply.meta.request_id) else {
            continue;
        };
        if !ok || reply.meta.sender != identity {
            tracing::warn!(%identity, sender = %reply.meta.sender, "ping was not answered with OK by the node pinged");
            continue;
        }
        let now = Instant::now();
        if state.in_fleet.insert(identity, now).is_none() {
            state.last_arrival = Some(now);
        }
        drop(state);
        shared.changed.notify_waiters();
    }
}

async fn sweep(shared: Arc<Shared>, cancel: CancellationToken) {
    let mut round: u64 = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(SWEEP_INTERVAL) => {}
            _ = cancel.cancelled() => return,
        }
        round += 1;
        // Nodes known to be provisioned are pinged every round; every fifth round all
        // nodes not yet in the fleet are, in case a lifecycle event was missed.
        let targets: Vec<String> = {
            let mut state = shared.state();
            // Unanswered pings past their TTL can no longer be answered validly.
            state
                .pending
                .retain(|_, (_, sent)| sent.elapsed() < PING_TTL);
            state
                .start_times
                .keys()
                .filter(|identity| !state.in_fleet.contains_key(*identity))
                .filter(|identity| {
                    round % 5 == 0
                        || state.provisioned.contains(*identity)
                        || state.started_normal.contains(*identity)
                })
                .take(SWEEP_BATCH)
                .cloned()
                .collect()
        };
        for identity in targets {
            if cancel.is_cancelled() {
                return;
            }
            if let Err(err) = shared.ping(&identity).await {
                tracing::warn!(%identity, "could not ping: {err}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_are_pinged_in_a_collective_they_serve_in() {
        let served = |list: &[&str]| list.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        assert_eq!(ping_collective(&served(&["mcollective"])), "mcollective");
        assert_eq!(ping_collective(&served(&["one", "two"])), "one");
        assert_eq!(ping_collective(&served(&["provisioning"])), "choria");
        assert_eq!(ping_collective(&[]), "choria");
    }
}
