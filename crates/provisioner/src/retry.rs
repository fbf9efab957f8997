//! Per-node retries of failed and deferred passes: a jittered, capped backoff per node, so
//! a node waits as long as its fault lasts rather than for the next discovery cycle.
//!
//! [`Backoff`] and [`Schedule`] are pure (time and randomness come in as arguments);
//! [`Retries`] shares a schedule between the workers and the task that queues due nodes.
//! A series of retries ends when the node provisions, fails in a way a retry cannot fix,
//! or has lasted one discovery interval: from then on discovery, the backstop, finds it.

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::helper::HelperError;
use crate::metrics::Metrics;
use crate::pipeline::{PassError, UpgradeError};
use crate::registry::{AddOutcome, Registry, Source, QUEUE_CAPACITY};

/// Default wait before the first retry (`retry_backoff`).
pub const DEFAULT_RETRY_BACKOFF: Duration = Duration::from_secs(1);
/// Default longest wait between retries (`retry_backoff_max`).
pub const DEFAULT_RETRY_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Most nodes with a retry series at once; beyond it a failed node waits for discovery.
pub const MAX_RETRY_ENTRIES: usize = QUEUE_CAPACITY;

/// How long a node waits before each retry: the step doubles from `first` up to `max`,
/// and each wait is drawn from the upper half of its step ("equal jitter"), so nodes that
/// failed together spread out while none retries much sooner than its step says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Step of the first retry; zero turns retries off.
    pub first: Duration,
    /// Largest step.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Backoff {
        Backoff {
            first: DEFAULT_RETRY_BACKOFF,
            max: DEFAULT_RETRY_BACKOFF_MAX,
        }
    }
}

impl Backoff {
    /// Whether failed passes are retried at all.
    pub fn enabled(&self) -> bool {
        !self.first.is_zero()
    }

    /// The step of retry number `attempt` (1 is the first retry), before jitter.
    pub fn step(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.first
            .saturating_mul(1u32 << doublings)
            .min(self.max.max(self.first))
    }

    /// The wait before retry number `attempt`, with `unit` a random number in `[0, 1)`:
    /// between half the step and the whole step.
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let step = self.step(attempt);
        let half = step / 2;
        let unit = if unit.is_finite() {
            unit.clamp(0.0, 1.0)
        } else {
            0.0
        };
        half + (step - half).mul_f64(unit)
    }
}

/// Whether a later pass could succeed where this one failed. Failures that depend only on
/// the node's answers, its credentials or our configuration (B7) are not retried early;
/// discovery still finds those nodes, as upstream does.
pub fn worth_retrying(err: &PassError) -> bool {
    match err {
        PassError::Deadline(_) => true,
        PassError::Rpc { source, .. } => source.retryable(),
        // A crashed, hung, garbled or oversized helper reply is a fault of the moment.
        PassError::Helper(helper) => !matches!(helper, HelperError::Encode(_)),
        PassError::Upgrade(UpgradeError::Failed { source, .. }) => worth_retrying(source),
        // Not leader any more: the new leader owns the node.
        PassError::Paused(_)
        | PassError::NoJwt
        | PassError::Jwt(_)
        | PassError::JwtClaims(_)
        | PassError::TokenMismatch
        | PassError::Ed25519(_)
        | PassError::Csr(_)
        | PassError::ServerJwt(_)
        | PassError::KeyDelivery(_)
        | PassError::Upgrade(_)
        | PassError::ShutdownRefused(_)
        | PassError::EmptyConfiguration
        | PassError::Ddl { .. } => false,
    }
}

#[derive(Debug, Clone, Copy)]
struct Series {
    /// Retries scheduled so far.
    attempts: u32,
    /// When the first failure of the series was seen.
    since: Instant,
    /// When the next retry is due; `None` once it has been queued.
    due: Option<Instant>,
}

/// Why [`Schedule::failed`] scheduled no retry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotScheduled {
    /// Retries are off (`retry_backoff: 0s`).
    Disabled,
    /// [`MAX_RETRY_ENTRIES`] nodes already have a series.
    Full,
    /// The series has lasted longer than its horizon; discovery takes over.
    Expired,
}

/// The retry series of every node that failed recently, bounded in size and in time.
#[derive(Debug)]
pub struct Schedule {
    backoff: Backoff,
    capacity: usize,
    horizon: Duration,
    nodes: HashMap<String, Series>,
    due: BTreeSet<(Instant, String)>,
}

impl Schedule {
    /// An empty schedule of at most `capacity` nodes, each retried for at most `horizon`.
    pub fn new(backoff: Backoff, capacity: usize, horizon: Duration) -> Schedule {
        Schedule {
            backoff,
            capacity,
            horizon,
            nodes: HashMap::new(),
            due: BTreeSet::new(),
        }
    }

