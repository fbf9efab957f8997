//! Moving a private key from the provisioner to a node (provisioner spec §4.4, server spec
//! §4.10): an X25519 agreement, then the legacy OpenSSL PEM encryption that Go nodes decrypt.
//!
//! The legacy format is weak (MD5 key derivation, no integrity; spec S4), but it is the wire
//! format. Both directions live here so the provisioner and the node cannot drift apart.

use std::fmt;

use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use md5::{Digest, Md5};
use rand::rngs::OsRng;
use rand::RngCore;
use rsa::pkcs1::DecodeRsaPrivateKey;
use x25519_dalek::{PublicKey, StaticSecret};

/// Largest encrypted key PEM accepted (the agent DDL caps `key` at 10240 characters).
pub const MAX_KEY_PEM_LEN: usize = 10_240;

/// Errors from the key agreement or from decrypting a transferred key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyTransferError {
    /// The peer's X25519 public key is not 64 hex characters.
    #[error("invalid ECDH public key: expected 64 hex characters, got {len} characters")]
    BadPeerKey {
        /// Length of what was received.
        len: usize,
    },
    /// The agreement produced an all-zero secret (a low-order peer key).
    #[error("invalid ECDH public key: shared secret is all zeros")]
    WeakPeerKey,
    /// The key text is not PEM.
    #[error("bad key received: {0}")]
    BadPem(String),
    /// The PEM lacks the `Proc-Type: 4,ENCRYPTED` / `DEK-Info` headers.
    #[error("key is not encrypted")]
    NotEncrypted,
    /// The PEM is too large.
    #[error("bad key received: {len} bytes is more than the {MAX_KEY_PEM_LEN} allowed")]
    TooLarge {
        /// Size received.
        len: usize,
    },
    /// The `DEK-Info` header names a cipher we do not decrypt.
    #[error("unsupported key encryption {0:?}: use AES-128-CBC, AES-192-CBC or AES-256-CBC")]
    UnsupportedCipher(String),
    /// The `DEK-Info` IV is not hex of the cipher's block size.
    #[error("invalid DEK-Info IV: {0}")]
    BadIv(String),
    /// Decryption failed (wrong secret or corrupt data).
    #[error("could not decrypt private key: bad padding (wrong ECDH key or corrupt data)")]
    Decrypt,
    /// The plaintext is not a PKCS#1 RSA private key.
    #[error("could not decrypt private key: plaintext is not an RSA private key: {0}")]
    NotRsaKey(String),
}

/// One side's X25519 key pair; each `jwt` call on a node and each key delivery by the
/// provisioner makes a fresh one, kept only in memory.
pub struct EcdhKeyPair {
    secret: StaticSecret,
    public: PublicKey,
}

impl fmt::Debug for EcdhKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The private half is a secret: show only the public one.
        f.debug_struct("EcdhKeyPair")
            .field("public", &self.public_hex())
            .finish_non_exhaustive()
    }
}

impl EcdhKeyPair {
    /// A fresh random key pair.
    pub fn generate() -> EcdhKeyPair {
        EcdhKeyPair::from_secret_bytes(StaticSecret::random_from_rng(OsRng).to_bytes())
    }

    /// A key pair from known private bytes (tests and vectors).
    pub fn from_secret_bytes(bytes: [u8; 32]) -> EcdhKeyPair {
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        EcdhKeyPair { secret, public }
    }

    /// Lowercase hex of the 32-byte public key (the `ecdh_public` of the wire).
    pub fn public_hex(&self) -> String {
        hex::encode(self.public.as_bytes())
    }

    /// The raw shared secret with the peer whose public key is `peer_hex` (no KDF, as
    /// upstream). Surrounding whitespace is ignored.
    pub fn shared_secret(&self, peer_hex: &str) -> Result<[u8; 32], KeyTransferError> {
        let peer_hex = peer_hex.trim();
        let bad = || KeyTransferError::BadPeerKey {
            len: peer_hex.len(),
        };
        let bytes = hex::decode(peer_hex).map_err(|_| bad())?;
        let peer: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        let shared = self.secret.diffie_hellman(&PublicKey::from(peer));
        if !shared.was_contributory() {
            return Err(KeyTransferError::WeakPeerKey);
        }
        Ok(shared.to_bytes())
    }
}

