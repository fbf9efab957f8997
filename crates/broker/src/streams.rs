//! The managed Choria Streams of spec §1.5, created or updated through the JetStream API
//! once nats-server runs (nats-server configuration cannot declare streams).

use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};

use crate::settings::StreamSettings;

/// The leader election bucket (stream `KV_CHORIA_LEADER_ELECTION`).
pub const LEADER_ELECTION_BUCKET: &str = "CHORIA_LEADER_ELECTION";

/// Why a stream could not be configured.
#[derive(Debug, thiserror::Error)]
#[error("could not configure stream {stream}: {reason}")]
pub struct StreamError {
    /// The stream.
    pub stream: String,
    /// Why.
    pub reason: String,
}

/// Creates or updates every managed stream in the connected (`choria`) account.
pub async fn ensure(
    client: &async_nats::Client,
    settings: &StreamSettings,
) -> Result<(), StreamError> {
    let js = jetstream::new(client.clone());
    let plain = [
        (
            "CHORIA_EVENTS",
            "choria.lifecycle.>",
            settings.event_retention,
        ),
        (
            "CHORIA_MACHINE",
            "choria.machine.>",
            settings.machine_retention,
        ),
        (
            "CHORIA_STREAM_ADVISORIES",
            "$JS.EVENT.ADVISORY.>",
            settings.advisory_retention,
        ),
    ];
    for (name, subject, retention) in plain {
        if retention.is_zero() {
            continue;
        }
        js.create_or_update_stream(stream::Config {
            name: name.into(),
            subjects: vec![subject.into()],
            max_age: retention,
            storage: stream::StorageType::File,
            num_replicas: settings.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| StreamError {
            stream: name.into(),
            reason: e.to_string(),
        })?;
    }
    if !settings.executor_retention.is_zero() {
        js.create_or_update_stream(stream::Config {
            name: "CHORIA_EXECUTOR".into(),
            description: Some("Choria Executor Events".into()),
            subjects: vec!["choria.submission.in.choria.executor.>".into()],
            subject_transform: Some(stream::SubjectTransform {
                source: "choria.submission.in.choria.executor.>".into(),
                destination: "choria.executor.>".into(),
            }),
            max_age: settings.executor_retention,
            storage: stream::StorageType::File,
            allow_direct: true,
            num_replicas: settings.replicas,
            ..Default::default()
        })
        .await
        .map_err(|e| StreamError {
            stream: "CHORIA_EXECUTOR".into(),
            reason: e.to_string(),
        })?;
    }
    let bucket = kv::Config {
        bucket: LEADER_ELECTION_BUCKET.into(),
        description: "Choria Leader Election Bucket".into(),
        max_value_size: 1024,
        history: 1,
        max_age: settings.leader_election_ttl.max(Duration::from_secs(1)),
        storage: stream::StorageType::File,
        num_replicas: settings.replicas,
        ..Default::default()
    };
    match js.get_key_value(LEADER_ELECTION_BUCKET).await {
        Ok(_) => js
            .update_key_value(bucket)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(_) => js
            .create_key_value(bucket)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
    }
    .map_err(|reason| StreamError {
        stream: format!("KV_{LEADER_ELECTION_BUCKET}"),
        reason,
    })
}
