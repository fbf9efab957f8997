//! The demo's site: a [`choria_site::Site`] with the demo's choices (flow, helper,
//! provisioners) and one YAML configuration per provisioner.
//!
//! Layout: as [`choria_site`] documents, plus (secrets are written 0600):
//!
//! ```text
//! keys/fleet-client.seed .jwt      a fleet operator (signs rpcutil#ping to prove nodes are in)
//! provisioner/provisioner-K.yaml   provisioner K's configuration
//! nodes/<identity>/                each simulated node's state
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use choria_config::files;
use choria_site::{BrokerOptions, ClientOptions, ProvisioningSigner};
use choria_tokens::ClientPermissions;

use crate::DemoError;
/// Which provisioning flow the site uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Nodes get an ed25519 server JWT chained to the organisation issuer (JWT broker).
    Jwt,
    /// Nodes get an X.509 certificate signed by the node CA (mTLS broker).
    Pki,
}

impl Flow {
    /// The flow's name as used on the command line.
    pub fn as_str(&self) -> &'static str {
        match self {
            Flow::Jwt => "jwt",
            Flow::Pki => "pki",
        }
    }
}

/// What kind of helper the provisioners run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelperMode {
    /// One process per node (upstream behaviour).
    Exec,
    /// One long-running process speaking JSON lines.
    Persistent,
}

/// The demo's choices about its site, inputs of [`Site::generate`].
#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// Which flow to set up.
    pub flow: Flow,
    /// How many provisioners to configure (more than one turns on leader election).
    pub provisioners: usize,
    /// The helper command line the provisioners run.
    pub helper: String,
    /// How the helper is run.
    pub helper_mode: HelperMode,
    /// Concurrent provisioning workers per provisioner.
    pub workers: usize,
}

/// Loopback ports the site's services listen on.
#[derive(Debug, Clone, Copy)]
pub struct SitePorts {
    /// Broker client port (TLS).
    pub client: u16,
    /// Broker enrolment listener (pki flow only; websocket with TLS).
    pub enrolment: u16,
    /// Broker Prometheus port.
    pub broker_stats: u16,
    /// First provisioner monitor port (provisioner K uses `provisioner_monitor + K`).
    pub provisioner_monitor: u16,
}

/// A generated site: paths and facts the demo needs to run it.
#[derive(Debug, Clone)]
pub struct Site {
    /// The site directory.
    pub dir: PathBuf,
    /// The flow it was generated for.
    pub flow: Flow,
    /// Its ports.
    pub ports: SitePorts,
    /// The broker configuration file.
    pub broker_config: PathBuf,
    /// One configuration file per provisioner.
    pub provisioner_configs: Vec<PathBuf>,
    /// The provisioners' Choria client configuration.
    pub provisioner_choria_config: PathBuf,
    /// The token every node boots with.
    pub provisioning_token: PathBuf,
    /// The TLS CA certificate.
    pub ca: PathBuf,
    /// The node CA certificate and key (pki flow).
    pub node_ca: (PathBuf, PathBuf),
    /// Hex public key of the organisation issuer.
    pub issuer_public_hex: String,
    /// The fleet client's token and seed files.
    pub fleet_client: (PathBuf, PathBuf),
    /// The fleet client's certificate and key (pki flow: the broker demands mTLS).
    pub fleet_client_certificate: Option<(PathBuf, PathBuf)>,
    /// The URL nodes use to reach the broker after provisioning.
    pub broker_url: String,
    /// The URL nodes use while provisioning.
    pub provisioning_url: String,
}

