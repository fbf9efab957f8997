//! The host registry and work queue: de-duplicates identities from discovery, events and
//! registration, refreshes last-seen (B1) and guarantees a node is never queued twice.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Default work queue capacity (spec §1.2).
pub const QUEUE_CAPACITY: usize = 50_000;
/// How long a provisioned node is held so it is not rediscovered while restarting.
pub const SUCCESS_HOLD: Duration = Duration::from_secs(60);

/// Where an identity came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Broadcast discovery.
    Discovery,
    /// Lifecycle startup event.
    Event,
    /// Registration message.
    Registration,
    /// A retry after a failed or deferred pass ([`crate::retry`]).
    Retry,
}

/// What [`Registry::add`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddOutcome {
    /// New: queued for a worker.
    Queued,
    /// Already known (queued, in progress or held): last-seen refreshed.
    Refreshed,
    /// The queue is full; not kept (it will be rediscovered).
    QueueFull,
    /// The identity is not acceptable as a subject token.
    Invalid,
}

/// A queued unit of work; stale tickets (older generation) are skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Node identity.
    pub identity: String,
    generation: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Queued,
    Working,
    Held(Instant),
}

#[derive(Debug)]
struct Entry {
    generation: u64,
    last_seen: Instant,
    state: State,
}

#[derive(Debug, Default)]
struct Inner {
    hosts: HashMap<String, Entry>,
    next_generation: u64,
}

/// Shared registry; the receiving half of the queue goes to the workers.
#[derive(Debug, Clone)]
pub struct Registry {
    inner: Arc<Mutex<Inner>>,
    queue: mpsc::Sender<Ticket>,
    metrics: Arc<Metrics>,
    hold: Duration,
}

/// Why a worker may not process a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartRefused {
    /// The registry no longer holds this ticket (cleared or superseded).
    NotCurrent,
    /// Not seen for longer than the staleness cutoff.
    Stale(Duration),
}

impl Registry {
    /// A registry with a queue of `capacity`, returning the queue's receiver.
    pub fn new(
        capacity: usize,
        metrics: Arc<Metrics>,
        hold: Duration,
    ) -> (Registry, mpsc::Receiver<Ticket>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Registry {
                inner: Arc::new(Mutex::new(Inner::default())),
                queue: tx,
                metrics,
                hold,
            },
            rx,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // The critical sections only move plain data; a poisoned lock still holds a
        // consistent map.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Adds or refreshes `identity`.
    pub fn add(&self, identity: &str, source: Source) -> AddOutcome {
        if !valid_identity(identity) {
            tracing::warn!(?source, "ignoring invalid identity {identity:?}");
            return AddOutcome::Invalid;
        }
        let now = Instant::now();
        let mut inner = self.lock();
        if let Some(entry) = inner.hosts.get_mut(identity) {
            entry.last_seen = now;
            match entry.state {
                State::Held(until) if until <= now => {}
                _ => return AddOutcome::Refreshed,
            }
        }
        inner.next_generation += 1;
        let generation = inner.next_generation;
        let ticket = Ticket {
            identity: identity.to_string(),
            generation,
        };
        let outcome = match self.queue.try_send(ticket) {
            Ok(()) => {
                inner.hosts.insert(
                    identity.to_string(),
                    Entry {
                        generation,
                        last_seen: now,
                        state: State::Queued,
                    },
                );
                tracing::debug!(
                    ?source,
                    "Adding {identity} to the work queue with {} entries",
                    inner.hosts.len()
                );
                AddOutcome::Queued
            }
            Err(_) => {
                inner.hosts.remove(identity);
                tracing::warn!(
                    "Adding host to work queue failed with {} / {} entries",
                    self.queue.max_capacity() - self.queue.capacity(),
                    self.queue.max_capacity()
                );
                AddOutcome::QueueFull
            }
        };
        self.update_gauges(&inner);
        outcome
    }

    /// Claims a dequeued ticket for work; refuses stale and superseded tickets.
    pub fn start(&self, ticket: &Ticket, stale_after: Duration) -> Result<(), StartRefused> {
        let now = Instant::now();
        let mut inner = self.lock();
        let result = match inner.hosts.get_mut(&ticket.identity) {
            Some(entry)
                if entry.generation == ticket.generation && entry.state == State::Queued =>
            {
                let idle = now.saturating_duration_since(entry.last_seen);
                if idle > stale_after {
                    inner.hosts.remove(&ticket.identity);
                    Err(StartRefused::Stale(idle))
                } else {
                    entry.state = State::Working;
                    Ok(())
                }
            }
            _ => Err(StartRefused::NotCurrent),
        };
        self.update_gauges(&inner);
        result
    }

    /// Ends work on a ticket: successful passes are held, others forgotten.
    pub fn finish(&self, ticket: &Ticket, hold: bool) {
        let mut inner = self.lock();
        let current = inner
            .hosts
            .get(&ticket.identity)
            .is_some_and(|e| e.generation == ticket.generation);
        if current {
            if hold {
                if let Some(entry) = inner.hosts.get_mut(&ticket.identity) {
                    entry.state = State::Held(Instant::now() + self.hold);
                }
            } else {
                inner.hosts.remove(&ticket.identity);
            }
        }
        self.purge_expired(&mut inner);
        self.update_gauges(&inner);
    }

    /// Forgets every node (leadership lost); queued tickets become stale.
    pub fn clear(&self) {
        let mut inner = self.lock();
        inner.hosts.clear();
        self.update_gauges(&inner);
    }

    /// Number of known nodes.
    pub fn len(&self) -> usize {
        self.lock().hosts.len()
    }

    /// Whether no node is known.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn purge_expired(&self, inner: &mut Inner) {
        let now = Instant::now();
        inner
            .hosts
            .retain(|_, e| !matches!(e.state, State::Held(until) if until <= now));
    }

