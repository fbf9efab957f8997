//! Choria JWTs: provisioning, server and client id claims, RS256/EdDSA signing, verification
//! with key files and organisation/chain issuers, KSUIDs, nonce signatures. No network, no I/O
//! beyond reading key files.
//!
//! # Design
//!
//! Tokens are wire-compatible with upstream `choria-io/tokens`: claims serialise in Go field
//! order, only RS256/RS384/RS512/EdDSA verify, `exp`/`nbf` are checked without leeway against
//! a `now` the caller passes in (so tests control time). Every error is a [`TokenError`]
//! variant carrying the facts (segment, algorithm, time, path), never a secret. Tokens larger
//! than [`MAX_TOKEN_SIZE`] are refused before decoding.
//!
//! # Example
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use choria_tokens::{
//!     parse_server_token, sign_token, Ed25519Seed, NewServer, ServerClaims, ServerPermissions,
//!     SigningKey,
//! };
//!
//! # fn main() -> Result<(), choria_tokens::TokenError> {
//! let org = Ed25519Seed::generate();
//! let node = Ed25519Seed::generate();
//! let now = SystemTime::now();
//! let claims = ServerClaims::new(
//!     NewServer {
//!         identity: "n1.example.net".into(),
//!         collectives: vec!["choria".into()],
//!         permissions: Some(ServerPermissions { submission: true, ..Default::default() }),
//!         public_key: Some(node.public_key_bytes()),
//!         validity: Duration::from_secs(3600),
//!         ..Default::default()
//!     },
//!     now,
//! )?;
//! let token = sign_token(&claims, &SigningKey::Ed25519(org.clone()))?;
//! let parsed = parse_server_token(&token, &org.public_key(), now)?;
//! assert_eq!(parsed.identity, "n1.example.net");
//!
//! // An hour and a bit later the same token is expired.
//! let later = now + Duration::from_secs(3601);
//! assert!(matches!(
//!     parse_server_token(&token, &org.public_key(), later),
//!     Err(choria_tokens::TokenError::Expired { .. })
//! ));
//! # Ok(())
//! # }
//! ```
//!
//! Chains: an org key makes a client token a chain issuer with [`add_org_issuer_data`];
//! that issuer signs leaf tokens with [`sign_chained_token`]; verifiers configured with the
//! org public key accept those leaves through [`parse_server_token`] / [`parse_client_token`].
//!
//! ```
//! use std::time::{Duration, SystemTime};
//! use choria_tokens::*;
//!
//! # fn main() -> Result<(), TokenError> {
//! let (org, provisioner, node) = (Ed25519Seed::generate(), Ed25519Seed::generate(), Ed25519Seed::generate());
//! let now = SystemTime::now();
//! let mut issuer = ClientIdClaims::new(
//!     NewClient {
//!         callerid: "choria=provisioner".into(),
//!         public_key: Some(provisioner.public_key_bytes()),
//!         validity: Duration::from_secs(86400),
//!         ..Default::default()
//!     },
//!     now,
//! )?;
//! add_org_issuer_data(&mut issuer, &org)?;
//! let mut leaf = ServerClaims::new(
//!     NewServer {
//!         identity: "n1".into(),
//!         collectives: vec!["choria".into()],
//!         public_key: Some(node.public_key_bytes()),
//!         validity: Duration::from_secs(3600),
//!         ..Default::default()
//!     },
//!     now,
//! )?;
//! let token = sign_chained_token(&mut leaf, &issuer, &provisioner)?;
//! assert!(parse_server_token(&token, &org.public_key(), now).is_ok());
//! # Ok(())
//! # }
//! ```
//!
//! # Deviations from upstream (all more lenient on input, never on verification)
//!
//! - Token files, hex public keys and hex seeds may carry surrounding whitespace (upstream
//!   rejects a seed file with a trailing newline); files written by `choria jwt` never do.
//! - Public key files may also be `RSA PUBLIC KEY` PEM or binary DER (PKCS#1 or PKIX).
//! - Tokens larger than [`MAX_TOKEN_SIZE`] are refused before any decoding.
//! - [`SignatureEncoding::Base64`] takes a nonce signature in base64url or standard base64,
//!   like nats-server does; the broker asks for strict base64url, as upstream's does.
//! - Payload JSON with duplicate keys is refused (Go keeps the last value).
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod chain;
pub mod claims;
pub mod clock;
pub mod error;
pub mod keys;
pub mod ksuid;
pub mod nonce;
pub mod sign;
pub mod verify;

pub use chain::{
    add_chain_issuer_data, add_org_issuer_data, beyond_chain_issuer, chain_issuer_key,
    chain_issuer_of, is_chained_issuer, is_signed_by_issuer, sign_chained_token, KnownChainIssuer,
};
pub use claims::{
    subject_covers, ClientIdClaims, ClientPermissions, IssuerGrant, NewClient, NewProvisioning,
    NewServer, ProvisioningClaims, Purpose, ServerClaims, ServerPermissions, StandardClaims,
    TokenClaims, DEFAULT_ISSUER, DEFAULT_ORG, DEFAULT_VALIDITY,
};
pub use error::{ChainError, KeyKind, Segment, TokenError, MAX_TOKEN_SIZE};
pub use keys::{is_encoded_ed25519_key, read_public_key_file, Ed25519Seed, PublicKey, SigningKey};
pub use ksuid::Ksuid;
pub use nonce::{sign_nonce, verify_nonce, NonceError, SignatureEncoding};
pub use sign::{go_json, sign_payload, sign_token};
pub use verify::{
    claimed_purpose, parse_client_token, parse_client_token_unverified, parse_provisioning_token,
    parse_provisioning_token_unverified, parse_server_token, parse_server_token_unverified,
    parse_token_unverified, parse_verified, token_algorithm, token_payload_json, token_purpose,
    verify_token, ClaimedPurpose, ACCEPTED_ALGORITHMS,
};
