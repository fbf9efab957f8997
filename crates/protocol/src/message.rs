//! Whole messages: build a request or reply through every layer, and take one apart again into
//! typed values plus the exact signed bytes, so the caller can apply its own trust policy.
//!
//! Request: payload → request → secure request (signature) → transport (routing headers).
//! Reply: payload → reply → secure reply (hash, optional v2 signature) → transport.

use std::time::{Duration, SystemTime};

use crate::envelope::{b64_decode, b64_encode, encode_json, v1, v2, Filter, Hop, Version};
use crate::error::{Layer, ProtocolError};
use crate::ids::{self, check_age, AgeError};
use crate::signing;

/// Largest TTL we put on the wire or accept (a day; upstream uses seconds to minutes).
pub const MAX_TTL: Duration = Duration::from_secs(86_400);

/// Addressing and timing of a request, common to v1 and v2.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestMeta {
    /// Request id (32 lowercase hex for ids we create; v1 requires exactly 32 characters).
    pub id: String,
    /// Identity of the sending host.
    pub sender: String,
    /// Caller id, such as `choria=provisioner`.
    pub caller: String,
    /// Target collective.
    pub collective: String,
    /// Target agent.
    pub agent: String,
    /// How long the request stays valid.
    pub ttl: Duration,
    /// When it was created.
    pub time: SystemTime,
    /// Which servers should act on it.
    pub filter: Filter,
}

impl RequestMeta {
    /// A request created `now` with a fresh id and an empty filter.
    pub fn new(
        sender: &str,
        caller: &str,
        collective: &str,
        agent: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Self {
        RequestMeta {
            id: ids::new_request_id(),
            sender: sender.to_string(),
            caller: caller.to_string(),
            collective: collective.to_string(),
            agent: agent.to_string(),
            ttl,
            time: now,
            filter: Filter::default(),
        }
    }

    /// The server age check: `time` strictly within `(now − ttl, now + ttl)`.
    pub fn check_age(&self, now: SystemTime) -> Result<(), AgeError> {
        check_age(self.time, self.ttl, now)
    }
}

/// How a request is signed.
pub enum RequestSigner<'a> {
    /// Protocol security off: `insecure` markers (v1) or no caller JWT (v2).
    Insecure,
    /// v1 with an x509 identity.
    Rsa {
        /// The caller's private key.
        key: &'a rsa::RsaPrivateKey,
        /// The caller's certificate, PEM.
        certificate_pem: &'a str,
    },
    /// v2 with an ed25519 seed and the matching JWT.
    Ed25519 {
        /// The caller's seed.
        key: &'a ed25519_dalek::SigningKey,
        /// The caller's JWT (client or server token).
        caller_jwt: &'a str,
        /// A delegated signer's JWT, when an AAA service signed.
        signer_jwt: Option<&'a str>,
    },
}

/// Transport routing headers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Routing {
    /// Subject replies should go to (empty for replies themselves).
    pub reply_to: String,
    /// Identity of the publisher.
    pub sender: String,
    /// Hops so far (`seen-by` in v1, `trace` in v2).
    pub hops: Vec<Hop>,
}

