//! The errors of this crate: one enum for tokens and key files, one for trust chains.
//! Variants carry the facts needed to act (segment, algorithm, path, time), never secrets.

use std::fmt;
use std::path::PathBuf;

use crate::claims::Purpose;

/// The largest token this crate will look at, in bytes (before any decoding).
pub const MAX_TOKEN_SIZE: usize = 64 * 1024;

/// The part of a compact JWT an error refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Segment {
    /// The first segment, the JOSE header.
    Header,
    /// The second segment, the claims.
    Payload,
    /// The third segment, the signature.
    Signature,
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Segment::Header => "header",
            Segment::Payload => "payload",
            Segment::Signature => "signature",
        })
    }
}

/// The kind of a public or private key, used in mismatch errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyKind {
    /// An RSA key.
    Rsa,
    /// An ed25519 key.
    Ed25519,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            KeyKind::Rsa => "rsa",
            KeyKind::Ed25519 => "ed25519",
        })
    }
}

/// Everything that can go wrong creating, signing, parsing or verifying a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// The token is larger than [`MAX_TOKEN_SIZE`]; it was not decoded.
    #[error("token is too large: {size} bytes, the limit is {limit} bytes")]
    TooLarge {
        /// Size of the token as received.
        size: usize,
        /// The limit it exceeded.
        limit: usize,
    },
    /// The token does not have exactly three dot-separated segments.
    #[error(
        "token is malformed: token contains an invalid number of segments ({found}, expected 3)"
    )]
    SegmentCount {
        /// How many segments were found.
        found: usize,
    },
    /// One segment could not be decoded (base64url or JSON).
    #[error("token is malformed: could not decode the {segment} segment: {reason}")]
    Malformed {
        /// Which segment was bad.
        segment: Segment,
        /// What was wrong with it.
        reason: String,
    },
    /// The header names an algorithm outside the RS256/RS384/RS512/EdDSA allow-list.
    #[error(
        "unsupported signing algorithm {alg:?}: only RS256, RS384, RS512 and EdDSA are accepted"
    )]
    UnsupportedAlgorithm {
        /// The `alg` from the header.
        alg: String,
    },
    /// The algorithm needs another kind of key than the one given.
    #[error("{required} public key required: the token is signed with {alg} but the key given is {given}")]
    KeyMismatch {
        /// The `alg` from the header.
        alg: String,
        /// The key kind that algorithm needs.
        required: KeyKind,
        /// The key kind that was given.
        given: KeyKind,
    },
    /// The signature does not verify with the key.
    #[error("token signature is invalid: {}", match .kind { KeyKind::Rsa => "crypto/rsa: verification error", KeyKind::Ed25519 => "ed25519: verification error" })]
    BadSignature {
        /// The kind of key that did not verify it.
        kind: KeyKind,
    },
    /// `now` is at or after `exp`.
    #[error("token is expired: it expired at {} (unix {expired_at})", crate::clock::format_unix(*.expired_at))]
    Expired {
        /// The `exp` claim, unix seconds.
        expired_at: i64,
    },
    /// The chain issuer of this token has expired (`issexp`), or the issuer-expiry check failed.
    #[error("token is expired: the issuer expiry check failed ({reason})")]
    IssuerExpired {
        /// Why the check failed.
        reason: &'static str,
    },
    /// `now` is before `nbf`.
    #[error("token is not valid yet: it becomes valid at {} (unix {not_before})", crate::clock::format_unix(*.not_before))]
    NotYetValid {
        /// The `nbf` claim, unix seconds.
        not_before: i64,
    },
    /// The token has another purpose than the one asked for.
    #[error("not a {} token: its purpose is {found:?}", .expected.noun())]
    WrongPurpose {
        /// The purpose that was required.
        expected: Purpose,
        /// The purpose the token carries (raw claim).
        found: String,
    },
    /// The trust chain (`iss` + `tcs`) is incomplete or does not verify.
    #[error("not signed by issuer: {0}")]
    Chain(#[from] ChainError),
    /// Trust chain data could not be added to new claims (the issuer's claims are unfit).
    #[error("cannot add trust chain data: {0}")]
    ChainCreation(ChainError),
    /// A claim needed to create a token is missing or invalid.
    #[error("invalid claims: {0}")]
    InvalidClaims(String),
    /// The claims could not be serialised.
    #[error("could not serialise the claims: {0}")]
    Serialise(String),
    /// A key (in memory) is unusable.
    #[error("invalid key: {0}")]
    InvalidKey(String),
    /// A key file could not be read or understood.
    #[error("bad key file {}: {reason}", .path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// Signing failed in the crypto library.
    #[error("could not sign the token: {0}")]
    Signing(String),
    /// A KSUID could not be parsed.
    #[error("invalid ksuid format: {0}")]
    Ksuid(String),
}

