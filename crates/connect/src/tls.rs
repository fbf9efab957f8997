//! The TLS side of a login: verify the broker against the site CA (optionally showing a
//! client certificate), anonymous unverified TLS for provisioning, or none.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_nats::rustls;
use async_nats::ConnectOptions;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{PemFile, TlsError};

/// How a connection uses TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tls {
    /// Plain TCP; should the broker's INFO demand TLS, async-nats upgrades with its own
    /// setup and the system's roots. Only for the provisioner's `choria_insecure`.
    Off,
    /// TLS 1.2+ that verifies no broker certificate and shows no client certificate:
    /// provisioning mode and enrolment (spec §4.5; the broker admits such connections to
    /// the provisioning account only with a valid provisioning token).
    Anonymous,
    /// TLS verifying the broker against the CA bundle `ca` (only that bundle: never the
    /// system's roots), showing `client` when the broker's port demands one (mtls mode).
    Verified {
        /// CA bundle (PEM).
        ca: PathBuf,
        /// Client certificate and key.
        client: Option<ClientCertificate>,
    },
    /// TLS verifying the broker against the system's roots, async-nats' own setup (which
    /// reads them on every connection): for clients whose configuration names no CA.
    SystemRoots {
        /// Client certificate and key.
        client: Option<ClientCertificate>,
    },
}

/// A client certificate and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// Certificate chain (PEM).
    pub cert: PathBuf,
    /// Private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key: PathBuf,
}

impl Tls {
    /// TLS verifying the broker against the CA bundle at `ca`, without a client certificate.
    pub fn verified(ca: impl Into<PathBuf>) -> Tls {
        Tls::Verified {
            ca: ca.into(),
            client: None,
        }
    }

    /// Adds this TLS setup to `options`, reading the CA and certificate files now so a bad
    /// file fails here, naming it, instead of inside every connection attempt.
    pub fn apply(&self, options: ConnectOptions) -> Result<ConnectOptions, TlsError> {
        Ok(match self {
            Tls::Off => options,
            Tls::Anonymous => options.require_tls(true).tls_client_config(anonymous_tls()),
            Tls::Verified { ca, client } => options
                .require_tls(true)
                .tls_client_config(verified_tls(ca, client.as_ref())?),
            Tls::SystemRoots { client } => {
                let options = options.require_tls(true);
                match client {
                    Some(client) => {
                        options.add_client_certificate(client.cert.clone(), client.key.clone())
                    }
                    None => options,
                }
            }
        })
    }
}

/// TLS 1.2+ without verifying the broker certificate and without a client certificate:
/// what provisioning mode uses (the broker places such connections in `provisioning` only
/// with a valid provisioning token).
pub fn anonymous_tls() -> rustls::ClientConfig {
    let provider = provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS)
        });
    builder
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(danger::NoVerification(provider)))
        .with_no_client_auth()
}

/// TLS 1.2+ trusting only the certificates in the CA bundle `ca`, showing `client` if given.
pub fn verified_tls(
    ca: &Path,
    client: Option<&ClientCertificate>,
) -> Result<rustls::ClientConfig, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in certificates(PemFile::Ca, ca)? {
        roots.add(cert).map_err(|source| TlsError::Ca {
            path: ca.to_path_buf(),
            source,
        })?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Provider)?
        .with_root_certificates(roots);
    let Some(client) = client else {
        return Ok(builder.with_no_client_auth());
    };
    let certs = certificates(PemFile::Certificate, &client.cert)?;
    let key = read(PemFile::PrivateKey, &client.key)?;
    let key = PrivateKeyDer::from_pem_slice(&key).map_err(|source| match source {
        rustls::pki_types::pem::Error::NoItemsFound => TlsError::Empty {
            file: PemFile::PrivateKey,
            path: client.key.clone(),
        },
        source => TlsError::Pem {
            file: PemFile::PrivateKey,
            path: client.key.clone(),
            source,
        },
    })?;
    builder
        .with_client_auth_cert(certs, key)
        .map_err(|source| TlsError::ClientCertificate {
            cert: client.cert.clone(),
            key: client.key.clone(),
            source,
        })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(file: PemFile, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        file,
        path: path.to_path_buf(),
        source,
    })
}

