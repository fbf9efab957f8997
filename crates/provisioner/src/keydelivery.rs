//! Private key delivery to a node (spec §4.4): X25519 agreement with the node's key from
//! the `jwt` action, then legacy OpenSSL PEM encryption (AES-256-CBC, MD5 key derivation).
//!
//! The legacy format is weak (no integrity, MD5 KDF, S4) but it is what Go nodes decrypt.

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest, Md5};
use rand::RngCore;
use x25519_dalek::{PublicKey, StaticSecret};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

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
    /// The node's X25519 key is not 32 bytes of hex.
    #[error("invalid ecdh_public from node: {0}")]
    BadNodeKey(String),
    /// The agreement produced the all-zero secret (a low-order node key).
    #[error("node ecdh_public is a low-order point; refusing the all-zero shared secret")]
    ZeroSecret,
    /// The helper key is not PEM.
    #[error("bad key received")]
    BadKey,
    /// An encrypted PEM could not be decrypted (used by tests and nodes).
    #[error("cannot decrypt key: {0}")]
    Decrypt(String),
}

/// The encrypted key and the provisioner public key the node needs to decrypt it.
#[derive(Clone, PartialEq, Eq)]
pub struct DeliveredKey {
    /// PEM `RSA PRIVATE KEY` with `Proc-Type`/`DEK-Info` headers.
    pub encrypted_pem: String,
    /// Hex X25519 public key of the provisioner for this delivery.
    pub ecdh_public: String,
}

impl std::fmt::Debug for DeliveredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveredKey")
            .field("ecdh_public", &self.ecdh_public)
            .finish_non_exhaustive()
    }
}

/// Parses a hex X25519 public key.
pub fn parse_x25519_public(hex_key: &str) -> Result<[u8; 32], KeyDeliveryError> {
    let bytes =
        hex::decode(hex_key.trim()).map_err(|err| KeyDeliveryError::BadNodeKey(err.to_string()))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| KeyDeliveryError::BadNodeKey(format!("{} bytes, want 32", bytes.len())))
}

/// Computes the raw X25519 shared secret, refusing the all-zero result.
pub fn shared_secret(
    private: &[u8; 32],
    peer_public: &[u8; 32],
) -> Result<[u8; 32], KeyDeliveryError> {
    let secret = StaticSecret::from(*private);
    let shared = secret.diffie_hellman(&PublicKey::from(*peer_public));
    if !shared.was_contributory() {
        return Err(KeyDeliveryError::ZeroSecret);
    }
    Ok(*shared.as_bytes())
}

/// The X25519 public key for a private key.
pub fn x25519_public(private: &[u8; 32]) -> [u8; 32] {
    *PublicKey::from(&StaticSecret::from(*private)).as_bytes()
}

/// Encrypts the helper's PEM key for the node whose hex X25519 public key is `node_ecdh`.
pub fn encrypt_for_node(key_pem: &str, node_ecdh: &str) -> Result<DeliveredKey, KeyDeliveryError> {
    if key_pem.trim().is_empty() {
        return Err(KeyDeliveryError::NoKey);
    }
    if node_ecdh.trim().is_empty() {
        return Err(KeyDeliveryError::NoNodeKey);
    }
    let node_public = parse_x25519_public(node_ecdh)?;
    let mut private = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut private);
    let secret = shared_secret(&private, &node_public)?;
    let der = pem::parse(key_pem.trim()).map_err(|_| KeyDeliveryError::BadKey)?;
    let mut iv = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut iv);
    let encrypted_pem = encrypt_legacy_pem(der.contents(), &secret, &iv);
    Ok(DeliveredKey {
        encrypted_pem,
        ecdh_public: hex::encode(x25519_public(&private)),
    })
}

