//! Organisation issuers (`I-`) and chain issuers (`C-`), spec §1.9: an org key signs a
//! chain issuer's credentials, the chain issuer signs leaf tokens, verifiers hold the org key.

use ed25519_dalek::{Signature, Verifier as _, VerifyingKey};

use crate::claims::{ClientIdClaims, IssuerGrant, StandardClaims, TokenClaims};
use crate::error::{ChainError, TokenError};
use crate::keys::{Ed25519Seed, SigningKey};
use crate::ksuid::Ksuid;
use crate::sign::sign_token;

/// `iss` prefix of a token whose credentials the organisation issuer signed.
pub const ORG_ISSUER_PREFIX: &str = "I-";
/// `iss` prefix of a token issued through a chain issuer.
pub const CHAIN_ISSUER_PREFIX: &str = "C-";

/// Makes `claims` a chain issuer for the organisation key `org` (upstream `AddOrgIssuerData`):
/// `iss` = `I-<org public key>`, `tcs` = org signature over `<jti>.<public_key>`.
///
/// The token itself must then be signed by `org` too.
pub fn add_org_issuer_data(
    claims: &mut ClientIdClaims,
    org: &Ed25519Seed,
) -> Result<(), TokenError> {
    let standard = &mut claims.standard;
    if standard.public_key.is_empty() {
        return Err(TokenError::ChainCreation(ChainError::PublicKeyNotSet));
    }
    if standard.jti.is_empty() {
        return Err(TokenError::ChainCreation(ChainError::NoId));
    }
    let data = format!("{}.{}", standard.jti, standard.public_key);
    standard.iss = format!("{ORG_ISSUER_PREFIX}{}", org.public_key_hex());
    standard.tcs = hex::encode(org.sign(data.as_bytes()));
    Ok(())
}

/// Makes `leaf` a token issued by the chain issuer `issuer` holding `issuer_seed`
/// (upstream `AddChainIssuerData`): sets `iss`, `issexp`, caps `exp`, extends `tcs`.
pub fn add_chain_issuer_data(
    leaf: &mut StandardClaims,
    issuer: &ClientIdClaims,
    issuer_seed: &Ed25519Seed,
) -> Result<(), TokenError> {
    let h = &issuer.standard;
    if h.jti.is_empty() {
        return Err(TokenError::ChainCreation(ChainError::NoId));
    }
    if h.public_key.is_empty() {
        return Err(TokenError::ChainCreation(ChainError::PublicKeyNotSet));
    }
    let Some(h_exp) = h.exp else {
        return Err(TokenError::ChainCreation(ChainError::IssuerHasNoExpiry));
    };
    if !is_chained_issuer(h, false) {
        return Err(TokenError::ChainCreation(ChainError::NotAChainIssuer));
    }
    leaf.iss = format!("{CHAIN_ISSUER_PREFIX}{}.{}", h.jti, h.public_key);
    leaf.issexp = Some(h_exp);
    if leaf.exp.is_none_or(|exp| h_exp < exp) {
        leaf.exp = Some(h_exp);
    }
    let data = format!("{}.{}", leaf.jti, h.tcs);
    leaf.tcs = format!(
        "{}.{}",
        h.tcs,
        hex::encode(issuer_seed.sign(data.as_bytes()))
    );
    Ok(())
}

/// Issues and signs a leaf (server or client) token through a chain issuer: applies
/// [`add_chain_issuer_data`] and signs with the issuer's seed (EdDSA). A leaf that would grant
/// more than the issuer holds ([`TokenClaims::beyond_issuer`]) is refused: losing a delegated
/// key must not be as bad as losing the organisation issuer.
pub fn sign_chained_token<C: TokenClaims>(
    leaf: &mut C,
    issuer: &ClientIdClaims,
    issuer_seed: &Ed25519Seed,
) -> Result<String, TokenError> {
    if let Some(excess) = leaf.beyond_issuer(&IssuerGrant::of(issuer)) {
        return Err(TokenError::ChainCreation(ChainError::BeyondIssuer(excess)));
    }
    add_chain_issuer_data(leaf.standard_mut(), issuer, issuer_seed)?;
    sign_token(leaf, &SigningKey::Ed25519(issuer_seed.clone()))
}

