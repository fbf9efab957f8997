//! The demo's result: counts, throughput, per-node latency percentiles and peak memory,
//! printed as one line for people and one JSON object for machines.

use std::time::Duration;

use serde::Serialize;

/// Per-node latency percentiles in milliseconds.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
}

/// Peak resident memory of each part of the site, in MiB.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct PeakRss {
    /// The broker process and its nats-server.
    pub broker: f64,
    /// The largest provisioner process, alone.
    pub provisioner: f64,
    /// The provisioners' helper processes (their children), summed at the busiest moment.
    pub helpers: f64,
    /// The demo process hosting the simulated nodes.
    pub nodes: f64,
}

/// The summary the demo ends with (`--json` prints it as the last line).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct DemoReport {
    /// Nodes started.
    pub nodes: usize,
    /// Nodes that were configured by a provisioner.
    pub provisioned: usize,
    /// Nodes that answered a signed `rpcutil#ping` in the `choria` account.
    pub in_fleet: usize,
    /// Nodes that did not make it.
    pub failed: usize,
    /// Wall-clock seconds from the first node start to the last node in the fleet.
    pub seconds: f64,
    /// `in_fleet / seconds`.
    pub nodes_per_second: f64,
    /// Per-node latency from start to in-fleet.
    pub latency_ms: Latency,
    /// Peak memory per component.
    pub peak_rss_mb: PeakRss,
}

impl DemoReport {
    /// Builds the report from per-node latencies of the nodes that made it.
    pub fn new(
        nodes: usize,
        provisioned: usize,
        latencies: &mut [Duration],
        elapsed: Duration,
        peak_rss_mb: PeakRss,
    ) -> DemoReport {
        let in_fleet = latencies.len();
        let seconds = round3(elapsed.as_secs_f64());
        latencies.sort_unstable();
        DemoReport {
            nodes,
            provisioned,
            in_fleet,
            failed: nodes.saturating_sub(in_fleet),
            seconds,
            nodes_per_second: if seconds > 0.0 {
                round3(in_fleet as f64 / seconds)
            } else {
                0.0
            },
            latency_ms: Latency {
                p50: percentile_ms(latencies, 50.0),
                p90: percentile_ms(latencies, 90.0),
                p99: percentile_ms(latencies, 99.0),
            },
            peak_rss_mb,
        }
    }

    /// True when every node came back in the fleet.
    pub fn complete(&self) -> bool {
        self.nodes > 0 && self.in_fleet == self.nodes
    }

    /// One line for people.
    pub fn summary(&self) -> String {
        format!(
            "{}/{} nodes in the fleet ({} provisioned, {} failed) in {:.1}s: {:.1} nodes/s, latency p50 {:.0} ms p99 {:.0} ms; peak RSS broker {:.0} MiB, provisioner {:.0} MiB, helpers {:.0} MiB, nodes {:.0} MiB",
            self.in_fleet, self.nodes, self.provisioned, self.failed, self.seconds, self.nodes_per_second,
            self.latency_ms.p50, self.latency_ms.p99, self.peak_rss_mb.broker, self.peak_rss_mb.provisioner, self.peak_rss_mb.helpers, self.peak_rss_mb.nodes
        )
    }
}

/// Nearest-rank percentile of sorted durations, in milliseconds (0 when empty).
pub fn percentile_ms(sorted: &[Duration], pct: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    round3(sorted[index].as_secs_f64() * 1000.0)
}

fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile_ms(&sorted, 50.0), 50.0);
        assert_eq!(percentile_ms(&sorted, 99.0), 99.0);
        assert_eq!(percentile_ms(&sorted[..1], 99.0), 1.0);
        assert_eq!(percentile_ms(&[], 50.0), 0.0);
    }

    #[test]
    fn the_json_has_the_documented_shape() {
        let mut latencies = vec![
            Duration::from_millis(30),
            Duration::from_millis(10),
            Duration::from_millis(20),
        ];
        let report = DemoReport::new(
            4,
            3,
            &mut latencies,
            Duration::from_secs(2),
            PeakRss::default(),
        );
        assert!(!report.complete());
        assert_eq!(report.failed, 1);
        let json: serde_json::Value = serde_json::to_value(&report).expect("json");
        for key in [
            "nodes",
            "provisioned",
            "in_fleet",
            "failed",
            "seconds",
            "nodes_per_second",
            "latency_ms",
            "peak_rss_mb",
        ] {
            assert!(json.get(key).is_some(), "missing {key}");
        }
        assert_eq!(json["latency_ms"]["p50"], 20.0);
        assert_eq!(json["nodes_per_second"], 1.5);
        for key in ["broker", "provisioner", "helpers", "nodes"] {
            assert!(json["peak_rss_mb"].get(key).is_some());
        }
    }
}
