//! The layered Choria message envelopes, v1 (x509) and v2 (ed25519 + JWT), as typed values.
//! Decoding checks size, JSON shape, protocol string and schema rules before returning anything.
//!
//! Version detection (spec §6.1) reads the `protocol` key of the outer transport; nested layers
//! must then carry the same version's protocol strings.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{truncate, Layer, ProtocolError};

/// Gives each listed layer type of one version its `validate` and `decode`, which every layer
/// shares: size and JSON shape, then the version's protocol string, then the type's own `check`.
macro_rules! layers {
    ($version:expr; $($layer:ident),+ $(,)?) => {$(
        impl $layer {
            /// Checks the protocol string, then this layer's schema rules (spec §6.5).
            pub fn validate(&self) -> Result<(), ProtocolError> {
                super::expect_protocol(Layer::$layer, $version, &self.protocol)?;
                self.check()
            }

            /// Decodes this layer and [validates](Self::validate) it.
            pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
                let value: Self = super::parse(Layer::$layer, bytes)?;
                value.validate()?;
                Ok(value)
            }
        }
    )+};
}

pub mod v1;
pub mod v2;

/// Largest transport message accepted (the nats-server default max payload is 1 MiB; we allow
/// headroom for brokers configured larger).
pub const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;

/// Protocol string for an unknown version, as upstream reports it.
pub const PROTOCOL_UNKNOWN: &str = "io.choria.protocol.unknown";

/// Protocol version of a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `choria:*:1`, used with x509 security providers.
    V1,
    /// `io.choria.protocol.v2.*`, used with the ed25519 + JWT `choria` provider.
    V2,
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Version::V1 => "v1",
            Version::V2 => "v2",
        })
    }
}

impl Version {
    /// The protocol string of `layer` in this version.
    pub fn protocol(self, layer: Layer) -> &'static str {
        match (self, layer) {
            (Version::V1, Layer::Transport) => v1::TRANSPORT_PROTOCOL,
            (Version::V1, Layer::SecureRequest) => v1::SECURE_REQUEST_PROTOCOL,
            (Version::V1, Layer::SecureReply) => v1::SECURE_REPLY_PROTOCOL,
            (Version::V1, Layer::Request) => v1::REQUEST_PROTOCOL,
            (Version::V1, Layer::Reply) => v1::REPLY_PROTOCOL,
            (Version::V2, Layer::Transport) => v2::TRANSPORT_PROTOCOL,
            (Version::V2, Layer::SecureRequest) => v2::SECURE_REQUEST_PROTOCOL,
            (Version::V2, Layer::SecureReply) => v2::SECURE_REPLY_PROTOCOL,
            (Version::V2, Layer::Request) => v2::REQUEST_PROTOCOL,
            (Version::V2, Layer::Reply) => v2::REPLY_PROTOCOL,
            (_, Layer::Rpc) => PROTOCOL_UNKNOWN,
        }
    }

    /// The version whose `layer` protocol string is `protocol`, if any.
    pub fn of(layer: Layer, protocol: &str) -> Option<Version> {
        [Version::V1, Version::V2]
            .into_iter()
            .find(|v| v.protocol(layer) == protocol)
    }
}

/// Detects the version of a transport message from its `protocol` key (spec §6.1).
pub fn detect_version(bytes: &[u8]) -> Result<Version, ProtocolError> {
    #[derive(Deserialize)]
    struct Probe {
        protocol: String,
    }
    check_size(Layer::Transport, bytes.len(), MAX_MESSAGE_BYTES)?;
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| ProtocolError::json(Layer::Transport, e))?;
    Version::of(Layer::Transport, &probe.protocol).ok_or_else(|| ProtocolError::UnknownProtocol {
        layer: Layer::Transport,
        found: truncate(&probe.protocol),
    })
}

/// A fact filter entry: `{"fact","operator","value"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FactFilter {
    /// Fact name.
    pub fact: String,
    /// One of `>=` `<=` `<` `>` `!=` `==` `=~`.
    pub operator: String,
    /// Value to compare with.
    pub value: String,
}

