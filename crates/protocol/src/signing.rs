//! Signature and hash primitives over the exact bytes the spec names: v1 RSA PKCS#1 v1.5 SHA-256
//! over the request text, v2 ed25519 over the request JSON, SHA-256 reply hashes.
//! Which signer to trust is policy and lives in the node agent, not here.

use ed25519_dalek::{Signer as _, Verifier as _};
use rsa::signature::SignatureEncoding as _;
use sha2::{Digest as _, Sha256};

use crate::envelope::{b64_decode, b64_encode};
use crate::error::{Layer, ProtocolError};

/// Base64 SHA-256 of `bytes`: the `hash` of a secure reply.
pub fn hash(bytes: &[u8]) -> String {
    b64_encode(&Sha256::digest(bytes))
}

/// Checks a secure reply `hash` against the bytes it covers (constant-time comparison is not
/// needed: the hash is not a secret).
pub fn check_hash(bytes: &[u8], hash_b64: &str) -> Result<(), ProtocolError> {
    let want = b64_decode(Layer::SecureReply, "hash", hash_b64)?;
    if want.as_slice() != Sha256::digest(bytes).as_slice() {
        return Err(ProtocolError::HashMismatch);
    }
    Ok(())
}

/// v1: base64 RSA PKCS#1 v1.5 SHA-256 signature of `message` (the request JSON text).
pub fn sign_rsa(key: &rsa::RsaPrivateKey, message: &[u8]) -> Result<String, ProtocolError> {
    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new(key.clone());
    let sig = signer
        .try_sign(message)
        .map_err(|e| ProtocolError::Signing(e.to_string()))?;
    Ok(b64_encode(&sig.to_bytes()))
}

/// v1: verifies a base64 RSA PKCS#1 v1.5 SHA-256 signature of `message`.
pub fn verify_rsa(
    key: &rsa::RsaPublicKey,
    message: &[u8],
    signature_b64: &str,
) -> Result<(), ProtocolError> {
    let raw = b64_decode(Layer::SecureRequest, "signature", signature_b64)?;
    let sig = rsa::pkcs1v15::Signature::try_from(raw.as_slice())
        .map_err(|e| ProtocolError::BadSignature(format!("malformed RSA signature: {e}")))?;
    rsa::pkcs1v15::VerifyingKey::<Sha256>::new(key.clone())
        .verify(message, &sig)
        .map_err(|_| ProtocolError::BadSignature("RSA signature does not match the message".into()))
}

/// v2: base64 (standard, padded) ed25519 signature of `bytes`.
pub fn sign_ed25519(key: &ed25519_dalek::SigningKey, bytes: &[u8]) -> String {
    b64_encode(&key.sign(bytes).to_bytes())
}

/// v2: verifies a base64 ed25519 signature of `bytes` with a raw 32-byte public key.
pub fn verify_ed25519(
    public_key: &[u8],
    bytes: &[u8],
    signature_b64: &str,
) -> Result<(), ProtocolError> {
    let key_bytes: [u8; 32] = public_key.try_into().map_err(|_| {
        ProtocolError::BadSignature(format!(
            "ed25519 public key must be 32 bytes, got {}",
            public_key.len()
        ))
    })?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&key_bytes)
        .map_err(|_| ProtocolError::BadSignature("invalid ed25519 public key".into()))?;
    let raw = b64_decode(Layer::SecureRequest, "signature", signature_b64)?;
    let sig = ed25519_dalek::Signature::from_slice(&raw).map_err(|_| {
        ProtocolError::BadSignature(format!(
            "ed25519 signature must be 64 bytes, got {}",
            raw.len()
        ))
    })?;
    key.verify(bytes, &sig).map_err(|_| {
        ProtocolError::BadSignature("ed25519 signature does not match the message".into())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ed_key(seed_hex: &str) -> ed25519_dalek::SigningKey {
        let bytes: [u8; 32] = hex::decode(seed_hex).unwrap().try_into().unwrap();
        ed25519_dalek::SigningKey::from_bytes(&bytes)
    }

    #[test]
    fn ed25519_matches_vector_and_detects_tampering() {
        let seed = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/tokens/ed25519/other.seed"
        ))
        .unwrap();
        let key = ed_key(seed.trim());
        // The vector is base64url without padding; ours is standard base64 of the same bytes.
        use base64::Engine as _;
        let want = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode("JyrB4BDEPwNnBwB84dN9TFvzYAVNWPw3F2YXV2ui41dH48TGeYZS7Bs2_8qcIU-PNIkG6tp2GtZsjQJVzmNgBQ")
            .unwrap();
        let sig = sign_ed25519(&key, b"toomanysecrets");
        assert_eq!(sig, b64_encode(&want));
        let public = key.verifying_key().to_bytes();
        verify_ed25519(&public, b"toomanysecrets", &sig).unwrap();
        assert!(matches!(
            verify_ed25519(&public, b"toomanysecretz", &sig),
            Err(ProtocolError::BadSignature(_))
        ));
        assert!(matches!(
            verify_ed25519(&public[..31], b"x", &sig),
            Err(ProtocolError::BadSignature(_))
        ));
        assert!(matches!(
            verify_ed25519(&public, b"x", "!!"),
            Err(ProtocolError::Base64 { .. })
        ));
        assert!(matches!(
            verify_ed25519(&public, b"x", "aW5zZWN1cmU="),
            Err(ProtocolError::BadSignature(_))
        ));
    }

    #[test]
    fn rsa_signs_and_verifies() {
        use rsa::pkcs1::DecodeRsaPrivateKey;
        let pem = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../../shared/vectors/tokens/rsa/signer-key.pem"
        ))
        .unwrap();
        let key = rsa::RsaPrivateKey::from_pkcs1_pem(&pem).unwrap();
        let sig = sign_rsa(&key, b"message").unwrap();
        let public = key.to_public_key();
        verify_rsa(&public, b"message", &sig).unwrap();
        assert!(matches!(
            verify_rsa(&public, b"massage", &sig),
            Err(ProtocolError::BadSignature(_))
        ));
        assert!(matches!(
            verify_rsa(&public, b"message", "aW5zZWN1cmU="),
            Err(ProtocolError::BadSignature(_))
        ));
    }

    #[test]
    fn hash_round_trip() {
        let h = hash(b"reply");
        check_hash(b"reply", &h).unwrap();
        assert!(matches!(
            check_hash(b"replY", &h),
            Err(ProtocolError::HashMismatch)
        ));
        assert!(matches!(
            check_hash(b"reply", "%%"),
            Err(ProtocolError::Base64 { .. })
        ));
    }
}
