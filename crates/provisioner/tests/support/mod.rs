//! Shared test support: a test peer that stands in for a node, and a running provisioner.
pub mod running;
pub mod test_peer_node;
