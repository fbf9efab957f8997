//! Choria broker: a supervised stock nats-server plus the Choria authorization callout
//! service that places every connection in an account with Choria's permissions.
//!
//! # Layout
//! - [`settings`]: typed, validated [`BrokerSettings`] from a Choria config.
//! - [`natsconf`]: the generated nats-server configuration (accounts, callout, TLS, ...).
//! - [`permissions`]: the permission sets of spec §3, pure functions.
//! - [`decision`]: the decision procedure of spec §2, a pure function.
//! - [`verify`]: token verification against signers and organisation issuers.
//! - [`natsjwt`]: the auth-callout request/response JWTs.
//! - [`callout`]: the service loop (a thin shell around [`decision::decide`]).
//! - [`broker`]: [`Broker::start`], supervision and [`RunningBroker`].
//! - [`streams`], [`metrics`], [`report`]: managed streams, Prometheus, connection reports.
//! - [`nats_server`]: finding and running nats-server; [`child`]: children that die with us.
//!
//! # Beyond upstream
//! A provisioning-mode server may subscribe only to `provisioning.node.<its connection
//! name>` (plus the four provisioning broadcasts), not to `provisioning.node.>`: upstream
//! lets every unprovisioned node read the RPCs (keys, configuration) sent to all the others.
//! A node whose connection name is not a literal subject suffix gets only the broadcasts.
//! The provisioner user always needs its password; unless it connects with a verified
//! client certificate it also needs a client JWT with `provisioner` *and* a nonce signature.
#![deny(missing_docs)]

pub mod broker;
pub mod callout;
pub mod child;
pub mod decision;
pub mod metrics;
pub mod nats_server;
pub mod natsconf;
pub mod natsjwt;
pub mod permissions;
pub mod report;
pub mod settings;
pub mod streams;
pub mod verify;

pub use broker::{Broker, BrokerError, RunningBroker};
pub use decision::TlsMode;
pub use settings::{BrokerSettings, SettingsError};