/// The request filter (spec §6.2); every list is always present on the wire.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Filter {
    /// Fact filters.
    #[serde(deserialize_with = "null_as_default")]
    pub fact: Vec<FactFilter>,
    /// Configuration-management class filters.
    #[serde(deserialize_with = "null_as_default")]
    pub cf_class: Vec<String>,
    /// Agents the target must have.
    #[serde(deserialize_with = "null_as_default")]
    pub agent: Vec<String>,
    /// Identities (exact or `/regex/`).
    #[serde(deserialize_with = "null_as_default")]
    pub identity: Vec<String>,
    /// Compound filters (parsed expression trees, kept opaque).
    #[serde(deserialize_with = "null_as_default")]
    pub compound: Vec<Vec<serde_json::Map<String, serde_json::Value>>>,
}

impl Filter {
    /// A filter selecting servers that have `agent`.
    pub fn for_agent(agent: &str) -> Self {
        Filter {
            agent: vec![agent.to_string()],
            ..Filter::default()
        }
    }

    /// True when no criteria are set (every server matches).
    pub fn is_empty(&self) -> bool {
        self.fact.is_empty()
            && self.cf_class.is_empty()
            && self.agent.is_empty()
            && self.identity.is_empty()
            && self.compound.is_empty()
    }
}

/// A hop record `[in, processor, out]` in `seen-by` / `trace`.
pub type Hop = [String; 3];

/// Go marshals nil slices as `null`; treat that like an empty list.
pub(crate) fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

pub(crate) fn check_size(layer: Layer, size: usize, max: usize) -> Result<(), ProtocolError> {
    if size > max {
        return Err(ProtocolError::TooLarge { layer, size, max });
    }
    Ok(())
}

pub(crate) fn parse<'a, T: Deserialize<'a>>(
    layer: Layer,
    bytes: &'a [u8],
) -> Result<T, ProtocolError> {
    check_size(layer, bytes.len(), MAX_MESSAGE_BYTES)?;
    serde_json::from_slice(bytes).map_err(|e| ProtocolError::json(layer, e))
}

pub(crate) fn expect_protocol(
    layer: Layer,
    version: Version,
    found: &str,
) -> Result<(), ProtocolError> {
    if found == version.protocol(layer) {
        return Ok(());
    }
    match Version::of(layer, found) {
        Some(_) => Err(ProtocolError::VersionMismatch {
            layer,
            expected: version,
            found: truncate(found),
        }),
        None => Err(ProtocolError::UnknownProtocol {
            layer,
            found: truncate(found),
        }),
    }
}

pub(crate) fn b64_decode(
    layer: Layer,
    field: &'static str,
    text: &str,
) -> Result<Vec<u8>, ProtocolError> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|_| ProtocolError::Base64 { layer, field })
}

pub(crate) fn b64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

pub(crate) fn encode_json<T: Serialize>(layer: Layer, value: &T) -> Result<Vec<u8>, ProtocolError> {
    crate::gojson::to_vec(value).map_err(|e| ProtocolError::json(layer, e))
}

pub(crate) fn non_empty(
    layer: Layer,
    field: &'static str,
    value: &str,
) -> Result<(), ProtocolError> {
    if value.is_empty() {
        return Err(ProtocolError::schema(layer, field, "must not be empty"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_versions() {
        assert_eq!(
            detect_version(br#"{"protocol":"choria:transport:1","data":""}"#).unwrap(),
            Version::V1
        );
        assert_eq!(
            detect_version(br#"{"protocol":"io.choria.protocol.v2.transport"}"#).unwrap(),
            Version::V2
        );
        assert!(matches!(
            detect_version(br#"{"protocol":"choria:request:1"}"#),
            Err(ProtocolError::UnknownProtocol {
                layer: Layer::Transport,
                ..
            })
        ));
        assert!(matches!(
            detect_version(b"nope"),
            Err(ProtocolError::Json { .. })
        ));
        assert!(matches!(
            detect_version(b"{}"),
            Err(ProtocolError::Json { .. })
        ));
        let big = vec![b' '; MAX_MESSAGE_BYTES + 1];
        assert!(matches!(
            detect_version(&big),
            Err(ProtocolError::TooLarge { .. })
        ));
    }

    #[test]
    fn filter_accepts_go_nulls() {
        let f: Filter = serde_json::from_str(
            r#"{"fact":null,"cf_class":null,"agent":["x"],"identity":null,"compound":null}"#,
        )
        .unwrap();
        assert_eq!(f, Filter::for_agent("x"));
        let f: Filter = serde_json::from_str("{}").unwrap();
        assert!(f.is_empty());
        assert_eq!(
            crate::gojson::to_string(&Filter::default()).unwrap(),
            r#"{"fact":[],"cf_class":[],"agent":[],"identity":[],"compound":[]}"#
        );
    }
}