/// The certificates in a PEM file (other sections are skipped); at least one.
fn certificates(file: PemFile, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let text = read(file, path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            file,
            path: path.to_path_buf(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::Empty {
            file,
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The unverified-TLS certificate verifier, kept apart because it is dangerous.
mod danger {
    use std::sync::Arc;

    use async_nats::rustls;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::DigitallySignedStruct;

    /// Accepts any broker certificate but still checks handshake signatures, so the
    /// session is encrypted to whoever holds the presented key.
    #[derive(Debug)]
    pub struct NoVerification(pub Arc<rustls::crypto::CryptoProvider>);

    /// rustls' handshake-signature check for one TLS version.
    type SignatureCheck = fn(
        &[u8],
        &CertificateDer<'_>,
        &DigitallySignedStruct,
        &rustls::crypto::WebPkiSupportedAlgorithms,
    ) -> Result<HandshakeSignatureValid, rustls::Error>;

    impl NoVerification {
        fn check_signature(
            &self,
            check: SignatureCheck,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            check(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }
    }

    impl ServerCertVerifier for NoVerification {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let check = rustls::crypto::verify_tls12_signature;
            self.check_signature(check, message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            let check = rustls::crypto::verify_tls13_signature;
            self.check_signature(check, message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn site() -> (tempfile::TempDir, PathBuf, ClientCertificate) {
        let dir = tempfile::tempdir().unwrap();
        let ca = choria_pki::CertificateAuthority::generate("test CA").unwrap();
        let issued = ca.issue_client_certificate("client.example.net").unwrap();
        let ca_path = dir.path().join("ca.pem");
        std::fs::write(&ca_path, ca.certificate_pem()).unwrap();
        let client = ClientCertificate {
            cert: dir.path().join("cert.pem"),
            key: dir.path().join("key.pem"),
        };
        std::fs::write(&client.cert, &issued.certificate_pem).unwrap();
        std::fs::write(&client.key, issued.private_key_pem.expose_secret()).unwrap();
        (dir, ca_path, client)
    }

    #[test]
    fn the_client_certificate_is_loaded() {
        let (_dir, ca, client) = site();
        let config = verified_tls(&ca, Some(&client)).unwrap();
        assert!(config.client_auth_cert_resolver.has_certs());
        let config = verified_tls(&ca, None).unwrap();
        assert!(!config.client_auth_cert_resolver.has_certs());
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let (dir, _ca, _client) = site();
        let missing = dir.path().join("nope.pem");
        let err = verified_tls(&missing, None).unwrap_err();
        assert!(
            matches!(&err, TlsError::Read { file: PemFile::Ca, path, .. } if *path == missing),
            "{err:?}"
        );
        assert!(err.to_string().contains("nope.pem"), "{err}");
    }

    #[test]
    fn a_ca_file_without_certificates_is_named() {
        let (dir, _ca, client) = site();
        // The key file is valid PEM but holds no certificate.
        let err = verified_tls(&client.key, None).unwrap_err();
        assert!(
            matches!(&err, TlsError::Empty { file: PemFile::Ca, path } if *path == client.key),
            "{err:?}"
        );
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = verified_tls(&garbage, None).unwrap_err();
        assert!(
            matches!(&err, TlsError::Pem { file: PemFile::Ca, path, .. } if *path == garbage),
            "{err:?}"
        );
        assert!(err.to_string().contains("garbage.pem"), "{err}");
    }

    #[test]
    fn a_bad_client_key_is_named() {
        let (_dir, ca, client) = site();
        let swapped = ClientCertificate {
            cert: client.cert.clone(),
            key: client.cert.clone(),
        };
        let err = verified_tls(&ca, Some(&swapped)).unwrap_err();
        assert!(
            matches!(&err, TlsError::Empty { file: PemFile::PrivateKey, path } if *path == client.cert),
            "{err:?}"
        );
        let other = choria_pki::CertificateAuthority::generate("other")
            .unwrap()
            .issue_client_certificate("other")
            .unwrap();
        std::fs::write(&client.key, other.private_key_pem.expose_secret()).unwrap();
        let err = verified_tls(&ca, Some(&client)).unwrap_err();
        assert!(
            matches!(&err, TlsError::ClientCertificate { cert, .. } if *cert == client.cert),
            "{err:?}"
        );
    }

    #[test]
    fn anonymous_tls_shows_no_certificate() {
        assert!(!anonymous_tls().client_auth_cert_resolver.has_certs());
    }
}
