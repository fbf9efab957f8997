//! Keys: ed25519 seeds (hex files), RSA private keys (PKCS#1/PKCS#8 PEM) and the public key
//! forms verifiers accept (PEM certificate or public key, PKCS#1 DER in PEM, hex ed25519).

use std::fmt;
use std::path::Path;

use ed25519_dalek::Signer as _;
use rand::rngs::OsRng;
use rsa::pkcs1::{DecodeRsaPrivateKey, DecodeRsaPublicKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::traits::PublicKeyParts;

use crate::error::{KeyKind, TokenError};

/// Key files larger than this are refused before parsing.
pub const MAX_KEY_FILE_SIZE: u64 = 1024 * 1024;

/// A key that verifies token signatures.
#[derive(Clone, PartialEq, Eq)]
pub enum PublicKey {
    /// RSA, for RS256/RS384/RS512 tokens.
    Rsa(rsa::RsaPublicKey),
    /// ed25519, for EdDSA tokens.
    Ed25519(ed25519_dalek::VerifyingKey),
}

impl PublicKey {
    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        match self {
            PublicKey::Rsa(_) => KeyKind::Rsa,
            PublicKey::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// Reads the content of a public key file (spec §1.8.3): a PEM certificate (validity
    /// dates are not checked), a PEM public key (PKIX, or PKCS#1 DER under any label), the
    /// hex of a 32-byte ed25519 key (surrounding whitespace is tolerated), or binary DER
    /// (PKCS#1 or PKIX RSA public key; an extension over upstream).
    pub fn from_key_file_bytes(bytes: &[u8]) -> Result<PublicKey, TokenError> {
        let text = trim_ascii(bytes);
        if text.starts_with(b"-----BEGIN ") {
            return rsa_from_pem(text).map(PublicKey::Rsa);
        }
        if !text.is_empty() && text.iter().all(u8::is_ascii_hexdigit) {
            // All hex digits, so valid UTF-8.
            return PublicKey::ed25519_from_hex(std::str::from_utf8(text).unwrap_or_default());
        }
        // Binary DER: PKCS#1 `RSAPublicKey` or PKIX `SubjectPublicKeyInfo`.
        if let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(bytes) {
            return Ok(PublicKey::Rsa(key));
        }
        if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(bytes) {
            return Ok(PublicKey::Rsa(key));
        }
        Err(TokenError::InvalidKey(
            "could not parse ed25519 public data: not a PEM certificate or public key, not \
             DER, and not the hex of an ed25519 key"
                .into(),
        ))
    }

    /// An ed25519 public key from its 64-character hex form.
    pub fn ed25519_from_hex(hex_key: &str) -> Result<PublicKey, TokenError> {
        let bytes = hex::decode(hex_key.trim()).map_err(|e| {
            TokenError::InvalidKey(format!("could not parse ed25519 public data: {e}"))
        })?;
        PublicKey::ed25519_from_bytes(&bytes)
    }

    /// An ed25519 public key from its 32 raw bytes.
    pub fn ed25519_from_bytes(bytes: &[u8]) -> Result<PublicKey, TokenError> {
        let raw: [u8; 32] = bytes.try_into().map_err(|_| {
            TokenError::InvalidKey(format!(
                "invalid ed25519 public key size: {} bytes, expected 32",
                bytes.len()
            ))
        })?;
        ed25519_dalek::VerifyingKey::from_bytes(&raw)
            .map(PublicKey::Ed25519)
            .map_err(|_| TokenError::InvalidKey("not a valid ed25519 public key".into()))
    }

    /// The raw 32 bytes of an ed25519 key, `None` for RSA.
    pub fn ed25519_bytes(&self) -> Option<[u8; 32]> {
        match self {
            PublicKey::Ed25519(k) => Some(k.to_bytes()),
            PublicKey::Rsa(_) => None,
        }
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PublicKey::Rsa(k) => write!(f, "PublicKey::Rsa({} bits)", k.size() * 8),
            PublicKey::Ed25519(k) => write!(f, "PublicKey::Ed25519({})", hex::encode(k.as_bytes())),
        }
    }
}

/// Reads a public key file (see [`PublicKey::from_key_file_bytes`]); errors name the path.
pub fn read_public_key_file(path: impl AsRef<Path>) -> Result<PublicKey, TokenError> {
    let path = path.as_ref();
    let bytes = read_capped(path)?;
    PublicKey::from_key_file_bytes(&bytes).map_err(|e| key_file_error(path, e))
}

/// An ed25519 private key held as its 32-byte seed. Debug shows only the public key.
#[derive(Clone)]
pub struct Ed25519Seed(ed25519_dalek::SigningKey);

impl Ed25519Seed {
    /// A new random key from the OS generator.
    pub fn generate() -> Ed25519Seed {
        Ed25519Seed(ed25519_dalek::SigningKey::generate(&mut OsRng))
    }

    /// The key for a 32-byte seed.
    pub fn from_bytes(seed: [u8; 32]) -> Ed25519Seed {
        Ed25519Seed(ed25519_dalek::SigningKey::from_bytes(&seed))
    }

    /// The key for the 64-character hex form of a seed; surrounding whitespace is tolerated.
    pub fn from_hex(hex_seed: &str) -> Result<Ed25519Seed, TokenError> {
        let text = hex_seed.trim();
        if text.len() != 64 {
            return Err(TokenError::InvalidKey(format!(
                "invalid seed size: an ed25519 seed is 64 hex characters, got {}",
                text.len()
            )));
        }
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text, &mut seed)
            .map_err(|_| TokenError::InvalidKey("ed25519 seed is not valid hex".into()))?;
        Ok(Ed25519Seed::from_bytes(seed))
    }

    /// Reads a hex seed file (64 hex characters; a trailing newline is tolerated).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Ed25519Seed, TokenError> {
        let path = path.as_ref();
        let bytes = read_capped(path)?;
        let text = std::str::from_utf8(&bytes)
            .map_err(|_| key_file_error(path, TokenError::InvalidKey("seed is not hex".into())))?;
        Ed25519Seed::from_hex(text).map_err(|e| key_file_error(path, e))
    }

    /// The hex form of the seed: this is the secret, write it only to 0600 files.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.to_bytes())
    }

    /// The 32 bytes of the public key.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.0.verifying_key().to_bytes()
    }

    /// The hex form of the public key (what `public_key` claims and `.public` files hold).
    pub fn public_key_hex(&self) -> String {
        hex::encode(self.public_key_bytes())
    }

    /// The public key as a verifier.
    pub fn public_key(&self) -> PublicKey {
        PublicKey::Ed25519(self.0.verifying_key())
    }

    /// The ed25519 signature of `msg`.
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for Ed25519Seed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ed25519Seed(public {})", self.public_key_hex())
    }
}

