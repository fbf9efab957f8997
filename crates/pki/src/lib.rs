//! X.509 material for a Choria site: a certificate authority, broker and node
//! certificates, certificate signing requests, and CSR signing for the `pki` flow.
//!
//! Everything is PEM text in and out, so callers decide where files go (and write
//! private keys 0600). Built on `rcgen` (generation and signing) and `x509-parser`
//! (reading requests back, and [`verify_certificate`]: is a caller's certificate issued by
//! our CA and valid now). [`key_transfer`] moves a private key to a node during provisioning.
//!
//! ```
//! let ca = choria_pki::CertificateAuthority::generate("Example CA")?;
//! let broker = ca.issue_server_certificate("broker.example.net", &["localhost", "127.0.0.1"])?;
//! assert!(broker.certificate_pem.starts_with("-----BEGIN CERTIFICATE-----"));
//!
//! let key = choria_pki::generate_rsa_key_pem(2048)?;
//! let csr = choria_pki::generate_csr("node1.example.net", &key)?;
//! assert_eq!(choria_pki::csr_common_name(&csr)?, "node1.example.net");
//! let signed = ca.sign_csr(&csr, std::time::Duration::from_secs(3600))?;
//! assert!(signed.starts_with("-----BEGIN CERTIFICATE-----"));
//! # Ok::<(), choria_pki::PkiError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod key_transfer;

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use secrecy::{ExposeSecret, SecretString};
use time::OffsetDateTime;
use x509_parser::prelude::FromDer;

/// Validity of a generated CA certificate.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// Validity of generated broker and client certificates.
pub const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);

/// Largest CSR accepted for signing or inspection (requests come from the network).
pub const MAX_CSR_BYTES: usize = 16 * 1024;

/// Errors from generating or signing X.509 material.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PkiError {
    /// rcgen refused to build or sign a certificate.
    #[error("could not {action}: {source}")]
    Generate {
        /// What was being done.
        action: &'static str,
        /// Why it failed.
        source: rcgen::Error,
    },
    /// An RSA key could not be generated or encoded.
    #[error("could not generate an RSA key: {0}")]
    RsaKey(String),
    /// The CSR is larger than [`MAX_CSR_BYTES`].
    #[error("certificate request is {size} bytes, more than the {MAX_CSR_BYTES} allowed")]
    CsrTooLarge {
        /// Its size.
        size: usize,
    },
    /// The CSR is not a PEM `CERTIFICATE REQUEST` or does not parse.
    #[error("invalid certificate request: {0}")]
    InvalidCsr(String),
    /// The CSR's self-signature does not verify.
    #[error("certificate request signature does not verify")]
    CsrSignature,
    /// The CSR has no common name.
    #[error("certificate request has no common name")]
    CsrNoCommonName,
    /// A certificate (or CA bundle) is not PEM `CERTIFICATE` blocks or does not parse.
    #[error("invalid certificate: {0}")]
    InvalidCertificate(String),
    /// The CA bundle holds no certificate.
    #[error("the CA bundle holds no certificate")]
    EmptyCaBundle,
    /// No certificate of the CA bundle signed the certificate.
    #[error("certificate {subject:?} is not signed by the trusted CA")]
    UntrustedIssuer {
        /// The certificate's subject.
        subject: String,
    },
    /// The certificate (or the CA that signed it) is outside its validity window.
    #[error("certificate {subject:?} is not valid now: valid from {not_before} until {not_after} (Unix seconds), now {now}")]
    OutsideValidity {
        /// The subject of the certificate that is not valid.
        subject: String,
        /// Start of validity, Unix seconds.
        not_before: i64,
        /// End of validity, Unix seconds.
        not_after: i64,
        /// The time checked, Unix seconds.
        now: i64,
    },
    /// The certificate has no common name.
    #[error("certificate {subject:?} has no common name")]
    CertificateNoCommonName {
        /// The certificate's subject.
        subject: String,
    },
}

fn generate_err(action: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Generate { action, source }
}

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCertificate {
    /// The certificate (PEM).
    pub certificate_pem: String,
    /// The private key (PKCS#8 PEM).
    pub private_key_pem: SecretString,
}

