//! Protocol v2 envelopes (spec §6.3): inner layers base64-encoded, ed25519 signatures and the
//! caller's JWT carried in the secure request. Times are Unix nanoseconds.

use serde::{Deserialize, Serialize};

use super::{non_empty, null_as_default, Filter, Hop, Version};
use crate::error::{Layer, ProtocolError};

/// `io.choria.protocol.v2.transport`
pub const TRANSPORT_PROTOCOL: &str = "io.choria.protocol.v2.transport";
/// `io.choria.protocol.v2.secure_request`
pub const SECURE_REQUEST_PROTOCOL: &str = "io.choria.protocol.v2.secure_request";
/// `io.choria.protocol.v2.secure_reply`
pub const SECURE_REPLY_PROTOCOL: &str = "io.choria.protocol.v2.secure_reply";
/// `io.choria.protocol.v2.request`
pub const REQUEST_PROTOCOL: &str = "io.choria.protocol.v2.request";
/// `io.choria.protocol.v2.reply`
pub const REPLY_PROTOCOL: &str = "io.choria.protocol.v2.reply";
/// The bytes signed in place of a real signature when protocol security is off
/// (`signature` is then base64 of this, `aW5zZWN1cmU=`).
pub const INSECURE: &str = "insecure";

/// The outer v2 message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// [`TRANSPORT_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the secure request or secure reply JSON.
    pub data: String,
    /// Routing headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<TransportHeaders>,
}

/// v2 transport headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportHeaders {
    /// Where replies go.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reply: String,
    /// Sending identity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub sender: String,
    /// Hops (the schema calls it `seen-by`; the code writes `trace`, which we follow).
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trace: Vec<Hop>,
    /// Federation routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation: Option<Federation>,
}

/// v2 federation header.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Federation {
    /// Request id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub request: String,
    /// Reply subject.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub reply: String,
    /// Target subjects.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub targets: Vec<String>,
}

/// v2 secure request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureRequest {
    /// [`SECURE_REQUEST_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the request JSON.
    pub request: String,
    /// Base64 (standard, padded) ed25519 signature over the request JSON bytes, or base64 of
    /// [`INSECURE`].
    pub signature: String,
    /// The caller's JWT; empty when protocol security is off.
    #[serde(default)]
    pub caller: String,
    /// JWT of a delegated signer (AAA service).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signer: String,
}

/// v2 request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// [`REQUEST_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the payload.
    pub message: String,
    /// Request id.
    pub id: String,
    /// Sending identity.
    pub sender: String,
    /// Caller id.
    pub caller: String,
    /// Target collective.
    pub collective: String,
    /// Target agent.
    pub agent: String,
    /// Seconds the request stays valid.
    pub ttl: i64,
    /// Creation time, Unix nanoseconds.
    pub time: i64,
    /// Target filter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

/// v2 reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// [`REPLY_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the reply payload.
    pub message: String,
    /// The request being answered.
    pub request: String,
    /// Replying identity.
    pub sender: String,
    /// Agent that answered.
    pub agent: String,
    /// Reply time, Unix nanoseconds.
    pub time: i64,
}

/// v2 secure reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureReply {
    /// [`SECURE_REPLY_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the reply JSON.
    pub reply: String,
    /// Base64 SHA-256 of the reply JSON bytes.
    pub hash: String,
    /// Base64 ed25519 signature over the reply JSON bytes (when reply signing is on).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub signature: String,
    /// The sender's JWT (when reply signing is on).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sender: String,
}

layers!(Version::V2; Transport, SecureRequest, Request, Reply, SecureReply);

impl Transport {
    fn check(&self) -> Result<(), ProtocolError> {
        non_empty(Layer::Transport, "data", &self.data)
    }
}

impl SecureRequest {
    /// An empty `caller` is accepted (upstream emits it when protocol security is off);
    /// whether that is acceptable is the receiver's policy.
    fn check(&self) -> Result<(), ProtocolError> {
        non_empty(Layer::SecureRequest, "request", &self.request)?;
        non_empty(Layer::SecureRequest, "signature", &self.signature)
    }

    /// True when the signature is the `insecure` marker or there is no caller JWT.
    pub fn is_insecure(&self) -> bool {
        self.caller.is_empty() || self.signature == super::b64_encode(INSECURE.as_bytes())
    }
}

impl Request {
    /// The schema rules of spec §6.5.
    fn check(&self) -> Result<(), ProtocolError> {
        const L: Layer = Layer::Request;
        non_empty(L, "id", &self.id)?;
        non_empty(L, "sender", &self.sender)?;
        non_empty(L, "caller", &self.caller)?;
        non_empty(L, "collective", &self.collective)?;
        non_empty(L, "agent", &self.agent)?;
        if self.ttl < 1 {
            return Err(ProtocolError::schema(
                L,
                "ttl",
                format!("{} is below the minimum of 1", self.ttl),
            ));
        }
        if self.time < 1 {
            return Err(ProtocolError::schema(L, "time", "must be positive"));
        }
        Ok(())
    }
}

impl Reply {
    /// The upstream schema's wrong `protocol` const is ignored.
    fn check(&self) -> Result<(), ProtocolError> {
        non_empty(Layer::Reply, "request", &self.request)?;
        non_empty(Layer::Reply, "sender", &self.sender)
    }
}

impl SecureReply {
    /// The hash must be that of the reply (the signature is not checked here: see
    /// [`crate::message::DecodedReply`]).
    fn check(&self) -> Result<(), ProtocolError> {
        let reply = super::b64_decode(Layer::SecureReply, "reply", &self.reply)?;
        crate::signing::check_hash(&reply, &self.hash)
    }
}
