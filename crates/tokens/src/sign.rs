//! Turning claims into a compact JWS: Go-compatible JSON, the `{"alg":…,"typ":"JWT"}` header,
//! and an RS256 (PKCS#1 v1.5, SHA-256) or EdDSA signature.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rsa::signature::{SignatureEncoding as _, Signer as _};
use serde::Serialize;

use crate::claims::TokenClaims;
use crate::error::TokenError;
use crate::keys::SigningKey;

/// Signs `claims` with `key`: RSA keys produce `RS256`, ed25519 seeds `EdDSA`.
///
/// The payload is serialised like Go's `encoding/json` (declaration order, `<>&` escaped),
/// so ed25519 and RSA tokens are byte-identical to upstream's for the same claims.
pub fn sign_token<C: TokenClaims>(claims: &C, key: &SigningKey) -> Result<String, TokenError> {
    let payload = go_json(claims)?;
    sign_payload(payload.as_bytes(), key)
}

/// Signs an already serialised JSON payload (used for tests and foreign claim sets).
pub fn sign_payload(payload: &[u8], key: &SigningKey) -> Result<String, TokenError> {
    let header = format!(r#"{{"alg":"{}","typ":"JWT"}}"#, key.algorithm());
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.as_bytes()),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let signature = match key {
        SigningKey::Rsa(private) => {
            let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private.clone());
            signer
                .try_sign(signing_input.as_bytes())
                .map_err(|e| TokenError::Signing(e.to_string()))?
                .to_vec()
        }
        SigningKey::Ed25519(seed) => seed.sign(signing_input.as_bytes()).to_vec(),
    };
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

/// Serialises like Go's `encoding/json`: compact, and with `<`, `>`, `&`, U+2028 and U+2029
/// escaped. Those characters only ever occur inside JSON strings, so replacing them is safe.
pub fn go_json<T: Serialize>(value: &T) -> Result<String, TokenError> {
    let plain = serde_json::to_string(value).map_err(|e| TokenError::Serialise(e.to_string()))?;
    if !plain.contains(['<', '>', '&', '\u{2028}', '\u{2029}']) {
        return Ok(plain);
    }
    let mut out = String::with_capacity(plain.len() + 16);
    for ch in plain.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            other => out.push(other),
        }
    }
    Ok(out)
}
