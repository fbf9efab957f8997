//! Benchmark: a storm of provisioning-token connections against the Choria broker (auth
//! callout) and the same storm against nats-server's native nkey auth, side by side.
//!
//! `cargo run --release -p choria-broker --example auth_storm -- [CONNECTIONS] [CONCURRENCY]`
//! prints one JSON object: connections per second and p50/p99 connect latency for each.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::ConnectOptions;
use choria_testkit::site::{Credentials, TestSite};
use tokio::sync::Semaphore;

struct Storm {
    per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    failures: usize,
    seconds: f64,
}

async fn storm<F>(connections: usize, concurrency: usize, connect: F) -> Storm
where
    F: Fn() -> futures::future::BoxFuture<
            'static,
            Result<async_nats::Client, async_nats::ConnectError>,
        > + Send
        + Sync
        + 'static,
{
    let connect = Arc::new(connect);
    let limit = Arc::new(Semaphore::new(concurrency));
    let started = Instant::now();
    let mut tasks = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (connect, limit) = (connect.clone(), limit.clone());
        tasks.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await.ok()?;
            let t = Instant::now();
            let client = connect().await.ok()?;
            let elapsed = t.elapsed();
            drop(client);
            Some(elapsed)
        }));
    }
    let mut latencies = Vec::with_capacity(connections);
    let mut failures = 0;
    for task in tasks {
        match task.await {
            Ok(Some(d)) => latencies.push(d),
            _ => failures += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort();
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    Storm {
        per_sec: latencies.len() as f64 / seconds,
        p50_ms: pct(0.50),
        p99_ms: pct(0.99),
        failures,
        seconds,
    }
}

fn json(s: &Storm) -> serde_json::Value {
    serde_json::json!({
        "auth_per_sec": (s.per_sec * 10.0).round() / 10.0,
        "p50_ms": (s.p50_ms * 100.0).round() / 100.0,
        "p99_ms": (s.p99_ms * 100.0).round() / 100.0,
        "failures": s.failures,
        "seconds": (s.seconds * 100.0).round() / 100.0,
    })
}

fn main() -> anyhow::Result<()> {
    // async-nats re-reads the system root store on every connection (nats-io/nats.rs#1622),
    // which would put the bench client's own CPU into both storms; every connection here
    // brings the site CA. Set before the runtime starts any thread.
    choria_connect::skip_unused_system_roots();
    tokio::runtime::Runtime::new()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let connections: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let concurrency: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(128);

    let site = TestSite::start().await?;
    // native: same TLS material, nkey users checked by nats-server itself
    let nkey = nkeys::KeyPair::new_user();
    let seed = nkey.seed()?;
    let native_port = choria_testkit::free_port()?;
    let native_dir = tempfile::tempdir()?;
    let native_conf = format!(
        "listen: 127.0.0.1:{native_port}\nmax_connections: 100000\ntls {{ cert_file: {:?}, key_file: {:?}, ca_file: {:?} }}\nauthorization {{ users: [ {{ nkey: {:?} }} ] }}\n",
        site.broker_cert_path, site.broker_key_path, site.ca_path, nkey.public_key()
    );
    let _native =
        choria_testkit::start_config(native_dir.path(), &native_conf, native_port).await?;

    let mut login = site.login(
        &site.broker_url,
        Credentials {
            token: Some(site.provisioning_token.clone()),
            ..Default::default()
        },
        "storm-node",
    )?;
    login.connect_timeout = Duration::from_secs(30);
    // warm up both paths once
    site.connect_provisioning_node("warmup").await?;
    let callout = storm(connections, concurrency, move || {
        let login = login.clone();
        Box::pin(async move {
            let options = login
                .options()
                .map_err(|_| async_nats::ConnectError::new(async_nats::ConnectErrorKind::Tls))?;
            options.connect(login.servers).await
        })
    })
    .await;
    let service = site
        .broker()
        .map(|b| b.metrics().encode())
        .unwrap_or_default();

    let native_url = format!("tls://127.0.0.1:{native_port}");
    let ca = site.ca_path.clone();
    let native = storm(connections, concurrency, move || {
        let (url, ca, seed) = (native_url.clone(), ca.clone(), seed.clone());
        Box::pin(async move {
            ConnectOptions::with_nkey(seed)
                .add_root_certificates(ca)
                .require_tls(true)
                .connection_timeout(Duration::from_secs(30))
                .name("storm-native")
                .connect(url)
                .await
        })
    })
    .await;

    let (sum, count) = histogram_sum_count(&service, "choria_broker_auth_callout_seconds");
    let report = serde_json::json!({
        "benchmark": "auth_storm",
        "connections": connections,
        "concurrency": concurrency,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        "callout": json(&callout),
        "native_nkey": json(&native),
        "service_decisions": count,
        "service_mean_ms": if count > 0.0 { (sum / count * 1000.0 * 1000.0).round() / 1000.0 } else { 0.0 },
        "ratio_vs_native": if native.per_sec > 0.0 { (callout.per_sec / native.per_sec * 1000.0).round() / 1000.0 } else { 0.0 },
    });
    println!("{report}");
    site.shutdown().await;
    Ok(())
}

fn histogram_sum_count(text: &str, name: &str) -> (f64, f64) {
    let value = |suffix: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{name}_{suffix} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (value("sum"), value("count"))
}
