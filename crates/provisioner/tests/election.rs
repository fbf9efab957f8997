//! Leader election against a real nats-server with JetStream (spec §5, B5).

use std::sync::Arc;
use std::time::Duration;

use choria_provisioner::election::{self, ElectionConfig, Role};
use choria_provisioner::metrics::Metrics;
use choria_testkit::TestNats;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

fn config(candidate: &str) -> ElectionConfig {
    ElectionConfig {
        api_prefix: "$JS.API".into(),
        ..ElectionConfig::provisioner(candidate, Duration::from_secs(2))
    }
}

async fn create_bucket(url: &str, ttl: Duration) {
    let client = async_nats::connect(url).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: election::BUCKET.into(),
        max_age: ttl,
        history: 1,
        ..Default::default()
    })
    .await
    .expect("create bucket");
}

struct Candidate {
    role: watch::Receiver<Role>,
    cancel: CancellationToken,
    metrics: Arc<Metrics>,
    task: tokio::task::JoinHandle<()>,
}

async fn start(url: &str, name: &str) -> Candidate {
    let client = async_nats::connect(url).await.expect("connect");
    let (tx, rx) = watch::channel(Role::Standby);
    let cancel = CancellationToken::new();
    let metrics = Arc::new(Metrics::new("test"));
    let task = tokio::spawn(election::run(
        client,
        config(name),
        tx,
        metrics.clone(),
        cancel.clone(),
    ));
    Candidate {
        role: rx,
        cancel,
        metrics,
        task,
    }
}

async fn wait_for(rx: &mut watch::Receiver<Role>, want: Role, limit: Duration) -> bool {
    tokio::time::timeout(limit, rx.wait_for(|r| *r == want))
        .await
        .is_ok_and(|r| r.is_ok())
}

#[tokio::test]
async fn one_leader_and_the_standby_takes_over_when_it_dies() {
    let nats = TestNats::start("", true).await.expect("nats");
    create_bucket(&nats.url(), Duration::from_secs(2)).await;
    let mut a = start(&nats.url(), "a.example.net").await;
    let mut b = start(&nats.url(), "b.example.net").await;

    // Exactly one of them wins.
    let limit = Duration::from_secs(10);
    tokio::time::timeout(limit, async {
        loop {
            if *a.role.borrow() == Role::Leader || *b.role.borrow() == Role::Leader {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("someone leads");
    // Several keep-alive rounds later there is still exactly one leader.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a_leads = *a.role.borrow() == Role::Leader;
    let b_leads = *b.role.borrow() == Role::Leader;
    assert!(
        a_leads ^ b_leads,
        "exactly one leader: a={a_leads} b={b_leads}"
    );

    let (leader, standby) = if a_leads {
        (&mut a, &mut b)
    } else {
        (&mut b, &mut a)
    };
    // Kill the leader: its task stops writing, the key expires after the TTL.
    leader.task.abort();
    assert!(
        wait_for(&mut standby.role, Role::Leader, Duration::from_secs(15)).await,
        "standby took over"
    );
    assert_eq!(
        leader
            .metrics
            .election_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    standby.cancel.cancel();
    assert!(wait_for(&mut standby.role, Role::Standby, Duration::from_secs(5)).await);
}

#[tokio::test]
async fn a_leader_that_stops_cleanly_hands_over_without_waiting_for_the_ttl() {
    let nats = TestNats::start("", true).await.expect("nats");
    // A TTL far longer than the wait below: only a released key explains a takeover.
    create_bucket(&nats.url(), Duration::from_secs(120)).await;
    let mut a = start(&nats.url(), "a.example.net").await;
    assert!(wait_for(&mut a.role, Role::Leader, Duration::from_secs(10)).await);
    let mut b = start(&nats.url(), "b.example.net").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(*b.role.borrow(), Role::Standby, "the key is held");

    a.cancel.cancel();
    assert!(wait_for(&mut a.role, Role::Standby, Duration::from_secs(5)).await);
    (&mut a.task).await.expect("campaign ends");
    assert!(
        wait_for(&mut b.role, Role::Leader, Duration::from_secs(20)).await,
        "the standby did not take over the released key"
    );
    assert_eq!(
        a.metrics
            .election_errors
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "the release failed"
    );
    b.cancel.cancel();
}

#[test]
fn standbys_poll_within_a_second_and_leaders_refresh_four_times_a_ttl() {
    for _ in 0..100 {
        let standby = election::round_interval(Duration::from_secs(8), false);
        assert!(standby <= Duration::from_millis(1250), "{standby:?}");
        let slow = election::round_interval(Duration::from_secs(3600), false);
        assert!(slow <= Duration::from_millis(1250), "{slow:?}");
        let fast = election::round_interval(Duration::from_secs(1), false);
        assert!(fast >= Duration::from_millis(187), "{fast:?}");
        let leader = election::round_interval(Duration::from_secs(8), true);
        assert!(
            leader >= Duration::from_millis(1500) && leader <= Duration::from_millis(2500),
            "{leader:?}"
        );
    }
}

#[tokio::test]
async fn b5_missing_bucket_is_logged_counted_and_retried() {
    let nats = TestNats::start("", true).await.expect("nats");
    let c = start(&nats.url(), "a.example.net").await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while c
            .metrics
            .election_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            < 2
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("errors counted while the bucket is missing");
    assert_eq!(*c.role.borrow(), Role::Standby);
    // Once the bucket appears the same candidate wins without a restart.
    create_bucket(&nats.url(), Duration::from_secs(2)).await;
    let mut role = c.role.clone();
    assert!(wait_for(&mut role, Role::Leader, Duration::from_secs(10)).await);
    c.cancel.cancel();
}
