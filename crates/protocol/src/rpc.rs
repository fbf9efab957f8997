//! SimpleRPC (mcorpc) payloads: the `{"agent","action","data"}` request and the
//! `{"action","statuscode","statusmsg","data"}` reply with upstream status codes (spec §6.4).

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::envelope::{check_size, MAX_MESSAGE_BYTES};
use crate::error::{Layer, ProtocolError};

/// Payload a discovery request carries.
pub const DISCOVERY_PING: &[u8] = b"ping";
/// Payload a discovery reply carries.
pub const DISCOVERY_PONG: &[u8] = b"pong";

/// Prefix of the status message for payloads that are not SimpleRPC requests.
pub const UNPARSEABLE_PREFIX: &str =
    "Could not process request: could not parse incoming message as a MCollective SimpleRPC Request: ";

/// Upstream SimpleRPC status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusCode {
    /// 0: success.
    Ok,
    /// 1: the action aborted.
    Aborted,
    /// 2: the agent has no such action.
    UnknownAction,
    /// 3: a required input is missing.
    MissingData,
    /// 4: an input is invalid.
    InvalidData,
    /// 5: anything else.
    UnknownError,
}

impl StatusCode {
    /// The wire number.
    pub fn code(self) -> u8 {
        match self {
            StatusCode::Ok => 0,
            StatusCode::Aborted => 1,
            StatusCode::UnknownAction => 2,
            StatusCode::MissingData => 3,
            StatusCode::InvalidData => 4,
            StatusCode::UnknownError => 5,
        }
    }

    /// The code for a wire number, if it is one of the six.
    pub fn from_code(code: u64) -> Option<Self> {
        Some(match code {
            0 => StatusCode::Ok,
            1 => StatusCode::Aborted,
            2 => StatusCode::UnknownAction,
            3 => StatusCode::MissingData,
            4 => StatusCode::InvalidData,
            5 => StatusCode::UnknownError,
            _ => return None,
        })
    }

    /// Default status message (`OK` for success).
    pub fn default_message(self) -> &'static str {
        match self {
            StatusCode::Ok => "OK",
            StatusCode::Aborted => "Aborted",
            StatusCode::UnknownAction => "Unknown action",
            StatusCode::MissingData => "Missing data",
            StatusCode::InvalidData => "Invalid data",
            StatusCode::UnknownError => "Unknown error",
        }
    }
}

impl Serialize for StatusCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.code())
    }
}

impl<'de> Deserialize<'de> for StatusCode {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = u64::deserialize(d)?;
        StatusCode::from_code(n)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown status code {n}")))
    }
}

/// A SimpleRPC request payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcRequest {
    /// Agent name.
    pub agent: String,
    /// Action name.
    pub action: String,
    /// Inputs (missing or null on the wire means `{}`).
    #[serde(default, deserialize_with = "object_or_empty")]
    pub data: Map<String, Value>,
}

impl RpcRequest {
    /// A request for `agent#action` with `data`.
    pub fn new(agent: &str, action: &str, data: Map<String, Value>) -> Self {
        RpcRequest {
            agent: agent.to_string(),
            action: action.to_string(),
            data,
        }
    }

    /// Decodes an untrusted payload. On failure, [`RpcReply::unparseable`] is the answer
    /// upstream sends.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        check_size(Layer::Rpc, payload.len(), MAX_MESSAGE_BYTES)?;
        let r: RpcRequest =
            serde_json::from_slice(payload).map_err(|e| ProtocolError::json(Layer::Rpc, e))?;
        if r.action.is_empty() {
            return Err(ProtocolError::schema(
                Layer::Rpc,
                "action",
                "must not be empty",
            ));
        }
        Ok(r)
    }

    /// Go-compatible JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        crate::envelope::encode_json(Layer::Rpc, self)
    }
}

/// A SimpleRPC reply payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RpcReply {
    /// Action that was run (empty when the request could not be parsed).
    #[serde(default)]
    pub action: String,
    /// Outcome.
    pub statuscode: StatusCode,
    /// Human-readable outcome (`OK` on success).
    #[serde(default)]
    pub statusmsg: String,
    /// Outputs (`{}` by default).
    #[serde(default = "empty_object")]
    pub data: Value,
}

impl RpcReply {
    /// A successful reply with outputs `data`.
    pub fn ok(action: &str, data: Map<String, Value>) -> Self {
        RpcReply {
            action: action.to_string(),
            statuscode: StatusCode::Ok,
            statusmsg: StatusCode::Ok.default_message().to_string(),
            data: Value::Object(data),
        }
    }