    /// After a failed or deferred pass of `identity` at `now`: schedules its next retry and
    /// returns the wait; `unit` is a random number in `[0, 1)` for the jitter.
    pub fn failed(
        &mut self,
        identity: &str,
        now: Instant,
        unit: f64,
    ) -> Result<Duration, NotScheduled> {
        if !self.backoff.enabled() {
            return Err(NotScheduled::Disabled);
        }
        let series = match self.nodes.get(identity) {
            Some(series) => *series,
            None if self.nodes.len() >= self.capacity => return Err(NotScheduled::Full),
            None => Series {
                attempts: 0,
                since: now,
                due: None,
            },
        };
        if let Some(due) = series.due {
            self.due.remove(&(due, identity.to_string()));
        }
        if now.saturating_duration_since(series.since) > self.horizon {
            self.nodes.remove(identity);
            return Err(NotScheduled::Expired);
        }
        let attempts = series.attempts.saturating_add(1);
        let delay = self.backoff.delay(attempts, unit);
        let due = now + delay;
        self.nodes.insert(
            identity.to_string(),
            Series {
                attempts,
                due: Some(due),
                ..series
            },
        );
        self.due.insert((due, identity.to_string()));
        Ok(delay)
    }

    /// Ends the series of `identity` (provisioned, or failed for good).
    pub fn forget(&mut self, identity: &str) {
        if let Some(Series { due: Some(due), .. }) = self.nodes.remove(identity) {
            self.due.remove(&(due, identity.to_string()));
        }
    }

    /// The nodes whose retry is due at `now`, earliest first; their series stay (so the
    /// next failure waits longer) until [`Schedule::forget`].
    pub fn take_due(&mut self, now: Instant) -> Vec<String> {
        let mut taken = Vec::new();
        while let Some((due, _)) = self.due.first() {
            if *due > now {
                break;
            }
            let Some((_, identity)) = self.due.pop_first() else {
                break;
            };
            if let Some(series) = self.nodes.get_mut(&identity) {
                series.due = None;
            }
            taken.push(identity);
        }
        taken
    }

    /// When the earliest retry is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.first().map(|(due, _)| *due)
    }

    /// Retries scheduled so far in the series of `identity`.
    pub fn attempts(&self, identity: &str) -> u32 {
        self.nodes.get(identity).map_or(0, |s| s.attempts)
    }

    /// Ends every series (leadership lost).
    pub fn clear(&mut self) {
        self.nodes.clear();
        self.due.clear();
    }

    /// Nodes with a series.
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    /// Whether no node has a series.
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}

/// The schedule shared by the workers, which report each pass, and [`Retries::run`], which
/// queues nodes when their retry is due. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Retries {
    schedule: Arc<Mutex<Schedule>>,
    wake: Arc<Notify>,
}

