//! Shared test support: a test peer that stands in for a node.
pub mod test_peer_node;
