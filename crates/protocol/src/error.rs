//! The protocol crate's error type: one enum whose variants say which layer failed and why.
//! Variants carry facts (layer, field, sizes), never key material or whole messages.

use thiserror::Error;

use crate::ids::AgeError;
use crate::subjects::SubjectError;

/// One of the nested JSON documents of a Choria message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layer {
    /// The outer transport.
    Transport,
    /// The secure request (carries signature and caller identity).
    SecureRequest,
    /// The secure reply (carries the hash and, in v2, an optional signature).
    SecureReply,
    /// The request envelope.
    Request,
    /// The reply envelope.
    Reply,
    /// The SimpleRPC payload.
    Rpc,
}

impl std::fmt::Display for Layer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layer::Transport => "transport",
            Layer::SecureRequest => "secure request",
            Layer::SecureReply => "secure reply",
            Layer::Request => "request",
            Layer::Reply => "reply",
            Layer::Rpc => "rpc payload",
        })
    }
}

/// Why a message could not be decoded, encoded, signed or verified.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// The input is larger than the cap for its layer.
    #[error("{layer} is {size} bytes, the limit is {max}")]
    TooLarge {
        /// Which layer.
        layer: Layer,
        /// Its size.
        size: usize,
        /// The cap.
        max: usize,
    },
    /// The layer is not valid JSON of the expected shape.
    #[error("invalid {layer} JSON: {reason}")]
    Json {
        /// Which layer.
        layer: Layer,
        /// serde_json's description (position and expectation; no content).
        reason: String,
    },
    /// The `protocol` field is not one we know for this layer.
    #[error("unsupported {layer} protocol {found:?}")]
    UnknownProtocol {
        /// Which layer.
        layer: Layer,
        /// The value found (truncated to 64 characters).
        found: String,
    },
    /// A nested layer has the other protocol version than its container.
    #[error("{layer} protocol {found:?} does not match the transport version {expected}")]
    VersionMismatch {
        /// Which layer.
        layer: Layer,
        /// The version of the container.
        expected: crate::envelope::Version,
        /// The value found.
        found: String,
    },
    /// A base64 field could not be decoded.
    #[error("{layer} field {field} is not valid base64")]
    Base64 {
        /// Which layer.
        layer: Layer,
        /// Which field.
        field: &'static str,
    },
    /// A text field was expected to hold UTF-8.
    #[error("{layer} field {field} is not UTF-8 text")]
    NotUtf8 {
        /// Which layer.
        layer: Layer,
        /// Which field.
        field: &'static str,
    },
    /// A field breaks the upstream JSON schema (spec §6.5).
    #[error("{layer} field {field} is invalid: {reason}")]
    Schema {
        /// Which layer.
        layer: Layer,
        /// Which field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The secure reply hash does not match its message.
    #[error("reply hash does not match the reply content")]
    HashMismatch,
    /// A signature did not verify, or is malformed.
    #[error("signature check failed: {0}")]
    BadSignature(String),
    /// The request is insecure (`insecure` markers) but a signature check was asked for.
    #[error("the message is not signed (protocol security is off at the sender)")]
    Unsigned,
    /// Signing failed.
    #[error("could not sign: {0}")]
    Signing(String),
    /// A value cannot be used in a subject.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// The request is outside its TTL.
    #[error(transparent)]
    Age(#[from] AgeError),
}

impl ProtocolError {
    pub(crate) fn json(layer: Layer, e: serde_json::Error) -> Self {
        ProtocolError::Json {
            layer,
            reason: json_reason(&e),
        }
    }

    pub(crate) fn schema(layer: Layer, field: &'static str, reason: impl Into<String>) -> Self {
        ProtocolError::Schema {
            layer,
            field,
            reason: reason.into(),
        }
    }
}

/// Describes a serde_json error without echoing values: its "invalid type/value" messages quote
/// the offending value, which may be a token or password sent in the wrong field.
pub(crate) fn json_reason(e: &serde_json::Error) -> String {
    let text = e.to_string();
    match e.classify() {
        serde_json::error::Category::Data
            if !(text.starts_with("missing field") || text.starts_with("duplicate field")) =>
        {
            format!(
                "wrong type or value at line {} column {}",
                e.line(),
                e.column()
            )
        }
        _ => text,
    }
}

/// Cuts untrusted text for error messages.
pub(crate) fn truncate(text: &str) -> String {
    text.chars().take(64).collect()
}
