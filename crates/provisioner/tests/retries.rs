//! Retries at the pace of the fault: with discovery five minutes apart, a node the helper
//! defers or fails once is provisioned seconds later by its per-node retry, a node failing
//! for good is not retried, and a provisioner that lost its broker rediscovers as soon as
//! it is back. Real nats-server, real provisioner and helper processes, test peer nodes.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use choria_connect::{parse_servers, Connects, Login, Tls};
use choria_provisioner::metrics::Outcome;
use choria_provisioner::{login, Provisioner, Settings};
use choria_testkit::TestNats;
use support::running::{until, Running};
use support::test_peer_node::{Quirk, TestPeerNode};

const TOKEN: &str = "s3cret";

async fn start(url: &str, yaml: &str) -> Running {
    let identity = "prov1.example.net";
    let caller = format!("choria={identity}");
    let settings = Settings::parse_str(yaml, Path::new("test.yaml")).expect("settings");
    let connects = Connects::new();
    let client = Login {
        connects: Some(connects.clone()),
        ..login(
            identity,
            &caller,
            parse_servers([url]).expect("url"),
            Tls::Off,
        )
    }
    .connect()
    .await
    .expect("connect");
    Running::spawn(Provisioner::new(settings, client, identity, &caller).with_connects(connects))
}

/// A helper that fails each node's first pass its own way (by name) and configures it
/// the next time: `defer*` is deferred, `crash*` makes the helper exit 3.
fn helper_failing_once(dir: &Path) -> String {
    let helper = dir.join("once.sh");
    std::fs::write(
        &helper,
        format!(
            r#"#!/bin/sh
input=$(cat)
for name in defer1 defer2 crash1; do
  case "$input" in
    *"$name.example.net"*)
      if [ ! -e "{dir}/$name.seen" ]; then
        touch "{dir}/$name.seen"
        case "$name" in
          defer*) echo '{{"defer":true,"msg":"not yet"}}'; exit 0;;
          crash*) echo "boom" >&2; exit 3;;
        esac
      fi;;
  esac
done
echo '{{"configuration":{{"identity":"x","plugin.choria.server.provision":"false"}}}}'
"#,
            dir = dir.display()
        ),
    )
    .expect("helper");
    format!("/bin/sh {}", helper.display())
}

#[tokio::test]
async fn a_node_deferred_or_failed_once_is_provisioned_within_seconds_not_at_the_next_discovery() {
    let nats = TestNats::start("", false).await.expect("nats");
    let dir = tempfile::tempdir().expect("dir");
    let mut nodes = Vec::new();
    for (name, quirk) in [
        ("defer1", Quirk::None),
        ("defer2", Quirk::None),
        ("crash1", Quirk::None),
        // Its inventory reply is malformed: a failure no retry can fix (B7).
        ("badtypes", Quirk::WrongTypes),
    ] {
        let identity = format!("{name}.example.net");
        nodes.push(TestPeerNode::start(&nats.url(), &identity, TOKEN, "", quirk).await);
    }
    let yaml = format!(
        "helper: {}\ntoken: {TOKEN}\nworkers: 4\ninterval: 5m\n",
        helper_failing_once(dir.path())
    );
    let started = Instant::now();
    let run = start(&nats.url(), &yaml).await;
    until(
        "the three nodes provisioned on their retry",
        Duration::from_secs(15),
        || run.status.snapshot().provisioned == 3,
    )
    .await;
    let took = started.elapsed();
    println!("provisioned after one failed or deferred pass in {took:.2?}");
    let m = &run.metrics;
    assert_eq!(m.outcome_count(Outcome::Deferred), 2);
    assert_eq!(m.helper_errors.load(Ordering::Relaxed), 1);
    assert_eq!(
        m.discover_cycles.load(Ordering::Relaxed),
        1,
        "the retries, not another discovery, found them"
    );
    // The malformed node is not retried: give a retry time to happen.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let by_name = |n: &str| {
        nodes
            .iter()
            .find(|p| p.identity == format!("{n}.example.net"))
            .expect("node")
    };
    assert_eq!(by_name("badtypes").actions(), ["inventory"], "no retry");
    assert_eq!(m.retries.load(Ordering::Relaxed), 3, "one retry each");
    assert_eq!(
        m.outcome_count(Outcome::Failed),
        2,
        "crash1 once, badtypes once"
    );
    assert!(
        m.encode()
            .contains("choria_provisioner_retries_total{site=\"\"} 3"),
        "retries are exported"
    );
    run.stop().await;
}

#[tokio::test]
async fn retries_can_be_turned_off() {
    let nats = TestNats::start("", false).await.expect("nats");
    let dir = tempfile::tempdir().expect("dir");
    let _node =
        TestPeerNode::start(&nats.url(), "defer1.example.net", TOKEN, "", Quirk::None).await;
    let yaml = format!(
        "helper: {}\ntoken: {TOKEN}\ninterval: 5m\nretry_backoff: 0s\n",
        helper_failing_once(dir.path())
    );
    let run = start(&nats.url(), &yaml).await;
    until("the deferred pass", Duration::from_secs(10), || {
        run.status.snapshot().deferred == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(run.status.snapshot().provisioned, 0, "waits for discovery");
    assert_eq!(run.metrics.retries.load(Ordering::Relaxed), 0);
    run.stop().await;
}

#[tokio::test]
async fn the_provisioner_rediscovers_as_soon_as_it_reconnects() {
    let dir = tempfile::tempdir().expect("dir");
    let port = choria_testkit::free_port().expect("port");
    let config = format!("listen: 127.0.0.1:{port}\nserver_name: retry_{port}\n");
    let url = format!("nats://127.0.0.1:{port}");
    let nats = choria_testkit::start_config(dir.path(), &config, port)
        .await
        .expect("nats");
    let yaml = format!(
        "helper: {}\ntoken: {TOKEN}\ninterval: 5m\n",
        helper_failing_once(dir.path())
    );
    let run = start(&url, &yaml).await;
    until("the first discovery", Duration::from_secs(10), || {
        run.metrics.discover_cycles.load(Ordering::Relaxed) == 1
    })
    .await;

    // The broker goes away and comes back: startup events sent meanwhile reached nobody,
    // so the provisioner looks again at once rather than in five minutes.
    drop(nats);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let restarted = Instant::now();
    let _nats = choria_testkit::start_config(dir.path(), &config, port)
        .await
        .expect("nats again");
    until(
        "a discovery after the reconnect",
        Duration::from_secs(10),
        || run.metrics.discover_cycles.load(Ordering::Relaxed) == 2,
    )
    .await;
    println!(
        "rediscovered {:.2?} after the broker came back",
        restarted.elapsed()
    );
    run.stop().await;
}
