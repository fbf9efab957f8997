//! Connection helpers: the ed25519 signature of a NATS server nonce (sent as `sig` in
//! CONNECT) and the md5 unique id used in reply subjects and private network ids.

use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use base64::Engine as _;
use md5::{Digest as _, Md5};

use crate::error::TokenError;
use crate::keys::Ed25519Seed;

/// Signs the raw nonce bytes; the result is base64url without padding (what NATS expects).
pub fn sign_nonce(seed: &Ed25519Seed, nonce: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(seed.sign(nonce))
}

/// Verifies a nonce signature made by the holder of the ed25519 `public_key` (32 bytes).
///
/// The signature is accepted in base64url (as sent by NATS clients) or standard base64,
/// with or without padding, like nats-server does.
pub fn verify_nonce(public_key: &[u8], nonce: &[u8], signature: &str) -> Result<(), TokenError> {
    let raw: [u8; 32] = public_key.try_into().map_err(|_| {
        TokenError::InvalidKey(format!(
            "an ed25519 public key is 32 bytes, got {}",
            public_key.len()
        ))
    })?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&raw)
        .map_err(|_| TokenError::InvalidKey("not a valid ed25519 public key".into()))?;
    let sig_bytes = [URL_SAFE_NO_PAD, URL_SAFE, STANDARD_NO_PAD, STANDARD]
        .iter()
        .find_map(|engine| engine.decode(signature.trim()).ok())
        .ok_or_else(|| TokenError::Nonce("signature is not base64url".into()))?;
    let sig = ed25519_dalek::Signature::from_slice(&sig_bytes).map_err(|_| {
        TokenError::Nonce(format!(
            "an ed25519 signature is 64 bytes, got {}",
            sig_bytes.len()
        ))
    })?;
    key.verify_strict(nonce, &sig)
        .map_err(|_| TokenError::Nonce("ed25519: verification error".into()))
}

/// Lowercase hex md5 of `s`: upstream `UniqueID` of a server identity or client caller id.
pub fn unique_id_md5(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OTHER_SEED: &str = "1f5bcd09026ef84134d0963c17d6df388366a8767b418c209168dc8bb579f82b";
    const NONCE_SIG: &str =
        "JyrB4BDEPwNnBwB84dN9TFvzYAVNWPw3F2YXV2ui41dH48TGeYZS7Bs2_8qcIU-PNIkG6tp2GtZsjQJVzmNgBQ";

    #[test]
    fn nonce_vector() {
        let seed = Ed25519Seed::from_hex(OTHER_SEED).unwrap();
        assert_eq!(sign_nonce(&seed, b"toomanysecrets"), NONCE_SIG);
        verify_nonce(&seed.public_key_bytes(), b"toomanysecrets", NONCE_SIG).unwrap();
    }

    #[test]
    fn nonce_rejects_wrong_input() {
        let seed = Ed25519Seed::from_hex(OTHER_SEED).unwrap();
        let pk = seed.public_key_bytes();
        assert!(matches!(
            verify_nonce(&pk, b"toomanysecretz", NONCE_SIG),
            Err(TokenError::Nonce(_))
        ));
        assert!(matches!(
            verify_nonce(&pk, b"toomanysecrets", "!!!"),
            Err(TokenError::Nonce(_))
        ));
        assert!(matches!(
            verify_nonce(&pk, b"toomanysecrets", "AAAA"),
            Err(TokenError::Nonce(_))
        ));
        assert!(matches!(
            verify_nonce(&pk[..31], b"x", NONCE_SIG),
            Err(TokenError::InvalidKey(_))
        ));
        let other = Ed25519Seed::generate();
        assert!(verify_nonce(&other.public_key_bytes(), b"toomanysecrets", NONCE_SIG).is_err());
    }

    #[test]
    fn md5_vectors() {
        assert_eq!(
            unique_id_md5("up=ginkgo"),
            "e33bf0376d4accbb4a8fd24b2f840b2e"
        );
        assert_eq!(
            unique_id_md5("ginkgo.example.net"),
            "3f7c3a791b0eb10da51dca4cdedb9418"
        );
        assert_eq!(unique_id_md5("ginkgo"), "4bb6777bb903cae3166e826932f7fe94");
    }
}
