//! Choria provisioner: discovers provisioning-mode nodes, proves their keys, asks a helper
//! for their configuration, issues credentials and restarts them into the fleet.
//!
//! # Layout
//! - [`settings`]: the YAML configuration file (spec §3), validated at start-up.
//! - [`helper`]: the helper program contract (spec §2), exec and persistent modes.
//! - [`registry`]: de-duplicating host registry and bounded work queue; [`retry`]: per-node
//!   backoff for failed and deferred passes.
//! - [`election`]: KV leader election (spec §5); [`metrics`]: §6 metrics and `/healthz`.
//! - [`rpc`], [`wire`]: RPC over one connection and one wildcard reply subscription (P1).
//! - [`pipeline`]: the per-node pass (spec §1.6) over typed node [`replies`];
//!   [`service`]: discovery, workers, HA wiring.
//! - [`keys`]: key files read once at start-up; [`issue`]: server JWTs (spec §4.3).
//! - [`ddls`]: the embedded DDLs of the agents the pass calls (inputs, reply defaults, timeouts).
//! - [`client`]: the provisioner as a Choria client (identity, brokers, credentials);
//!   [`timeouts`]: RPC and discovery timeouts from its `discovery_timeout`.
//! - [`keydelivery`], [`csr`], [`version`]: the crypto and checks of spec §4 and appendix B.
#![deny(missing_docs)]

pub mod client;
pub mod csr;
pub mod ddls;
pub mod election;
pub mod helper;
pub mod issue;
pub mod keydelivery;
pub mod keys;
pub mod metrics;
pub mod pipeline;
pub mod registry;
pub mod replies;
pub mod retry;
pub mod rpc;
pub mod service;
pub mod settings;
pub mod timeouts;
pub mod version;
pub mod wire;

/// Re-exported so binaries can count reconnects without depending on choria-connect.
pub use choria_connect::Connects;
pub use client::{ClientError, ClientSettings};
pub use service::{login, Provisioner, ServiceError, Status, StatusSnapshot};
pub use settings::{Settings, SettingsError};
/// Re-exported so binaries can stop the service without depending on tokio-util.
pub use tokio_util::sync::CancellationToken;