/// Legacy OpenSSL PEM encryption of `der` under `password`, always as `RSA PRIVATE KEY`.
pub fn encrypt_legacy_pem(der: &[u8], password: &[u8], iv: &[u8; 16]) -> String {
    let key = bytes_to_key(password, &iv[..8]);
    let ciphertext = Aes256CbcEnc::new(&key.into(), iv.into()).encrypt_padded_vec_mut::<Pkcs7>(der);
    let mut block = pem::Pem::new("RSA PRIVATE KEY", ciphertext);
    // Header names and values are fixed ASCII without ':' or newlines, so `add` cannot
    // fail; ignoring its Result keeps this function infallible.
    let _ = block.headers_mut().add("Proc-Type", "4,ENCRYPTED");
    let _ = block
        .headers_mut()
        .add("DEK-Info", &format!("AES-256-CBC,{}", hex::encode(iv)));
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

/// Decrypts a legacy encrypted PEM (either hex case in `DEK-Info`); returns the DER.
pub fn decrypt_legacy_pem(text: &str, password: &[u8]) -> Result<Vec<u8>, KeyDeliveryError> {
    let block = pem::parse(text.trim()).map_err(|_| KeyDeliveryError::BadKey)?;
    if block.headers().get("Proc-Type") != Some("4,ENCRYPTED") {
        return Err(KeyDeliveryError::Decrypt("key is not encrypted".into()));
    }
    let info = block
        .headers()
        .get("DEK-Info")
        .ok_or_else(|| KeyDeliveryError::Decrypt("no DEK-Info header".into()))?;
    let iv_hex = info
        .strip_prefix("AES-256-CBC,")
        .ok_or_else(|| KeyDeliveryError::Decrypt(format!("unsupported cipher in {info:?}")))?;
    let iv = hex::decode(iv_hex.trim())
        .ok()
        .and_then(|b| <[u8; 16]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| KeyDeliveryError::Decrypt("IV is not 16 bytes of hex".into()))?;
    let key = bytes_to_key(password, &iv[..8]);
    Aes256CbcDec::new(&key.into(), (&iv).into())
        .decrypt_padded_vec_mut::<Pkcs7>(block.contents())
        .map_err(|_| KeyDeliveryError::Decrypt("wrong key or corrupt data".into()))
}

/// OpenSSL EVP_BytesToKey with MD5, one iteration, 32-byte output.
fn bytes_to_key(password: &[u8], salt: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    let mut previous: Vec<u8> = Vec::new();
    let mut filled = 0;
    while filled < out.len() {
        let mut hasher = Md5::new();
        hasher.update(&previous);
        hasher.update(password);
        hasher.update(salt);
        let digest = hasher.finalize();
        let take = (out.len() - filled).min(digest.len());
        out[filled..filled + take].copy_from_slice(&digest[..take]);
        filled += take;
        previous = digest.to_vec();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h32(text: &str) -> [u8; 32] {
        <[u8; 32]>::try_from(hex::decode(text).expect("hex").as_slice()).expect("32")
    }

    const PROV_PRIV: &str = "3e150feab1f2c709af9afa28e626f258dbf1b683d3bc35225a9b0489de485870";
    const NODE_PRIV: &str = "67e4a9b3934a3030470ed7a30f89eeaf7dab7b492aa9ee02fb864d690b7e6eeb";
    const NODE_PUB: &str = "88a9a0ed27dc93c29466ea2bef99e078342b27e7a1d789fc35a9131f86c3a022";
    const SHARED: &str = "53a4887b448755a3f0a0618b289eb2369ec4b2461d44890abdfa3084ef080c55";

    #[test]
    fn x25519_vector_from_the_readme() {
        let node_pub = x25519_public(&h32(NODE_PRIV));
        assert_eq!(hex::encode(node_pub), NODE_PUB);
        let prov_priv = h32(PROV_PRIV);
        let secret = shared_secret(&prov_priv, &node_pub).expect("secret");
        assert_eq!(hex::encode(secret), SHARED);
        let other = shared_secret(&h32(NODE_PRIV), &x25519_public(&prov_priv)).expect("secret");
        assert_eq!(other, secret);
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
        let secret = shared_secret(
            &h32(NODE_PRIV),
            &parse_x25519_public(&delivered.ecdh_public).expect("pub"),
        )
        .expect("secret");
        let plain = decrypt_legacy_pem(&delivered.encrypted_pem, &secret).expect("decrypt");
        assert_eq!(plain, der);
        // A different secret does not yield the key.
        let wrong = decrypt_legacy_pem(&delivered.encrypted_pem, &[1u8; 32]);
        assert!(wrong.map(|p| p != der).unwrap_or(true));
    }

    #[test]
    fn legacy_pem_matches_openssl_key_derivation() {
        // Known answer from `openssl enc -aes-256-cbc -md md5 -P -S 0001020304050607
        // -pass pass:password` (OpenSSL 3.0.19), which prints EVP_BytesToKey's key.
        let key = bytes_to_key(b"password", &[0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(
            hex::encode_upper(key),
            "B03096345E805D3AA4392D2E72791DFB13E12D3F61094A3FC347ACE86B99ADA6"
        );
    }

    #[test]
    fn upper_case_iv_is_accepted() {
        let iv = [0xABu8; 16];
        let text = encrypt_legacy_pem(b"secret der", b"pw", &iv);
        let upper = text.replace(&hex::encode(iv), &hex::encode_upper(iv));
        assert_eq!(
            decrypt_legacy_pem(&upper, b"pw").expect("decrypt"),
            b"secret der"
        );
    }

    #[test]
    fn bad_inputs_are_errors_not_panics() {
        assert_eq!(encrypt_for_node("", NODE_PUB), Err(KeyDeliveryError::NoKey));
        assert_eq!(encrypt_for_node("x", ""), Err(KeyDeliveryError::NoNodeKey));
        assert!(matches!(
            encrypt_for_node("x", "abcd"),
            Err(KeyDeliveryError::BadNodeKey(_))
        ));
        assert_eq!(
            encrypt_for_node("not pem", NODE_PUB),
            Err(KeyDeliveryError::BadKey)
        );
        assert_eq!(
            encrypt_for_node("-----BEGIN X-----\nAA==\n-----END X-----", &"00".repeat(32)),
            Err(KeyDeliveryError::ZeroSecret)
        );
    }
}