/// Builds the transport bytes of a request.
pub fn encode_request(
    version: Version,
    meta: &RequestMeta,
    payload: &[u8],
    signer: &RequestSigner<'_>,
    routing: &Routing,
) -> Result<Vec<u8>, ProtocolError> {
    if meta.ttl > MAX_TTL {
        return Err(ProtocolError::schema(
            Layer::Request,
            "ttl",
            "is longer than a day",
        ));
    }
    let ttl = meta.ttl.as_secs() as i64;
    let secure = match version {
        Version::V1 => {
            let request = v1::Request {
                protocol: v1::REQUEST_PROTOCOL.into(),
                message: v1_payload_text(payload),
                envelope: v1::RequestEnvelope {
                    requestid: meta.id.clone(),
                    senderid: meta.sender.clone(),
                    callerid: meta.caller.clone(),
                    collective: meta.collective.clone(),
                    agent: meta.agent.clone(),
                    ttl,
                    time: ids::unix_seconds(meta.time),
                    filter: meta.filter.clone(),
                },
            };
            request.validate()?;
            let text = String::from_utf8(encode_json(Layer::Request, &request)?).map_err(|_| {
                ProtocolError::NotUtf8 {
                    layer: Layer::Request,
                    field: "message",
                }
            })?;
            let (signature, pubcert) = match signer {
                RequestSigner::Insecure => (v1::INSECURE.to_string(), v1::INSECURE.to_string()),
                RequestSigner::Rsa {
                    key,
                    certificate_pem,
                } => (
                    signing::sign_rsa(key, text.as_bytes())?,
                    certificate_pem.to_string(),
                ),
                RequestSigner::Ed25519 { .. } => return Err(wrong_signer(Version::V1)),
            };
            encode_json(
                Layer::SecureRequest,
                &v1::SecureRequest {
                    protocol: v1::SECURE_REQUEST_PROTOCOL.into(),
                    message: text,
                    signature,
                    pubcert,
                },
            )?
        }
        Version::V2 => {
            let request = v2::Request {
                protocol: v2::REQUEST_PROTOCOL.into(),
                message: b64_encode(payload),
                id: meta.id.clone(),
                sender: meta.sender.clone(),
                caller: meta.caller.clone(),
                collective: meta.collective.clone(),
                agent: meta.agent.clone(),
                ttl,
                time: ids::unix_nanos(meta.time),
                filter: Some(meta.filter.clone()),
            };
            request.validate()?;
            let bytes = encode_json(Layer::Request, &request)?;
            let (signature, caller, signer_jwt) = match signer {
                RequestSigner::Insecure => (
                    b64_encode(v2::INSECURE.as_bytes()),
                    String::new(),
                    String::new(),
                ),
                RequestSigner::Ed25519 {
                    key,
                    caller_jwt,
                    signer_jwt,
                } => (
                    signing::sign_ed25519(key, &bytes),
                    caller_jwt.to_string(),
                    signer_jwt.unwrap_or_default().to_string(),
                ),
                RequestSigner::Rsa { .. } => return Err(wrong_signer(Version::V2)),
            };
            encode_json(
                Layer::SecureRequest,
                &v2::SecureRequest {
                    protocol: v2::SECURE_REQUEST_PROTOCOL.into(),
                    request: b64_encode(&bytes),
                    signature,
                    caller,
                    signer: signer_jwt,
                },
            )?
        }
    };
    encode_transport(version, &secure, routing)
}

/// What a received request's secure layer said, with the exact bytes its signature covers.
#[derive(Debug, Clone, PartialEq)]
pub enum RequestSecurity {
    /// v1 secure request.
    V1 {
        /// The signed text (the request JSON).
        message: String,
        /// Base64 RSA signature, or `insecure`.
        signature: String,
        /// The caller's PEM certificate, or an `insecure` marker.
        pubcert: String,
    },
    /// v2 secure request.
    V2 {
        /// The signed bytes (the request JSON).
        request: Vec<u8>,
        /// Base64 ed25519 signature, or base64 of `insecure`.
        signature: String,
        /// The caller's JWT (empty when insecure).
        caller_jwt: String,
        /// The delegated signer's JWT (empty when none).
        signer_jwt: String,
    },
}

impl RequestSecurity {
    /// True when the sender did not sign.
    pub fn is_insecure(&self) -> bool {
        match self {
            RequestSecurity::V1 {
                signature, pubcert, ..
            } => {
                signature == v1::INSECURE
                    || pubcert == v1::INSECURE
                    || pubcert == v1::INSECURE_REGISTRATION
            }
            RequestSecurity::V2 {
                signature,
                caller_jwt,
                ..
            } => caller_jwt.is_empty() || *signature == b64_encode(v2::INSECURE.as_bytes()),
        }
    }

    /// The caller's JWT (v2), if present.
    pub fn caller_jwt(&self) -> Option<&str> {
        match self {
            RequestSecurity::V2 { caller_jwt, .. } if !caller_jwt.is_empty() => Some(caller_jwt),
            _ => None,
        }
    }

    /// The delegated signer's JWT (v2), if present.
    pub fn signer_jwt(&self) -> Option<&str> {
        match self {
            RequestSecurity::V2 { signer_jwt, .. } if !signer_jwt.is_empty() => Some(signer_jwt),
            _ => None,
        }
    }

    /// The caller's certificate PEM (v1), if present.
    pub fn certificate_pem(&self) -> Option<&str> {
        match self {
            RequestSecurity::V1 { .. } if self.is_insecure() => None,
            RequestSecurity::V1 { pubcert, .. } => Some(pubcert),
            RequestSecurity::V2 { .. } => None,
        }
    }

