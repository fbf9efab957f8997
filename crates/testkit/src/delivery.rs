//! Waiting for interest to reach the broker before relying on it. async-nats' `flush` only
//! empties the client's write buffer, so a SUB on one connection can still be queued in
//! nats-server when another connection publishes; these helpers retry instead of racing.

use std::time::Duration;

use futures::StreamExt as _;

/// How long [`publish_until_received`] keeps trying.
pub const DELIVERY_DEADLINE: Duration = Duration::from_secs(15);

/// Publishes `payload` on `subject` from `publisher` every 250 ms until `sub` receives a
/// message, and returns that message. Panics (this is test code) when nothing arrives within
/// [`DELIVERY_DEADLINE`] or the subscription closes.
pub async fn publish_until_received(
    publisher: &async_nats::Client,
    subject: &str,
    payload: &'static [u8],
    sub: &mut async_nats::Subscriber,
) -> async_nats::Message {
    let deadline = tokio::time::Instant::now() + DELIVERY_DEADLINE;
    loop {
        publisher
            .publish(subject.to_string(), payload.into())
            .await
            .unwrap_or_else(|e| panic!("publishing on {subject}: {e}"));
        publisher
            .flush()
            .await
            .unwrap_or_else(|e| panic!("flushing after {subject}: {e}"));
        match tokio::time::timeout(Duration::from_millis(250), sub.next()).await {
            Ok(Some(message)) => return message,
            Ok(None) => panic!("the subscription to {subject} closed"),
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => panic!("nothing published on {subject} arrived within {DELIVERY_DEADLINE:?}"),
        }
    }
}
