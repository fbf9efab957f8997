//! No authorization blackout: after nats-server is restarted under connecting nodes, no node
//! waits for the auth timeout because the authorization service had not subscribed yet.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_nats::Event;
use choria_testkit::site::{Credentials, SiteOptions, TestSite};

const NODES: usize = 200;
/// Long on purpose: a node held until nats-server gives up cannot be back before it, so the
/// assertions below are about ordering, not speed.
const AUTH_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a node waits between reconnect attempts.
const RECONNECT_DELAY: Duration = Duration::from_millis(20);

/// What the nodes saw after the kill.
#[derive(Default)]
struct Fleet {
    kill: Mutex<Option<Instant>>,
    /// Per node: when it was admitted again after the kill.
    back: Mutex<Vec<Option<Duration>>>,
    /// Connection attempts nats-server refused (the auth timeout ends in a refusal).
    refused: AtomicUsize,
}

impl Fleet {
    fn admitted(&self) -> Vec<Duration> {
        let back = self.back.lock().expect("lock");
        back.iter().flatten().copied().collect()
    }
}

async fn connect_node(site: &TestSite, fleet: &Arc<Fleet>, index: usize) -> async_nats::Client {
    let seen = fleet.clone();
    let credentials = Credentials {
        token: Some(site.provisioning_token.clone()),
        ..Default::default()
    };
    let options = site
        .login(&site.broker_url, credentials, &format!("blackout-{index}"))
        .expect("login")
        .options()
        .expect("options")
        // Longer than the auth timeout: a held node waits for nats-server, as upstream
        // nodes do, instead of giving up first.
        .connection_timeout(AUTH_TIMEOUT * 2)
        // Nodes retry within milliseconds of losing the broker (upstream nodes do too), so
        // they reach a restarted nats-server as soon as its client port opens.
        .reconnect_delay_callback(|_| RECONNECT_DELAY)
        .event_callback(move |event| {
            let seen = seen.clone();
            async move {
                let Some(kill) = *seen.kill.lock().expect("lock") else {
                    return;
                };
                match event {
                    Event::Connected => {
                        seen.back.lock().expect("lock")[index] = Some(kill.elapsed());
                    }
                    Event::ClientError(e) if e.to_string().contains("authorization") => {
                        seen.refused.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {}
                }
            }
        });
    options
        .connect(&site.broker_url)
        .await
        .expect("node connects before the restart")
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_admitted_after_a_nats_server_restart_without_waiting_for_the_auth_timeout() {
    let site = TestSite::start_with(SiteOptions {
        extra_config: format!(
            "plugin.choria.network.auth_timeout = {}s\n",
            AUTH_TIMEOUT.as_secs()
        ),
        ..Default::default()
    })
    .await
    .expect("site");
    let fleet = Arc::new(Fleet {
        back: Mutex::new(vec![None; NODES]),
        ..Default::default()
    });
    let mut nodes = Vec::new();
    for index in 0..NODES {
        nodes.push(connect_node(&site, &fleet, index).await);
    }

    let broker = site.broker().expect("broker");
    let pid = broker.nats_server_pid();
    *fleet.kill.lock().expect("lock") = Some(Instant::now());
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid fits")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill nats-server");

    // A node held for the auth timeout is back no earlier than AUTH_TIMEOUT after the kill.
    let deadline = Instant::now() + AUTH_TIMEOUT;
    while fleet.admitted().len() < NODES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut admitted = fleet.admitted();
    admitted.sort();
    let refused = fleet.refused.load(Ordering::Relaxed);
    if let (Some(first), Some(last)) = (admitted.first(), admitted.last()) {
        println!(
            "{} of {NODES} nodes admitted again after the kill: first {:.2} s, median {:.2} s, \
             p99 {:.2} s, last {:.2} s; {refused} refused attempts",
            admitted.len(),
            first.as_secs_f64(),
            percentile(&admitted, 50).as_secs_f64(),
            percentile(&admitted, 99).as_secs_f64(),
            last.as_secs_f64(),
        );
    }
    assert_eq!(
        admitted.len(),
        NODES,
        "every node is admitted before the auth timeout could have elapsed once"
    );
    assert_eq!(
        refused, 0,
        "no node was refused because the service had not subscribed yet"
    );
    assert_eq!(broker.metrics().restarts.get(), 1);
    for node in nodes {
        let _ = node.drain().await;
    }
    site.shutdown().await;
}
