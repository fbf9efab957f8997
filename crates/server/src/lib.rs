//! Choria node agent: decides between provisioning and normal mode, hosts the
//! `choria_provision`, `rpcutil` and `discovery` agents, and runs many nodes per process.
//!
//! # Layout
//! * [`node`]: the runtime ([`node::Node`], [`node::NodeOptions`], [`node::Phase`]), a
//!   state machine (starting → connecting → serving → leaving); one task and one NATS
//!   connection per node, many nodes per process.
//! * [`startup`]: the provisioning decision of spec §4.2 and the typed [`startup::Plan`]
//!   (brokers, credentials, trust, subjects, agents) computed once per start;
//!   [`settings`]: build defaults plus the provisioning JWT; [`resolve`]: broker URLs
//!   from the token or SRV records.
//! * [`connection`]: anonymous TLS + `auth_token` while provisioning, verified TLS + server
//!   JWT + nonce signature (or mTLS) once provisioned.
//! * [`session`]: one connection's request handling over `choria-protocol` (decode,
//!   verify, filter, dispatch, reply), free of network I/O; [`verify`]: the normal-mode
//!   trust policy (who may sign a request, v1 x509 and v2 JWT).
//! * [`agents`]: `choria_provision`, `rpcutil`, `discovery`, `choria_util` logic, free of
//!   network I/O.
//! * [`lock`], [`csr`], [`conf`]: pieces the provisioning agent uses (key transfer is
//!   `choria_pki::key_transfer`, shared with the provisioner).
//! * [`buildinfo`]: the `choria buildinfo` Server Settings section.
//!
//! # Example
//! ```no_run
//! use choria_server::node::{CancellationToken, Node, NodeOptions, RestartPolicy};
//!
//! # async fn demo() -> Result<(), choria_server::node::NodeError> {
//! let node = Node::new(NodeOptions {
//!     config_file: "/var/lib/sim/n1/server.conf".into(),
//!     provisioning_jwt: Some("/var/lib/sim/provisioning.jwt".into()),
//!     identity: Some("n1.example.net".into()),
//!     restart: RestartPolicy::InPlace,
//! });
//! let mut phase = node.phase();
//! let cancel = CancellationToken::new();
//! tokio::spawn(async move { let _ = phase.changed().await; });
//! node.run(cancel).await?;
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod agents;
pub mod buildinfo;
pub mod conf;
pub mod csr;
pub mod lock;
pub mod node;
pub mod session;
pub mod settings;
pub mod startup;
pub mod verify;

/// Connecting to the broker as the node (the `choria-connect` crate).
pub use choria_connect as connection;
/// Broker URLs and SRV lookups, shared with the provisioner (the `choria-resolve` crate).
pub use choria_resolve as resolve;
