//! Prometheus metrics of the broker (authorization decisions, callout latency, nats-server
//! health) and the small axum server that exposes them at `/metrics`.

use std::net::SocketAddr;
use std::sync::Arc;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

/// Labels of an authorization decision.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DecisionLabels {
    /// `accepted`, or the rejection label.
    pub outcome: String,
    /// Target account, empty on rejection.
    pub account: String,
}

/// Labels of a refused connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RefusalLabels {
    /// The rejection label (as `outcome` of `choria_broker_authorizations`).
    pub reason: String,
    /// The rule within it that refused the connection ([`crate::decision::Rejection::rule`]).
    pub rule: String,
}

/// The broker's metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `choria_broker_authorizations`: decisions by outcome and account.
    pub decisions: Family<DecisionLabels, Counter>,
    /// `choria_broker_auth_refusals`: refusals by reason and the exact rule that refused.
    pub refusals: Family<RefusalLabels, Counter>,
    /// `choria_broker_auth_callout_seconds`: time from request received to response sent.
    pub latency: Histogram,
    /// `choria_broker_auth_undecodable_requests`: requests that were not valid callout JWTs.
    pub undecodable: Counter,
    /// `choria_broker_auth_stale_requests`: requests skipped because nats-server had
    /// already given up on them (older than its auth timeout).
    pub stale: Counter,
    /// `choria_broker_nats_server_up`: 1 while nats-server runs.
    pub up: Gauge,
    /// `choria_broker_nats_server_restarts`: restarts after unexpected exits.
    pub restarts: Counter,
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Arc<Metrics> {
        let mut registry = Registry::with_prefix("choria_broker");
        let decisions = Family::<DecisionLabels, Counter>::default();
        let refusals = Family::<RefusalLabels, Counter>::default();
        let latency = Histogram::new(exponential_buckets(0.0001, 2.0, 16));
        let undecodable = Counter::default();
        let stale = Counter::default();
        let up = Gauge::default();
        let restarts = Counter::default();
        registry.register(
            "authorizations",
            "Authorization decisions by outcome and account",
            decisions.clone(),
        );
        registry.register(
            "auth_refusals",
            "Refused connections by reason and the rule that refused them",
            refusals.clone(),
        );
        registry.register(
            "auth_callout_seconds",
            "Time to decide and answer one authorization request",
            latency.clone(),
        );
        registry.register(
            "auth_undecodable_requests",
            "Authorization requests that could not be decoded",
            undecodable.clone(),
        );
        registry.register(
            "auth_stale_requests",
            "Authorization requests skipped because nats-server had already timed them out",
            stale.clone(),
        );
        registry.register(
            "nats_server_up",
            "1 while nats-server is running",
            up.clone(),
        );
        registry.register(
            "nats_server_restarts",
            "nats-server restarts after unexpected exits",
            restarts.clone(),
        );
        Arc::new(Metrics {
            registry,
            decisions,
            refusals,
            latency,
            undecodable,
            stale,
            up,
            restarts,
        })
    }

    /// How many connections the `rule` of `reason` has refused so far.
    pub fn refused(&self, reason: &str, rule: &str) -> u64 {
        self.refusals
            .get_or_create(&RefusalLabels {
                reason: reason.into(),
                rule: rule.into(),
            })
            .get()
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}

/// Content type of the OpenMetrics exposition.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";
/// Content type of the classic Prometheus text exposition.
pub const TEXT_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Rewrites OpenMetrics text as the classic Prometheus format: a counter family is named
/// after its `_total` samples, and `# UNIT`/`# EOF` lines go.
pub fn classic_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        let rewritten = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            let is_counter = if *prefix == "# TYPE " {
                tail == "counter"
            } else {
                openmetrics.contains(&format!("# TYPE {name} counter\n"))
            };
            (is_counter && !name.ends_with("_total"))
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(rewritten.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

/// Serves `/metrics` on `listener` until `cancel` fires.
pub async fn serve(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) -> std::io::Result<()> {
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let metrics = metrics.clone();
            async move {
                // Prometheus asks for OpenMetrics; everything else (curl, promtool, older
                // scrapers) gets the classic text format, as Go's promhttp negotiates.
                let openmetrics = headers
                    .get_all(axum::http::header::ACCEPT)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .any(|v| v.contains("application/openmetrics-text"));
                if openmetrics {
                    (
                        [("content-type", OPENMETRICS_CONTENT_TYPE)],
                        metrics.encode(),
                    )
                } else {
                    (
                        [("content-type", TEXT_CONTENT_TYPE)],
                        classic_text(&metrics.encode()),
                    )
                }
            }
        }),
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(async move { cancel.cancelled().await })
        .await
}

/// Binds the metrics listener (fails fast at start-up when the port is taken).
pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

#[cfg(test)]
mod tests {
    #[test]
    fn classic_text_names_counters_after_their_samples() {
        let metrics = super::Metrics::new();
        metrics.undecodable.inc();
        let text = super::classic_text(&metrics.encode());
        assert!(
            text.contains("# TYPE choria_broker_auth_undecodable_requests_total counter\n"),
            "{text}"
        );
        assert!(
            text.contains("# HELP choria_broker_auth_undecodable_requests_total "),
            "{text}"
        );
        assert!(
            text.contains("\nchoria_broker_auth_undecodable_requests_total 1\n"),
            "{text}"
        );
        assert!(
            text.contains("# TYPE choria_broker_nats_server_up gauge\n"),
            "{text}"
        );
        assert!(!text.contains("# EOF"), "{text}");
    }
}