/// The chain issuer a `C-` token names: `(jti, hex public key)` of the issuer's own token.
pub fn chain_issuer_of(claims: &StandardClaims) -> Option<(&str, &str)> {
    claims
        .iss
        .strip_prefix(CHAIN_ISSUER_PREFIX)
        .and_then(split_pair)
}

/// A chain issuer a verifier was told about: the id and key its tokens name in `iss`, and
/// what it holds (and so may delegate).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownChainIssuer {
    /// `jti` of the issuer's own token.
    pub jti: String,
    /// Its hex ed25519 `public_key`.
    pub public_key: String,
    /// What it holds.
    pub grant: IssuerGrant,
}

impl KnownChainIssuer {
    /// The chain issuer of an (already verified) chain-issuer client token.
    pub fn of(issuer: &ClientIdClaims) -> KnownChainIssuer {
        KnownChainIssuer {
            jti: issuer.standard.jti.clone(),
            public_key: issuer.standard.public_key.clone(),
            grant: IssuerGrant::of(issuer),
        }
    }
}

/// For a verified token: what it grants beyond its chain issuer's grant, when it is chain
/// issued. An issuer missing from `known` holds nothing, so its tokens may carry no
/// permission flags and no extra subjects. `None` for tokens within bounds or not chained.
pub fn beyond_chain_issuer<C: TokenClaims>(leaf: &C, known: &[KnownChainIssuer]) -> Option<String> {
    let (jti, public_key) = chain_issuer_of(leaf.standard())?;
    let none = IssuerGrant::default();
    let grant = known
        .iter()
        .find(|k| k.jti == jti && k.public_key == public_key)
        .map_or(&none, |k| &k.grant);
    leaf.beyond_issuer(grant)
}

/// Upstream `IsChainedIssuer`: `tcs` set and `iss` an `I-` issuer; with `verify`, the org
/// key in `iss` must also have signed `<jti>.<public_key>`.
pub fn is_chained_issuer(claims: &StandardClaims, verify: bool) -> bool {
    if claims.tcs.is_empty() {
        return false;
    }
    let Some(org_hex) = claims.iss.strip_prefix(ORG_ISSUER_PREFIX) else {
        return false;
    };
    if !verify {
        return true;
    }
    let Some(org) = verifying_key_from_hex(org_hex) else {
        return false;
    };
    let data = format!("{}.{}", claims.jti, claims.public_key);
    signature_from_hex(&claims.tcs).is_some_and(|sig| org.verify(data.as_bytes(), &sig).is_ok())
}

/// Upstream `IsSignedByIssuer`: `Ok(true)` when the chain up to the org key `org` is valid;
/// for `I-` tokens an invalid signature is `Ok(false)`, for `C-` tokens an error.
pub fn is_signed_by_issuer(
    claims: &StandardClaims,
    org: &VerifyingKey,
) -> Result<bool, ChainError> {
    check_required(claims)?;
    if let Some(org_hex) = claims.iss.strip_prefix(ORG_ISSUER_PREFIX) {
        if org_hex != hex::encode(org.as_bytes()) {
            return Err(ChainError::PublicKeysDoNotMatch);
        }
        let tcs = hex::decode(&claims.tcs)
            .map_err(|e| ChainError::InvalidTrustChainSignature(Some(e.to_string())))?;
        let data = format!("{}.{}", claims.jti, claims.public_key);
        return Ok(
            Signature::from_slice(&tcs).is_ok_and(|sig| org.verify(data.as_bytes(), &sig).is_ok())
        );
    }
    if claims.iss.starts_with(CHAIN_ISSUER_PREFIX) {
        return chain_issuer_key(claims, org).map(|_| true);
    }
    Err(ChainError::UnsupportedIssuerFormat)
}

