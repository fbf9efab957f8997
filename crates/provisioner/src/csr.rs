//! Validation of a node's certificate signing request (spec §4.5): the CSR must parse,
//! its CN must be the node identity and no name may match the deny list.

use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::FromDer;

/// Largest CSR PEM we look at.
pub const MAX_CSR_BYTES: usize = 64 * 1024;

/// Why a CSR was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CsrError {
    /// Empty CSR.
    #[error("no CSR received")]
    Missing,
    /// Not a PEM `CERTIFICATE REQUEST` or not PKCS#10.
    #[error("could not parse CSR: {0}")]
    Parse(String),
    /// CN is not the identity.
    #[error("common name {cn} does not match identity {identity}")]
    CommonName {
        /// CN found in the CSR.
        cn: String,
        /// Node identity.
        identity: String,
    },
    /// A name matches a deny pattern.
    #[error("{name} matches denied certificate pattern {pattern}")]
    Denied {
        /// The CN or DNS SAN.
        name: String,
        /// The matching pattern.
        pattern: String,
    },
}

/// Checks `csr_pem` for `identity` against `deny`.
pub fn validate_csr(csr_pem: &str, identity: &str, deny: &[regex::Regex]) -> Result<(), CsrError> {
    if csr_pem.trim().is_empty() {
        return Err(CsrError::Missing);
    }
    if csr_pem.len() > MAX_CSR_BYTES {
        return Err(CsrError::Parse(format!(
            "CSR larger than {MAX_CSR_BYTES} bytes"
        )));
    }
    let block = pem::parse(csr_pem.trim()).map_err(|err| CsrError::Parse(err.to_string()))?;
    if block.tag() != "CERTIFICATE REQUEST" && block.tag() != "NEW CERTIFICATE REQUEST" {
        return Err(CsrError::Parse(format!(
            "PEM type {} is not a CERTIFICATE REQUEST",
            block.tag()
        )));
    }
    let (rest, csr) = X509CertificationRequest::from_der(block.contents())
        .map_err(|err| CsrError::Parse(err.to_string()))?;
    if !rest.is_empty() {
        return Err(CsrError::Parse(format!(
            "{} trailing bytes after the CSR",
            rest.len()
        )));
    }
    let subject = &csr.certification_request_info.subject;
    let cn = subject
        .iter_common_name()
        .next()
        .map(|attr| attr.as_str().map(str::to_string))
        .transpose()
        .map_err(|err| CsrError::Parse(format!("common name is not a string: {err}")))?
        .unwrap_or_default();
    if cn != identity {
        return Err(CsrError::CommonName {
            cn,
            identity: identity.to_string(),
        });
    }
    let mut names = vec![cn];
    if let Some(extensions) = csr.requested_extensions() {
        for extension in extensions {
            if let ParsedExtension::SubjectAlternativeName(san) = extension {
                for name in &san.general_names {
                    if let GeneralName::DNSName(dns) = name {
                        names.push(dns.to_string());
                    }
                }
            }
        }
    }
    for name in names {
        if let Some(pattern) = deny.iter().find(|re| re.is_match(&name)) {
            let all: Vec<&str> = deny.iter().map(regex::Regex::as_str).collect();
            tracing::warn!(
                "Denying CSR with name {name} due to pattern {}",
                all.join(", ")
            );
            return Err(CsrError::Denied {
                name,
                pattern: pattern.as_str().to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::DEFAULT_DENY_LIST;

    fn deny() -> Vec<regex::Regex> {
        DEFAULT_DENY_LIST
            .iter()
            .map(|p| regex::Regex::new(p).expect("default pattern"))
            .collect()
    }

    fn csr(cn: &str, sans: &[&str]) -> String {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(sans.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .expect("params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, cn);
        params
            .serialize_request(&key)
            .expect("csr")
            .pem()
            .expect("pem")
    }

    #[test]
    fn spec_cases() {
        assert_eq!(validate_csr("", "a", &deny()), Err(CsrError::Missing));
        assert!(matches!(
            validate_csr(&csr("other.example.net", &[]), "n1.example.net", &deny()),
            Err(CsrError::CommonName { .. })
        ));
        for name in [
            "bob.choria",
            "bob.mcollective",
            "bob.privileged.choria",
            "bob.privileged.mcollective",
        ] {
            assert!(
                matches!(
                    validate_csr(&csr(name, &[]), name, &deny()),
                    Err(CsrError::Denied { .. })
                ),
                "CN {name}"
            );
            assert!(
                matches!(
                    validate_csr(&csr("ok.example.net", &[name]), "ok.example.net", &deny()),
                    Err(CsrError::Denied { .. })
                ),
                "SAN {name}"
            );
        }
        validate_csr(
            &csr("ok.example.net", &["ok.example.net", "alt.example.net"]),
            "ok.example.net",
            &deny(),
        )
        .expect("clean CSR accepted");
    }

    #[test]
    fn b2_garbage_is_an_error_not_a_panic() {
        for junk in [
            "not pem",
            "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----",
            "-----BEGIN X-----\nAAAA\n-----END X-----",
        ] {
            assert!(
                matches!(validate_csr(junk, "a", &deny()), Err(CsrError::Parse(_))),
                "{junk}"
            );
        }
    }
}
