//! The provisioner's seam onto `choria-protocol`: request encoding and reply decoding
//! for the RPC layer (spec appendix A), v1 or v2, unsigned as nodes in provisioning mode
//! expect. Also the node-side halves, used only by test peers.

use std::time::{Duration, SystemTime};

use choria_protocol::message::{
    self as msg, ReplyMeta, ReplySigner, RequestMeta, RequestSigner, Routing,
};
use choria_protocol::ProtocolError;
pub use choria_protocol::Version;

/// Largest reply we decode.
pub const MAX_REPLY_BYTES: usize = 1024 * 1024;
/// TTL of our requests.
pub const REQUEST_TTL: Duration = Duration::from_secs(60);

/// Why a message could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A reply larger than [`MAX_REPLY_BYTES`].
    #[error("reply of {size} bytes exceeds {MAX_REPLY_BYTES}")]
    TooLarge {
        /// Its size.
        size: usize,
    },
    /// A protocol layer was refused (or could not be encoded).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
    /// The reply's payload is not text.
    #[error("reply payload is not UTF-8")]
    NotUtf8(#[source] std::string::FromUtf8Error),
}

/// What one request carries.
#[derive(Debug, Clone)]
pub struct RequestSpec<'a> {
    /// Protocol version.
    pub version: Version,
    /// Request id (32 hex).
    pub request_id: &'a str,
    /// Our identity.
    pub sender_id: &'a str,
    /// Our caller id (`choria=<name>`).
    pub caller_id: &'a str,
    /// Collective.
    pub collective: &'a str,
    /// Agent.
    pub agent: &'a str,
    /// Payload (SimpleRPC JSON, or `ping` for discovery).
    pub payload: &'a [u8],
    /// Agent filter.
    pub agent_filter: Vec<String>,
    /// Where replies go.
    pub reply_to: &'a str,
}

/// Encodes an unsigned request.
pub fn encode_request(spec: &RequestSpec<'_>) -> Result<Vec<u8>, WireError> {
    let mut meta = RequestMeta::new(
        spec.sender_id,
        spec.caller_id,
        spec.collective,
        spec.agent,
        REQUEST_TTL,
        SystemTime::now(),
    );
    meta.id = spec.request_id.to_string();
    meta.filter.agent = spec.agent_filter.clone();
    let routing = Routing {
        reply_to: spec.reply_to.to_string(),
        sender: spec.sender_id.to_string(),
        hops: Vec::new(),
    };
    Ok(msg::encode_request(
        spec.version,
        &meta,
        spec.payload,
        &RequestSigner::Insecure,
        &routing,
    )?)
}

/// A decoded reply.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReply {
    /// Request id it answers.
    pub request_id: String,
    /// Replying identity.
    pub sender: String,
    /// The inner message text (SimpleRPC reply JSON, or discovery `pong`).
    pub message: String,
}

/// Decodes a reply; every layer is checked by `choria-protocol` (B2).
pub fn decode_reply(bytes: &[u8]) -> Result<DecodedReply, WireError> {
    if bytes.len() > MAX_REPLY_BYTES {
        return Err(WireError::TooLarge { size: bytes.len() });
    }
    let reply = msg::decode_reply(bytes)?;
    let message = String::from_utf8(reply.payload).map_err(WireError::NotUtf8)?;
    Ok(DecodedReply {
        request_id: reply.meta.request_id,
        sender: reply.meta.sender,
        message,
    })
}

/// Decoded request fields a node needs (test peers).
#[derive(Debug, Clone)]
pub struct DecodedRequest {
    /// Protocol version (the reply uses the same).
    pub version: Version,
    /// Request metadata.
    pub meta: RequestMeta,
    /// Request id.
    pub request_id: String,
    /// Agent.
    pub agent: String,
    /// Payload text.
    pub message: String,
    /// Reply subject.
    pub reply_to: String,
}

/// Decodes a request (test peers).
pub fn decode_request(bytes: &[u8]) -> Result<DecodedRequest, WireError> {
    let request = msg::decode_request(bytes)?;
    Ok(DecodedRequest {
        version: request.version,
        request_id: request.meta.id.clone(),
        agent: request.meta.agent.clone(),
        message: String::from_utf8_lossy(&request.payload).into_owned(),
        reply_to: request.routing.reply_to.clone(),
        meta: request.meta,
    })
}

/// Encodes an unsigned reply to `request` from `sender` (test peers).
pub fn encode_reply(
    request: &DecodedRequest,
    sender: &str,
    message: &str,
) -> Result<Vec<u8>, WireError> {
    let meta = ReplyMeta::for_request(&request.meta, sender, SystemTime::now());
    let routing = Routing {
        reply_to: String::new(),
        sender: sender.to_string(),
        hops: Vec::new(),
    };
    Ok(msg::encode_reply(
        request.version,
        &meta,
        message.as_bytes(),
        &ReplySigner::None,
        &routing,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_and_reply_round_trip_in_both_versions() {
        for version in [Version::V1, Version::V2] {
            let id = choria_protocol::ids::new_request_id();
            let bytes = encode_request(&RequestSpec {
                version,
                request_id: &id,
                sender_id: "prov",
                caller_id: "choria=prov",
                collective: "provisioning",
                agent: "discovery",
                payload: b"ping",
                agent_filter: vec!["choria_provision".into()],
                reply_to: "provisioning.reply.x.abc",
            })
            .expect("encode");
            let req = decode_request(&bytes).expect("decode");
            assert_eq!(req.request_id, id);
            assert_eq!(req.message, "ping");
            assert_eq!(req.reply_to, "provisioning.reply.x.abc");
            assert_eq!(req.meta.filter.agent, vec!["choria_provision"]);
            let reply = encode_reply(&req, "n1", "{\"a\":1}").expect("reply");
            let decoded = decode_reply(&reply).expect("decode reply");
            assert_eq!(decoded.sender, "n1");
            assert_eq!(decoded.request_id, id);
            assert_eq!(decoded.message, "{\"a\":1}");
        }
    }

    #[test]
    fn b2_garbage_replies_are_errors() {
        for junk in [
            &b"nope"[..],
            b"{}",
            b"{\"protocol\":\"choria:transport:1\",\"data\":\"!!\"}",
            b"{\"protocol\":\"choria:transport:1\",\"data\":\"e30=\"}",
        ] {
            assert!(decode_reply(junk).is_err());
        }
    }
}
