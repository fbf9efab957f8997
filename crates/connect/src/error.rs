//! Why a login failed: TLS material that could not be loaded, broker addresses that do not
//! parse, or the broker refusing us (keeping async-nats' error and its kind).

use std::path::PathBuf;

use async_nats::rustls;

/// Errors connecting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// TLS material could not be loaded.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A broker address is not a NATS URL.
    #[error("invalid broker address {url:?}: {source}")]
    InvalidServer {
        /// The address as given.
        url: String,
        /// Why async-nats refused it.
        #[source]
        source: std::io::Error,
    },
    /// No broker address to use.
    #[error("no brokers to connect to")]
    NoServers,
    /// Shutdown was requested before a connection was made.
    #[error("cancelled before connecting")]
    Cancelled,
    /// The connection attempt failed (refused, timed out, TLS handshake, authorization).
    #[error("could not connect to {servers}: {source}")]
    Nats {
        /// The brokers tried, comma separated.
        servers: String,
        /// async-nats' error; [`ConnectError::nats_kind`] reads its kind.
        #[source]
        source: async_nats::ConnectError,
    },
}

impl ConnectError {
    /// The kind of async-nats' error (e.g. `AuthorizationViolation`, `TimedOut`) when the
    /// attempt itself failed, so callers can decide whether to retry.
    pub fn nats_kind(&self) -> Option<async_nats::ConnectErrorKind> {
        match self {
            ConnectError::Nats { source, .. } => Some(source.kind()),
            _ => None,
        }
    }
}

/// Which PEM file a [`TlsError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PemFile {
    /// The CA bundle the broker certificate must chain to.
    Ca,
    /// The client certificate.
    Certificate,
    /// The client certificate's private key.
    PrivateKey,
}

impl std::fmt::Display for PemFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PemFile::Ca => "CA",
            PemFile::Certificate => "certificate",
            PemFile::PrivateKey => "private key",
        })
    }
}

/// Errors building a TLS configuration; each names the file at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("could not read {file} {path}: {source}")]
    Read {
        /// What the file holds.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file is not valid PEM.
    #[error("{file} {path} is not valid PEM: {source}")]
    Pem {
        /// What the file holds.
        file: PemFile,
        /// Its path.
        path: PathBuf,
        /// The PEM parser's complaint.
        #[source]
        source: rustls::pki_types::pem::Error,
    },
    /// A file holds no item of the kind it should (no certificate, no private key).
    #[error("{file} {path} holds no {}", if matches!(file, PemFile::PrivateKey) { "private key" } else { "certificate" })]
    Empty {
        /// What the file holds.
        file: PemFile,
        /// Its path.
        path: PathBuf,
    },
    /// A CA certificate was refused as a trust anchor.
    #[error("CA {path}: {source}")]
    Ca {
        /// The CA file.
        path: PathBuf,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// The client certificate and key do not make a usable client identity.
    #[error("client certificate {cert} with key {key}: {source}")]
    ClientCertificate {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason (e.g. the key does not match, or its type is unsupported).
        #[source]
        source: rustls::Error,
    },
    /// The crypto provider offers no safe protocol version (a build problem).
    #[error("TLS setup failed: {0}")]
    Provider(#[source] rustls::Error),
}