/// A key that signs tokens: RSA signs RS256, ed25519 signs EdDSA. Debug never shows secrets.
#[derive(Clone)]
pub enum SigningKey {
    /// An RSA private key.
    Rsa(rsa::RsaPrivateKey),
    /// An ed25519 seed.
    Ed25519(Ed25519Seed),
}

impl SigningKey {
    /// Reads a signing key file (spec §1.7): PEM `RSA PRIVATE KEY` / `PRIVATE KEY`, or a hex
    /// ed25519 seed of 64 characters (a trailing newline is tolerated).
    pub fn from_file(path: impl AsRef<Path>) -> Result<SigningKey, TokenError> {
        let path = path.as_ref();
        let bytes = read_capped(path)?;
        SigningKey::from_pem_or_seed_bytes(&bytes).map_err(|e| key_file_error(path, e))
    }

    /// Parses the content of a signing key file (see [`SigningKey::from_file`]).
    pub fn from_pem_or_seed_bytes(bytes: &[u8]) -> Result<SigningKey, TokenError> {
        let text = trim_ascii(bytes);
        let as_str = std::str::from_utf8(text);
        let pkcs1 = text.starts_with(b"-----BEGIN RSA PRIVATE KEY");
        if pkcs1 || text.starts_with(b"-----BEGIN PRIVATE KEY") {
            let pem = as_str.map_err(|_| TokenError::InvalidKey("PEM is not UTF-8".into()))?;
            let (format, parsed) = if pkcs1 {
                let key = rsa::RsaPrivateKey::from_pkcs1_pem(pem).map_err(|e| e.to_string());
                ("PKCS#1", key)
            } else {
                let key = rsa::RsaPrivateKey::from_pkcs8_pem(pem).map_err(|e| e.to_string());
                ("PKCS#8", key)
            };
            let key = parsed.map_err(|e| {
                TokenError::InvalidKey(format!("could not parse the {format} RSA private key: {e}"))
            })?;
            return Ok(SigningKey::Rsa(key));
        }
        if text.len() == 64 {
            if let Ok(hex_seed) = as_str {
                return Ed25519Seed::from_hex(hex_seed).map(SigningKey::Ed25519);
            }
        }
        Err(TokenError::InvalidKey(
            "unsupported key: expected an RSA private key PEM or a 64-character hex ed25519 seed"
                .into(),
        ))
    }

