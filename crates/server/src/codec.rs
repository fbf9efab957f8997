//! The [`Codec`] over `choria-protocol`: decodes requests, applies the node's trust
//! policy (who may sign, [`crate::verify`]: v1 x509 callers chained to the node's CA, v2
//! callers whose JWTs an issuer or trusted signer verifies, delegated AAA signers; never
//! unsigned requests), and encodes replies and lifecycle events.

use std::time::{Duration, SystemTime};

use choria_protocol::lifecycle::{EventType, LifecycleEvent};
use choria_protocol::message::{self, ReplyMeta, ReplySigner, RequestSigner, Routing};
use choria_protocol::registration::FileContent;
use choria_protocol::subjects;
use choria_protocol::Version;

use crate::wire::{Codec, Incoming, Lifecycle, ReplyKey, Verification};

/// The production codec.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProtocolCodec;

impl Codec for ProtocolCodec {
    fn decode_request(
        &self,
        bytes: &[u8],
        verification: &Verification,
    ) -> Result<Incoming, String> {
        let decoded =
            message::decode_request(bytes).map_err(|e| format!("malformed request: {e}"))?;
        let now = SystemTime::now();
        decoded
            .meta
            .check_age(now)
            .map_err(|e| format!("request {} refused: {e}", decoded.meta.id))?;
        if let Verification::Required(trust) = verification {
            crate::verify::verify_request(&decoded, trust, now)
                .map_err(|e| format!("request {} refused: {e}", decoded.meta.id))?;
        }
        Ok(Incoming {
            request_id: decoded.meta.id.clone(),
            sender: decoded.meta.sender.clone(),
            caller: decoded.meta.caller.clone(),
            agent: decoded.meta.agent.clone(),
            collective: decoded.meta.collective.clone(),
            reply_to: Some(decoded.routing.reply_to.clone()).filter(|r| !r.is_empty()),
            payload: decoded.payload.clone(),
            filter: decoded.meta.filter.clone(),
            version: decoded.version,
            meta: decoded.meta,
        })
    }

    fn encode_reply(
        &self,
        request: &Incoming,
        identity: &str,
        payload: &[u8],
        signer: Option<&ReplyKey>,
    ) -> Result<Vec<u8>, String> {
        let meta = ReplyMeta::for_request(&request.meta, identity, SystemTime::now());
        // v1 replies are never signed; v2 replies are when the node has a key.
        let signer = match (request.version, signer) {
            (Version::V2, Some(reply_key)) => ReplySigner::Ed25519 {
                key: &reply_key.key,
                sender_jwt: &reply_key.jwt,
            },
            _ => ReplySigner::None,
        };
        let routing = Routing {
            reply_to: String::new(),
            sender: identity.to_string(),
            hops: Vec::new(),
        };
        message::encode_reply(request.version, &meta, payload, &signer, &routing)
            .map_err(|e| format!("could not encode reply to {}: {e}", request.request_id))
    }

    fn registration(
        &self,
        identity: &str,
        file: &str,
        mtime: i64,
        updated: bool,
        bytes: &[u8],
    ) -> Result<Vec<u8>, String> {
        let payload = FileContent::new(file, mtime, updated, bytes, true)
            .and_then(|content| content.encode())
            .map_err(|e| format!("could not encode registration data from {file}: {e}"))?;
        let meta = message::RequestMeta::new(
            identity,
            &format!("choria={identity}"),
            subjects::PROVISIONING_COLLECTIVE,
            "registration",
            Duration::from_secs(60),
            SystemTime::now(),
        );
        let routing = Routing {
            reply_to: subjects::DEV_NULL.to_string(),
            sender: identity.to_string(),
            hops: Vec::new(),
        };
        message::encode_request(
            Version::V1,
            &meta,
            &payload,
            &RequestSigner::Insecure,
            &routing,
        )
        .map_err(|e| format!("could not encode registration request: {e}"))
    }

    fn lifecycle(
        &self,
        event: Lifecycle,
        identity: &str,
        component: &str,
        version: &str,
    ) -> Result<(String, Vec<u8>), String> {
        let kind = match event {
            Lifecycle::Startup => EventType::Startup,
            Lifecycle::Alive => EventType::Alive,
            Lifecycle::Provisioned => EventType::Provisioned,
            Lifecycle::Shutdown => EventType::Shutdown,
        };
        let event =
            LifecycleEvent::new(kind, identity, component, Some(version), SystemTime::now());
        let subject = event.subject().map_err(|e| e.to_string())?;
        let body = event.to_cloudevent_json().map_err(|e| e.to_string())?;
        Ok((subject, body))
    }
}
