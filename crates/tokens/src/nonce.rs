//! Nonce signatures: the ed25519 signature of a NATS server nonce (sent as `sig` in CONNECT)
//! and of the provisioner's `gen25519` nonce, made and checked in one place.

use std::fmt;

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;

use crate::keys::Ed25519Seed;

/// Signs the raw nonce bytes; the result is base64url without padding (what NATS expects).
pub fn sign_nonce(seed: &Ed25519Seed, nonce: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(seed.sign(nonce))
}

/// How a nonce signature is written by the side that sent it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// base64url without padding: CONNECT `sig`, as the Choria broker decodes it
    /// (spec broker §2.4 step 5).
    Base64Url,
    /// base64url or standard base64, padded or not, as nats-server itself decodes `sig`.
    Base64,
    /// Lowercase or uppercase hex: the `signature` of a `choria_provision#gen25519` reply
    /// (spec provisioner §3 step 3).
    Hex,
}

impl fmt::Display for SignatureEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SignatureEncoding::Base64Url => "base64url",
            SignatureEncoding::Base64 => "base64",
            SignatureEncoding::Hex => "hex",
        })
    }
}

/// Why a nonce signature was not accepted, in the order the checks run.
///
/// Messages follow the provisioner's wording (spec provisioner §3 step 3); the broker maps
/// the variants to its own texts (spec broker §2.4).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum NonceError {
    /// No public key was given.
    #[error("no public key received")]
    MissingPublicKey,
    /// No signature was given.
    #[error("no signature received")]
    MissingSignature,
    /// The nonce to check against is empty.
    #[error("no nonce to verify")]
    MissingNonce,
    /// The public key is not hex.
    #[error("invalid public key received: {0}")]
    PublicKeyNotHex(hex::FromHexError),
    /// The signature is not in the encoding the sender uses.
    #[error("invalid signature: {reason}")]
    SignatureEncoding {
        /// The encoding that was expected.
        encoding: SignatureEncoding,
        /// The decoder's complaint.
        reason: String,
    },
    /// The public key does not have the 32 bytes of an ed25519 key.
    #[error("invalid public key received: {0} bytes, want 32")]
    PublicKeyLength(usize),
    /// The 32 bytes are not an ed25519 public key.
    #[error("invalid public key received: not an ed25519 public key")]
    InvalidPublicKey,
    /// The signature does not have the 64 bytes of an ed25519 signature.
    #[error("invalid signature")]
    SignatureLength(usize),
    /// The signature is well formed but was not made over this nonce by this key.
    #[error("invalid nonce signature")]
    Mismatch,
}

/// Verifies that `signature` (written in `encoding`) is the ed25519 signature of the raw
/// `nonce` bytes by the holder of the hex `public_key`.
///
/// Both inputs are decoded before either is checked, as upstream does, so a bad signature
/// encoding is reported before a wrong key length.
pub fn verify_nonce(
    public_key: &str,
    nonce: &[u8],
    signature: &str,
    encoding: SignatureEncoding,
) -> Result<(), NonceError> {
    if public_key.is_empty() {
        return Err(NonceError::MissingPublicKey);
    }
    if signature.is_empty() {
        return Err(NonceError::MissingSignature);
    }
    if nonce.is_empty() {
        return Err(NonceError::MissingNonce);
    }
    let key = hex::decode(public_key).map_err(NonceError::PublicKeyNotHex)?;
    let signature = decode_signature(signature, encoding)?;
    let key: [u8; 32] = key
        .as_slice()
        .try_into()
        .map_err(|_| NonceError::PublicKeyLength(key.len()))?;
    let key =
        ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| NonceError::InvalidPublicKey)?;
    let signature = ed25519_dalek::Signature::from_slice(&signature)
        .map_err(|_| NonceError::SignatureLength(signature.len()))?;
    key.verify_strict(nonce, &signature)
        .map_err(|_| NonceError::Mismatch)
}