/// Verifies the chain of a `C-` token with `org` as organisation issuer and returns the
/// chain issuer's key, which must then verify the token's own signature.
pub fn chain_issuer_key(
    claims: &StandardClaims,
    org: &VerifyingKey,
) -> Result<VerifyingKey, ChainError> {
    check_required(claims)?;
    let Some(issuer) = claims.iss.strip_prefix(CHAIN_ISSUER_PREFIX) else {
        return Err(ChainError::UnsupportedIssuerFormat);
    };
    if claims.issexp.is_none() {
        return Err(ChainError::NoIssuerExpires);
    }
    let (h_jti, h_pub_hex) = split_pair(issuer).ok_or(ChainError::InvalidIssuerContent)?;
    if h_jti.is_empty() {
        return Err(ChainError::InvalidIdInIssuer);
    }
    if h_pub_hex.is_empty() {
        return Err(ChainError::InvalidPublicKeyInIssuer);
    }
    let h_pub =
        verifying_key_from_hex(h_pub_hex).ok_or(ChainError::InvalidPublicKeyInIssuerData)?;
    let (org_part, issuer_part) = split_pair(&claims.tcs)
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .ok_or(ChainError::InvalidTrustChainSignature(None))?;
    let issuer_sig = hex::decode(issuer_part)
        .map_err(|e| ChainError::InvalidSignatureInChainSignature(e.to_string()))?;

    let org_data = format!("{h_jti}.{}", hex::encode(h_pub.as_bytes()));
    let org_ok = signature_from_hex(org_part)
        .is_some_and(|sig| org.verify(org_data.as_bytes(), &sig).is_ok());
    if !org_ok {
        return Err(ChainError::NotSignedByOrgIssuer);
    }
    let leaf_data = format!("{}.{org_part}", claims.jti);
    let leaf_ok = Signature::from_slice(&issuer_sig)
        .is_ok_and(|sig| h_pub.verify(leaf_data.as_bytes(), &sig).is_ok());
    if !leaf_ok {
        return Err(ChainError::InvalidChainSignature);
    }
    Ok(h_pub)
}

fn check_required(claims: &StandardClaims) -> Result<(), ChainError> {
    if claims.iss.is_empty() {
        return Err(ChainError::NoIssuer);
    }
    if claims.public_key.is_empty() {
        return Err(ChainError::NoPublicKey);
    }
    if claims.tcs.is_empty() {
        return Err(ChainError::NoTrustChainSignature);
    }
    if claims.jti.is_empty() {
        return Err(ChainError::NoId);
    }
    let iat = claims
        .iat
        .filter(|t| *t != 0)
        .ok_or(ChainError::NoIssuedTime)?;
    if claims.exp.is_none_or(|t| t == 0) {
        return Err(ChainError::NoExpires);
    }
    let id = Ksuid::parse(&claims.jti).map_err(|_| ChainError::InvalidKsuid)?;
    if id.unix_seconds() != iat {
        return Err(ChainError::IdNotBasedOnIssuedTime);
    }
    Ok(())
}

fn split_pair(s: &str) -> Option<(&str, &str)> {
    let mut parts = s.split('.');
    match (parts.next(), parts.next(), parts.next()) {
        (Some(a), Some(b), None) => Some((a, b)),
        _ => None,
    }
}

fn verifying_key_from_hex(s: &str) -> Option<VerifyingKey> {
    let mut raw = [0u8; 32];
    hex::decode_to_slice(s, &mut raw).ok()?;
    VerifyingKey::from_bytes(&raw).ok()
}

fn signature_from_hex(s: &str) -> Option<Signature> {
    let raw = hex::decode(s).ok()?;
    Signature::from_slice(&raw).ok()
}
