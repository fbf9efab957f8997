//! The key and certificate signing request `gencsr` makes: an RSA 2048 key and a
//! SHA256-with-RSA CSR whose subject is the CN plus the optional C, L, O and OU.

use rand::rngs::OsRng;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, PKCS_RSA_SHA256};
use rsa::pkcs1::{EncodeRsaPrivateKey, EncodeRsaPublicKey};
use rsa::pkcs8::EncodePrivateKey;

/// RSA key size, as upstream.
pub const RSA_BITS: usize = 2048;

/// The subject requested by `gencsr`.
#[derive(Debug, Clone, Default)]
pub struct CsrSubject {
    /// Common name (defaults to the identity).
    pub common_name: String,
    /// `C`, if given.
    pub country: String,
    /// `L`, if given.
    pub locality: String,
    /// `O`, if given.
    pub organization: String,
    /// `OU`, if given.
    pub unit: String,
}

/// A new key and its CSR, PEM encoded.
pub struct GeneratedCsr {
    /// `RSA PRIVATE KEY` PEM (PKCS#1).
    pub private_key_pem: String,
    /// `CERTIFICATE REQUEST` PEM.
    pub csr_pem: String,
    /// A `PUBLIC KEY` PEM holding PKCS#1 `RSAPublicKey` DER (upstream quirk, spec §7.6).
    pub public_key_pem: String,
}

/// Errors creating the key or CSR, in upstream wording.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CsrError {
    /// Key generation or encoding failed.
    #[error("Could not create private key: {0}")]
    Key(String),
    /// CSR creation failed.
    #[error("Could not create CSR bytes: {0}")]
    Csr(String),
}

/// Generates a key pair and a CSR for `subject`.
pub fn generate(subject: &CsrSubject) -> Result<GeneratedCsr, CsrError> {
    let key =
        rsa::RsaPrivateKey::new(&mut OsRng, RSA_BITS).map_err(|e| CsrError::Key(e.to_string()))?;
    let pkcs1 = key
        .to_pkcs1_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| CsrError::Key(e.to_string()))?;
    let pkcs8 = key
        .to_pkcs8_pem(rsa::pkcs8::LineEnding::LF)
        .map_err(|e| CsrError::Key(e.to_string()))?;
    let public = key
        .to_public_key()
        .to_pkcs1_der()
        .map_err(|e| CsrError::Key(e.to_string()))?;
    let pair = KeyPair::from_pem_and_sign_algo(&pkcs8, &PKCS_RSA_SHA256)
        .map_err(|e| CsrError::Key(e.to_string()))?;
    let mut params = CertificateParams::default();
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, subject.common_name.as_str());
    for (kind, value) in [
        (DnType::CountryName, &subject.country),
        (DnType::LocalityName, &subject.locality),
        (DnType::OrganizationName, &subject.organization),
        (DnType::OrganizationalUnitName, &subject.unit),
    ] {
        if !value.is_empty() {
            name.push(kind, value.as_str());
        }
    }
    params.distinguished_name = name;
    let csr = params
        .serialize_request(&pair)
        .and_then(|csr| csr.pem())
        .map_err(|e| CsrError::Csr(e.to_string()))?;
    Ok(GeneratedCsr {
        private_key_pem: pkcs1.to_string(),
        csr_pem: csr,
        public_key_pem: pem::encode(&pem::Pem::new("PUBLIC KEY", public.as_bytes().to_vec())),
    })
}
