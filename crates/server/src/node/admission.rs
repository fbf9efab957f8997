//! Whether the broker has really admitted a connection: the broker answers a message the
//! node sent. async-nats reports "connected" on the server's first
//! answer to CONNECT, which can come before the broker's authorization has decided.

use std::time::Duration;

/// How long one round trip may take before it is tried again.
pub(super) const ADMISSION_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before trying again after a failed round trip.
pub(super) const ADMISSION_PAUSE: Duration = Duration::from_secs(1);

/// Why a round trip did not prove the connection admitted.
#[derive(Debug, thiserror::Error)]
pub(super) enum AdmissionError {
    /// The client refused the message.
    #[error("cannot publish to {subject}: {source}")]
    Publish {
        subject: String,
        #[source]
        source: async_nats::PublishError,
    },
    /// Nothing came back in time (the broker is still deciding, or refused us).
    #[error("the broker did not answer within {0:?}")]
    Timeout(Duration),
}

/// After `pause`, asks the broker for an answer on `echo`, the node subject this
/// connection already subscribes to: a message to an inbox nobody listens on, with `echo`
/// as its reply subject, comes back as nats-server's "no responders" status. The caller
/// watches its subscription for it; any message there proves the broker processed our
/// commands, so it accepted the connection. This returns only when no answer came within
/// [`ADMISSION_TIMEOUT`]. (A provisioning-mode node may publish to its inbox prefix but
/// subscribe to no inbox, so it cannot simply send itself a message.)
pub(super) async fn ask(
    client: async_nats::Client,
    echo: String,
    pause: Duration,
) -> AdmissionError {
    tokio::time::sleep(pause).await;
    let nobody = client.new_inbox();
    if let Err(source) = client
        .publish_with_reply(nobody.clone(), echo, bytes::Bytes::new())
        .await
    {
        return AdmissionError::Publish {
            subject: nobody,
            source,
        };
    }
    tokio::time::sleep(ADMISSION_TIMEOUT).await;
    AdmissionError::Timeout(ADMISSION_TIMEOUT)
}
