//! The agents a node hosts: `choria_provision` while provisioning, `rpcutil`,
//! `discovery` and `choria_util` in both modes. Each is plain logic over typed inputs.

pub mod choria_util;
pub mod discovery;
pub mod provision;
pub mod rpcutil;

use choria_protocol::{RpcReply, StatusCode};

/// Why an action did not run: the SimpleRPC status and the operator's message, turned
/// into a [`RpcReply`] by [`ActionError::into_reply`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ActionError {
    /// The SimpleRPC status (never [`StatusCode::Ok`]).
    pub code: StatusCode,
    /// The reason, for the operator.
    pub message: String,
}

impl ActionError {
    /// A failure with `code`.
    pub fn new(code: StatusCode, message: impl Into<String>) -> ActionError {
        ActionError {
            code,
            message: message.into(),
        }
    }

    /// The action refused or failed (status 1).
    pub fn aborted(message: impl Into<String>) -> ActionError {
        ActionError::new(StatusCode::Aborted, message)
    }

    /// The reply to `action` carrying this failure and empty outputs.
    pub fn into_reply(self, action: &str) -> RpcReply {
        RpcReply::error(action, self.code, &self.message)
    }
}
