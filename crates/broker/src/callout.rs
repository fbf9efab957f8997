//! The authorization service: a queue subscriber on `$SYS.REQ.USER.AUTH` in the callout
//! account that decodes each request, runs [`crate::decision::decide`] and answers.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt as _;
use nkeys::KeyPair;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::decision::{decide, Connection, Policy, TokenVerifier};
use crate::metrics::{DecisionLabels, Metrics};
use crate::natsjwt::{decode_request, encode_response};

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
}

impl AuthService {
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

/// Errors starting the service loop.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// Subscribing failed.
    #[error("could not subscribe to {AUTH_SUBJECT}: {0}")]
    Subscribe(String),
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
        .map_err(|e| ServiceError::Subscribe(e.to_string()))?;
    client
        .flush()
        .await
        .map_err(|e| ServiceError::Subscribe(e.to_string()))?;
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
