//! Supervision and metrics: a nats-server killed like a crash is restarted and the broker
//! admits connections again; `/metrics` reports decisions, latency, up and restarts.

use std::time::Duration;

use choria_testkit::site::{SiteOptions, TestSite};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr)
        .await
        .expect("connect metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request");
    let mut body = String::new();
    stream.read_to_string(&mut body).await.expect("response");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_nats_server_is_restarted_and_metrics_tell() {
    let site = TestSite::start_with(SiteOptions {
        metrics: true,
        ..Default::default()
    })
    .await
    .expect("site");
    let broker = site.broker().expect("broker");
    let _node = site
        .connect_provisioning_node("before-crash")
        .await
        .expect("node");
    let first_pid = broker.nats_server_pid();
    assert!(first_pid > 0);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(first_pid).expect("pid fits")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill nats-server");

    // safety net only: the restart itself takes well under a second
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let pid = broker.nats_server_pid();
        if pid != 0
            && pid != first_pid
            && site.connect_provisioning_node("after-crash").await.is_ok()
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "broker did not come back: {}",
            site.broker_log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(broker.metrics().restarts.get(), 1);

    let text = scrape(site.metrics_addr.expect("metrics address")).await;
    assert!(text.contains("200 OK"), "{text}");
    assert!(text.contains("choria_broker_nats_server_up 1"), "{text}");
    assert!(
        text.contains("choria_broker_nats_server_restarts_total 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "choria_broker_authorizations_total{outcome=\"accepted\",account=\"provisioning\"}"
        ),
        "{text}"
    );
    assert!(
        text.contains("choria_broker_auth_callout_seconds_count"),
        "{text}"
    );
    site.shutdown().await;
}
