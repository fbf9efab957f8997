//! The agents a node hosts: `choria_provision` while provisioning, `rpcutil`,
//! `discovery` and `choria_util` in both modes. Each is plain logic over typed inputs.

pub mod provision;
pub mod rpcutil;

use serde_json::{json, Value};

/// SimpleRPC status codes (spec §6.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Status {
    /// 0: the action ran.
    Ok = 0,
    /// 1: the action refused or failed.
    Aborted = 1,
    /// 2: no such action.
    UnknownAction = 2,
    /// 3: a required input was missing.
    MissingData = 3,
    /// 4: an input had the wrong type or shape.
    InvalidData = 4,
    /// 5: anything else.
    UnknownError = 5,
}

/// The reply of one action, before it is wrapped in a SimpleRPC reply envelope.
#[derive(Debug, Clone, PartialEq)]
pub struct ActionReply {
    /// The SimpleRPC status.
    pub status: Status,
    /// `OK` or the reason for failure, for the operator.
    pub message: String,
    /// The action's outputs (`{}` on failure).
    pub data: Value,
}

impl ActionReply {
    /// A successful reply with `data`.
    pub fn ok(data: Value) -> ActionReply {
        ActionReply {
            status: Status::Ok,
            message: "OK".into(),
            data,
        }
    }

    /// A failed reply with `status` and `message` and empty data.
    pub fn fail(status: Status, message: impl Into<String>) -> ActionReply {
        ActionReply {
            status,
            message: message.into(),
            data: json!({}),
        }
    }

    /// An aborted action (status 1).
    pub fn aborted(message: impl Into<String>) -> ActionReply {
        ActionReply::fail(Status::Aborted, message)
    }

    /// The SimpleRPC reply payload `{"action","statuscode","statusmsg","data"}`.
    pub fn to_rpc_json(&self, action: &str) -> Value {
        json!({
            "action": action,
            "statuscode": self.status as u8,
            "statusmsg": self.message,
            "data": self.data,
        })
    }
}