fn decode_signature(signature: &str, encoding: SignatureEncoding) -> Result<Vec<u8>, NonceError> {
    let failed = |reason: String| NonceError::SignatureEncoding { encoding, reason };
    match encoding {
        SignatureEncoding::Base64Url => URL_SAFE_NO_PAD
            .decode(signature)
            .map_err(|e| failed(e.to_string())),
        SignatureEncoding::Base64 => [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD]
            .iter()
            .find_map(|engine| engine.decode(signature.trim()).ok())
            .ok_or_else(|| failed("neither base64url nor standard base64".into())),
        SignatureEncoding::Hex => hex::decode(signature).map_err(|e| failed(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER_SEED: &str = "1f5bcd09026ef84134d0963c17d6df388366a8767b418c209168dc8bb579f82b";
    const NONCE_SIG: &str =
        "JyrB4BDEPwNnBwB84dN9TFvzYAVNWPw3F2YXV2ui41dH48TGeYZS7Bs2_8qcIU-PNIkG6tp2GtZsjQJVzmNgBQ";
    const NONCE_SIG_HEX: &str = "272ac1e010c43f036707007ce1d37d4c5bf360054d58fc37176617576ba2e35747e3c4c6798652ec1b36ffca9c214f8f348906eada761ad66c8d0255ce636005";

    fn other() -> (Ed25519Seed, String) {
        let seed = Ed25519Seed::from_hex(OTHER_SEED).unwrap();
        let pk = seed.public_key_hex();
        (seed, pk)
    }

    #[test]
    fn nonce_vector() {
        let (seed, pk) = other();
        assert_eq!(sign_nonce(&seed, b"toomanysecrets"), NONCE_SIG);
        for encoding in [SignatureEncoding::Base64Url, SignatureEncoding::Base64] {
            verify_nonce(&pk, b"toomanysecrets", NONCE_SIG, encoding).unwrap();
        }
        verify_nonce(
            &pk,
            b"toomanysecrets",
            NONCE_SIG_HEX,
            SignatureEncoding::Hex,
        )
        .unwrap();
        verify_nonce(
            &pk.to_uppercase(),
            b"toomanysecrets",
            &NONCE_SIG_HEX.to_uppercase(),
            SignatureEncoding::Hex,
        )
        .unwrap();
    }

    #[test]
    fn lenient_base64_takes_every_alphabet_and_padding() {
        let (seed, pk) = other();
        let raw = seed.sign(b"toomanysecrets");
        for engine in [URL_SAFE, STANDARD_NO_PAD, STANDARD] {
            let sig = engine.encode(raw);
            verify_nonce(&pk, b"toomanysecrets", &sig, SignatureEncoding::Base64).unwrap();
        }
        let padded = URL_SAFE.encode(raw);
        assert!(matches!(
            verify_nonce(
                &pk,
                b"toomanysecrets",
                &padded,
                SignatureEncoding::Base64Url
            ),
            Err(NonceError::SignatureEncoding {
                encoding: SignatureEncoding::Base64Url,
                ..
            })
        ));
    }

    #[test]
    fn nonce_rejects_wrong_input() {
        let (_, pk) = other();
        let url = SignatureEncoding::Base64Url;
        assert_eq!(
            verify_nonce(&pk, b"toomanysecretz", NONCE_SIG, url),
            Err(NonceError::Mismatch)
        );
        assert!(matches!(
            verify_nonce(&pk, b"toomanysecrets", "!!!", SignatureEncoding::Base64),
            Err(NonceError::SignatureEncoding { .. })
        ));
        assert_eq!(
            verify_nonce(&pk, b"toomanysecrets", "AAAA", url),
            Err(NonceError::SignatureLength(3))
        );
        assert_eq!(
            verify_nonce(&pk[..62], b"x", NONCE_SIG, url),
            Err(NonceError::PublicKeyLength(31))
        );
        let other = Ed25519Seed::generate().public_key_hex();
        assert_eq!(
            verify_nonce(&other, b"toomanysecrets", NONCE_SIG, url),
            Err(NonceError::Mismatch)
        );
        assert_eq!(
            verify_nonce("", b"n", "", url),
            Err(NonceError::MissingPublicKey)
        );
        assert_eq!(
            verify_nonce(&pk, b"n", "", url),
            Err(NonceError::MissingSignature)
        );
        assert_eq!(
            verify_nonce(&pk, b"", "x", url),
            Err(NonceError::MissingNonce)
        );
    }

    #[test]
    fn hex_signatures_check_key_and_signature() {
        // The gen25519 reply: hex key, hex signature (the provisioner's former own verifier).
        let key = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pk = hex::encode(key.verifying_key().to_bytes());
        let sig = hex::encode(ed25519_dalek::Signer::sign(&key, b"abc").to_bytes());
        let hex = SignatureEncoding::Hex;
        verify_nonce(&pk, b"abc", &sig, hex).expect("valid");
        let mismatch = verify_nonce(&pk, b"abd", &sig, hex).expect_err("other nonce");
        assert_eq!(mismatch.to_string(), "invalid nonce signature");
        let short = verify_nonce("abcd", b"abc", &sig, hex).expect_err("short key");
        assert!(
            short.to_string().contains("32"),
            "B2: short key is an error"
        );
        assert_eq!(
            verify_nonce(&pk, b"abc", "abcd", hex),
            Err(NonceError::SignatureLength(2))
        );
        assert!(matches!(
            verify_nonce("zz", b"abc", &sig, hex),
            Err(NonceError::PublicKeyNotHex(_))
        ));
        assert!(matches!(
            verify_nonce(&pk, b"abc", "zz", hex),
            Err(NonceError::SignatureEncoding { .. })
        ));
    }
}