impl Retries {
    /// Retries with `backoff`, each series lasting at most `horizon`.
    pub fn new(backoff: Backoff, horizon: Duration) -> Retries {
        Retries {
            schedule: Arc::new(Mutex::new(Schedule::new(
                backoff,
                MAX_RETRY_ENTRIES,
                horizon,
            ))),
            wake: Arc::new(Notify::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Schedule> {
        // Plain map updates only; a poisoned schedule is still consistent.
        self.schedule
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// After a failed or deferred pass that a retry could fix: schedules one.
    pub fn failed(&self, identity: &str) {
        let scheduled = self
            .lock()
            .failed(identity, Instant::now(), rand::random::<f64>());
        match scheduled {
            Ok(delay) => {
                tracing::info!("Retrying {identity} in {delay:.1?}");
                self.wake.notify_one();
            }
            Err(NotScheduled::Disabled) => {}
            Err(why) => tracing::debug!(?why, "Not retrying {identity} before the next discovery"),
        }
    }

    /// Ends the series of `identity`.
    pub fn forget(&self, identity: &str) {
        self.lock().forget(identity);
    }

    /// Ends every series.
    pub fn clear(&self) {
        self.lock().clear();
    }

    /// Queues each node when its retry is due, until `cancel`; nothing while `paused`.
    pub async fn run(
        self,
        registry: Registry,
        paused: Arc<AtomicBool>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
    ) {
        loop {
            let next = self.lock().next_due();
            let sleep = async {
                match next {
                    Some(due) => {
                        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.wake.notified() => continue,
                () = sleep => {}
            }
            let due = self.lock().take_due(Instant::now());
            for identity in due {
                if paused.load(Ordering::Relaxed) {
                    self.forget(&identity);
                    continue;
                }
                match registry.add(&identity, Source::Retry) {
                    AddOutcome::Queued => {
                        metrics.retries.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("Adding {identity} to the provision list for a retry");
                    }
                    // Already queued or in progress: that pass reports back.
                    AddOutcome::Refreshed => {}
                    AddOutcome::QueueFull | AddOutcome::Invalid => self.forget(&identity),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rpc::RpcError;

    const SECOND: Duration = Duration::from_secs(1);

    #[test]
    fn steps_double_from_the_first_up_to_the_cap() {
        let b = Backoff::default();
        let steps: Vec<u64> = (1..=8).map(|a| b.step(a).as_secs()).collect();
        assert_eq!(steps, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(
            b.step(u32::MAX),
            30 * SECOND,
            "no overflow at huge attempts"
        );
        assert_eq!(b.step(0), SECOND);
        let odd = Backoff {
            first: 10 * SECOND,
            max: 5 * SECOND,
        };
        assert_eq!(
            odd.step(3),
            10 * SECOND,
            "a cap below the first step is the first"
        );
    }

    #[test]
    fn jitter_stays_within_the_upper_half_of_the_step() {
        let b = Backoff::default();
        for attempt in 1..=10 {
            let step = b.step(attempt);
            assert_eq!(b.delay(attempt, 0.0), step / 2);
            assert_eq!(b.delay(attempt, 1.0), step);
            for unit in [0.1, 0.25, 0.5, 0.9, 0.999] {
                let d = b.delay(attempt, unit);
                assert!(d >= step / 2 && d <= step, "{attempt} {unit}: {d:?}");
            }
            // Out-of-range randomness cannot escape the bounds.
            for unit in [-3.0, 7.0, f64::NAN, f64::INFINITY] {
                let d = b.delay(attempt, unit);
                assert!(d >= step / 2 && d <= step, "{attempt} {unit}: {d:?}");
            }
        }
        assert!(b.delay(40, 0.999) <= DEFAULT_RETRY_BACKOFF_MAX, "capped");
        let mut spread: Vec<Duration> = (0..20).map(|i| b.delay(3, f64::from(i) / 20.0)).collect();
        spread.dedup();
        assert_eq!(spread.len(), 20, "different randomness, different waits");
    }

    #[test]
    fn a_series_waits_longer_each_time_and_ends_on_forget() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Backoff::default(), 10, Duration::from_secs(300));
        assert_eq!(s.failed("n1", t0, 0.0), Ok(SECOND / 2));
        assert_eq!(s.next_due(), Some(t0 + SECOND / 2));
        assert!(s.take_due(t0).is_empty(), "not due yet");
        assert_eq!(s.take_due(t0 + SECOND), ["n1"]);
        assert!(s.take_due(t0 + SECOND).is_empty(), "taken once");
        assert_eq!(s.next_due(), None);
        assert_eq!(s.failed("n1", t0 + SECOND, 1.0), Ok(2 * SECOND));
        assert_eq!(
            s.failed("n1", t0 + SECOND, 1.0),
            Ok(4 * SECOND),
            "rescheduled"
        );
        assert_eq!(s.attempts("n1"), 3);
        assert_eq!(s.due.len(), 1, "one due entry per node");
        s.forget("n1");
        assert!(s.is_empty());
        assert_eq!(s.next_due(), None);
        assert_eq!(s.failed("n1", t0, 0.0), Ok(SECOND / 2), "a new series");
    }

    #[test]
    fn due_nodes_come_out_earliest_first() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Backoff::default(), 10, Duration::from_secs(300));
        s.failed("late", t0, 1.0).expect("scheduled");
        s.failed("early", t0, 0.0).expect("scheduled");
        assert_eq!(s.take_due(t0 + 2 * SECOND), ["early", "late"]);
    }

    #[test]
    fn the_schedule_is_bounded_in_size_and_in_time() {
        let t0 = Instant::now();
        let mut s = Schedule::new(Backoff::default(), 2, Duration::from_secs(60));
        s.failed("a", t0, 0.5).expect("scheduled");
        s.failed("b", t0, 0.5).expect("scheduled");
        assert_eq!(s.failed("c", t0, 0.5), Err(NotScheduled::Full));
        assert!(
            s.failed("a", t0, 0.5).is_ok(),
            "known nodes still reschedule"
        );
        assert_eq!(
            s.failed("b", t0 + Duration::from_secs(61), 0.5),
            Err(NotScheduled::Expired)
        );
        assert_eq!(s.len(), 1);
        assert!(s.failed("c", t0, 0.5).is_ok(), "room again");
        s.clear();
        assert!(s.is_empty() && s.next_due().is_none());

        let mut off = Schedule::new(
            Backoff {
                first: Duration::ZERO,
                max: SECOND,
            },
            2,
            Duration::from_secs(60),
        );
        assert_eq!(off.failed("a", t0, 0.5), Err(NotScheduled::Disabled));
        assert!(off.is_empty());
    }

    #[test]
    fn only_failures_a_retry_could_fix_are_retried() {
        let no_reply = RpcError::NoReply {
            identity: "n1".into(),
        };
        assert!(worth_retrying(&PassError::Rpc {
            rpc: "rpcutil#inventory",
            source: no_reply,
        }));
        assert!(worth_retrying(&PassError::Deadline(SECOND)));
        assert!(worth_retrying(&PassError::Helper(HelperError::Exit {
            program: "h".into(),
            status: "exit status: 3".into(),
            stderr: String::new(),
        })));
        let refused = RpcError::Status {
            sender: "n1".into(),
            code: choria_protocol::rpc::StatusCode::Aborted,
            message: "Incorrect provision token supplied".into(),
        };
        assert!(!worth_retrying(&PassError::Rpc {
            rpc: "choria_provision#configure",
            source: refused,
        }));
        assert!(!worth_retrying(&PassError::TokenMismatch));
        assert!(!worth_retrying(&PassError::Paused("helper")));
        assert!(!worth_retrying(&PassError::ShutdownRefused("no".into())));
        assert!(!worth_retrying(&PassError::EmptyConfiguration));
    }
}
