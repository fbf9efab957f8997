//! Active/standby leader election on the JetStream KV bucket `CHORIA_LEADER_ELECTION`
//! (spec §5), wire-compatible with upstream: create = put expecting last sequence 0,
//! keep = put expecting our last sequence, takeover once the bucket TTL expires the key or
//! the leader, stopping cleanly, purges it (beyond upstream, which leaves it to expire).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde::Deserialize;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;

/// Upstream bucket name.
pub const BUCKET: &str = "CHORIA_LEADER_ELECTION";
/// Upstream key of the provisioner election.
pub const KEY: &str = "provisioner";
/// JetStream API prefix imported into the provisioning account.
pub const CHORIA_API_PREFIX: &str = "choria.streams";
/// JetStream error code for "wrong last sequence" (the key is held by someone else).
pub const WRONG_LAST_SEQUENCE: u64 = 10071;
/// How long one election request may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Bounds of a standby's interval between attempts: often enough that a released or expired
/// key is taken within about a second, rarely enough to cost the broker nothing.
pub const CANDIDATE_POLL: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(1));

/// This instance's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Not leading: provisioning paused.
    Standby,
    /// Leading: provisioning active.
    Leader,
}

/// Election parameters.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// KV bucket.
    pub bucket: String,
    /// KV key.
    pub key: String,
    /// Our candidate value (the provisioner identity).
    pub candidate: String,
    /// JetStream API prefix for stream info (`choria.streams` behind the broker,
    /// `$JS.API` on a plain JetStream server).
    pub api_prefix: String,
    /// TTL used until (or unless) the bucket's `max_age` can be read.
    pub fallback_ttl: Duration,
}

impl ElectionConfig {
    /// Upstream names for `candidate`.
    pub fn provisioner(candidate: &str, fallback_ttl: Duration) -> ElectionConfig {
        ElectionConfig {
            bucket: BUCKET.into(),
            key: KEY.into(),
            candidate: candidate.into(),
            api_prefix: CHORIA_API_PREFIX.into(),
            fallback_ttl,
        }
    }
}

/// Why one election request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ElectionError {
    /// Another candidate holds the key (JetStream 10071).
    #[error("key {key} is held by another candidate")]
    Taken {
        /// The key.
        key: String,
    },
    /// The request could not be sent or was not answered.
    #[error("election request to {subject} failed: {message}")]
    Request {
        /// Subject.
        subject: String,
        /// Why.
        message: String,
    },
    /// JetStream answered with another error.
    #[error("JetStream refused {subject}: {description} (code {code})")]
    JetStream {
        /// Subject.
        subject: String,
        /// JetStream err_code.
        code: u64,
        /// Description.
        description: String,
    },
    /// The answer was not JSON we understand.
    #[error("unexpected answer from {subject}: {message}")]
    Decode {
        /// Subject.
        subject: String,
        /// Why.
        message: String,
    },
}

#[derive(Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

#[derive(Deserialize)]
struct PubAck {
    #[serde(default)]
    seq: u64,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct StreamInfo {
    config: Option<StreamConfig>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct StreamConfig {
    #[serde(default)]
    max_age: u64,
}

/// Puts the candidate value expecting `last` as the key's last sequence; returns the
/// new sequence.
pub async fn put_expecting(
    client: &async_nats::Client,
    config: &ElectionConfig,
    last: u64,
) -> Result<u64, ElectionError> {
    let subject = format!("$KV.{}.{}", config.bucket, config.key);
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        "Nats-Expected-Last-Subject-Sequence",
        last.to_string().as_str(),
    );
    let request = client.request_with_headers(
        subject.clone(),
        headers,
        config.candidate.clone().into_bytes().into(),
    );
    let ack: PubAck = answer(&subject, request).await?;
    match ack.error {
        Some(err) if err.err_code == WRONG_LAST_SEQUENCE => Err(ElectionError::Taken {
            key: config.key.clone(),
        }),
        Some(err) => Err(ElectionError::JetStream {
            subject,
            code: err.err_code,
            description: err.description,
        }),
        None if ack.seq == 0 => Err(ElectionError::Decode {
            subject,
            message: "publish ack without a sequence".into(),
        }),
        None => Ok(ack.seq),
    }
}

/// Awaits a JetStream API answer on `subject` for at most [`REQUEST_TIMEOUT`] and decodes it.
async fn answer<T: serde::de::DeserializeOwned>(
    subject: &str,
    request: impl std::future::Future<Output = Result<async_nats::Message, async_nats::RequestError>>,
) -> Result<T, ElectionError> {
    let reply = tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| ElectionError::Request {
            subject: subject.to_string(),
            message: format!("no answer within {REQUEST_TIMEOUT:?}"),
        })?
        .map_err(|err| ElectionError::Request {
            subject: subject.to_string(),
            message: err.to_string(),
        })?;
    serde_json::from_slice(&reply.payload).map_err(|err| ElectionError::Decode {
        subject: subject.to_string(),
        message: err.to_string(),
    })
}

#[derive(Deserialize)]
struct PurgeResponse {
    #[serde(default)]
    success: bool,
    error: Option<ApiError>,
}