    fn update_gauges(&self, inner: &Inner) {
        self.metrics
            .waiting_nodes
            .store(inner.hosts.len() as i64, Ordering::Relaxed);
        let queued = self.queue.max_capacity() - self.queue.capacity();
        self.metrics
            .work_queue_entries
            .store(queued as i64, Ordering::Relaxed);
    }
}

/// Identities become NATS subject tokens (`provisioning.node.<identity>`): no wildcards,
/// separators that would change the subject, whitespace or absurd lengths.
pub fn valid_identity(identity: &str) -> bool {
    !identity.is_empty()
        && identity.len() <= 255
        && !identity
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '*' || c == '>')
        && !identity.starts_with('.')
        && !identity.ends_with('.')
        && !identity.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(capacity: usize) -> (Registry, mpsc::Receiver<Ticket>) {
        Registry::new(
            capacity,
            Arc::new(Metrics::new("t")),
            Duration::from_millis(50),
        )
    }

    #[test]
    fn never_queues_the_same_node_twice() {
        let (reg, mut rx) = registry(10);
        assert_eq!(reg.add("n1", Source::Discovery), AddOutcome::Queued);
        assert_eq!(reg.add("n1", Source::Event), AddOutcome::Refreshed);
        let ticket = rx.try_recv().expect("one ticket");
        assert!(rx.try_recv().is_err(), "only one ticket");
        reg.start(&ticket, Duration::from_secs(60)).expect("start");
        assert_eq!(
            reg.add("n1", Source::Discovery),
            AddOutcome::Refreshed,
            "in progress"
        );
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn b1_refresh_keeps_a_rediscovered_node_fresh() {
        let (reg, mut rx) = registry(10);
        reg.add("n1", Source::Discovery);
        std::thread::sleep(Duration::from_millis(30));
        reg.add("n1", Source::Discovery);
        let ticket = rx.try_recv().expect("ticket");
        // Not seen for 30 ms originally, but the refresh moved last-seen forward.
        reg.start(&ticket, Duration::from_millis(25))
            .expect("fresh after refresh");
    }

    #[test]
    fn stale_and_cleared_tickets_are_refused() {
        let (reg, mut rx) = registry(10);
        reg.add("old", Source::Discovery);
        std::thread::sleep(Duration::from_millis(20));
        let ticket = rx.try_recv().expect("ticket");
        assert!(matches!(
            reg.start(&ticket, Duration::from_millis(5)),
            Err(StartRefused::Stale(_))
        ));
        assert!(reg.is_empty());

        reg.add("n2", Source::Discovery);
        reg.clear();
        reg.add("n2", Source::Discovery);
        let first = rx.try_recv().expect("first ticket");
        let second = rx.try_recv().expect("second ticket");
        assert_eq!(
            reg.start(&first, Duration::from_secs(60)),
            Err(StartRefused::NotCurrent)
        );
        reg.start(&second, Duration::from_secs(60))
            .expect("current ticket");
    }

    #[test]
    fn success_is_held_then_released() {
        let (reg, mut rx) = registry(10);
        reg.add("n1", Source::Discovery);
        let ticket = rx.try_recv().expect("ticket");
        reg.start(&ticket, Duration::from_secs(60)).expect("start");
        reg.finish(&ticket, true);
        assert_eq!(reg.add("n1", Source::Event), AddOutcome::Refreshed, "held");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(
            reg.add("n1", Source::Event),
            AddOutcome::Queued,
            "hold expired"
        );
    }

    #[test]
    fn full_queue_drops_and_forgets() {
        let (reg, _rx) = registry(1);
        assert_eq!(reg.add("a", Source::Discovery), AddOutcome::Queued);
        assert_eq!(reg.add("b", Source::Discovery), AddOutcome::QueueFull);
        assert_eq!(reg.len(), 1);
        assert_eq!(reg.add("bad identity", Source::Event), AddOutcome::Invalid);
        assert_eq!(reg.add("a.*", Source::Event), AddOutcome::Invalid);
    }
}
