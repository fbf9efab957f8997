//! Connecting to a Choria broker as a Choria identity: the one place that turns "who am
//! I and which broker" into an `async_nats::Client`.
//!
//! # Design
//! A [`Login`] is a typed description of one connection: brokers, connection name, inbox
//! prefix, [`Tls`] (site CA with an optional client certificate, anonymous TLS for
//! provisioning and enrolment, ...), what CONNECT presents ([`UserPassword`], [`Token`]),
//! the connect timeout and the [`Reconnect`] behaviour. [`Login::connect`] makes the
//! connection; [`Login::options`] gives the `ConnectOptions` to callers that add to them.
//! TLS configurations are built here and never trust the system's root store.
//!
//! What CONNECT carries follows the spec (choria-broker §2.1, choria-server §4.5): a
//! provisioning JWT goes verbatim in `auth_token` with no signature ([`Token::Bearer`]); a
//! server or client JWT goes in `auth_token` (and, as Choria's connector does, `jwt`), with
//! the broker's nonce signed by the identity's ed25519 seed ([`Token::Signed`]).
//!
//! # Layout
//! * [`login`]: [`Login`], [`Token`], [`UserPassword`], [`Reconnect`], [`parse_servers`].
//! * [`tls`]: [`Tls`], [`ClientCertificate`], [`anonymous_tls`], [`verified_tls`].
//! * [`events`]: [`Connects`], the count of (re)connects callers act on.
//! * [`node`]: a node's login as the node agent describes it ([`ConnectSpec`],
//!   [`Credentials`], [`connect`]).
//! * [`error`]: [`ConnectError`] and [`TlsError`].
//!
//! # Example
//! ```no_run
//! use choria_connect::{parse_servers, Login, Tls, Token};
//!
//! # async fn demo(jwt: String, seed: choria_tokens::Ed25519Seed) -> Result<(), choria_connect::ConnectError> {
//! let login = Login {
//!     token: Some(Token::signed(jwt, seed)),
//!     inbox_prefix: Some("choria.reply.0123456789abcdef0123456789abcdef".into()),
//!     ..Login::new(
//!         parse_servers(["tls://broker.example.net:4222"])?,
//!         "n1.example.net",
//!         Tls::verified("/etc/choria/ca.pem"),
//!     )
//! };
//! let client = login.connect().await?;
//! client.publish("choria.lifecycle.event", "{}".into()).await.ok();
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod error;
pub mod events;
pub mod login;
pub mod node;
pub mod subscribe;
pub mod tls;

pub use error::{ConnectError, PemFile, TlsError};
pub use events::Connects;
pub use login::{
    connect_timeout, parse_servers, Login, Reconnect, Token, UserPassword, CONNECT_TIMEOUT,
    MAX_INITIAL_DELAY, MAX_RECONNECT_DELAY,
};
pub use node::{connect, ConnectSpec, Credentials, SUBSCRIPTION_CAPACITY};
pub use subscribe::{subscribe, SubscribeError};
pub use tls::{anonymous_tls, verified_tls, ClientCertificate, Tls};

/// Stops async-nats from reading the system's root certificates on every connection.
///
/// async-nats 0.51 loads (and then discards) the whole system root store for every TLS
/// connection that brings its own rustls configuration (nats-io/nats.rs#1622).
/// [`Tls::Verified`] and [`Tls::Anonymous`] bring their own (the site CA, or unverified
/// TLS while provisioning) and never trust the system roots. Profiling a simulated fleet put a
/// quarter of its CPU time in that loading, so processes that only run nodes point the
/// loader at an empty file.
///
/// It sets process environment: call it before any other thread starts, and only in a
/// process whose NATS connections all bring their own trust roots.
pub fn skip_unused_system_roots() {
    std::env::set_var("SSL_CERT_FILE", "/dev/null");
    std::env::remove_var("SSL_CERT_DIR");
}