impl Site {
    /// Generates a new site into `dir` with services on `ports`.
    pub fn generate(
        dir: &Path,
        options: &SiteOptions,
        ports: SitePorts,
    ) -> Result<Site, DemoError> {
        let dir = dir.to_path_buf();
        let nodes = dir.join("nodes");
        std::fs::create_dir_all(&nodes).map_err(|source| DemoError::Io {
            what: format!("creating {}", nodes.display()),
            source,
        })?;
        let pki = options.flow == Flow::Pki;
        let mut site_options =
            choria_site::SiteOptions::new(&dir, "Demo", "demo.local", ports.client);
        site_options.broker = BrokerOptions {
            enrolment_port: pki.then_some(ports.enrolment),
            stats_port: Some(ports.broker_stats),
            jetstream: true,
            pubsub_for_mtls: pki,
            // Certificate-only nodes are servers: with an allow list set the broker gives
            // verified connections without a JWT the default server permissions.
            client_hosts: if pki {
                vec!["127.0.0.1".into()]
            } else {
                Vec::new()
            },
            ..BrokerOptions::new(ports.client)
        };
        // Operators sign provisioning tokens with a certificate's RSA key.
        site_options.provisioning.signer = ProvisioningSigner::Rsa;
        site_options.provisioning.protocol_v2 = options.flow == Flow::Jwt;
        site_options.provisioner.permissions = ClientPermissions {
            provisioner: true,
            fleet_management: true,
            ..Default::default()
        };
        site_options.provisioner.validity = Duration::from_secs(30 * 24 * 3600);
        // In mtls mode everyone on the client port shows a certificate: the operator's
        // clients get theirs from the site CA, nodes from the helper's node CA.
        site_options.provisioner.certificate = pki;
        site_options.node_ca = true;
        let site = choria_site::Site::generate(&site_options)?;

        // An operator allowed to manage the fleet: proves each node is back in `choria`.
        let fleet = site.add_client(&ClientOptions {
            name: "fleet-client".into(),
            callerid: "choria=demo".into(),
            permissions: ClientPermissions {
                fleet_management: true,
                events_viewer: true,
                ..Default::default()
            },
            validity: Duration::from_secs(7 * 24 * 3600),
            certificate: pki,
        })?;

        let mut provisioner_configs = Vec::new();
        for index in 1..=options.provisioners.max(1) {
            let path = dir.join(format!("provisioner/provisioner-{index}.yaml"));
            let text = provisioner_config_text(
                &site,
                options,
                index,
                ports.provisioner_monitor.saturating_add(index as u16 - 1),
            )?;
            files::write_secret(&path, text.as_bytes())?;
            provisioner_configs.push(path);
        }
        let node_ca = site
            .node_ca
            .map(|ca| (ca.certificate_path, ca.key_path))
            .ok_or_else(|| {
                DemoError::Internal("the site was generated without its node CA".into())
            })?;

        Ok(Site {
            flow: options.flow,
            ports,
            broker_config: site.broker_config_path,
            provisioner_configs,
            provisioner_choria_config: site.provisioner_choria_config_path,
            provisioning_token: site.provisioning_token_path,
            ca: site.ca_path,
            node_ca,
            issuer_public_hex: site.org_issuer.public_key_hex(),
            fleet_client: (fleet.token_path, fleet.seed_path),
            fleet_client_certificate: fleet.certificate,
            broker_url: site.broker_url,
            provisioning_url: site.provisioning_url,
            dir,
        })
    }

    /// The state directory of simulated node `index`.
    pub fn node_dir(&self, index: usize) -> PathBuf {
        self.dir.join("nodes").join(node_identity(index))
    }
}

/// The identity of simulated node `index` (zero-padded so listings sort).
pub fn node_identity(index: usize) -> String {
    format!("node{index:05}.demo.local")
}

