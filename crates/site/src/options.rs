//! What a caller chooses about a site: its names, its broker's listeners and mode, the
//! provisioning token, and who gets credentials. Everything else follows from these.

use std::path::{Path, PathBuf};
use std::time::Duration;

use choria_tokens::{ClientPermissions, Ed25519Seed};

/// How long the provisioning token and the provisioner's token live unless told otherwise.
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// Inputs of [`crate::Site::generate`].
#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// Where to write everything (created if missing).
    pub dir: PathBuf,
    /// Names the CAs (`Choria <label> CA`) and heads the generated config files.
    pub label: String,
    /// DNS domain of the site's hosts: the broker is `broker.<domain>`, a client
    /// `<name>.<domain>`.
    pub domain: String,
    /// The broker's listeners and mode.
    pub broker: BrokerOptions,
    /// The token every node boots with.
    pub provisioning: ProvisioningOptions,
    /// The provisioner: a chain issuer that signs server tokens for the organisation.
    pub provisioner: ClientOptions,
    /// Also make a node CA (`ca/node-ca.*`) for a helper to sign node CSRs with; an mTLS
    /// broker then trusts it beside the site CA.
    pub node_ca: bool,
}

impl SiteOptions {
    /// A JWT-mode site in `dir` whose broker listens on `client_port`, provisioning tokens
    /// signed by a new ed25519 key, and a provisioner with only the `provisioner` permission.
    pub fn new(dir: &Path, label: &str, domain: &str, client_port: u16) -> SiteOptions {
        SiteOptions {
            dir: dir.to_path_buf(),
            label: label.into(),
            domain: domain.into(),
            broker: BrokerOptions::new(client_port),
            provisioning: ProvisioningOptions {
                signer: ProvisioningSigner::Ed25519(Ed25519Seed::generate()),
                access_token: None,
                protocol_v2: true,
                validity: DEFAULT_VALIDITY,
            },
            provisioner: ClientOptions {
                name: "provisioner".into(),
                callerid: "choria=provisioner".into(),
                permissions: ClientPermissions {
                    provisioner: true,
                    ..Default::default()
                },
                validity: DEFAULT_VALIDITY,
                certificate: false,
            },
            node_ca: false,
        }
    }
}

/// The broker's listeners and mode (all on 127.0.0.1).
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// `plugin.choria.network.client_port` (TLS).
    pub client_port: u16,
    /// `Some` runs the broker in mTLS mode with the websocket enrolment listener on this
    /// port; provisioning nodes are then sent there (`wss://`), else to the client port.
    pub enrolment_port: Option<u16>,
    /// `plugin.choria.stats_port`: Prometheus metrics.
    pub stats_port: Option<u16>,
    /// JetStream with its store in `broker/jetstream` (managed streams, leader election).
    pub jetstream: bool,
    /// Sets `plugin.security.choria.ca`, which gives certificate-verified connections
    /// pub/sub permissions in issuer mode.
    pub pubsub_for_mtls: bool,
    /// `plugin.choria.network.client_hosts`: with a list, verified connections without a
    /// JWT from these hosts get the default server permissions.
    pub client_hosts: Vec<String>,
    /// `key = value` lines appended last; a later key wins, so these override.
    pub extra_config: String,
}

impl BrokerOptions {
    /// A JWT-mode broker on `client_port` with nothing else turned on.
    pub fn new(client_port: u16) -> BrokerOptions {
        BrokerOptions {
            client_port,
            enrolment_port: None,
            stats_port: None,
            jetstream: false,
            pubsub_for_mtls: false,
            client_hosts: Vec::new(),
            extra_config: String::new(),
        }
    }
}

/// The provisioning token (`provisioning.jwt`).
#[derive(Debug, Clone)]
pub struct ProvisioningOptions {
    /// The key that signs it.
    pub signer: ProvisioningSigner,
    /// `cht`, the access token nodes present to the provisioner; `None` draws a random one.
    pub access_token: Option<String>,
    /// `v2`: provisioned nodes speak protocol v2 (ed25519 server tokens).
    pub protocol_v2: bool,
    /// Its lifetime.
    pub validity: Duration,
}

/// The provisioning-token signer. Operators keep it apart from the organisation issuer, as
/// it lets machines in the door but is not the fleet's root of trust.
// One per site, built once: boxing the seed would only make callers write `Box::new`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum ProvisioningSigner {
    /// A new 2048-bit RSA key (`keys/provisioning-signer.pem`, `-public.pem`), as upstream
    /// operators sign with a certificate's key.
    Rsa,
    /// This ed25519 key (`keys/provisioning-signer.seed`, `.public` in hex); the caller keeps
    /// the seed to sign further tokens (tests do).
    Ed25519(Ed25519Seed),
}

/// A client with its own ed25519 key and a token from the organisation issuer.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// File stem under `keys/`; its certificate names `<name>.<domain>`.
    pub name: String,
    /// The token's `callerid`.
    pub callerid: String,
    /// The token's broker permissions.
    pub permissions: ClientPermissions,
    /// The token's lifetime.
    pub validity: Duration,
    /// Also issue a client certificate from the site CA (mTLS brokers demand one).
    pub certificate: bool,
}
