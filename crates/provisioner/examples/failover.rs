//! Measures leader-election failover on a real nats-server with JetStream: how long a
//! standby takes to lead after the leader stops cleanly (releases its key) and after it
//! dies without a word (its key must expire). Prints one JSON line per round.
//!
//! `cargo run -p choria-provisioner --example failover -- [ROUNDS] [TTL_SECONDS]`

use std::sync::Arc;
use std::time::{Duration, Instant};

use choria_provisioner::election::{self, ElectionConfig, Role};
use choria_provisioner::metrics::Metrics;
use choria_testkit::TestNats;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

struct Candidate {
    role: watch::Receiver<Role>,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn candidate(url: &str, name: &str, ttl: Duration) -> anyhow::Result<Candidate> {
    let client = async_nats::connect(url).await?;
    let (tx, rx) = watch::channel(Role::Standby);
    let cancel = CancellationToken::new();
    let config = ElectionConfig {
        api_prefix: "$JS.API".into(),
        ..ElectionConfig::provisioner(name, ttl)
    };
    let task = tokio::spawn(election::run(
        client,
        config,
        tx,
        Arc::new(Metrics::new("bench")),
        cancel.clone(),
    ));
    Ok(Candidate {
        role: rx,
        cancel,
        task,
    })
}

async fn until_leader(c: &mut Candidate) -> anyhow::Result<()> {
    tokio::time::timeout(
        Duration::from_secs(300),
        c.role.wait_for(|r| *r == Role::Leader),
    )
    .await??;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let rounds: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(3);
    let ttl = Duration::from_secs(args.next().map(|a| a.parse()).transpose()?.unwrap_or(8));
    let nats = TestNats::start("", true).await?;
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await?);
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: election::BUCKET.into(),
        max_age: ttl,
        history: 1,
        ..Default::default()
    })
    .await?;
    let mut serial = 0;
    for round in 0..rounds {
        for graceful in [true, false] {
            serial += 1;
            let mut leader = candidate(&nats.url(), &format!("a{serial}"), ttl).await?;
            until_leader(&mut leader).await?;
            let mut standby = candidate(&nats.url(), &format!("b{serial}"), ttl).await?;
            // Let the leader refresh a few times so the crash lands between two refreshes,
            // as a real one would.
            tokio::time::sleep(ttl / 2).await;
            let stopped = Instant::now();
            if graceful {
                leader.cancel.cancel();
            } else {
                leader.task.abort();
            }
            until_leader(&mut standby).await?;
            let seconds = stopped.elapsed().as_secs_f64();
            println!(
                "{}",
                serde_json::json!({
                    "round": round,
                    "stop": if graceful { "graceful" } else { "crash" },
                    "ttl_s": ttl.as_secs(),
                    "failover_s": (seconds * 1000.0).round() / 1000.0,
                })
            );
            // The standby hands the key back cleanly for the next round.
            standby.cancel.cancel();
            let _ = standby.task.await;
        }
    }
    Ok(())
}
