//! The authorization service: a queue subscriber on `$SYS.REQ.USER.AUTH` in the callout
//! account that decodes each request, runs [`crate::decision::decide`] and answers.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt as _;
use nkeys::KeyPair;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::decision::{decide, Connection, Policy, TokenVerifier};
use crate::metrics::{DecisionLabels, Metrics, RefusalLabels};
use crate::natsjwt::{decode_request, encode_response, AuthorizationRequest};

/// The subject nats-server sends authorization requests to.
pub const AUTH_SUBJECT: &str = "$SYS.REQ.USER.AUTH";
/// The queue group every broker's service joins, so one of them answers each request.
pub const QUEUE_GROUP: &str = "choria_broker_auth";

/// Everything one decision needs, shared by all request tasks.
pub struct AuthService {
    /// Broker-wide settings.
    pub policy: Policy,
    /// Token trust anchors.
    pub verifier: Arc<dyn TokenVerifier>,
    /// Key that signs responses (its public key is the callout `issuer`).
    pub issuer: KeyPair,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// Requests older than this are skipped: nats-server has already refused the client.
    /// Deciding them anyway only takes CPU from the broker during a reconnect storm.
    pub stale_after: Option<Duration>,
}

impl AuthService {
    fn is_stale(&self, request: &AuthorizationRequest) -> bool {
        let (Some(limit), true) = (self.stale_after, request.issued_at > 0) else {
            return false;
        };
        let now = choria_tokens::clock::unix_seconds(SystemTime::now());
        // `iat` is truncated to whole seconds: allow one more before calling it stale.
        now.saturating_sub(request.issued_at) > limit.as_secs() as i64 + 1
    }

    /// Handles one raw request and returns the signed response (if the request was decodable).
    pub fn handle(&self, payload: &[u8]) -> Option<String> {
        let started = Instant::now();
        let request = match decode_request(payload) {
            Ok(r) => r,
            Err(e) => {
                self.metrics.undecodable.inc();
                tracing::warn!(error = %e, "ignoring an undecodable authorization request");
                return None;
            }
        };
        if self.is_stale(&request) {
            self.metrics.stale.inc();
            tracing::debug!(
                remote = request.client_info.host,
                "skipping an authorization request nats-server has already timed out"
            );
            return None;
        }
        let conn = Connection::from_request(&request);
        let decision = decide(&self.policy, self.verifier.as_ref(), &conn);
        let (outcome, account) = match &decision {
            Ok(grant) => {
                tracing::debug!(
                    remote = conn.remote,
                    account = grant.account.name(),
                    user = %grant.name,
                    "registering user '{}' in account '{}'",
                    grant.name,
                    grant.account.name()
                );
                ("accepted".to_string(), grant.account.name().to_string())
            }
            Err(rejection) => {
                tracing::warn!(
                    remote = conn.remote,
                    user = conn.user,
                    name = conn.name,
                    reason = %rejection,
                    "authorization denied"
                );
                self.metrics
                    .refusals
                    .get_or_create(&RefusalLabels {
                        reason: rejection.label().to_string(),
                        rule: rejection.rule().to_string(),
                    })
                    .inc();
                (rejection.label().to_string(), String::new())
            }
        };
        let reason = decision.as_ref().err().map(|r| r.to_string());
        let response = encode_response(
            &self.issuer,
            &request,
            match &decision {
                Ok(grant) => Ok(grant),
                Err(_) => Err(reason.as_deref().unwrap_or("denied")),
            },
        );
        self.metrics
            .decisions
            .get_or_create(&DecisionLabels { outcome, account })
            .inc();
        self.metrics
            .latency
            .observe(started.elapsed().as_secs_f64());
        match response {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::error!(error = %e, "could not sign an authorization response");
                None
            }
        }
    }
}

/// Errors starting the service loop, with async-nats' error kind.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Subscribing failed.
    #[error("could not subscribe to {AUTH_SUBJECT}: {0}")]
    Subscribe(#[source] async_nats::SubscribeError),
    /// The subscription could not be flushed to the server.
    #[error("could not subscribe to {AUTH_SUBJECT}: {0}")]
    Flush(#[source] async_nats::client::FlushError),
}

/// Subscribes and returns the loop future; the subscription is active when this returns.
pub async fn start(
    client: async_nats::Client,
    service: Arc<AuthService>,
    concurrency: usize,
    cancel: CancellationToken,
) -> Result<impl std::future::Future<Output = ()>, ServiceError> {
    let mut subscription = client
        .queue_subscribe(AUTH_SUBJECT, QUEUE_GROUP.to_string())
        .await
        .map_err(ServiceError::Subscribe)?;
    client.flush().await.map_err(ServiceError::Flush)?;
    Ok(async move {
        let limit = Arc::new(Semaphore::new(concurrency.max(1)));
        loop {
            let message = tokio::select! {
                _ = cancel.cancelled() => break,
                m = subscription.next() => m,
            };
            let Some(message) = message else { break };
            let Some(reply) = message.reply.clone() else {
                continue;
            };
            let permit = tokio::select! {
                _ = cancel.cancelled() => break,
                p = limit.clone().acquire_owned() => p,
            };
            let Ok(permit) = permit else { break };
            let service = service.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // A decision is a few ed25519 operations (well under a millisecond), so it
                // runs on the worker; the semaphore bounds how many are in flight.
                if let Some(response) = service.handle(&message.payload) {
                    if let Err(e) = client.publish(reply, response.into()).await {
                        tracing::warn!(error = %e, "could not publish an authorization response");
                    }
                }
            });
        }
        let _ = subscription.unsubscribe().await;
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    fn request_issued_at(server: &KeyPair, iat: i64) -> String {
        let body = serde_json::json!({
            "iss": server.public_key(), "sub": "UABC", "iat": iat,
            "nats": {
                "server_id": {"id": server.public_key(), "name": "n"},
                "user_nkey": "UABC",
                "client_info": {"host": "127.0.0.1", "id": 7, "kind": "Client", "type": "nats"},
                "connect_opts": {"name": "node1"},
                "client_tls": {"version": "1.3"},
                "type": "authorization_request",
                "version": 2
            }
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"typ":"JWT","alg":"ed25519-nkey"}"#),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        let signature = server.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    #[test]
    fn requests_nats_server_already_gave_up_on_are_skipped() {
        let service = AuthService {
            policy: Policy::default(),
            verifier: Arc::new(crate::verify::ChoriaVerifier::new(
                None,
                Vec::new(),
                Vec::new(),
                Vec::new(),
            )),
            issuer: KeyPair::new_account(),
            metrics: Metrics::new(),
            stale_after: Some(Duration::from_secs(2)),
        };
        let server = KeyPair::new_server();
        let now = choria_tokens::clock::unix_seconds(SystemTime::now());
        assert!(
            service
                .handle(request_issued_at(&server, now).as_bytes())
                .is_some(),
            "a fresh request is answered (here with a refusal: it has no token)"
        );
        assert_eq!(service.metrics.stale.get(), 0);
        assert_eq!(service.metrics.refused("no_token", "no_token"), 1);
        assert!(service
            .handle(request_issued_at(&server, now - 60).as_bytes())
            .is_none());
        assert_eq!(service.metrics.stale.get(), 1);
    }
}
