//! Whether the broker has really admitted a connection: a message the node sends itself
//! through the broker comes back. async-nats reports "connected" on the server's first
//! answer to CONNECT, which can come before the broker's authorization has decided.

use std::time::Duration;

use futures::StreamExt;

/// How long one round trip may take before it is tried again.
pub(super) const ADMISSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before trying again after a failed round trip.
pub(super) const ADMISSION_PAUSE: Duration = Duration::from_secs(1);

/// Why a round trip did not prove the connection admitted.
#[derive(Debug, thiserror::Error)]
pub(super) enum AdmissionError {
    /// The client refused the subscription.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        subject: String,
        #[source]
        source: async_nats::SubscribeError,
    },
    /// The client refused the message.
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::PublishError,
    },
    /// Nothing came back in time (the broker is still deciding, or refused us).
    #[error("the broker did not echo a message within {0:?}")]
    Timeout(Duration),
    /// The client closed the subscription.
    #[error("the subscription closed")]
    Closed,
}

/// Subscribes a fresh inbox, publishes to it and waits up to `timeout` for the message:
/// the broker processed both, so it has accepted the connection.
pub(super) async fn round_trip(
    client: async_nats::Client,
    timeout: Duration,
) -> Result<(), AdmissionError> {
    let subject = client.new_inbox();
    let mut echo =
        client
            .subscribe(subject.clone())
            .await
            .map_err(|source| AdmissionError::Subscribe {
                subject: subject.clone(),
                source,
            })?;
    client
        .publish(subject.clone(), bytes::Bytes::new())
        .await
        .map_err(|source| AdmissionError::Publish {
            subject: subject.clone(),
            source,
        })?;
    // Dropping `echo` afterwards unsubscribes.
    match tokio::time::timeout(timeout, echo.next()).await {
        Ok(Some(_)) => Ok(()),
        Ok(None) => Err(AdmissionError::Closed),
        Err(_) => Err(AdmissionError::Timeout(timeout)),
    }
}

/// [`round_trip`] after `pause`.
pub(super) async fn round_trip_after(
    client: async_nats::Client,
    pause: Duration,
) -> Result<(), AdmissionError> {
    tokio::time::sleep(pause).await;
    round_trip(client, ADMISSION_TIMEOUT).await
}
