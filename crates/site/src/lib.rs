//! A whole Choria site generated into one directory: CAs, broker and client certificates,
//! the organisation issuer, the provisioning signer and token, and the sites' config files.
//!
//! The demo (`choria demo`) and the test kit both build their sites with [`Site::generate`];
//! each adds only its own choices (the demo its provisioners' YAML, the test kit a broker
//! running in-process). Nothing here starts a process or opens a socket.
//!
//! # Layout
//!
//! Secrets (keys, seeds, tokens, configs holding passwords) are written 0600, every file
//! atomically through [`choria_config::files`]:
//!
//! ```text
//! ca/ca.pem ca/ca.key                  site CA (broker certificate, client certificates)
//! ca/node-ca.pem ca/node-ca.key        node CA, when asked for (a helper signs node CSRs)
//! ca/bundle.pem                        both CAs: what an mTLS broker trusts with a node CA
//! broker/broker.pem broker/broker.key  broker TLS certificate (localhost, 127.0.0.1)
//! broker/broker.conf                   Choria broker configuration
//! keys/issuer.seed keys/issuer.public  organisation issuer (ed25519)
//! keys/provisioning-signer.*           provisioning-token signer (RSA PEM or ed25519 seed)
//! keys/<client>.seed .jwt [.pem .key]  the provisioner and other clients
//! provisioning.jwt                     the token every node boots with
//! provisioner/choria.conf              Choria client configuration of the provisioner
//! ```
//!
//! # Example
//!
//! ```
//! # fn main() -> Result<(), choria_site::SiteError> {
//! let dir = tempfile::tempdir().expect("temp dir");
//! let options = choria_site::SiteOptions::new(dir.path(), "Example", "example.net", 4222);
//! let site = choria_site::Site::generate(&options)?;
//! assert!(site.broker_config_path.is_file());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod configs;
mod generate;
mod options;

pub use generate::{Client, NodeCa, Site};
pub use options::{
    BrokerOptions, ClientOptions, ProvisioningOptions, ProvisioningSigner, SiteOptions,
};

/// The broker user of the system account.
pub const SYSTEM_USER: &str = "system";
/// The broker user provisioners log in as (with the site's provisioning password).
pub const PROVISIONER_USER: &str = "provisioner";

/// Why a site could not be generated.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SiteError {
    /// A directory of the site could not be created.
    #[error("could not create {path}: {source}")]
    CreateDir {
        /// The directory.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a file failed.
    #[error(transparent)]
    File(#[from] choria_config::files::FileError),
    /// Generating a key or certificate failed.
    #[error(transparent)]
    Pki(#[from] choria_pki::PkiError),
    /// Making or signing a token failed.
    #[error(transparent)]
    Token(#[from] choria_tokens::TokenError),
}
