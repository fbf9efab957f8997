//! RPC over one shared NATS connection (P1): one wildcard reply subscription
//! `provisioning.reply.<md5(caller)>.>` routes replies to waiting calls by request id.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use choria_protocol::ids::new_request_id;
use choria_protocol::rpc::{RpcReply, RpcRequest, StatusCode, DISCOVERY_PING};
use choria_protocol::subjects::{self, SubjectError, PROVISIONING_COLLECTIVE};
use futures::StreamExt;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::wire::{self, WireError};

/// The provisioner's inbox prefix `provisioning.reply.<md5(caller)>`; its connection's
/// custom inbox prefix and the RPC layer's reply subscription share it.
pub use choria_protocol::subjects::provisioning_reply_prefix as reply_prefix;

/// Buffered replies per pending discovery.
const DISCOVERY_BUFFER: usize = 4096;

/// Why an RPC failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// Nothing answered before the timeout (retryable).
    #[error("received 0 responses while expecting a response from {identity}")]
    NoReply {
        /// Target.
        identity: String,
    },
    /// The target cannot be named in a subject (never retryable).
    #[error("cannot address {target:?}: {source}")]
    Subject {
        /// Node identity, agent or request id.
        target: String,
        /// Why the subject was refused.
        source: SubjectError,
    },
    /// The request could not be encoded.
    #[error("could not encode a request to {subject}: {source}")]
    Encode {
        /// Subject.
        subject: String,
        /// Why.
        source: WireError,
    },
    /// Sending failed (retryable).
    #[error("could not publish to {subject}: {source}")]
    Publish {
        /// Subject.
        subject: String,
        /// Why.
        source: async_nats::PublishError,
    },
    /// The node answered with a non-OK status.
    #[error("invalid response from {sender}: {message} ({})", code.code())]
    Status {
        /// Replying node.
        sender: String,
        /// SimpleRPC status code.
        code: StatusCode,
        /// statusmsg.
        message: String,
    },
    /// The reply could not be decoded or had wrong types (B2).
    #[error("malformed reply from {sender}: {message}")]
    Malformed {
        /// Replying node (or `unknown`).
        sender: String,
        /// What was wrong.
        message: String,
    },
    /// The RPC layer is shut down.
    #[error("rpc client is closed")]
    Closed,
}

impl RpcError {
    /// Whether trying again could succeed (B7).
    pub fn retryable(&self) -> bool {
        match self {
            RpcError::NoReply { .. } | RpcError::Publish { .. } => true,
            // Aborted covers the node's provisioning lock, which expires.
            RpcError::Status { code, message, .. } => {
                *code == StatusCode::Aborted && message.contains("lock")
                    || *code == StatusCode::UnknownError
            }
            RpcError::Subject { .. }
            | RpcError::Encode { .. }
            | RpcError::Malformed { .. }
            | RpcError::Closed => false,
        }
    }
}

type Pending = Arc<Mutex<HashMap<String, mpsc::Sender<wire::DecodedReply>>>>;

/// Shared RPC client; cheap to clone.
#[derive(Clone, educe::Educe)]
#[educe(Debug)]
pub struct Rpc {
    #[educe(Debug(ignore))]
    client: async_nats::Client,
    sender_id: String,
    caller_id: String,
    #[educe(Debug(ignore))]
    version: wire::Version,
    #[educe(Debug(ignore))]
    pending: Pending,
}

