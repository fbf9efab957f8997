//! Protocol v1 envelopes (spec §6.2): JSON nested as strings, RSA signatures over the request text.
//! Field order follows the Go structs so encodings are byte-identical to upstream.

use serde::{Deserialize, Serialize};

use super::{non_empty, null_as_default, Filter, Hop, Version};
use crate::error::{Layer, ProtocolError};

/// `choria:transport:1`
pub const TRANSPORT_PROTOCOL: &str = "choria:transport:1";
/// `choria:secure:request:1`
pub const SECURE_REQUEST_PROTOCOL: &str = "choria:secure:request:1";
/// `choria:secure:reply:1`
pub const SECURE_REPLY_PROTOCOL: &str = "choria:secure:reply:1";
/// `choria:request:1`
pub const REQUEST_PROTOCOL: &str = "choria:request:1";
/// `choria:reply:1`
pub const REPLY_PROTOCOL: &str = "choria:reply:1";
/// Signature and certificate marker of unsigned messages.
pub const INSECURE: &str = "insecure";
/// Certificate marker of unsigned registration messages.
pub const INSECURE_REGISTRATION: &str = "insecure registration";
/// Smallest TTL the v1 request schema allows.
pub const MIN_TTL: i64 = 30;

/// The outer v1 message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transport {
    /// [`TRANSPORT_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the secure request or secure reply JSON.
    pub data: String,
    /// Routing headers (always an object).
    #[serde(default)]
    pub headers: TransportHeaders,
}

/// v1 transport headers.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TransportHeaders {
    /// Where replies go.
    #[serde(rename = "reply-to", skip_serializing_if = "String::is_empty")]
    pub reply_to: String,
    /// Sending identity.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mc_sender: String,
    /// Hops the message passed through.
    #[serde(
        rename = "seen-by",
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub seen_by: Vec<Hop>,
    /// Federation routing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub federation: Option<Federation>,
}

/// v1 federation header (the code writes `target`, the schema says `targets`: we follow the code).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Federation {
    /// Request id.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub req: String,
    /// Reply subject.
    #[serde(rename = "reply-to", skip_serializing_if = "String::is_empty")]
    pub reply_to: String,
    /// Target subjects.
    #[serde(
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub target: Vec<String>,
}

/// v1 secure request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureRequest {
    /// [`SECURE_REQUEST_PROTOCOL`].
    pub protocol: String,
    /// The request JSON as text (not base64).
    pub message: String,
    /// Base64 RSA PKCS#1 v1.5 SHA-256 signature over `message`, or [`INSECURE`].
    pub signature: String,
    /// The caller's PEM certificate, or [`INSECURE`].
    pub pubcert: String,
}

/// v1 request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// [`REQUEST_PROTOCOL`].
    pub protocol: String,
    /// The payload as text (servers also accept base64 of it).
    pub message: String,
    /// Addressing and timing.
    pub envelope: RequestEnvelope,
}

/// v1 request envelope, in upstream key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestEnvelope {
    /// 32-character request id.
    pub requestid: String,
    /// Sending identity.
    pub senderid: String,
    /// Caller id (`choria=<name>`).
    pub callerid: String,
    /// Target collective.
    pub collective: String,
    /// Target agent.
    pub agent: String,
    /// Seconds the request stays valid.
    pub ttl: i64,
    /// Creation time, Unix seconds.
    pub time: i64,
    /// Target filter.
    #[serde(default)]
    pub filter: Filter,
}

/// v1 reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    /// [`REPLY_PROTOCOL`].
    pub protocol: String,
    /// The reply payload as text.
    pub message: String,
    /// Addressing and timing.
    pub envelope: ReplyEnvelope,
}

/// v1 reply envelope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReplyEnvelope {
    /// The request being answered.
    pub requestid: String,
    /// Replying identity.
    pub senderid: String,
    /// Agent that answered.
    pub agent: String,
    /// Reply time, Unix seconds.
    pub time: i64,
}

/// v1 secure reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SecureReply {
    /// [`SECURE_REPLY_PROTOCOL`].
    pub protocol: String,
    /// The reply JSON as text.
    pub message: String,
    /// Base64 SHA-256 of `message`.
    pub hash: String,
}

layers!(Version::V1; Transport, SecureRequest, Request, Reply, SecureReply);

impl Transport {
    fn check(&self) -> Result<(), ProtocolError> {
        non_empty(Layer::Transport, "data", &self.data)
    }
}

impl SecureRequest {
    /// The schema: all fields non-empty.
    fn check(&self) -> Result<(), ProtocolError> {
        non_empty(Layer::SecureRequest, "message", &self.message)?;
        non_empty(Layer::SecureRequest, "signature", &self.signature)?;
        non_empty(Layer::SecureRequest, "pubcert", &self.pubcert)
    }

    /// True when the sender did not sign (`insecure` or the registration marker).
    pub fn is_insecure(&self) -> bool {
        self.signature == INSECURE
            || self.pubcert == INSECURE
            || self.pubcert == INSECURE_REGISTRATION
    }
}

impl Request {
    /// The schema rules of spec §6.5 (peers refuse requests breaking them).
    fn check(&self) -> Result<(), ProtocolError> {
        const L: Layer = Layer::Request;
        non_empty(L, "message", &self.message)?;
        let e = &self.envelope;
        if e.requestid.chars().count() != crate::ids::REQUEST_ID_LEN {
            return Err(ProtocolError::schema(
                L,
                "requestid",
                "must be exactly 32 characters",
            ));
        }
        non_empty(L, "senderid", &e.senderid)?;
        non_empty(L, "callerid", &e.callerid)?;
        non_empty(L, "collective", &e.collective)?;
        non_empty(L, "agent", &e.agent)?;
        if e.ttl < MIN_TTL {
            return Err(ProtocolError::schema(
                L,
                "ttl",
                format!("{} is below the minimum of {MIN_TTL}", e.ttl),
            ));
        }
        Ok(())
    }
}

impl Reply {
    fn check(&self) -> Result<(), ProtocolError> {
        non_empty(Layer::Reply, "requestid", &self.envelope.requestid)?;
        non_empty(Layer::Reply, "senderid", &self.envelope.senderid)
    }
}

impl SecureReply {
    /// The hash must be that of the message.
    fn check(&self) -> Result<(), ProtocolError> {
        crate::signing::check_hash(self.message.as_bytes(), &self.hash)
    }
}