    /// Verifies a v1 signature with the RSA key from the caller's (already trusted) certificate.
    pub fn verify_rsa(&self, key: &rsa::RsaPublicKey) -> Result<(), ProtocolError> {
        match self {
            _ if self.is_insecure() => Err(ProtocolError::Unsigned),
            RequestSecurity::V1 {
                message, signature, ..
            } => signing::verify_rsa(key, message.as_bytes(), signature),
            RequestSecurity::V2 { .. } => Err(ProtocolError::BadSignature(
                "a v2 request carries an ed25519 signature, not RSA".into(),
            )),
        }
    }

    /// Verifies a v2 signature with a raw ed25519 public key (from the caller's or the
    /// delegated signer's verified JWT).
    pub fn verify_ed25519(&self, public_key: &[u8]) -> Result<(), ProtocolError> {
        match self {
            _ if self.is_insecure() => Err(ProtocolError::Unsigned),
            RequestSecurity::V2 {
                request, signature, ..
            } => signing::verify_ed25519(public_key, request, signature),
            RequestSecurity::V1 { .. } => Err(ProtocolError::BadSignature(
                "a v1 request carries an RSA signature, not ed25519".into(),
            )),
        }
    }
}

/// A request taken apart. Nothing here has been verified: call [`RequestSecurity`] methods.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedRequest {
    /// Protocol version (replies must use the same).
    pub version: Version,
    /// Addressing and timing.
    pub meta: RequestMeta,
    /// The payload (SimpleRPC JSON, or `ping` for discovery).
    pub payload: Vec<u8>,
    /// Transport routing headers.
    pub routing: Routing,
    /// Signature material.
    pub security: RequestSecurity,
}

/// Decodes a request transport through every layer (size caps, JSON, protocol strings, schema).
pub fn decode_request(bytes: &[u8]) -> Result<DecodedRequest, ProtocolError> {
    let version = crate::envelope::detect_version(bytes)?;
    match version {
        Version::V1 => {
            let t = v1::Transport::decode(bytes)?;
            let secure =
                v1::SecureRequest::decode(&b64_decode(Layer::Transport, "data", &t.data)?)?;
            let request = v1::Request::decode(secure.message.as_bytes())?;
            // Upstream quirk: a base64 message is decoded, anything else is taken as text.
            let payload = b64_decode(Layer::Request, "message", &request.message)
                .unwrap_or_else(|_| request.message.clone().into_bytes());
            let e = request.envelope;
            Ok(DecodedRequest {
                version,
                meta: RequestMeta {
                    id: e.requestid,
                    sender: e.senderid,
                    caller: e.callerid,
                    collective: e.collective,
                    agent: e.agent,
                    ttl: ttl_from_wire(e.ttl)?,
                    time: ids::from_unix_seconds(e.time),
                    filter: e.filter,
                },
                payload,
                routing: Routing {
                    reply_to: t.headers.reply_to,
                    sender: t.headers.mc_sender,
                    hops: t.headers.seen_by,
                },
                security: RequestSecurity::V1 {
                    message: secure.message,
                    signature: secure.signature,
                    pubcert: secure.pubcert,
                },
            })
        }
        Version::V2 => {
            let t = v2::Transport::decode(bytes)?;
            let secure =
                v2::SecureRequest::decode(&b64_decode(Layer::Transport, "data", &t.data)?)?;
            let request_bytes = b64_decode(Layer::SecureRequest, "request", &secure.request)?;
            let r = v2::Request::decode(&request_bytes)?;
            let payload = b64_decode(Layer::Request, "message", &r.message)?;
            let headers = t.headers.unwrap_or_default();
            Ok(DecodedRequest {
                version,
                meta: RequestMeta {
                    id: r.id,
                    sender: r.sender,
                    caller: r.caller,
                    collective: r.collective,
                    agent: r.agent,
                    ttl: ttl_from_wire(r.ttl)?,
                    time: ids::from_unix_nanos(r.time),
                    filter: r.filter.unwrap_or_default(),
                },
                payload,
                routing: Routing {
                    reply_to: headers.reply,
                    sender: headers.sender,
                    hops: headers.trace,
                },
                security: RequestSecurity::V2 {
                    request: request_bytes,
                    signature: secure.signature,
                    caller_jwt: secure.caller,
                    signer_jwt: secure.signer,
                },
            })
        }
    }
}