    /// A successful reply whose outputs `data` are any JSON value (agents build them with
    /// `json!`; upstream replies are objects, but `data` is free-form on the wire).
    pub fn success(action: &str, data: Value) -> Self {
        RpcReply {
            action: action.to_string(),
            statuscode: StatusCode::Ok,
            statusmsg: StatusCode::Ok.default_message().to_string(),
            data,
        }
    }

    /// A failed reply with `code` and `message`, and empty outputs.
    pub fn error(action: &str, code: StatusCode, message: &str) -> Self {
        RpcReply {
            action: action.to_string(),
            statuscode: code,
            statusmsg: message.to_string(),
            data: empty_object(),
        }
    }

    /// The upstream answer to a payload that is not a SimpleRPC request.
    pub fn unparseable(reason: &str) -> Self {
        Self::error(
            "",
            StatusCode::InvalidData,
            &format!("{UNPARSEABLE_PREFIX}{reason}"),
        )
    }

    /// True for status code 0.
    pub fn is_ok(&self) -> bool {
        self.statuscode == StatusCode::Ok
    }

    /// Decodes an untrusted reply payload.
    pub fn decode(payload: &[u8]) -> Result<Self, ProtocolError> {
        check_size(Layer::Rpc, payload.len(), MAX_MESSAGE_BYTES)?;
        serde_json::from_slice(payload).map_err(|e| ProtocolError::json(Layer::Rpc, e))
    }

    /// Go-compatible JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        crate::envelope::encode_json(Layer::Rpc, self)
    }

    /// The outputs as an object (empty when `data` is not an object).
    pub fn data_object(&self) -> Map<String, Value> {
        match &self.data {
            Value::Object(m) => m.clone(),
            _ => Map::new(),
        }
    }
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn object_or_empty<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Map<String, Value>, D::Error> {
    Ok(Option::<Map<String, Value>>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn request_round_trip_and_defaults() {
        let r = RpcRequest::decode(
            br#"{"agent":"choria_provision","action":"jwt","data":{"token":"x"}}"#,
        )
        .unwrap();
        assert_eq!(r.data.get("token"), Some(&json!("x")));
        assert_eq!(
            r.encode().unwrap(),
            br#"{"agent":"choria_provision","action":"jwt","data":{"token":"x"}}"#.to_vec()
        );
        let r = RpcRequest::decode(br#"{"agent":"a","action":"b"}"#).unwrap();
        assert!(r.data.is_empty());
        let r = RpcRequest::decode(br#"{"agent":"a","action":"b","data":null}"#).unwrap();
        assert!(r.data.is_empty());
    }

    #[test]
    fn request_errors_do_not_echo_values() {
        let err = RpcRequest::decode(br#"{"agent":"a","action":"b","data":"s3cret"}"#).unwrap_err();
        assert!(matches!(
            err,
            ProtocolError::Json {
                layer: Layer::Rpc,
                ..
            }
        ));
        assert!(!err.to_string().contains("s3cret"), "{err}");
        assert!(RpcRequest::decode(b"ping").is_err());
        assert!(matches!(
            RpcRequest::decode(br#"{"agent":"a","action":""}"#),
            Err(ProtocolError::Schema {
                field: "action",
                ..
            })
        ));
    }

    #[test]
    fn replies() {
        let mut data = Map::new();
        data.insert("jwt".into(), json!("t"));
        let r = RpcReply::ok("jwt", data);
        assert_eq!(
            r.encode().unwrap(),
            br#"{"action":"jwt","statuscode":0,"statusmsg":"OK","data":{"jwt":"t"}}"#.to_vec()
        );
        let back = RpcReply::decode(&r.encode().unwrap()).unwrap();
        assert_eq!(back, r);
        assert!(back.is_ok());
        let e = RpcReply::unparseable("bad");
        assert_eq!(e.statuscode.code(), 4);
        assert!(e.statusmsg.starts_with("Could not process request: could not parse incoming message as a MCollective SimpleRPC Request: "));
        assert_eq!(
            e.encode().unwrap(),
            format!(
                r#"{{"action":"","statuscode":4,"statusmsg":"{}bad","data":{{}}}}"#,
                UNPARSEABLE_PREFIX
            )
            .into_bytes()
        );
        assert!(RpcReply::decode(br#"{"action":"x","statuscode":9}"#).is_err());
        let r = RpcReply::decode(br#"{"action":"x","statuscode":1,"statusmsg":"no"}"#).unwrap();
        assert_eq!(r.statuscode, StatusCode::Aborted);
        assert_eq!(r.data, json!({}));
        for n in 0..6 {
            assert_eq!(u64::from(StatusCode::from_code(n).unwrap().code()), n);
        }
    }
}
