//! Private key delivery to a node (spec §4.4): the helper's key, encrypted for the node's
//! X25519 key from the `jwt` action with `choria_pki::key_transfer` (which the node uses to
//! decrypt it).

use choria_pki::key_transfer::{encrypt_legacy_pem, EcdhKeyPair, KeyTransferError};

/// Why a key could not be prepared for delivery.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyDeliveryError {
    /// The helper gave no key.
    #[error("no key to encrypt")]
    NoKey,
    /// The node did not send an X25519 public key (`jwt` action not run).
    #[error("private key received from helper but server did not start Diffie-Hellman exchange")]
    NoNodeKey,
    /// The node's X25519 key is unusable (not 32 bytes of hex, or a low-order point).
    #[error("invalid ecdh_public from node: {0}")]
    BadNodeKey(KeyTransferError),
    /// The helper key is not PEM.
    #[error("bad key received")]
    BadKey,
}

/// The encrypted key and the provisioner public key the node needs to decrypt it; only
/// the node can decrypt it, so it is no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveredKey {
    /// PEM `RSA PRIVATE KEY` with `Proc-Type`/`DEK-Info` headers.
    pub encrypted_pem: String,
    /// Hex X25519 public key of the provisioner for this delivery.
    pub ecdh_public: String,
}

/// Encrypts the helper's PEM key for the node whose hex X25519 public key is `node_ecdh`,
/// with a fresh provisioner key pair per delivery.
pub fn encrypt_for_node(key_pem: &str, node_ecdh: &str) -> Result<DeliveredKey, KeyDeliveryError> {
    if key_pem.trim().is_empty() {
        return Err(KeyDeliveryError::NoKey);
    }
    if node_ecdh.trim().is_empty() {
        return Err(KeyDeliveryError::NoNodeKey);
    }
    let ours = EcdhKeyPair::generate();
    let secret = ours
        .shared_secret(node_ecdh)
        .map_err(KeyDeliveryError::BadNodeKey)?;
    let der = pem::parse(key_pem.trim()).map_err(|_| KeyDeliveryError::BadKey)?;
    Ok(DeliveredKey {
        encrypted_pem: encrypt_legacy_pem(der.contents(), &secret),
        ecdh_public: ours.public_hex(),
    })
}

#[cfg(test)]
mod tests {
    use choria_pki::key_transfer::decrypt_legacy_pem;

    use super::*;

    // The node half of the X25519 vector of ../shared/vectors/README.md.
    const NODE_PRIV: &str = "67e4a9b3934a3030470ed7a30f89eeaf7dab7b492aa9ee02fb864d690b7e6eeb";
    const NODE_PUB: &str = "88a9a0ed27dc93c29466ea2bef99e078342b27e7a1d789fc35a9131f86c3a022";

    fn node() -> EcdhKeyPair {
        let bytes = <[u8; 32]>::try_from(hex::decode(NODE_PRIV).expect("hex")).expect("32");
        EcdhKeyPair::from_secret_bytes(bytes)
    }

    #[test]
    fn delivered_key_decrypts_on_the_node_side() {
        let der: Vec<u8> = (0..600u32).map(|i| (i * 7) as u8).collect();
        let input = pem::encode(&pem::Pem::new("PRIVATE KEY", der.clone()));
        let delivered = encrypt_for_node(&input, NODE_PUB).expect("encrypt");
        assert!(delivered.encrypted_pem.starts_with(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,"
        ));
        // The node derives the same secret from its private key and our public key.
        let secret = node()
            .shared_secret(&delivered.ecdh_public)
            .expect("secret");
        let plain = decrypt_legacy_pem(&delivered.encrypted_pem, &secret).expect("decrypt");
        assert_eq!(plain, der);
        // Every delivery uses a fresh provisioner key.
        let again = encrypt_for_node(&input, NODE_PUB).expect("encrypt");
        assert_ne!(again.ecdh_public, delivered.ecdh_public);
        // A different secret does not yield the key.
        let wrong = decrypt_legacy_pem(&delivered.encrypted_pem, &[1u8; 32]);
        assert!(wrong.map(|p| p != der).unwrap_or(true));
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert_eq!(encrypt_for_node("", NODE_PUB), Err(KeyDeliveryError::NoKey));
        assert_eq!(encrypt_for_node("x", ""), Err(KeyDeliveryError::NoNodeKey));
        assert!(matches!(
            encrypt_for_node("x", "abcd"),
            Err(KeyDeliveryError::BadNodeKey(
                KeyTransferError::BadPeerKey { .. }
            ))
        ));
        assert_eq!(
            encrypt_for_node("not pem", NODE_PUB),
            Err(KeyDeliveryError::BadKey)
        );
        assert_eq!(
            encrypt_for_node("-----BEGIN X-----\nAA==\n-----END X-----", &"00".repeat(32)),
            Err(KeyDeliveryError::BadNodeKey(KeyTransferError::WeakPeerKey))
        );
    }
}
