//! Helpers shared by the broker integration tests: connections that record server errors,
//! account lookups through the system account, and message expectations.

#![allow(dead_code)]

use std::time::Duration;

use async_nats::{ConnectErrorKind, Event};
use choria_testkit::delivery::publish_until_received;
use choria_testkit::site::{Credentials, TestSite};
use futures::StreamExt as _;
use tokio::sync::mpsc;

/// A client plus the server errors it has seen (permission violations arrive there).
pub struct Watched {
    pub client: async_nats::Client,
    pub errors: mpsc::UnboundedReceiver<String>,
}

impl Watched {
    /// Waits for a server error containing `needle`.
    pub async fn expect_error(&mut self, needle: &str) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            match tokio::time::timeout_at(deadline, self.errors.recv()).await {
                Ok(Some(e)) if e.contains(needle) => return,
                Ok(Some(_)) => continue,
                _ => panic!("no server error containing {needle:?}"),
            }
        }
    }

    /// Flushes and asserts no server error arrived meanwhile.
    pub async fn expect_no_error(&mut self) {
        self.client.flush().await.expect("flush");
        // a second round trip makes sure any -ERR for the earlier commands was read
        self.client.flush().await.expect("flush");
        if let Ok(e) = self.errors.try_recv() {
            panic!("unexpected server error: {e}");
        }
    }
}

/// Connects to `url` with `creds`, recording server errors.
pub async fn connect_watched(
    site: &TestSite,
    url: &str,
    creds: Credentials,
    name: &str,
) -> Result<Watched, async_nats::ConnectError> {
    let (tx, rx) = mpsc::unbounded_channel();
    let login = site.login(url, creds, name).expect("login");
    let client = login
        .options()
        .expect("site TLS")
        .event_callback(move |event| {
            let tx = tx.clone();
            async move {
                if let Event::ServerError(e) = event {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(login.servers.clone())
        .await?;
    Ok(Watched { client, errors: rx })
}

/// Asserts that connecting with `creds` is refused with an authorization violation.
pub async fn assert_refused(site: &TestSite, creds: Credentials, name: &str) {
    let url = site.broker_url.clone();
    assert_refused_at(site, &url, creds, name).await;
}

/// As [`assert_refused`] on a given URL.
pub async fn assert_refused_at(site: &TestSite, url: &str, creds: Credentials, name: &str) {
    match connect_watched(site, url, creds, name).await {
        Ok(_) => panic!("{name}: connection was admitted"),
        Err(e) => assert_eq!(
            e.kind(),
            ConnectErrorKind::AuthorizationViolation,
            "{name}: {e}"
        ),
    }
}

/// Asserts that connecting with `creds` is refused, and by the `rule` of `reason`. The client
/// only sees "authorization violation"; the broker's refusal counters say which rule it was.
pub async fn assert_refused_by(
    site: &TestSite,
    creds: Credentials,
    name: &str,
    reason: &str,
    rule: &str,
) {
    let metrics = site.broker().expect("a running broker").metrics().clone();
    let before = metrics.refused(reason, rule);
    assert_refused(site, creds, name).await;
    assert!(
        metrics.refused(reason, rule) > before,
        "{name}: not refused by {reason}/{rule}; refusals so far:\n{}",
        refusals(&metrics)
    );
}

/// As [`assert_refused_by`] for any connection attempt the test makes itself.
pub async fn refused_by<T>(
    site: &TestSite,
    reason: &str,
    rule: &str,
    attempt: impl std::future::Future<Output = T>,
) -> T {
    let metrics = site.broker().expect("a running broker").metrics().clone();
    let before = metrics.refused(reason, rule);
    let outcome = attempt.await;
    assert!(
        metrics.refused(reason, rule) > before,
        "not refused by {reason}/{rule}; refusals so far:\n{}",
        refusals(&metrics)
    );
    outcome
}

fn refusals(metrics: &choria_broker::metrics::Metrics) -> String {
    metrics
        .encode()
        .lines()
        .filter(|l| l.starts_with("choria_broker_auth_refusals_total"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The (account, authorized user) of the connection named `name`, asked as the system user.
pub async fn placement(site: &TestSite, name: &str) -> Option<(String, String)> {
    let system = site.connect_system().await.expect("system user connects");
    placement_via(&system, name).await
}

/// As [`placement`] through an existing system-account connection.
pub async fn placement_via(system: &async_nats::Client, name: &str) -> Option<(String, String)> {
    for account in ["choria", "provisioning", "system"] {
        let conns = choria_broker::report::connections(system, account, Duration::from_secs(1))
            .await
            .expect("connz");
        if let Some(c) = conns.iter().find(|c| c.name == name) {
            return Some((c.account.clone(), c.authorized_user.clone()));
        }
    }
    None
}

/// Waits for one message on `sub`.
pub async fn recv(sub: &mut async_nats::Subscriber) -> async_nats::Message {
    tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("message in time")
        .expect("subscription open")
}

/// Asserts nothing arrives on `sub` once a marker, published on `marker_subject` by
/// `publisher` until `marker` (which shares the connection with `sub`) receives it, has
/// come through. Retrying the marker matters across a cluster: a new subscription's interest
/// reaches the peer broker asynchronously, so a single marker could be dropped.
pub async fn assert_nothing_before_marker(
    sub: &mut async_nats::Subscriber,
    publisher: &async_nats::Client,
    marker_subject: &str,
    marker: &mut async_nats::Subscriber,
) {
    publish_until_received(publisher, marker_subject, b"marker", marker).await;
    if let Ok(Some(m)) = tokio::time::timeout(Duration::from_millis(50), sub.next()).await {
        panic!("unexpected message on {}", m.subject);
    }
}
