//! The seam between the node runtime and the Choria wire protocol: decoded requests,
//! filters, and the codec the runtime uses to read requests and write replies and
//! lifecycle events. The codec itself belongs to `choria-protocol`.

/// A request after transport, security and request layers were decoded.
#[derive(Debug, Clone)]
pub struct Incoming {
    /// Request id.
    pub request_id: String,
    /// Sending identity.
    pub sender: String,
    /// Caller id (`choria=name`).
    pub caller: String,
    /// Target agent.
    pub agent: String,
    /// Collective.
    pub collective: String,
    /// Where to send the reply.
    pub reply_to: Option<String>,
    /// The payload (SimpleRPC JSON, or `ping` for discovery).
    pub payload: Vec<u8>,
    /// The filter.
    pub filter: choria_protocol::Filter,
    /// Protocol version (the reply uses the same).
    pub version: choria_protocol::Version,
    /// The request's addressing and timing, for the reply.
    pub meta: choria_protocol::message::RequestMeta,
}

/// Who a normal-mode node trusts to sign requests (checked by [`crate::verify`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trust {
    /// Hex ed25519 public keys of organisation issuers (v2 caller and signer JWTs, also
    /// through their trust chains): `plugin.security.issuer.<name>.public`.
    pub org_issuers: Vec<String>,
    /// Hex ed25519 public keys that sign v2 caller and signer JWTs directly:
    /// `plugin.security.choria.trusted_signers`.
    pub trusted_signers: Vec<String>,
    /// CA file for v1 x509 callers, read on every v1 request.
    pub ca: Option<std::path::PathBuf>,
}

/// How strictly requests are checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verification {
    /// Provisioning mode: security checks are skipped, as upstream (spec §4.3).
    Skip,
    /// Normal mode: only signed requests from trusted callers are accepted.
    Required(Trust),
}

/// Lifecycle event types a node publishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// On start.
    Startup,
    /// Periodically.
    Alive,
    /// After `configure`.
    Provisioned,
    /// Before restart or exit.
    Shutdown,
}

/// A provisioned node's reply-signing material (v2, `sign_replies`).
pub struct ReplyKey {
    /// The node's ed25519 key.
    pub key: ed25519_dalek::SigningKey,
    /// The node's server JWT.
    pub jwt: String,
}

impl std::fmt::Debug for ReplyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key is a secret.
        f.write_str("ReplyKey")
    }
}

/// The wire codec the runtime uses; implemented over `choria-protocol`.
pub trait Codec: Send + Sync {
    /// Decodes and (per `verification`) verifies a request received on NATS.
    fn decode_request(&self, bytes: &[u8], verification: &Verification)
        -> Result<Incoming, String>;
    /// Encodes `payload` as the reply to `request` from `identity`.
    /// `signer` (v2 only) signs the reply with the node's seed and names its JWT.
    fn encode_reply(
        &self,
        request: &Incoming,
        identity: &str,
        payload: &[u8],
        signer: Option<&ReplyKey>,
    ) -> Result<Vec<u8>, String>;
    /// A file-content registration request from `identity` for `file` (spec §4.7).
    fn registration(
        &self,
        identity: &str,
        file: &str,
        mtime: i64,
        updated: bool,
        bytes: &[u8],
    ) -> Result<Vec<u8>, String>;
    /// Subject and body of a lifecycle event.
    fn lifecycle(
        &self,
        event: Lifecycle,
        identity: &str,
        component: &str,
        version: &str,
    ) -> Result<(String, Vec<u8>), String>;
}

/// The production codec ([`crate::codec::ProtocolCodec`]), shared by every node.
pub fn default_codec() -> std::sync::Arc<dyn Codec> {
    std::sync::Arc::new(crate::codec::ProtocolCodec)
}