/// Why a trust chain (organisation issuer `I-` / chain issuer `C-`) is not acceptable.
///
/// Messages follow upstream wording so operators can search for them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// `iss` is empty.
    #[error("no issuer set")]
    NoIssuer,
    /// `public_key` is empty.
    #[error("no public key set")]
    NoPublicKey,
    /// `tcs` is empty.
    #[error("no trust chain signature set")]
    NoTrustChainSignature,
    /// `jti` is empty.
    #[error("id not set")]
    NoId,
    /// `iat` is missing or zero.
    #[error("no issued time set")]
    NoIssuedTime,
    /// `exp` is missing or zero.
    #[error("no expires set")]
    NoExpires,
    /// `jti` is not a KSUID.
    #[error("invalid ksuid format")]
    InvalidKsuid,
    /// The KSUID timestamp of `jti` differs from `iat`.
    #[error("id is not based on issued time")]
    IdNotBasedOnIssuedTime,
    /// An `I-` issuer names another organisation key than the one given.
    #[error("public keys do not match")]
    PublicKeysDoNotMatch,
    /// `tcs` is not hex, or not of the expected shape.
    #[error("invalid trust chain signature{}", .0.as_ref().map(|r| format!(": {r}")).unwrap_or_default())]
    InvalidTrustChainSignature(Option<String>),
    /// `issexp` is missing on a `C-` token.
    #[error("no issuer expires set")]
    NoIssuerExpires,
    /// The part after `C-` is not `<id>.<public key>`.
    #[error("invalid issuer content")]
    InvalidIssuerContent,
    /// The id in a `C-` issuer is empty.
    #[error("invalid id in issuer")]
    InvalidIdInIssuer,
    /// The public key in a `C-` issuer is empty.
    #[error("invalid public key in issuer")]
    InvalidPublicKeyInIssuer,
    /// The public key in a `C-` issuer is not a hex ed25519 key.
    #[error("invalid public key in issuer data")]
    InvalidPublicKeyInIssuerData,
    /// The chain issuer's part of `tcs` is not hex.
    #[error("invalid signature in chain signature: {0}")]
    InvalidSignatureInChainSignature(String),
    /// The organisation issuer did not sign the chain issuer's credentials.
    #[error("chain issuer credentials not signed by org issuer")]
    NotSignedByOrgIssuer,
    /// The chain issuer did not sign this token's credentials.
    #[error("invalid chain signature")]
    InvalidChainSignature,
    /// `iss` starts with neither `I-` nor `C-`.
    #[error("unsupported issuer format")]
    UnsupportedIssuerFormat,
    /// The chain issuer token has no `exp`.
    #[error("issuer has no expiry")]
    IssuerHasNoExpiry,
    /// The token would grant something its chain issuer does not hold.
    #[error("the token grants {0}, which its chain issuer does not hold")]
    BeyondIssuer(String),
    /// The chain issuer token has no `public_key`.
    #[error("public key not set")]
    PublicKeyNotSet,
    /// The chain issuer token is not itself an `I-` chain issuer.
    #[error("issuer token is not a chain issuer (needs an I- issuer and a trust chain signature)")]
    NotAChainIssuer,
}
