//! Prometheus metrics with the upstream names, types and labels (spec §6.1), our extra
//! outcome/stage series (B6), and the `/metrics` + `/healthz` HTTP listener.
//!
//! The text exposition is written here rather than with prometheus-client because that
//! crate speaks OpenMetrics (counters gain `_total`, no summaries), which would rename
//! the series the published Grafana dashboard queries.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Buckets (seconds) of the per-stage latency histograms.
pub const STAGE_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// How one node pass ended (B6: distinct outcomes instead of one `provisioned`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Configured and restarted.
    Provisioned,
    /// The helper deferred.
    Deferred,
    /// Shut down at the helper's request and the node acknowledged.
    Shutdown,
    /// `release_update` issued; the node comes back for another pass.
    Upgraded,
    /// Failed; the reason label says where.
    Failed,
}

impl Outcome {
    /// Label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Provisioned => "provisioned",
            Outcome::Deferred => "deferred",
            Outcome::Shutdown => "shutdown",
            Outcome::Upgraded => "upgraded",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Default, Clone, Copy)]
struct SummaryValue {
    sum: f64,
    count: u64,
}

#[derive(Default, Clone)]
struct HistogramValue {
    buckets: [u64; STAGE_BUCKETS.len()],
    sum: f64,
    count: u64,
}