/// Encrypts `der` under `password` as a legacy OpenSSL PEM: AES-256-CBC with a random IV,
/// always labelled `RSA PRIVATE KEY` with a lowercase hex IV, as Go's `x509.EncryptPEMBlock`
/// writes it.
pub fn encrypt_legacy_pem(der: &[u8], password: &[u8]) -> String {
    let mut iv = [0u8; 16];
    OsRng.fill_bytes(&mut iv);
    encrypt_legacy_pem_with_iv(der, password, &iv)
}

/// [`encrypt_legacy_pem`] with a chosen IV (known-answer tests).
pub fn encrypt_legacy_pem_with_iv(der: &[u8], password: &[u8], iv: &[u8; 16]) -> String {
    let key = bytes_to_key(password, &iv[..8], 32);
    let ciphertext = cbc::Encryptor::<aes::Aes256>::new(key.as_slice().into(), iv.into())
        .encrypt_padded_vec_mut::<Pkcs7>(der);
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

/// Decrypts a legacy encrypted PEM (AES-128/192/256-CBC, either hex case in `DEK-Info`)
/// with `password` and returns the DER it holds.
pub fn decrypt_legacy_pem(pem_text: &str, password: &[u8]) -> Result<Vec<u8>, KeyTransferError> {
    if pem_text.len() > MAX_KEY_PEM_LEN {
        return Err(KeyTransferError::TooLarge {
            len: pem_text.len(),
        });
    }
    let block =
        pem::parse(pem_text.trim()).map_err(|err| KeyTransferError::BadPem(err.to_string()))?;
    let headers = block.headers();
    let encrypted = headers
        .get("Proc-Type")
        .is_some_and(|value| value.trim() == "4,ENCRYPTED");
    let dek = match (encrypted, headers.get("DEK-Info")) {
        (true, Some(dek)) => dek,
        _ => return Err(KeyTransferError::NotEncrypted),
    };
    let (cipher, iv_hex) = dek
        .split_once(',')
        .ok_or_else(|| KeyTransferError::BadIv(format!("DEK-Info {dek:?} has no IV")))?;
    let iv = hex::decode(iv_hex.trim())
        .map_err(|err| KeyTransferError::BadIv(format!("{iv_hex:?}: {err}")))?;
    if iv.len() != 16 {
        return Err(KeyTransferError::BadIv(format!(
            "expected 16 bytes, got {}",
            iv.len()
        )));
    }
    let data = block.contents();
    match cipher.trim() {
        "AES-128-CBC" => decrypt::<aes::Aes128>(data, &bytes_to_key(password, &iv[..8], 16), &iv),
        "AES-192-CBC" => decrypt::<aes::Aes192>(data, &bytes_to_key(password, &iv[..8], 24), &iv),
        "AES-256-CBC" => decrypt::<aes::Aes256>(data, &bytes_to_key(password, &iv[..8], 32), &iv),
        other => Err(KeyTransferError::UnsupportedCipher(other.to_string())),
    }
}

/// [`decrypt_legacy_pem`], then checks the plaintext is a PKCS#1 RSA private key and
/// returns it as an unencrypted `RSA PRIVATE KEY` PEM, ready to write to the node's ssldir.
pub fn decrypt_rsa_key_pem(pem_text: &str, password: &[u8]) -> Result<String, KeyTransferError> {
    let der = decrypt_legacy_pem(pem_text, password)?;
    rsa::RsaPrivateKey::from_pkcs1_der(&der)
        .map_err(|err| KeyTransferError::NotRsaKey(err.to_string()))?;
    Ok(pem::encode(&pem::Pem::new("RSA PRIVATE KEY", der)))
}

/// OpenSSL `EVP_BytesToKey` with MD5 and one iteration: D1 = MD5(pw‖salt),
/// Dn = MD5(Dn-1‖pw‖salt), truncated to `len`.
pub fn bytes_to_key(password: &[u8], salt: &[u8], len: usize) -> Vec<u8> {
    let mut key = Vec::with_capacity(len + 16);
    let mut previous: Vec<u8> = Vec::new();
    while key.len() < len {
        let mut hasher = Md5::new();
        hasher.update(&previous);
        hasher.update(password);
        hasher.update(salt);
        previous = hasher.finalize().to_vec();
        key.extend_from_slice(&previous);
    }
    key.truncate(len);
    key
}

fn decrypt<C>(data: &[u8], key: &[u8], iv: &[u8]) -> Result<Vec<u8>, KeyTransferError>
where
    C: aes::cipher::BlockDecrypt + aes::cipher::BlockCipher + aes::cipher::KeyInit,
    cbc::Decryptor<C>: KeyIvInit + BlockDecryptMut,
{
    let decryptor = cbc::Decryptor::<C>::new_from_slices(key, iv)
        .map_err(|_| KeyTransferError::BadIv("key or IV length does not fit the cipher".into()))?;
    decryptor
        .decrypt_padded_vec_mut::<Pkcs7>(data)
        .map_err(|_| KeyTransferError::Decrypt)
}

#[cfg(test)]
mod tests {
    use rsa::pkcs1::EncodeRsaPrivateKey;

    use super::*;

    // The X25519 vector of ../shared/vectors/README.md.
    const PROVISIONER_PRIVATE: &str =
        "3e150feab1f2c709af9afa28e626f258dbf1b683d3bc35225a9b0489de485870";
    const NODE_PRIVATE: &str = "67e4a9b3934a3030470ed7a30f89eeaf7dab7b492aa9ee02fb864d690b7e6eeb";
    const NODE_PUBLIC: &str = "88a9a0ed27dc93c29466ea2bef99e078342b27e7a1d789fc35a9131f86c3a022";
    const SHARED: &str = "53a4887b448755a3f0a0618b289eb2369ec4b2461d44890abdfa3084ef080c55";

    fn pair(hex_secret: &str) -> EcdhKeyPair {
        let bytes: [u8; 32] = hex::decode(hex_secret).unwrap().try_into().unwrap();
        EcdhKeyPair::from_secret_bytes(bytes)
    }

    fn rsa_der() -> Vec<u8> {
        let key = rsa::RsaPrivateKey::new(&mut OsRng, 1024).unwrap();
        key.to_pkcs1_der().unwrap().as_bytes().to_vec()
    }

    #[test]
    fn x25519_vector_gives_the_published_shared_secret() {
        let node = pair(NODE_PRIVATE);
        let provisioner = pair(PROVISIONER_PRIVATE);
        assert_eq!(node.public_hex(), NODE_PUBLIC);
        let from_node = node.shared_secret(&provisioner.public_hex()).unwrap();
        let from_provisioner = provisioner.shared_secret(&node.public_hex()).unwrap();
        assert_eq!(hex::encode(from_node), SHARED);
        assert_eq!(from_node, from_provisioner);
    }

    #[test]
    fn bytes_to_key_matches_openssl() {
        // Known answer from `openssl enc -aes-256-cbc -md md5 -P -S 0001020304050607
        // -pass pass:password` (OpenSSL 3.0.19), which prints EVP_BytesToKey's key.
        let key = bytes_to_key(b"password", &[0, 1, 2, 3, 4, 5, 6, 7], 32);
        assert_eq!(
            hex::encode_upper(key),
            "B03096345E805D3AA4392D2E72791DFB13E12D3F61094A3FC347ACE86B99ADA6"
        );
        // Shorter keys are prefixes of the same derivation.
        assert_eq!(
            bytes_to_key(b"password", &[0, 1, 2, 3, 4, 5, 6, 7], 16),
            bytes_to_key(b"password", &[0, 1, 2, 3, 4, 5, 6, 7], 32)[..16]
        );
    }

    #[test]
    fn a_key_sent_by_the_provisioner_decrypts_on_the_node() {
        let node = pair(NODE_PRIVATE);
        let provisioner = EcdhKeyPair::generate();
        let der = rsa_der();
        let sent = encrypt_legacy_pem(&der, &provisioner.shared_secret(NODE_PUBLIC).unwrap());
        assert!(sent.starts_with(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,"
        ));

        let secret = node.shared_secret(&provisioner.public_hex()).unwrap();
        let plain = decrypt_rsa_key_pem(&sent, &secret).unwrap();
        let parsed = pem::parse(&plain).unwrap();
        assert_eq!(parsed.tag(), "RSA PRIVATE KEY");
        assert_eq!(parsed.contents(), der.as_slice());
    }

    #[test]
    fn either_hex_case_and_every_aes_size_decrypt() {
        let iv = [0xABu8; 16];
        let text = encrypt_legacy_pem_with_iv(b"secret der", b"pw", &iv);
        let upper = text.replace(&hex::encode(iv), &hex::encode_upper(iv));
        assert_ne!(upper, text);
        assert_eq!(decrypt_legacy_pem(&upper, b"pw").unwrap(), b"secret der");

        for (name, len) in [("AES-128-CBC", 16), ("AES-192-CBC", 24)] {
            let key = bytes_to_key(b"pw", &iv[..8], len);
            let data = match len {
                16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(&key, &iv)
                    .unwrap()
                    .encrypt_padded_vec_mut::<Pkcs7>(b"secret der"),
                _ => cbc::Encryptor::<aes::Aes192>::new_from_slices(&key, &iv)
                    .unwrap()
                    .encrypt_padded_vec_mut::<Pkcs7>(b"secret der"),
            };
            let mut block = pem::Pem::new("RSA PRIVATE KEY", data);
            block.headers_mut().add("Proc-Type", "4,ENCRYPTED").unwrap();
            block
                .headers_mut()
                .add("DEK-Info", &format!("{name},{}", hex::encode(iv)))
                .unwrap();
            let text = pem::encode(&block);
            assert_eq!(
                decrypt_legacy_pem(&text, b"pw").unwrap(),
                b"secret der",
                "{name}"
            );
        }
    }

    #[test]
    fn wrong_secret_fails_cleanly() {
        let sent = encrypt_legacy_pem(&rsa_der(), b"right");
        let err = decrypt_rsa_key_pem(&sent, b"wrong").unwrap_err();
        assert!(
            matches!(
                err,
                KeyTransferError::Decrypt | KeyTransferError::NotRsaKey(_)
            ),
            "{err:?}"
        );
    }

    #[test]
    fn unencrypted_garbage_and_odd_keys_are_refused() {
        let plain = pem::encode(&pem::Pem::new("RSA PRIVATE KEY", vec![1, 2, 3]));
        assert_eq!(
            decrypt_legacy_pem(&plain, b"x"),
            Err(KeyTransferError::NotEncrypted)
        );
        assert!(matches!(
            decrypt_legacy_pem("not pem", b"x"),
            Err(KeyTransferError::BadPem(_))
        ));
        let huge = "A".repeat(MAX_KEY_PEM_LEN + 1);
        assert!(matches!(
            decrypt_legacy_pem(&huge, b"x"),
            Err(KeyTransferError::TooLarge { .. })
        ));
        let des = encrypt_legacy_pem(b"x", b"pw").replace("AES-256-CBC", "DES-EDE3-CBC");
        assert!(matches!(
            decrypt_legacy_pem(&des, b"pw"),
            Err(KeyTransferError::UnsupportedCipher(_))
        ));
        let short_iv = "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\n\
            DEK-Info: AES-256-CBC,ABCD\n\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(matches!(
            decrypt_legacy_pem(short_iv, b"pw"),
            Err(KeyTransferError::BadIv(_))
        ));
        // Decrypts, but is not an RSA key.
        let not_rsa = encrypt_legacy_pem(b"not a key", b"pw");
        assert!(matches!(
            decrypt_rsa_key_pem(&not_rsa, b"pw"),
            Err(KeyTransferError::NotRsaKey(_))
        ));
    }

    #[test]
    fn bad_peer_keys_are_refused() {
        let node = pair(NODE_PRIVATE);
        assert!(matches!(
            node.shared_secret("abcd"),
            Err(KeyTransferError::BadPeerKey { len: 4 })
        ));
        assert!(matches!(
            node.shared_secret(&"zz".repeat(32)),
            Err(KeyTransferError::BadPeerKey { len: 64 })
        ));
        assert_eq!(
            node.shared_secret(&"00".repeat(32)),
            Err(KeyTransferError::WeakPeerKey)
        );
    }

    #[test]
    fn debug_does_not_show_the_secret() {
        let text = format!("{:?}", pair(NODE_PRIVATE));
        assert!(!text.contains(NODE_PRIVATE));
        assert!(text.contains(NODE_PUBLIC));
    }
}
