//! Reading compact JWS tokens: size cap, segment decoding, the RS256/RS384/RS512/EdDSA
//! allow-list, key selection (with `C-` chain issuers), signature and `exp`/`nbf` checks.

use std::time::SystemTime;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::signature::Verifier as _;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::chain;
use crate::claims::{
    ClientIdClaims, ProvisioningClaims, Purpose, ServerClaims, StandardClaims, TokenClaims,
    DEFAULT_ORG,
};
use crate::clock::unix_seconds;
use crate::error::{KeyKind, Segment, TokenError, MAX_TOKEN_SIZE};
use crate::keys::{trim_ascii, PublicKey};

/// Signing algorithms accepted when verifying.
pub const ACCEPTED_ALGORITHMS: [&str; 4] = ["RS256", "RS384", "RS512", "EdDSA"];

/// Verifies a provisioning token (spec §1.4): signature with `key`, `exp`/`nbf` at `now`,
/// provisioning purpose (`sub` alone is enough for legacy tokens); `ou` defaults to `choria`.
pub fn parse_provisioning_token(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
) -> Result<ProvisioningClaims, TokenError> {
    let claims = verify_typed(token, key, now, |s| !s.tcs.is_empty())?;
    Ok(with_default_ou(claims))
}

/// Verifies a server token (spec §1.5); `C-` issued tokens are verified through their
/// chain with `key` as the organisation issuer.
pub fn parse_server_token(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
) -> Result<ServerClaims, TokenError> {
    verify_typed(token, key, now, |s| !s.tcs.is_empty())
}

/// Verifies a client id token (spec §1.6); `C-` issued tokens are verified through their
/// chain with `key` as the organisation issuer.
pub fn parse_client_token(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
) -> Result<ClientIdClaims, TokenError> {
    verify_typed(token, key, now, |s| {
        !s.tcs.is_empty() && s.iss.starts_with("C-")
    })
}

/// Reads a provisioning token without checking signature or times (how a server reads its
/// own token); purpose is still required and `ou` defaulted.
pub fn parse_provisioning_token_unverified(token: &str) -> Result<ProvisioningClaims, TokenError> {
    Ok(with_default_ou(decode_typed(token)?))
}

/// Reads a server token without checking signature or times; purpose is still required.
pub fn parse_server_token_unverified(token: &str) -> Result<ServerClaims, TokenError> {
    decode_typed(token)
}

/// Reads a client token without checking signature or times; purpose is still required.
pub fn parse_client_token_unverified(token: &str) -> Result<ClientIdClaims, TokenError> {
    decode_typed(token)
}

/// [`parse_verified`], then the purpose of `C`, then the chain issuer's expiry, which
/// `issuer_expiry_required` says whether the claims must carry.
fn verify_typed<C: TokenClaims>(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
    issuer_expiry_required: impl Fn(&StandardClaims) -> bool,
) -> Result<C, TokenError> {
    let claims: C = parse_verified(token, key, now)?;
    let standard = claims.standard();
    require_purpose(standard, C::PURPOSE)?;
    standard.check_issuer_expiry(issuer_expiry_required(standard), now)?;
    Ok(claims)
}

/// Decodes a token of type `C` without verifying it; its purpose must still be `C`'s.
fn decode_typed<C: TokenClaims>(token: &str) -> Result<C, TokenError> {
    let claims: C = decode(token)?.claims;
    require_purpose(claims.standard(), C::PURPOSE)?;
    Ok(claims)
}

/// The payload of a token as a JSON object, without any checks beyond well-formedness.
pub fn parse_token_unverified(
    token: &str,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    Ok(decode(token)?.claims)
}

/// Verifies signature and times of a token of any type and returns its payload as JSON.
/// Chains are not followed (use the typed parsers for client and server tokens).
pub fn verify_token(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
) -> Result<serde_json::Map<String, serde_json::Value>, TokenError> {
    let decoded = decode::<serde_json::Map<String, serde_json::Value>>(token)?;
    let standard: StandardClaims =
        serde_json::from_value(serde_json::Value::Object(decoded.claims.clone()))
            .map_err(|e| malformed(Segment::Payload, e))?;
    verify_decoded(&decoded, &standard, key, false, now)?;
    Ok(decoded.claims)
}

/// The payload of an unverified token as its raw JSON text, keys in the signer's order.
pub fn token_payload_json(token: &str) -> Result<String, TokenError> {
    let payload = decode::<serde::de::IgnoredAny>(token)?.payload;
    String::from_utf8(payload).map_err(|e| malformed(Segment::Payload, e))
}

/// The purpose of an unverified token; [`Purpose::Unknown`] when it cannot be read.
pub fn token_purpose(token: &str) -> Purpose {
    match claimed_purpose(token) {
        ClaimedPurpose::Known(purpose) => purpose,
        ClaimedPurpose::Other(_) => Purpose::Unknown,
    }
}

/// What an unverified token says it is for (spec §1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimedPurpose {
    /// One of the purposes this crate has claims for.
    Known(Purpose),
    /// Any other `purpose` claim, as claimed; empty when the token cannot be read.
    Other(String),
}

/// The purpose of an unverified token, keeping an unknown claim so it can be reported.
pub fn claimed_purpose(token: &str) -> ClaimedPurpose {
    let Ok(decoded) = decode::<StandardClaims>(token) else {
        return ClaimedPurpose::Other(String::new());
    };
    match decoded.claims.purpose() {
        Purpose::Unknown => ClaimedPurpose::Other(decoded.claims.purpose),
        known => ClaimedPurpose::Known(known),
    }
}