/// A certificate authority that can issue and sign certificates.
#[derive(educe::Educe)]
#[educe(Debug)]
pub struct CertificateAuthority {
    certificate_pem: String,
    key_pem: SecretString,
    // rcgen's `Issuer` has no Debug; it holds the same key as `key_pem`.
    #[educe(Debug(ignore))]
    issuer: Issuer<'static, KeyPair>,
}

impl CertificateAuthority {
    /// Generates a new self-signed CA (ECDSA P-256) valid for [`CA_VALIDITY`].
    pub fn generate(common_name: &str) -> Result<CertificateAuthority, PkiError> {
        let key = KeyPair::generate().map_err(generate_err("generate a CA key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(generate_err("prepare the CA certificate"))?;
        params.distinguished_name = common_name_dn(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        set_validity(&mut params, CA_VALIDITY);
        let certificate = params
            .self_signed(&key)
            .map_err(generate_err("self-sign the CA certificate"))?;
        let certificate_pem = certificate.pem();
        let key_pem = key.serialize_pem().into();
        Ok(CertificateAuthority {
            certificate_pem,
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// Loads an existing CA from its certificate and PKCS#8 private key.
    pub fn from_pem(
        certificate_pem: &str,
        key_pem: &str,
    ) -> Result<CertificateAuthority, PkiError> {
        let key = KeyPair::from_pem(key_pem).map_err(generate_err("read the CA key"))?;
        let issuer = Issuer::from_ca_cert_pem(certificate_pem, key)
            .map_err(generate_err("read the CA certificate"))?;
        Ok(CertificateAuthority {
            certificate_pem: certificate_pem.to_string(),
            key_pem: key_pem.into(),
            issuer,
        })
    }

    /// The CA certificate (PEM), what clients and servers trust.
    pub fn certificate_pem(&self) -> &str {
        &self.certificate_pem
    }

    /// The CA private key (PKCS#8 PEM); secret.
    pub fn private_key_pem(&self) -> &str {
        self.key_pem.expose_secret()
    }

    /// Issues a TLS server certificate for `common_name` with the given DNS names and
    /// IP addresses as subject alternative names (the common name is added too).
    pub fn issue_server_certificate(
        &self,
        common_name: &str,
        names: &[&str],
    ) -> Result<IssuedCertificate, PkiError> {
        self.issue(
            common_name,
            names,
            &[
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        )
    }

    /// Issues a TLS client certificate for `common_name` (mTLS identities).
    pub fn issue_client_certificate(
        &self,
        common_name: &str,
    ) -> Result<IssuedCertificate, PkiError> {
        self.issue(common_name, &[], &[ExtendedKeyUsagePurpose::ClientAuth])
    }

    fn issue(
        &self,
        common_name: &str,
        names: &[&str],
        usages: &[ExtendedKeyUsagePurpose],
    ) -> Result<IssuedCertificate, PkiError> {
        let key = KeyPair::generate().map_err(generate_err("generate a certificate key"))?;
        let mut params = CertificateParams::new(Vec::<String>::new())
            .map_err(generate_err("prepare a certificate"))?;
        params.distinguished_name = common_name_dn(common_name);
        params.subject_alt_names = subject_alt_names(common_name, names)?;
        params.extended_key_usages = usages.to_vec();
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        set_validity(&mut params, LEAF_VALIDITY);
        let certificate = params
            .signed_by(&key, &self.issuer)
            .map_err(generate_err("sign a certificate"))?;
        Ok(IssuedCertificate {
            certificate_pem: certificate.pem(),
            private_key_pem: key.serialize_pem().into(),
        })
    }

    /// Signs a node's certificate request, keeping its subject and names, valid for
    /// `validity`. The request's own signature is checked first.
    pub fn sign_csr(&self, csr_pem: &str, validity: Duration) -> Result<String, PkiError> {
        check_csr(csr_pem)?;
        let mut request = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|err| PkiError::InvalidCsr(err.to_string()))?;
        set_validity(&mut request.params, validity);
        request.params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let certificate = request
            .signed_by(&self.issuer)
            .map_err(generate_err("sign the certificate request"))?;
        Ok(certificate.pem())
    }
}

/// Generates an RSA private key of `bits` bits as PKCS#8 PEM (what upstream nodes
/// create for `gencsr`).
pub fn generate_rsa_key_pem(bits: usize) -> Result<String, PkiError> {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), bits)
        .map_err(|err| PkiError::RsaKey(err.to_string()))?;
    key.to_pkcs8_pem(LineEnding::LF)
        .map(|pem| pem.to_string())
        .map_err(|err| PkiError::RsaKey(err.to_string()))
}

/// The public half of a PKCS#8 or PKCS#1 RSA private key, as a PEM `PUBLIC KEY`
/// (what verifiers of RS256 tokens are configured with).
pub fn rsa_public_key_pem(private_key_pem: &str) -> Result<String, PkiError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(private_key_pem)
        .or_else(|_| rsa::RsaPrivateKey::from_pkcs1_pem(private_key_pem))
        .map_err(|err| PkiError::RsaKey(err.to_string()))?;
    key.to_public_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|err| PkiError::RsaKey(err.to_string()))
}

/// Builds a certificate request for `common_name` signed by the PKCS#8 key `key_pem`.
pub fn generate_csr(common_name: &str, key_pem: &str) -> Result<String, PkiError> {
    let key = KeyPair::from_pem(key_pem).map_err(generate_err("read the request key"))?;
    let mut params = CertificateParams::new(Vec::<String>::new())
        .map_err(generate_err("prepare a certificate request"))?;
    params.distinguished_name = common_name_dn(common_name);
    params
        .serialize_request(&key)
        .and_then(|request| request.pem())
        .map_err(generate_err("build the certificate request"))
}

/// Returns the subject common name of a PEM certificate request after checking its
/// size, encoding and self-signature.
pub fn csr_common_name(csr_pem: &str) -> Result<String, PkiError> {
    check_csr(csr_pem)
}

/// Largest certificate or CA bundle accepted for verification (certificates arrive in requests).
pub const MAX_CERTIFICATE_BYTES: usize = 64 * 1024;

/// A certificate that [`verify_certificate`] found issued by a trusted CA and valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCertificate {
    /// The subject common name.
    pub common_name: String,
    /// DNS names from the subject alternative names.
    pub dns_names: Vec<String>,
    /// The subject public key as DER `SubjectPublicKeyInfo`.
    pub public_key_der: Vec<u8>,
}

/// Checks that the first certificate of `certificate_pem` was signed directly by one of the
/// certificates in `ca_bundle_pem` and that both are valid at `now`, and returns what a
/// verifier needs from it. Intermediate certificates are not followed.
pub fn verify_certificate(
    certificate_pem: &str,
    ca_bundle_pem: &str,
    now: SystemTime,
) -> Result<VerifiedCertificate, PkiError> {
    if certificate_pem.len() > MAX_CERTIFICATE_BYTES {
        return Err(PkiError::InvalidCertificate(format!(
            "{} bytes, more than the {MAX_CERTIFICATE_BYTES} allowed",
            certificate_pem.len()
        )));
    }
    let now = choria_tokens::clock::unix_seconds(now);
    let leaf_der = certificate_ders(certificate_pem)?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::InvalidCertificate("no PEM CERTIFICATE block".into()))?;
    let leaf = parse_certificate(&leaf_der)?;
    let subject = leaf.subject().to_string();
    check_validity(&leaf, now)?;
    let ca_ders = certificate_ders(ca_bundle_pem)?;
    if ca_ders.is_empty() {
        return Err(PkiError::EmptyCaBundle);
    }
    let mut issuer_found = false;
    for der in &ca_ders {
        let ca = parse_certificate(der)?;
        if ca.subject() != leaf.issuer() || leaf.verify_signature(Some(ca.public_key())).is_err() {
            continue;
        }
        check_validity(&ca, now)?;
        issuer_found = true;
        break;
    }
    if !issuer_found {
        return Err(PkiError::UntrustedIssuer { subject });
    }
    let common_name = leaf
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| PkiError::CertificateNoCommonName {
            subject: subject.clone(),
        })?
        .to_string();
    let dns_names = leaf
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|san| {
            san.value
                .general_names
                .iter()
                .filter_map(|name| match name {
                    x509_parser::extensions::GeneralName::DNSName(dns) => Some(dns.to_string()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    Ok(VerifiedCertificate {
        common_name,
        dns_names,
        public_key_der: leaf.public_key().raw.to_vec(),
    })
}

fn certificate_ders(pem_text: &str) -> Result<Vec<Vec<u8>>, PkiError> {
    let blocks = pem::parse_many(pem_text.as_bytes())
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    Ok(blocks
        .into_iter()
        .filter(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
        .collect())
}

fn parse_certificate(
    der: &[u8],
) -> Result<x509_parser::certificate::X509Certificate<'_>, PkiError> {
    let (rest, certificate) = x509_parser::certificate::X509Certificate::from_der(der)
        .map_err(|e| PkiError::InvalidCertificate(e.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCertificate(format!(
            "{} bytes of trailing data after the certificate",
            rest.len()
        )));
    }
    Ok(certificate)
}

fn check_validity(
    certificate: &x509_parser::certificate::X509Certificate<'_>,
    now: i64,
) -> Result<(), PkiError> {
    let validity = certificate.validity();
    let not_before = validity.not_before.timestamp();
    let not_after = validity.not_after.timestamp();
    if now < not_before || now > not_after {
        return Err(PkiError::OutsideValidity {
            subject: certificate.subject().to_string(),
            not_before,
            not_after,
            now,
        });
    }
    Ok(())
}

fn check_csr(csr_pem: &str) -> Result<String, PkiError> {
    if csr_pem.len() > MAX_CSR_BYTES {
        return Err(PkiError::CsrTooLarge {
            size: csr_pem.len(),
        });
    }
    let block =
        pem::parse(csr_pem.as_bytes()).map_err(|err| PkiError::InvalidCsr(err.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" {
        return Err(PkiError::InvalidCsr(format!(
            "PEM block is {:?}, expected \"CERTIFICATE REQUEST\"",
            block.tag()
        )));
    }
    let (rest, request) =
        x509_parser::certification_request::X509CertificationRequest::from_der(block.contents())
            .map_err(|err| PkiError::InvalidCsr(err.to_string()))?;
    if !rest.is_empty() {
        return Err(PkiError::InvalidCsr(format!(
            "{} bytes of trailing data after the request",
            rest.len()
        )));
    }
    request
        .verify_signature()
        .map_err(|_| PkiError::CsrSignature)?;
    let common_name = request
        .certification_request_info
        .subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or(PkiError::CsrNoCommonName)?;
    Ok(common_name.to_string())
}

fn common_name_dn(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    dn
}

fn subject_alt_names(common_name: &str, names: &[&str]) -> Result<Vec<SanType>, PkiError> {
    let mut sans = Vec::new();
    for name in std::iter::once(&common_name).chain(names) {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(
                (*name)
                    .to_string()
                    .try_into()
                    .map_err(generate_err("use a DNS name"))?,
            ),
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

fn set_validity(params: &mut CertificateParams, validity: Duration) {
    // Back-date a little so nodes with slightly slow clocks accept fresh certificates.
    let now = OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::minutes(5);
    params.not_after = now + validity;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issued_certificates_chain_to_the_ca() {
        let ca = CertificateAuthority::generate("Test CA").expect("ca");
        let issued = ca
            .issue_server_certificate("broker", &["localhost", "127.0.0.1"])
            .expect("issue");
        let (_, cert) =
            x509_parser::pem::parse_x509_pem(issued.certificate_pem.as_bytes()).expect("pem");
        let cert = cert.parse_x509().expect("x509");
        let (_, ca_pem) =
            x509_parser::pem::parse_x509_pem(ca.certificate_pem().as_bytes()).expect("ca pem");
        let ca_cert = ca_pem.parse_x509().expect("ca x509");
        cert.verify_signature(Some(ca_cert.public_key()))
            .expect("signed by the CA");
        let names: Vec<String> = cert
            .subject_alternative_name()
            .expect("san ext")
            .expect("san present")
            .value
            .general_names
            .iter()
            .map(|name| format!("{name:?}"))
            .collect();
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("IPAddress")), "{names:?}");
    }

    #[test]
    fn debug_never_shows_a_private_key() {
        let ca = CertificateAuthority::generate("Test CA").expect("ca");
        let issued = ca.issue_server_certificate("broker", &[]).expect("issue");
        let text = format!("{ca:?} {issued:?}");
        assert!(text.contains("BEGIN CERTIFICATE"), "{text}");
        assert!(!text.contains("PRIVATE KEY"), "{text}");
    }

    #[test]
    fn a_reloaded_ca_still_signs() {
        let ca = CertificateAuthority::generate("Test CA").expect("ca");
        let again = CertificateAuthority::from_pem(ca.certificate_pem(), ca.private_key_pem())
            .expect("load");
        let key = generate_rsa_key_pem(2048).expect("rsa");
        let csr = generate_csr("node1.example.net", &key).expect("csr");
        let signed = again.sign_csr(&csr, LEAF_VALIDITY).expect("sign");
        let (_, cert) = x509_parser::pem::parse_x509_pem(signed.as_bytes()).expect("pem");
        let cert = cert.parse_x509().expect("x509");
        let cn = cert.subject().iter_common_name().next().expect("cn");
        assert_eq!(cn.as_str().expect("utf8"), "node1.example.net");
    }

    #[test]
    fn rsa_public_keys_come_from_private_keys() {
        let key = generate_rsa_key_pem(2048).expect("rsa");
        let public = rsa_public_key_pem(&key).expect("public");
        assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
        assert!(matches!(
            rsa_public_key_pem("nope"),
            Err(PkiError::RsaKey(_))
        ));
    }

    #[test]
    fn garbage_requests_are_refused_with_reasons() {
        let ca = CertificateAuthority::generate("Test CA").expect("ca");
        assert!(matches!(
            ca.sign_csr("not pem", LEAF_VALIDITY),
            Err(PkiError::InvalidCsr(_))
        ));
        let cert_pem = ca.certificate_pem().to_string();
        assert!(matches!(
            csr_common_name(&cert_pem),
            Err(PkiError::InvalidCsr(msg)) if msg.contains("CERTIFICATE")
        ));
        let huge = "A".repeat(MAX_CSR_BYTES + 1);
        assert!(matches!(
            csr_common_name(&huge),
            Err(PkiError::CsrTooLarge { .. })
        ));
        let truncated =
            "-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(
            csr_common_name(truncated),
            Err(PkiError::InvalidCsr(_))
        ));
    }

    #[test]
    fn certificates_verify_against_their_ca_only_while_valid() {
        let ca = CertificateAuthority::generate("Test CA").expect("ca");
        let other = CertificateAuthority::generate("Other CA").expect("other ca");
        let issued = ca
            .issue_server_certificate("n1.example.net", &["n1.alias"])
            .expect("issue");
        let now = SystemTime::now();
        let verified =
            verify_certificate(&issued.certificate_pem, ca.certificate_pem(), now).expect("ok");
        assert_eq!(verified.common_name, "n1.example.net");
        assert!(verified.dns_names.contains(&"n1.alias".to_string()));
        assert!(!verified.public_key_der.is_empty());

        // A bundle with an unrelated CA first still finds the issuer.
        let bundle = format!("{}{}", other.certificate_pem(), ca.certificate_pem());
        verify_certificate(&issued.certificate_pem, &bundle, now).expect("bundle");

        assert!(matches!(
            verify_certificate(&issued.certificate_pem, other.certificate_pem(), now),
            Err(PkiError::UntrustedIssuer { subject }) if subject.contains("n1.example.net")
        ));
        let later = now + LEAF_VALIDITY + Duration::from_secs(3600);
        assert!(matches!(
            verify_certificate(&issued.certificate_pem, ca.certificate_pem(), later),
            Err(PkiError::OutsideValidity { .. })
        ));
        assert!(matches!(
            verify_certificate(&issued.certificate_pem, "", now),
            Err(PkiError::EmptyCaBundle)
        ));
        assert!(matches!(
            verify_certificate("not a certificate", ca.certificate_pem(), now),
            Err(PkiError::InvalidCertificate(_))
        ));
    }

    #[test]
    fn a_tampered_request_fails_its_signature_check() {
        let key = generate_rsa_key_pem(2048).expect("rsa");
        let csr = generate_csr("node1", &key).expect("csr");
        let block = pem::parse(csr.as_bytes()).expect("pem");
        let mut der = block.contents().to_vec();
        // Flip a byte inside the subject common name ("node1" -> "nodf1" or similar).
        let at = der
            .windows(5)
            .position(|w| w == b"node1")
            .expect("common name bytes");
        der[at + 3] ^= 0x01;
        let tampered = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", der));
        assert!(matches!(
            csr_common_name(&tampered),
            Err(PkiError::CsrSignature)
        ));
    }
}
