//! The `choria_util` agent: `info`, what the provisioner and operators read about the
//! node's Choria build and connection.

use serde_json::json;

use choria_protocol::{RpcReply, StatusCode};

use crate::agents::rpcutil::VERSION;
use crate::agents::ActionError;

/// The agent's name on the wire.
pub const AGENT: &str = "choria_util";

/// Runs a `choria_util` action.
pub fn handle(action: &str) -> RpcReply {
    match action {
        "info" => RpcReply::success(
            action,
            json!({
                "choria_version": VERSION,
                "connected_server": "",
                "security": "choria",
                "secure_protocol": true,
                "srv_domain": "",
                "using_srv": false,
                "middleware_servers": [],
                "client_version": VERSION,
            }),
        ),
        other => ActionError::new(
            StatusCode::UnknownAction,
            format!("Unknown action {other} for agent {AGENT}"),
        )
        .into_reply(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_reports_the_version_and_unknown_actions_fail() {
        let reply = handle("info");
        assert!(reply.is_ok());
        assert_eq!(reply.data["choria_version"], VERSION);
        let reply = handle("nope");
        assert_eq!(reply.statuscode, StatusCode::UnknownAction);
        assert_eq!(reply.statusmsg, "Unknown action nope for agent choria_util");
    }
}