/// The header `alg` of an unverified token (`RS256`, `EdDSA`, …).
pub fn token_algorithm(token: &str) -> Result<String, TokenError> {
    Ok(decode::<serde_json::Value>(token)?.alg)
}

/// Verified parse of any claims type (spec §1.8.1) without purpose checks.
pub fn parse_verified<C: TokenClaims>(
    token: &str,
    key: &PublicKey,
    now: SystemTime,
) -> Result<C, TokenError> {
    let decoded = decode::<C>(token)?;
    let standard = decoded.claims.standard().clone();
    verify_decoded(&decoded, &standard, key, C::CHAIN_AWARE, now)?;
    Ok(decoded.claims)
}

struct Decoded<'a, C> {
    alg: String,
    signing_input: &'a str,
    signature: &'a str,
    payload: Vec<u8>,
    claims: C,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
}

fn decode<C: DeserializeOwned>(token: &str) -> Result<Decoded<'_, C>, TokenError> {
    if token.len() > MAX_TOKEN_SIZE {
        return Err(TokenError::TooLarge {
            size: token.len(),
            limit: MAX_TOKEN_SIZE,
        });
    }
    let token = std::str::from_utf8(trim_ascii(token.as_bytes()))
        .map_err(|e| malformed(Segment::Header, e))?;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts[..] else {
        return Err(TokenError::SegmentCount { found: parts.len() });
    };
    let header_bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|e| malformed(Segment::Header, e))?;
    let header_json: Header =
        serde_json::from_slice(&header_bytes).map_err(|e| malformed(Segment::Header, e))?;
    let payload_bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|e| malformed(Segment::Payload, e))?;
    let claims =
        serde_json::from_slice(&payload_bytes).map_err(|e| malformed(Segment::Payload, e))?;
    let signing_input = &token[..header.len() + 1 + payload.len()];
    Ok(Decoded {
        alg: header_json.alg,
        signing_input,
        signature,
        payload: payload_bytes,
        claims,
    })
}

fn verify_decoded<C>(
    decoded: &Decoded<'_, C>,
    standard: &StandardClaims,
    key: &PublicKey,
    chain_aware: bool,
    now: SystemTime,
) -> Result<(), TokenError> {
    let alg = decoded.alg.as_str();
    if !ACCEPTED_ALGORITHMS.contains(&alg) {
        return Err(TokenError::UnsupportedAlgorithm {
            alg: decoded.alg.clone(),
        });
    }
    let signature = URL_SAFE_NO_PAD
        .decode(decoded.signature)
        .map_err(|e| malformed(Segment::Signature, e))?;
    let message = decoded.signing_input.as_bytes();
    match (alg, key) {
        ("EdDSA", PublicKey::Ed25519(org)) => {
            let verifier = if chain_aware && standard.iss.starts_with("C-") {
                chain::chain_issuer_key(standard, org)?
            } else {
                *org
            };
            let sig = ed25519_dalek::Signature::from_slice(&signature).map_err(|_| {
                TokenError::BadSignature {
                    kind: KeyKind::Ed25519,
                }
            })?;
            verifier
                .verify(message, &sig)
                .map_err(|_| TokenError::BadSignature {
                    kind: KeyKind::Ed25519,
                })?;
        }
        ("EdDSA", other) => return Err(mismatch(alg, KeyKind::Ed25519, other)),
        (rs, PublicKey::Rsa(public)) => {
            let sig = rsa::pkcs1v15::Signature::try_from(signature.as_slice())
                .map_err(|_| TokenError::BadSignature { kind: KeyKind::Rsa })?;
            let result = match rs {
                "RS256" => rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(public.clone())
                    .verify(message, &sig),
                "RS384" => rsa::pkcs1v15::VerifyingKey::<sha2::Sha384>::new(public.clone())
                    .verify(message, &sig),
                _ => rsa::pkcs1v15::VerifyingKey::<sha2::Sha512>::new(public.clone())
                    .verify(message, &sig),
            };
            result.map_err(|_| TokenError::BadSignature { kind: KeyKind::Rsa })?;
        }
        (_, other) => return Err(mismatch(alg, KeyKind::Rsa, other)),
    }
    check_times(standard, now)
}

/// `exp` and `nbf` without leeway: valid while `now < exp` and from `now >= nbf`.
fn check_times(standard: &StandardClaims, now: SystemTime) -> Result<(), TokenError> {
    let now = unix_seconds(now);
    if let Some(exp) = standard.exp {
        if now >= exp {
            return Err(TokenError::Expired { expired_at: exp });
        }
    }
    if let Some(nbf) = standard.nbf {
        if now < nbf {
            return Err(TokenError::NotYetValid { not_before: nbf });
        }
    }
    Ok(())
}

fn with_default_ou(mut claims: ProvisioningClaims) -> ProvisioningClaims {
    if claims.ou.is_empty() {
        claims.ou = DEFAULT_ORG.to_string();
    }
    claims
}

fn require_purpose(standard: &StandardClaims, expected: Purpose) -> Result<(), TokenError> {
    if standard.purpose() == expected {
        Ok(())
    } else {
        Err(TokenError::WrongPurpose {
            expected,
            found: standard.purpose.clone(),
        })
    }
}

fn mismatch(alg: &str, required: KeyKind, given: &PublicKey) -> TokenError {
    TokenError::KeyMismatch {
        alg: alg.to_string(),
        required,
        given: given.kind(),
    }
}

fn malformed(segment: Segment, err: impl std::fmt::Display) -> TokenError {
    TokenError::Malformed {
        segment,
        reason: err.to_string(),
    }
}
