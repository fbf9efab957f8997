//! NATS connections for a node (spec §4.5): anonymous unverified TLS plus the
//! provisioning JWT in `auth_token` while provisioning; CA-verified TLS plus server JWT
//! and nonce signature once provisioned. Reconnects forever with capped, jittered backoff.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_nats::rustls;
use async_nats::{Auth, AuthError, ConnectOptions};
use base64::Engine as _;
use rand::Rng;
use tokio_util::sync::CancellationToken;

use crate::resolve::BrokerUrl;

/// Longest wait between reconnect attempts (spec: jittered backoff up to 20 s).
pub const MAX_RECONNECT_DELAY: Duration = Duration::from_secs(20);
/// Longest wait between initial connection attempts.
pub const MAX_INITIAL_DELAY: Duration = Duration::from_secs(5);
/// Default connect timeout (`plugin.choria.network.connect_timeout`). Upstream's default is
/// 2 s; when thousands of machines power on at once, a broker needs longer than that for
/// each TLS handshake and authorization, and nodes that give up at 2 s only retry into the
/// same queue (docs/benchmarks.md, "Connection storms"). Set the key to 2s for upstream's
/// behaviour.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The connect timeout `config` asks for (`plugin.choria.network.connect_timeout`), or
/// [`CONNECT_TIMEOUT`].
pub fn connect_timeout(
    config: &choria_config::Config,
) -> Result<Duration, choria_config::ConfigError> {
    config.get_duration_or("plugin.choria.network.connect_timeout", CONNECT_TIMEOUT)
}
/// Messages buffered per subscription before NATS drops them (keeps per-node memory small).
pub const SUBSCRIPTION_CAPACITY: usize = 64;

/// How a node authenticates.
#[derive(Clone)]
pub enum Credentials {
    /// Provisioning mode: the provisioning JWT verbatim as `auth_token`, optional user/pass.
    Provisioning {
        /// The file's contents (sent unmodified).
        jwt: String,
        /// `chusr`/`chpwd` when both are set.
        user: Option<(String, String)>,
    },
    /// Normal mode with JWT security: server JWT in `auth_token` and `jwt`, nonce signed.
    ServerJwt {
        /// The server JWT (trimmed).
        jwt: String,
        /// The node's seed (boxed: it dwarfs the other variants).
        seed: Box<choria_tokens::Ed25519Seed>,
        /// Client certificate and key shown to brokers in mtls mode
        /// (`plugin.security.choria.certificate` / `.key`).
        certificate: Option<(PathBuf, PathBuf)>,
    },
    /// Normal mode with mTLS: the certificate is the credential.
    Certificate {
        /// Certificate PEM path.
        cert: PathBuf,
        /// Private key PEM path.
        key: PathBuf,
    },
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens, passwords and seeds are secrets: name the kind only.
        f.write_str(match self {
            Credentials::Provisioning { .. } => "Credentials::Provisioning",
            Credentials::ServerJwt { .. } => "Credentials::ServerJwt",
            Credentials::Certificate { .. } => "Credentials::Certificate",
        })
    }
}

/// Everything needed to connect one node.
#[derive(Debug, Clone)]
pub struct ConnectSpec {
    /// Brokers to try.
    pub servers: Vec<BrokerUrl>,
    /// Connection name (the identity).
    pub name: String,
    /// Inbox prefix (`<collective>.reply[.<md5 id>]`).
    pub inbox_prefix: String,
    /// How to authenticate.
    pub credentials: Credentials,
    /// CA to verify the broker with; `None` means unverified anonymous TLS.
    pub ca: Option<PathBuf>,
    /// How long one connection attempt (TCP, TLS and CONNECT) may take.
    pub connect_timeout: Duration,
}

/// Errors connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// TLS material could not be loaded.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// Shutdown was requested before a connection was made.
    #[error("cancelled before connecting")]
    Cancelled,
    /// No broker address to use.
    #[error("no brokers to connect to")]
    NoServers,
}

/// Stops async-nats from reading the system's root certificates on every connection.
///
/// async-nats 0.51 loads (and then discards) the whole system root store for every TLS
/// connection that brings its own rustls configuration (nats-io/nats.rs#1622). Nodes always
/// bring their own, the site CA or unverified TLS while provisioning, and never trust the
/// system roots. Profiling a simulated fleet put a quarter of its CPU time in that loading,
/// so processes that only run nodes point the loader at an empty file.
///
/// It sets process environment: call it before any other thread starts, and only in a
/// process whose NATS connections all bring their own trust roots.
pub fn skip_unused_system_roots() {
    std::env::set_var("SSL_CERT_FILE", "/dev/null");
    std::env::remove_var("SSL_CERT_DIR");
}