fn lock(
    p: &Pending,
) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<wire::DecodedReply>>> {
    // Only inserts/removes happen under this lock; a poisoned map is still usable.
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Rpc {
    /// Subscribes the wildcard reply subject and starts routing until `cancel`.
    pub async fn start(
        client: async_nats::Client,
        sender_id: &str,
        caller_id: &str,
        version: wire::Version,
        cancel: CancellationToken,
    ) -> Result<Rpc, async_nats::SubscribeError> {
        let prefix = subjects::provisioning_reply_prefix(caller_id);
        let mut subscription = client.subscribe(format!("{prefix}.>")).await?;
        let pending: Pending = Arc::new(Mutex::new(HashMap::new()));
        let routes = pending.clone();
        tokio::spawn(async move {
            loop {
                let message = tokio::select! {
                    _ = cancel.cancelled() => break,
                    m = subscription.next() => match m { Some(m) => m, None => break },
                };
                let id = message
                    .subject
                    .rsplit('.')
                    .next()
                    .unwrap_or_default()
                    .to_string();
                let sender = lock(&routes).get(&id).cloned();
                let Some(sender) = sender else {
                    tracing::debug!("dropping reply for unknown or finished request {id}");
                    continue;
                };
                match wire::decode_reply(&message.payload) {
                    Ok(reply) => {
                        // A full buffer means the caller stopped listening; drop.
                        let _ = sender.try_send(reply);
                    }
                    Err(err) => tracing::warn!("undecodable reply on {}: {err}", message.subject),
                }
            }
            lock(&routes).clear();
        });
        Ok(Rpc {
            client,
            sender_id: sender_id.to_string(),
            caller_id: caller_id.to_string(),
            version,
            pending,
        })
    }

    /// The NATS connection.
    pub fn client(&self) -> &async_nats::Client {
        &self.client
    }

    async fn send(
        &self,
        subject: String,
        agent: &str,
        payload: &[u8],
        agent_filter: Vec<String>,
        capacity: usize,
    ) -> Result<(String, mpsc::Receiver<wire::DecodedReply>), RpcError> {
        let id = new_request_id();
        let reply_to = subjects::reply(PROVISIONING_COLLECTIVE, &self.caller_id, &id, false)
            .map_err(|source| RpcError::Subject {
                target: id.clone(),
                source,
            })?;
        let body = wire::encode_request(&wire::RequestSpec {
            version: self.version,
            request_id: &id,
            sender_id: &self.sender_id,
            caller_id: &self.caller_id,
            collective: PROVISIONING_COLLECTIVE,
            agent,
            payload,
            agent_filter,
            reply_to: &reply_to,
        })
        .map_err(|source| RpcError::Encode {
            subject: subject.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel(capacity);
        lock(&self.pending).insert(id.clone(), tx);
        let published = async {
            self.client.publish(subject.clone(), body.into()).await?;
            self.client.flush().await.map_err(|e| {
                async_nats::PublishError::with_source(async_nats::client::PublishErrorKind::Send, e)
            })
        };
        if let Err(source) = published.await {
            lock(&self.pending).remove(&id);
            return Err(RpcError::Publish { subject, source });
        }
        Ok((id, rx))
    }

    /// One directed SimpleRPC request to `identity`; exactly one OK reply expected. Returns
    /// the reply's `data` object.
    pub async fn call(
        &self,
        identity: &str,
        agent: &str,
        action: &str,
        data: Map<String, Value>,
        timeout: Duration,
    ) -> Result<Map<String, Value>, RpcError> {
        let subject = subjects::node(PROVISIONING_COLLECTIVE, identity).map_err(|source| {
            RpcError::Subject {
                target: identity.to_string(),
                source,
            }
        })?;
        let payload =
            RpcRequest::new(agent, action, data)
                .encode()
                .map_err(|e| RpcError::Encode {
                    subject: subject.clone(),
                    source: WireError::Protocol(e),
                })?;
        let (id, mut rx) = self.send(subject, agent, &payload, vec![], 4).await?;
        let reply = tokio::time::timeout(timeout, async {
            // Ignore answers from anyone but the target (S2: a second responder for
            // the same identity cannot hijack the pass).
            loop {
                match rx.recv().await {
                    Some(r) if r.sender == identity => return Some(r),
                    Some(r) => tracing::warn!("ignoring reply to {identity} from {}", r.sender),
                    None => return None,
                }
            }
        })
        .await;
        lock(&self.pending).remove(&id);
        let reply = match reply {
            Ok(Some(r)) => r,
            Ok(None) => return Err(RpcError::Closed),
            Err(_) => {
                return Err(RpcError::NoReply {
                    identity: identity.to_string(),
                })
            }
        };
        let parsed =
            RpcReply::decode(reply.message.as_bytes()).map_err(|e| RpcError::Malformed {
                sender: reply.sender.clone(),
                message: format!("not a SimpleRPC reply: {e}"),
            })?;
        if !parsed.is_ok() {
            return Err(RpcError::Status {
                sender: reply.sender,
                code: parsed.statuscode,
                message: parsed.statusmsg,
            });
        }
        match parsed.data {
            Value::Object(map) => Ok(map),
            Value::Null => Ok(Map::new()),
            other => Err(RpcError::Malformed {
                sender: reply.sender,
                message: format!("data is {other}, not an object"),
            }),
        }
    }

    /// Broadcast discovery for nodes with the `choria_provision` agent; collects
    /// identities until `idle` passes without a reply or `timeout` ends (B14).
    pub async fn discover(
        &self,
        timeout: Duration,
        idle: Duration,
    ) -> Result<Vec<String>, RpcError> {
        let subject =
            subjects::broadcast_agent(PROVISIONING_COLLECTIVE, "discovery").map_err(|source| {
                RpcError::Subject {
                    target: "discovery".into(),
                    source,
                }
            })?;
        let (id, mut rx) = self
            .send(
                subject,
                "discovery",
                DISCOVERY_PING,
                vec!["choria_provision".into()],
                DISCOVERY_BUFFER,
            )
            .await?;
        let deadline = tokio::time::Instant::now() + timeout;
        let mut found = std::collections::BTreeSet::new();
        loop {
            let wait = if found.is_empty() {
                deadline
            } else {
                (tokio::time::Instant::now() + idle).min(deadline)
            };
            match tokio::time::timeout_at(wait, rx.recv()).await {
                Ok(Some(reply)) => {
                    found.insert(reply.sender);
                }
                Ok(None) | Err(_) => break,
            }
        }
        lock(&self.pending).remove(&id);
        Ok(found.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_prefix_uses_md5_of_the_caller() {
        assert_eq!(
            reply_prefix("up=ginkgo"),
            "provisioning.reply.e33bf0376d4accbb4a8fd24b2f840b2e"
        );
        assert_eq!(new_request_id().len(), 32);
    }

    #[test]
    fn b7_only_transient_errors_are_retryable() {
        assert!(RpcError::NoReply {
            identity: "a".into()
        }
        .retryable());
        assert!(RpcError::Status {
            sender: "a".into(),
            code: StatusCode::Aborted,
            message: "Could not obtain provisioning lock".into()
        }
        .retryable());
        assert!(!RpcError::Status {
            sender: "a".into(),
            code: StatusCode::Aborted,
            message: "Incorrect provision token supplied".into()
        }
        .retryable());
        assert!(!RpcError::Status {
            sender: "a".into(),
            code: StatusCode::InvalidData,
            message: "bad".into()
        }
        .retryable());
        assert!(!RpcError::Malformed {
            sender: "a".into(),
            message: "x".into()
        }
        .retryable());
    }
}
