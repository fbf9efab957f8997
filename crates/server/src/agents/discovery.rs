//! The `discovery` agent: not SimpleRPC; a payload containing `ping` is answered with the
//! raw bytes `pong` (spec §6.4), anything else with an empty body.

use choria_protocol::rpc::{DISCOVERY_PING, DISCOVERY_PONG};

/// The agent's name on the wire.
pub const AGENT: &str = "discovery";

/// The reply body to a discovery `payload`.
pub fn handle(payload: &[u8]) -> Vec<u8> {
    // Upstream tests `strings.Contains(payload, "ping")`: bytes, no UTF-8 requirement.
    if payload
        .windows(DISCOVERY_PING.len())
        .any(|window| window == DISCOVERY_PING)
    {
        DISCOVERY_PONG.to_vec()
    } else {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ping_gets_pong_and_anything_else_nothing() {
        assert_eq!(handle(b"ping"), b"pong");
        assert_eq!(handle(b"\"ping\""), b"pong");
        assert!(handle(b"hello").is_empty());
        assert!(handle(&[0xff, 0xfe]).is_empty());
    }
}