/// Gives up the key (purges its subject), so a standby's create succeeds at once.
///
/// A purge leaves no marker, unlike a KV delete: the key's last sequence is 0 again, which
/// is what a candidate's create expects. Call it only while leading; if leadership had
/// already passed on, the new leader's next refresh fails and it campaigns again, so two
/// leaders can never result.
pub async fn release(
    client: &async_nats::Client,
    config: &ElectionConfig,
) -> Result<(), ElectionError> {
    let subject = format!("{}.STREAM.PURGE.KV_{}", config.api_prefix, config.bucket);
    let body = serde_json::json!({ "filter": format!("$KV.{}.{}", config.bucket, config.key) });
    let request = client.request(subject.clone(), body.to_string().into_bytes().into());
    let answer: PurgeResponse = answer(&subject, request).await?;
    match answer.error {
        Some(err) => Err(ElectionError::JetStream {
            subject,
            code: err.err_code,
            description: err.description,
        }),
        None if !answer.success => Err(ElectionError::Decode {
            subject,
            message: "purge answered without success".into(),
        }),
        None => Ok(()),
    }
}

/// How long to wait before the next round: a leader refreshes four times per TTL (so
/// three refreshes can be lost before the key expires), a standby polls at an eighth of
/// the TTL within [`CANDIDATE_POLL`]; both jittered by ±25 %.
pub fn round_interval(ttl: Duration, leading: bool) -> Duration {
    let base = if leading {
        ttl / 4
    } else {
        (ttl / 8).clamp(CANDIDATE_POLL.0, CANDIDATE_POLL.1)
    };
    base.mul_f64(rand::thread_rng().gen_range(0.75..1.25))
}

/// Reads the bucket TTL (`max_age`) through the stream info API.
pub async fn bucket_ttl(
    client: &async_nats::Client,
    config: &ElectionConfig,
) -> Result<Duration, ElectionError> {
    let subject = format!("{}.STREAM.INFO.KV_{}", config.api_prefix, config.bucket);
    let info: StreamInfo = answer(&subject, client.request(subject.clone(), "".into())).await?;
    if let Some(err) = info.error {
        return Err(ElectionError::JetStream {
            subject,
            code: err.err_code,
            description: err.description,
        });
    }
    let nanos = info.config.map(|c| c.max_age).unwrap_or(0);
    let ttl = Duration::from_nanos(nanos);
    if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(3600) {
        return Err(ElectionError::Decode {
            subject,
            message: format!("bucket TTL {ttl:?} is outside 1s..1h; set a max age on the bucket"),
        });
    }
    Ok(ttl)
}

/// Campaigns until `cancel`, publishing the role on `role`. Errors are logged, counted
/// and retried (B5); the role is Standby whenever leadership is not confirmed.
pub async fn run(
    client: async_nats::Client,
    config: ElectionConfig,
    role: watch::Sender<Role>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
) {
    let mut ttl = config.fallback_ttl;
    let mut ttl_known = false;
    let mut revision: Option<u64> = None;
    // A short random splay so simultaneously started instances do not collide.
    let splay = Duration::from_millis(rand::thread_rng().gen_range(0..250));
    if sleep_or_cancel(splay, &cancel).await {
        return;
    }
    loop {
        if !ttl_known {
            match bucket_ttl(&client, &config).await {
                Ok(found) => {
                    ttl = found;
                    ttl_known = true;
                    tracing::info!("leader election bucket {} TTL is {ttl:?}", config.bucket);
                }
                Err(err) => {
                    metrics.election_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(
                        "cannot read leader election bucket status, using TTL {ttl:?}: {err}"
                    );
                }
            }
        }
        let last = revision.unwrap_or(0);
        match put_expecting(&client, &config, last).await {
            Ok(seq) => {
                if revision.is_none() {
                    tracing::info!(
                        "Became leader after winning election as {}",
                        config.candidate
                    );
                    metrics.leader.store(1, Ordering::Relaxed);
                    role.send_replace(Role::Leader);
                }
                revision = Some(seq);
            }
            Err(err) => {
                if revision.take().is_some() {
                    tracing::warn!("Lost leadership: {err}");
                    metrics.leader.store(0, Ordering::Relaxed);
                    role.send_replace(Role::Standby);
                }
                match err {
                    ElectionError::Taken { .. } => {
                        tracing::debug!("election key held by another provisioner")
                    }
                    other => {
                        metrics.election_errors.fetch_add(1, Ordering::Relaxed);
                        tracing::error!("leader election failed, retrying: {other}");
                    }
                }
            }
        }
        // A dead leader is replaced about one TTL after its last write (P4), a released
        // key within a standby poll.
        if sleep_or_cancel(round_interval(ttl, revision.is_some()), &cancel).await {
            break;
        }
    }
    if revision.is_some() {
        // Pause first: nothing may be provisioned once the key could have a new owner.
        metrics.leader.store(0, Ordering::Relaxed);
        role.send_replace(Role::Standby);
        match release(&client, &config).await {
            Ok(()) => tracing::info!("Released leadership on shutdown"),
            Err(err) => {
                metrics.election_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    "could not release leadership, a standby takes over after the TTL: {err}"
                );
            }
        }
    }
}

async fn sleep_or_cancel(duration: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = cancel.cancelled() => true,
        _ = tokio::time::sleep(duration) => false,
    }
}