/// Addressing of a reply.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyMeta {
    /// The request being answered.
    pub request_id: String,
    /// Identity of the replying server.
    pub sender: String,
    /// Agent that answered.
    pub agent: String,
    /// Reply time.
    pub time: SystemTime,
}

impl ReplyMeta {
    /// The reply to `request`, sent by `identity` at `now`.
    pub fn for_request(request: &RequestMeta, identity: &str, now: SystemTime) -> Self {
        ReplyMeta {
            request_id: request.id.clone(),
            sender: identity.to_string(),
            agent: request.agent.clone(),
            time: now,
        }
    }
}

/// How a reply is signed (v2 only; v1 replies carry just a hash).
pub enum ReplySigner<'a> {
    /// No signature (v1 always; v2 while provisioning or with `sign_replies` off).
    None,
    /// v2 reply signing.
    Ed25519 {
        /// The server's seed.
        key: &'a ed25519_dalek::SigningKey,
        /// The server's JWT.
        sender_jwt: &'a str,
    },
}

/// Builds the transport bytes of a reply.
pub fn encode_reply(
    version: Version,
    meta: &ReplyMeta,
    payload: &[u8],
    signer: &ReplySigner<'_>,
    routing: &Routing,
) -> Result<Vec<u8>, ProtocolError> {
    let secure = match version {
        Version::V1 => {
            if matches!(signer, ReplySigner::Ed25519 { .. }) {
                return Err(ProtocolError::Signing(
                    "protocol v1 replies are not signed".into(),
                ));
            }
            let message = std::str::from_utf8(payload).map_err(|_| ProtocolError::NotUtf8 {
                layer: Layer::Reply,
                field: "message",
            })?;
            let reply = v1::Reply {
                protocol: v1::REPLY_PROTOCOL.into(),
                message: message.to_string(),
                envelope: v1::ReplyEnvelope {
                    requestid: meta.request_id.clone(),
                    senderid: meta.sender.clone(),
                    agent: meta.agent.clone(),
                    time: ids::unix_seconds(meta.time),
                },
            };
            let text = String::from_utf8(encode_json(Layer::Reply, &reply)?).map_err(|_| {
                ProtocolError::NotUtf8 {
                    layer: Layer::Reply,
                    field: "message",
                }
            })?;
            encode_json(
                Layer::SecureReply,
                &v1::SecureReply {
                    protocol: v1::SECURE_REPLY_PROTOCOL.into(),
                    hash: signing::hash(text.as_bytes()),
                    message: text,
                },
            )?
        }
        Version::V2 => {
            let reply = v2::Reply {
                protocol: v2::REPLY_PROTOCOL.into(),
                message: b64_encode(payload),
                request: meta.request_id.clone(),
                sender: meta.sender.clone(),
                agent: meta.agent.clone(),
                time: ids::unix_nanos(meta.time),
            };
            let bytes = encode_json(Layer::Reply, &reply)?;
            let (signature, sender) = match signer {
                ReplySigner::None => (String::new(), String::new()),
                ReplySigner::Ed25519 { key, sender_jwt } => {
                    (signing::sign_ed25519(key, &bytes), sender_jwt.to_string())
                }
            };
            encode_json(
                Layer::SecureReply,
                &v2::SecureReply {
                    protocol: v2::SECURE_REPLY_PROTOCOL.into(),
                    reply: b64_encode(&bytes),
                    hash: signing::hash(&bytes),
                    signature,
                    sender,
                },
            )?
        }
    };
    encode_transport(version, &secure, routing)
}

/// A reply taken apart. Its hash has been checked; a v2 signature has not.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedReply {
    /// Protocol version.
    pub version: Version,
    /// Addressing.
    pub meta: ReplyMeta,
    /// The payload (SimpleRPC reply JSON, or `pong`).
    pub payload: Vec<u8>,
    /// Transport routing headers.
    pub routing: Routing,
    /// v2 reply signature: `(signed bytes, base64 signature, sender JWT)` when present.
    pub signature: Option<(Vec<u8>, String, String)>,
}

impl DecodedReply {
    /// Verifies the v2 reply signature with the sender's ed25519 public key.
    pub fn verify_ed25519(&self, public_key: &[u8]) -> Result<(), ProtocolError> {
        match &self.signature {
            Some((bytes, sig, _)) => signing::verify_ed25519(public_key, bytes, sig),
            None => Err(ProtocolError::Unsigned),
        }
    }
}