/// Connects, retrying the initial connection with 0.5–5 s backoff until `cancel` fires.
pub async fn connect(
    spec: &ConnectSpec,
    cancel: &CancellationToken,
) -> Result<async_nats::Client, ConnectError> {
    if spec.servers.is_empty() {
        return Err(ConnectError::NoServers);
    }
    let addrs: Vec<async_nats::ServerAddr> = spec
        .servers
        .iter()
        .filter_map(|url| {
            // The node always speaks TLS; `nats://` is upgraded by the server's INFO.
            let scheme = if url.scheme == "nats" {
                "tls"
            } else {
                url.scheme.as_str()
            };
            format!("{scheme}://{}:{}", bracket(&url.host), url.port)
                .parse()
                .ok()
        })
        .collect();
    if addrs.is_empty() {
        return Err(ConnectError::NoServers);
    }
    let mut attempt = 0u32;
    loop {
        let options = options(spec)?;
        tokio::select! {
            () = cancel.cancelled() => return Err(ConnectError::Cancelled),
            result = options.connect(addrs.clone()) => match result {
                Ok(client) => return Ok(client),
                Err(err) => {
                    tracing::warn!(node = %spec.name, error = %err, attempt, "could not connect to the broker, retrying");
                }
            }
        }
        attempt = attempt.saturating_add(1);
        let delay = jitter(
            Duration::from_millis(500).saturating_mul(1 << attempt.min(4)),
            MAX_INITIAL_DELAY,
        );
        tokio::select! {
            () = cancel.cancelled() => return Err(ConnectError::Cancelled),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    }
}

fn options(spec: &ConnectSpec) -> Result<ConnectOptions, ConnectError> {
    let credentials = spec.credentials.clone();
    let mut options = ConnectOptions::with_auth_callback(move |nonce: Vec<u8>| {
        let credentials = credentials.clone();
        async move { authenticate(&credentials, &nonce) }
    });
    let tls = match (&spec.ca, &spec.credentials) {
        (None, _) => anonymous_tls(),
        (Some(ca), Credentials::Certificate { cert, key })
        | (
            Some(ca),
            Credentials::ServerJwt {
                certificate: Some((cert, key)),
                ..
            },
        ) => verified_tls(ca, Some((cert, key)))?,
        (Some(ca), _) => verified_tls(ca, None)?,
    };
    options = options
        .name(&spec.name)
        .tls_client_config(tls)
        .require_tls(true)
        .connection_timeout(spec.connect_timeout)
        .max_reconnects(None)
        .reconnect_delay_callback(|attempts| {
            jitter(
                Duration::from_millis(500).saturating_mul(1 << attempts.min(6) as u32),
                MAX_RECONNECT_DELAY,
            )
        })
        .custom_inbox_prefix(&spec.inbox_prefix)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .client_capacity(SUBSCRIPTION_CAPACITY);
    Ok(options)
}

fn authenticate(credentials: &Credentials, nonce: &[u8]) -> Result<Auth, AuthError> {
    let mut auth = Auth::new();
    match credentials {
        Credentials::Provisioning { jwt, user } => {
            auth.token = Some(jwt.clone());
            if let Some((user, pass)) = user {
                auth.username = Some(user.clone());
                auth.password = Some(pass.clone());
            }
        }
        Credentials::ServerJwt { jwt, seed, .. } => {
            auth.token = Some(jwt.clone());
            auth.jwt = Some(jwt.clone());
            let signature = choria_tokens::sign_nonce(seed, nonce);
            let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(signature)
                .map_err(|_| AuthError::new("could not encode the nonce signature"))?;
            auth.signature = Some(raw);
        }
        Credentials::Certificate { .. } => {}
    }
    Ok(auth)
}

fn jitter(base: Duration, cap: Duration) -> Duration {
    let base = base.min(cap);
    base.mul_f64(rand::thread_rng().gen_range(0.5..1.0))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
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

fn verified_tls(
    ca: &Path,
    client: Option<(&PathBuf, &PathBuf)>,
) -> Result<rustls::ClientConfig, ConnectError> {
    let pem_text = std::fs::read(ca)
        .map_err(|e| ConnectError::Tls(format!("could not read CA {}: {e}", ca.display())))?;
    let mut roots = rustls::RootCertStore::empty();
    for block in pem::parse_many(&pem_text)
        .map_err(|e| ConnectError::Tls(format!("CA {}: {e}", ca.display())))?
    {
        if block.tag() == "CERTIFICATE" {
            roots
                .add(rustls::pki_types::CertificateDer::from(
                    block.contents().to_vec(),
                ))
                .map_err(|e| ConnectError::Tls(format!("CA {}: {e}", ca.display())))?;
        }
    }
    if roots.is_empty() {
        return Err(ConnectError::Tls(format!(
            "CA {} holds no certificate",
            ca.display()
        )));
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots);
    match client {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let certs = std::fs::read(cert)
                .ok()
                .and_then(|text| pem::parse_many(text).ok())
                .map(|blocks| {
                    blocks
                        .into_iter()
                        .filter(|b| b.tag() == "CERTIFICATE")
                        .map(|b| rustls::pki_types::CertificateDer::from(b.contents().to_vec()))
                        .collect::<Vec<_>>()
                })
                .filter(|c| !c.is_empty())
                .ok_or_else(|| {
                    ConnectError::Tls(format!("could not read certificate {}", cert.display()))
                })?;
            let key_pem = std::fs::read(key)
                .ok()
                .and_then(|text| pem::parse(text).ok())
                .ok_or_else(|| {
                    ConnectError::Tls(format!("could not read private key {}", key.display()))
                })?;
            let key_der = match key_pem.tag() {
                "RSA PRIVATE KEY" => {
                    rustls::pki_types::PrivateKeyDer::Pkcs1(key_pem.contents().to_vec().into())
                }
                "EC PRIVATE KEY" => {
                    rustls::pki_types::PrivateKeyDer::Sec1(key_pem.contents().to_vec().into())
                }
                _ => rustls::pki_types::PrivateKeyDer::Pkcs8(key_pem.contents().to_vec().into()),
            };
            builder.with_client_auth_cert(certs, key_der).map_err(|e| {
                ConnectError::Tls(format!("client certificate {}: {e}", cert.display()))
            })
        }
    }
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
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}