    /// The kind of key.
    pub fn kind(&self) -> KeyKind {
        match self {
            SigningKey::Rsa(_) => KeyKind::Rsa,
            SigningKey::Ed25519(_) => KeyKind::Ed25519,
        }
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        match self {
            SigningKey::Rsa(k) => PublicKey::Rsa(k.to_public_key()),
            SigningKey::Ed25519(s) => s.public_key(),
        }
    }

    /// The JWT `alg` this key produces.
    pub fn algorithm(&self) -> &'static str {
        match self {
            SigningKey::Rsa(_) => "RS256",
            SigningKey::Ed25519(_) => "EdDSA",
        }
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningKey::Rsa(k) => write!(f, "SigningKey::Rsa({} bits)", k.size() * 8),
            SigningKey::Ed25519(s) => write!(f, "SigningKey::{s:?}"),
        }
    }
}

impl From<Ed25519Seed> for SigningKey {
    fn from(seed: Ed25519Seed) -> SigningKey {
        SigningKey::Ed25519(seed)
    }
}

/// True when `text` is exactly 64 hex characters (upstream `IsEncodedEd25519Key`).
pub fn is_encoded_ed25519_key(text: &[u8]) -> bool {
    text.len() == 64 && text.iter().all(u8::is_ascii_hexdigit)
}

fn rsa_from_pem(text: &[u8]) -> Result<rsa::RsaPublicKey, TokenError> {
    let block = pem::parse(text).map_err(|e| {
        TokenError::InvalidKey(format!("could not parse validation certificate: {e}"))
    })?;
    let der = block.contents();
    if let Ok(key) = rsa::RsaPublicKey::from_public_key_der(der) {
        return Ok(key);
    }
    if let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) {
        // Validity dates are deliberately not checked: upstream vectors use expired certificates.
        let spki = cert.tbs_certificate.subject_pki.raw;
        return rsa::RsaPublicKey::from_public_key_der(spki).map_err(|e| {
            TokenError::InvalidKey(format!(
                "could not parse validation certificate: its key is not an RSA public key: {e}"
            ))
        });
    }
    rsa::RsaPublicKey::from_pkcs1_der(der).map_err(|_| {
        TokenError::InvalidKey(format!(
            "could not parse validation certificate: the {:?} PEM block holds no RSA public key",
            block.tag()
        ))
    })
}

fn read_capped(path: &Path) -> Result<Vec<u8>, TokenError> {
    let meta = std::fs::metadata(path).map_err(|e| TokenError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("could not read it: {e}"),
    })?;
    if meta.len() > MAX_KEY_FILE_SIZE {
        return Err(TokenError::KeyFile {
            path: path.to_path_buf(),
            reason: format!("{} bytes is too large for a key file", meta.len()),
        });
    }
    std::fs::read(path).map_err(|e| TokenError::KeyFile {
        path: path.to_path_buf(),
        reason: format!("could not read it: {e}"),
    })
}

fn key_file_error(path: &Path, err: TokenError) -> TokenError {
    let reason = match err {
        TokenError::InvalidKey(reason) => reason,
        other => other.to_string(),
    };
    TokenError::KeyFile {
        path: path.to_path_buf(),
        reason,
    }
}

pub(crate) fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |p| p + 1);
    &bytes[start..end]
}
