//! Measures what simulated nodes cost: starts `NODES` (default 200) provisioning-mode nodes
//! in one process against a real TestSite broker, waits until all are in the
//! `provisioning` account, and prints resident memory per node as a JSON line.
//!
//! `CHORIA_NATS_SERVER=.venv/bin/nats-server cargo run -p choria-server --example fleet_memory`
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Instant;

use choria_server::node::{CancellationToken, Node, NodeOptions, Phase, RestartPolicy};
use choria_testkit::site::TestSite;

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    let count: usize = std::env::var("NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let before = rss_kib();
    let started = Instant::now();
    let cancel = CancellationToken::new();
    let mut phases = Vec::with_capacity(count);
    let mut tasks = Vec::with_capacity(count);
    for index in 0..count {
        let node_dir = dir.path().join(format!("n{index}"));
        std::fs::create_dir_all(&node_dir).unwrap();
        let node = Arc::new(Node::new(NodeOptions {
            config_file: node_dir.join("server.conf"),
            provisioning_jwt: Some(site.provisioning_token_path.clone()),
            identity: Some(format!("n{index}.example.net")),
            restart: RestartPolicy::InPlace,
        }));
        phases.push(node.phase());
        let cancel = cancel.clone();
        tasks.push(tokio::spawn(async move { node.run(cancel).await }));
    }
    for phase in &mut phases {
        phase.wait_for(|p| *p == Phase::Provisioning).await.unwrap();
    }
    let elapsed = started.elapsed();
    let after = rss_kib();
    println!(
        "{{\"nodes\":{count},\"rss_before_kib\":{before},\"rss_after_kib\":{after},\"kib_per_node\":{},\"seconds_to_all_provisioning\":{:.2}}}",
        (after.saturating_sub(before)) / count as u64,
        elapsed.as_secs_f64()
    );
    cancel.cancel();
    for task in tasks {
        let _ = task.await;
    }
}