fn provisioner_config_text(
    site: &choria_site::Site,
    options: &SiteOptions,
    index: usize,
    monitor_port: u16,
) -> Result<String, DemoError> {
    let features = match options.flow {
        Flow::Jwt => serde_json::json!({"jwt": true, "ed25519": true}),
        // Nodes make their own RSA key and CSR; the helper's CA signs it.
        Flow::Pki => serde_json::json!({"pki": true, "jwt": true}),
    };
    let config = serde_json::json!({
        "workers": options.workers,
        "interval": "1m",
        "logfile": site.dir.join(format!("provisioner/provisioner-{index}.log")),
        "loglevel": "info",
        "helper": options.helper,
        "helper_mode": match options.helper_mode { HelperMode::Exec => "exec", HelperMode::Persistent => "persistent" },
        "token": site.access_token,
        "site": "demo",
        "monitor_port": monitor_port,
        "broker_provisioning_password": site.provisioner_password,
        "jwt_verify_cert": site.provisioning_signer_public_path,
        "jwt_signing_key": site.provisioner.seed_path,
        "jwt_signing_token": site.provisioner.token_path,
        "leader_election": options.provisioners > 1,
        "features": features,
    });
    // JSON is YAML, and serde_json never emits anything YAML would read differently.
    serde_json::to_string_pretty(&config).map_err(|err| DemoError::Internal(err.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::SystemTime;

    fn options(flow: Flow) -> SiteOptions {
        SiteOptions {
            flow,
            provisioners: 2,
            helper: "/bin/true".into(),
            helper_mode: HelperMode::Persistent,
            workers: 8,
        }
    }

    const PORTS: SitePorts = SitePorts {
        client: 14222,
        enrolment: 14223,
        broker_stats: 14224,
        provisioner_monitor: 14230,
    };

    #[test]
    fn a_generated_site_has_verifiable_tokens_and_private_secrets() {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = Site::generate(dir.path(), &options(Flow::Jwt), PORTS).expect("site");
        let now = SystemTime::now();

        let token = std::fs::read_to_string(&site.provisioning_token).expect("token");
        let signer = choria_tokens::read_public_key_file(
            dir.path().join("keys/provisioning-signer-public.pem"),
        )
        .expect("signer");
        let claims = choria_tokens::parse_provisioning_token(&token, &signer, now)
            .expect("valid provisioning token");
        assert_eq!(claims.chu, "tls://127.0.0.1:14222");
        assert!(claims.v2, "jwt flow tokens ask for protocol v2");

        let issuer =
            choria_tokens::PublicKey::ed25519_from_hex(&site.issuer_public_hex).expect("issuer");
        let provisioner =
            std::fs::read_to_string(dir.path().join("keys/provisioner.jwt")).expect("jwt");
        let parsed = choria_tokens::parse_client_token(&provisioner, &issuer, now)
            .expect("provisioner token");
        assert!(choria_tokens::is_chained_issuer(&parsed.standard, true));

        for secret in [
            "keys/issuer.seed",
            "keys/provisioner.seed",
            "keys/fleet-client.seed",
            "ca/ca.key",
            "broker/broker.key",
            "provisioning.jwt",
            "broker/broker.conf",
            "provisioner/provisioner-1.yaml",
        ] {
            let mode = std::fs::metadata(dir.path().join(secret))
                .expect(secret)
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o600, "{secret}");
        }
        assert_eq!(site.provisioner_configs.len(), 2);
        let yaml: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&site.provisioner_configs[1]).expect("read"),
        )
        .expect("json");
        assert_eq!(yaml["leader_election"], true);
        assert_eq!(yaml["monitor_port"], 14231);
        assert_eq!(yaml["features"]["ed25519"], true);
        let broker =
            choria_config::Config::load(&site.broker_config).expect("broker config parses");
        assert_eq!(broker.get("plugin.choria.network.tls_mode"), Some("jwt"));
    }

    #[test]
    fn the_pki_flow_enrols_over_the_websocket_listener() {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = Site::generate(dir.path(), &options(Flow::Pki), PORTS).expect("site");
        assert_eq!(site.provisioning_url, "wss://127.0.0.1:14223");
        let broker =
            choria_config::Config::load(&site.broker_config).expect("broker config parses");
        assert_eq!(broker.get("plugin.choria.network.tls_mode"), Some("mtls"));
        assert_eq!(
            broker.get("plugin.choria.network.enrolment_port"),
            Some("14223")
        );
    }
}