/// All provisioner metrics; shared through an `Arc`.
#[derive(Default)]
pub struct Metrics {
    site: String,
    /// `choria_provisioner_paused`.
    pub paused: AtomicI64,
    /// `choria_provisioner_discovered`.
    pub discovered: AtomicU64,
    /// `choria_provisioner_event_discovered`.
    pub event_discovered: AtomicU64,
    /// `choria_provisioner_discover_cycles`.
    pub discover_cycles: AtomicU64,
    /// `choria_provisioner_discovery_errors`.
    pub discovery_errors: AtomicU64,
    /// `choria_provisioner_provision_errors`.
    pub provision_errors: AtomicU64,
    /// `choria_provisioner_busy_workers`.
    pub busy_workers: AtomicI64,
    /// `choria_provisioner_provisioned`.
    pub provisioned: AtomicU64,
    /// `choria_provisioner_work_queue_entries`.
    pub work_queue_entries: AtomicI64,
    /// `choria_provisioner_waiting_nodes`.
    pub waiting_nodes: AtomicI64,
    /// `choria_provisioner_helper_errors`.
    pub helper_errors: AtomicU64,
    /// `choria_provisioner_helper_shutdown_requests`.
    pub helper_shutdown_requests: AtomicU64,
    /// `choria_provisioner_election_errors_total` (ours, B5).
    pub election_errors: AtomicU64,
    /// `choria_provisioner_leader` (ours): 1 while this instance leads.
    pub leader: AtomicI64,
    /// `choria_provisioner_helper_restarts_total` (ours): persistent helpers started again
    /// after the previous one died, hung or garbled its reply.
    pub helper_restarts: AtomicU64,
    /// `choria_provisioner_retries_total` (ours): passes queued again by the per-node
    /// backoff after a failed or deferred pass, ahead of the next discovery.
    pub retries: AtomicU64,
    rpc_time: Mutex<BTreeMap<String, SummaryValue>>,
    rpc_errors: Mutex<BTreeMap<String, u64>>,
    helper_time: Mutex<SummaryValue>,
    outcomes: Mutex<BTreeMap<(String, String), u64>>,
    stages: Mutex<BTreeMap<String, HistogramValue>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("site", &self.site)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding a metrics lock leaves plain numbers behind; keep serving.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Metrics {
    /// Metrics labelled with `site`.
    pub fn new(site: &str) -> Metrics {
        Metrics {
            site: site.to_string(),
            ..Metrics::default()
        }
    }

    /// Records one RPC attempt of `rpc` (e.g. `choria_provision#jwt`).
    pub fn observe_rpc(&self, rpc: &str, elapsed: Duration) {
        let mut map = lock(&self.rpc_time);
        let v = map.entry(rpc.to_string()).or_default();
        v.sum += elapsed.as_secs_f64();
        v.count += 1;
    }

    /// Counts an action that failed after its retries.
    pub fn rpc_failed(&self, rpc: &str) {
        *lock(&self.rpc_errors).entry(rpc.to_string()).or_default() += 1;
    }

    /// Records one helper run.
    pub fn observe_helper(&self, elapsed: Duration) {
        let mut v = lock(&self.helper_time);
        v.sum += elapsed.as_secs_f64();
        v.count += 1;
    }

    /// Records the duration of one pipeline stage.
    pub fn observe_stage(&self, stage: &str, elapsed: Duration) {
        let seconds = elapsed.as_secs_f64();
        let mut map = lock(&self.stages);
        let h = map.entry(stage.to_string()).or_default();
        for (i, bound) in STAGE_BUCKETS.iter().enumerate() {
            if seconds <= *bound {
                h.buckets[i] += 1;
            }
        }
        h.sum += seconds;
        h.count += 1;
    }

    /// Counts the end of a node pass.
    pub fn outcome(&self, outcome: Outcome, reason: &str) {
        *lock(&self.outcomes)
            .entry((outcome.as_str().to_string(), reason.to_string()))
            .or_default() += 1;
    }

    /// How many passes ended with `outcome` (any reason).
    pub fn outcome_count(&self, outcome: Outcome) -> u64 {
        lock(&self.outcomes)
            .iter()
            .filter(|((o, _), _)| o == outcome.as_str())
            .map(|(_, n)| *n)
            .sum()
    }

    /// RPC errors recorded for `rpc`.
    pub fn rpc_error_count(&self, rpc: &str) -> u64 {
        lock(&self.rpc_errors).get(rpc).copied().unwrap_or(0)
    }

    /// Helper runs recorded so far.
    pub fn helper_runs(&self) -> u64 {
        lock(&self.helper_time).count
    }

    /// The Prometheus text exposition (format 0.0.4).
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let site = escape(&self.site);
        let simple: [(&str, &str, &str, f64); 16] = [
            (
                "choria_provisioner_paused",
                "gauge",
                "Whether the provisioner is paused",
                self.paused.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_discovered",
                "counter",
                "Nodes discovered by broadcast discovery",
                self.discovered.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_event_discovered",
                "counter",
                "Nodes discovered by lifecycle startup events",
                self.event_discovered.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_discover_cycles",
                "counter",
                "Discovery cycles run",
                self.discover_cycles.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_discovery_errors",
                "counter",
                "Discovery cycles that failed",
                self.discovery_errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_provision_errors",
                "counter",
                "Node passes that did not provision the node",
                self.provision_errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_busy_workers",
                "gauge",
                "Workers currently provisioning a node",
                self.busy_workers.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_provisioned",
                "counter",
                "Node passes that ended without error",
                self.provisioned.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_work_queue_entries",
                "gauge",
                "Nodes waiting in the work queue",
                self.work_queue_entries.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_waiting_nodes",
                "gauge",
                "Nodes known to the provisioner and not yet finished",
                self.waiting_nodes.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_helper_errors",
                "counter",
                "Helper runs that failed",
                self.helper_errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_helper_shutdown_requests",
                "counter",
                "Nodes shut down at the helper's request",
                self.helper_shutdown_requests.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_election_errors_total",
                "counter",
                "Leader election rounds that failed with an error",
                self.election_errors.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_leader",
                "gauge",
                "Whether this provisioner is the elected leader",
                self.leader.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_helper_restarts_total",
                "counter",
                "Persistent helper processes started again after the previous one was lost",
                self.helper_restarts.load(Ordering::Relaxed) as f64,
            ),
            (
                "choria_provisioner_retries_total",
                "counter",
                "Node passes queued again after a failed or deferred pass, ahead of discovery",
                self.retries.load(Ordering::Relaxed) as f64,
            ),
        ];
        for (name, kind, help, value) in simple {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{{site=\"{site}\"}} {value}"
            );
        }

        let _ = writeln!(out, "# HELP choria_provisioner_rpc_time Time taken by each RPC attempt\n# TYPE choria_provisioner_rpc_time summary");
        for (rpc, v) in lock(&self.rpc_time).iter() {
            let rpc = escape(rpc);
            let _ = writeln!(
                out,
                "choria_provisioner_rpc_time_sum{{rpc=\"{rpc}\",site=\"{site}\"}} {}",
                v.sum
            );
            let _ = writeln!(
                out,
                "choria_provisioner_rpc_time_count{{rpc=\"{rpc}\",site=\"{site}\"}} {}",
                v.count
            );
        }
        let _ = writeln!(out, "# HELP choria_provisioner_rpc_errors RPC actions that failed after all retries\n# TYPE choria_provisioner_rpc_errors counter");
        for (rpc, n) in lock(&self.rpc_errors).iter() {
            let _ = writeln!(
                out,
                "choria_provisioner_rpc_errors{{rpc=\"{}\",site=\"{site}\"}} {n}",
                escape(rpc)
            );
        }
        let helper = *lock(&self.helper_time);
        let _ = writeln!(out, "# HELP choria_provisioner_helper_time Time taken by helper runs\n# TYPE choria_provisioner_helper_time summary\nchoria_provisioner_helper_time_sum{{site=\"{site}\"}} {}\nchoria_provisioner_helper_time_count{{site=\"{site}\"}} {}", helper.sum, helper.count);

        let _ = writeln!(out, "# HELP choria_provisioner_outcomes_total Node passes by outcome and reason\n# TYPE choria_provisioner_outcomes_total counter");
        for ((outcome, reason), n) in lock(&self.outcomes).iter() {
            let _ = writeln!(
                out,
                "choria_provisioner_outcomes_total{{outcome=\"{}\",reason=\"{}\",site=\"{site}\"}} {n}",
                escape(outcome),
                escape(reason)
            );
        }
        let _ = writeln!(out, "# HELP choria_provisioner_stage_seconds Time taken by each pipeline stage\n# TYPE choria_provisioner_stage_seconds histogram");
        for (stage, h) in lock(&self.stages).iter() {
            let stage = escape(stage);
            for (i, bound) in STAGE_BUCKETS.iter().enumerate() {
                let _ = writeln!(out, "choria_provisioner_stage_seconds_bucket{{le=\"{bound}\",site=\"{site}\",stage=\"{stage}\"}} {}", h.buckets[i]);
            }
            let _ = writeln!(out, "choria_provisioner_stage_seconds_bucket{{le=\"+Inf\",site=\"{site}\",stage=\"{stage}\"}} {}", h.count);
            let _ = writeln!(
                out,
                "choria_provisioner_stage_seconds_sum{{site=\"{site}\",stage=\"{stage}\"}} {}",
                h.sum
            );
            let _ = writeln!(
                out,
                "choria_provisioner_stage_seconds_count{{site=\"{site}\",stage=\"{stage}\"}} {}",
                h.count
            );
        }
        out
    }
}

fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// What `/healthz` reports.
pub type HealthFn = Arc<dyn Fn() -> String + Send + Sync>;

/// Serves `/metrics` and `/healthz` on `listener` until `cancel`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    health: HealthFn,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    use axum::routing::get;
    let m = metrics.clone();
    let app = axum::Router::new()
        .route(
            "/metrics",
            get(move || {
                let m = m.clone();
                async move { ([("content-type", "text/plain; version=0.0.4")], m.encode()) }
            }),
        )
        .route(
            "/healthz",
            get(move || {
                let h = health.clone();
                async move { ([("content-type", "application/json")], h()) }
            }),
        );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_upstream_names_types_and_labels() {
        let m = Metrics::new("TEST");
        m.discovered.fetch_add(2, Ordering::Relaxed);
        m.observe_rpc("choria_provision#jwt", Duration::from_millis(500));
        m.rpc_failed("rpcutil#inventory");
        m.observe_helper(Duration::from_millis(250));
        m.outcome(Outcome::Failed, "helper");
        m.observe_stage("helper", Duration::from_millis(20));
        let text = m.encode();
        for line in [
            "# TYPE choria_provisioner_paused gauge",
            "choria_provisioner_discovered{site=\"TEST\"} 2",
            "# TYPE choria_provisioner_rpc_time summary",
            "choria_provisioner_rpc_time_sum{rpc=\"choria_provision#jwt\",site=\"TEST\"} 0.5",
            "choria_provisioner_rpc_time_count{rpc=\"choria_provision#jwt\",site=\"TEST\"} 1",
            "choria_provisioner_rpc_errors{rpc=\"rpcutil#inventory\",site=\"TEST\"} 1",
            "choria_provisioner_helper_time_count{site=\"TEST\"} 1",
            "choria_provisioner_outcomes_total{outcome=\"failed\",reason=\"helper\",site=\"TEST\"} 1",
            "choria_provisioner_stage_seconds_bucket{le=\"0.025\",site=\"TEST\",stage=\"helper\"} 1",
            "choria_provisioner_stage_seconds_bucket{le=\"0.01\",site=\"TEST\",stage=\"helper\"} 0",
        ] {
            assert!(text.contains(line), "missing {line:?} in\n{text}");
        }
        for name in [
            "paused",
            "discovered",
            "event_discovered",
            "discover_cycles",
            "discovery_errors",
            "provision_errors",
            "busy_workers",
            "provisioned",
            "work_queue_entries",
            "waiting_nodes",
            "rpc_time",
            "rpc_errors",
            "helper_time",
            "helper_errors",
            "helper_shutdown_requests",
        ] {
            assert!(
                text.contains(&format!("# TYPE choria_provisioner_{name} ")),
                "{name}"
            );
            // Upstream's names have no `_total`; only our own counters (outcomes,
            // election errors) follow the Prometheus convention.
            assert!(
                !text.contains(&format!("choria_provisioner_{name}_total")),
                "{name}"
            );
        }
        assert!(text.contains("# TYPE choria_provisioner_outcomes_total counter"));
    }
}
