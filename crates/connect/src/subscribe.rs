//! Subscribing to a subject, with an error that names the subject and keeps async-nats'
//! error (and its kind) as the source.

/// A subscription failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot subscribe to {subject}: {source}")]
pub struct SubscribeError {
    /// The subject.
    pub subject: String,
    /// async-nats' error.
    #[source]
    pub source: async_nats::SubscribeError,
}

/// Subscribes `client` to `subject`.
pub async fn subscribe(
    client: &async_nats::Client,
    subject: &str,
) -> Result<async_nats::Subscriber, SubscribeError> {
    client
        .subscribe(subject.to_owned())
        .await
        .map_err(|source| SubscribeError {
            subject: subject.to_owned(),
            source,
        })
}
