//! The Choria wire protocol: subjects, v1/v2 message envelopes, SimpleRPC payloads, lifecycle
//! events, registration data and agent DDLs, as typed values with Go-compatible encodings.
//!
//! # How a request travels
//! A NATS message body is a **transport** (`choria:transport:1` or
//! `io.choria.protocol.v2.transport`) whose `data` is base64 of a **secure request**, which
//! carries the signature material (v1: RSA signature + PEM certificate, v2: ed25519 signature +
//! caller JWT) and the **request** (v1 as a JSON string, v2 as base64). The request carries the
//! envelope (id, sender, caller, collective, agent, ttl, time, filter) and, in `message`, the
//! **RPC payload** `{"agent","action","data"}`. Replies go back the same way: RPC reply →
//! reply → secure reply (SHA-256 hash, optional v2 signature) → transport, published to the
//! request transport's reply-to (`<collective>.reply.<md5(callerid)>.<requestid>`).
//!
//! [`message::encode_request`] / [`message::decode_request`] and their reply twins do the
//! whole trip; [`envelope::v1`] and [`envelope::v2`] hold the individual layers. Decoding checks
//! size, JSON shape, protocol strings and the upstream schema rules before returning anything,
//! and hands back the exact signed bytes: whether a signer is *trusted* is decided by the
//! caller (the node agent), which then calls [`message::RequestSecurity::verify_ed25519`] or
//! [`message::RequestSecurity::verify_rsa`].
//!
//! # Example
//! ```
//! use std::time::{Duration, SystemTime};
//! use choria_protocol::{message, rpc::RpcRequest, subjects, Version};
//!
//! let now = SystemTime::now();
//! let meta = message::RequestMeta::new("prov.example.net", "choria=provisioner", "provisioning",
//!     "choria_provision", Duration::from_secs(60), now);
//! let payload = RpcRequest::new("choria_provision", "jwt", Default::default()).encode()?;
//! let routing = message::Routing {
//!     reply_to: subjects::reply("provisioning", &meta.caller, &meta.id, false)?,
//!     sender: meta.sender.clone(),
//!     hops: vec![],
//! };
//! let bytes = message::encode_request(Version::V1, &meta, &payload,
//!     &message::RequestSigner::Insecure, &routing)?;
//!
//! let got = message::decode_request(&bytes)?;
//! got.meta.check_age(now)?;
//! assert!(got.security.is_insecure());
//! assert_eq!(RpcRequest::decode(&got.payload)?.action, "jwt");
//! # Ok::<(), choria_protocol::ProtocolError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod ddl;
pub mod envelope;
pub mod error;
pub mod filter;
pub mod gojson;
pub mod ids;
pub mod lifecycle;
pub mod message;
pub mod registration;
pub mod rpc;
pub mod signing;
pub mod subjects;

pub use envelope::{Filter, Version};
pub use error::{Layer, ProtocolError};
pub use lifecycle::{EventType, LifecycleEvent};
pub use message::{
    decode_reply, decode_request, encode_reply, encode_request, DecodedReply, DecodedRequest,
};
pub use rpc::{RpcReply, RpcRequest, StatusCode};