/// Decodes a reply transport through every layer and checks the secure reply hash.
pub fn decode_reply(bytes: &[u8]) -> Result<DecodedReply, ProtocolError> {
    let version = crate::envelope::detect_version(bytes)?;
    match version {
        Version::V1 => {
            let t = v1::Transport::decode(bytes)?;
            let secure = v1::SecureReply::decode(&b64_decode(Layer::Transport, "data", &t.data)?)?;
            let reply = v1::Reply::decode(secure.message.as_bytes())?;
            Ok(DecodedReply {
                version,
                meta: ReplyMeta {
                    request_id: reply.envelope.requestid,
                    sender: reply.envelope.senderid,
                    agent: reply.envelope.agent,
                    time: ids::from_unix_seconds(reply.envelope.time),
                },
                payload: reply.message.into_bytes(),
                routing: Routing {
                    reply_to: t.headers.reply_to,
                    sender: t.headers.mc_sender,
                    hops: t.headers.seen_by,
                },
                signature: None,
            })
        }
        Version::V2 => {
            let t = v2::Transport::decode(bytes)?;
            let secure = v2::SecureReply::decode(&b64_decode(Layer::Transport, "data", &t.data)?)?;
            let reply_bytes = b64_decode(Layer::SecureReply, "reply", &secure.reply)?;
            let reply = v2::Reply::decode(&reply_bytes)?;
            let headers = t.headers.unwrap_or_default();
            let signature = (!secure.signature.is_empty()).then_some((
                reply_bytes,
                secure.signature,
                secure.sender,
            ));
            Ok(DecodedReply {
                version,
                meta: ReplyMeta {
                    request_id: reply.request,
                    sender: reply.sender,
                    agent: reply.agent,
                    time: ids::from_unix_nanos(reply.time),
                },
                payload: b64_decode(Layer::Reply, "message", &reply.message)?,
                routing: Routing {
                    reply_to: headers.reply,
                    sender: headers.sender,
                    hops: headers.trace,
                },
                signature,
            })
        }
    }
}

fn encode_transport(
    version: Version,
    secure: &[u8],
    routing: &Routing,
) -> Result<Vec<u8>, ProtocolError> {
    match version {
        Version::V1 => encode_json(
            Layer::Transport,
            &v1::Transport {
                protocol: v1::TRANSPORT_PROTOCOL.into(),
                data: b64_encode(secure),
                headers: v1::TransportHeaders {
                    reply_to: routing.reply_to.clone(),
                    mc_sender: routing.sender.clone(),
                    seen_by: routing.hops.clone(),
                    federation: None,
                },
            },
        ),
        Version::V2 => {
            let headers = v2::TransportHeaders {
                reply: routing.reply_to.clone(),
                sender: routing.sender.clone(),
                trace: routing.hops.clone(),
                federation: None,
            };
            encode_json(
                Layer::Transport,
                &v2::Transport {
                    protocol: v2::TRANSPORT_PROTOCOL.into(),
                    data: b64_encode(secure),
                    headers: (headers != v2::TransportHeaders::default()).then_some(headers),
                },
            )
        }
    }
}

/// The error for a signer whose key the request's protocol version cannot sign with.
fn wrong_signer(version: Version) -> ProtocolError {
    ProtocolError::Signing(
        match version {
            Version::V1 => "protocol v1 needs an RSA (x509) signer",
            Version::V2 => "protocol v2 needs an ed25519 signer",
        }
        .into(),
    )
}

/// v1 requests carry text payloads as they are and anything else as base64 (upstream sends
/// `ping` as `cGluZw==`); text that happens to be valid base64 must be encoded too, or the
/// receiver would decode it.
fn v1_payload_text(payload: &[u8]) -> String {
    match std::str::from_utf8(payload) {
        Ok(text) if b64_decode(Layer::Request, "message", text).is_err() => text.to_string(),
        _ => b64_encode(payload),
    }
}

fn ttl_from_wire(ttl: i64) -> Result<Duration, ProtocolError> {
    let secs = u64::try_from(ttl)
        .map_err(|_| ProtocolError::schema(Layer::Request, "ttl", "must not be negative"))?;
    let ttl = Duration::from_secs(secs);
    if ttl > MAX_TTL {
        return Err(ProtocolError::schema(
            Layer::Request,
            "ttl",
            format!("{secs}s is longer than a day"),
        ));
    }
    Ok(ttl)
}
