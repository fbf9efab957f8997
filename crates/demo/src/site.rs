//! Everything a real Choria site has, generated into one directory: keys, CA, broker
//! certificate, tokens, and the broker, provisioner and client configuration files.
//!
//! Layout of the site directory (secrets are written 0600):
//!
//! ```text
//! ca/ca.pem ca/ca.key              TLS CA (broker certificate; nodes trust it after provisioning)
//! ca/node-ca.pem ca/node-ca.key    node CA (pki flow: the helper signs node CSRs with it)
//! ca/bundle.pem                    CAs the broker trusts for client certificates
//! broker/broker.pem broker.key     broker TLS certificate
//! broker/broker.conf               Choria broker configuration
//! keys/issuer.seed issuer.public   organisation issuer (ed25519)
//! keys/provisioning-signer.pem     provisioning-token signer (RSA) and its public key
//! keys/provisioner.seed .jwt       provisioner chain-issuer credentials
//! keys/fleet-client.seed .jwt      a fleet operator (signs rpcutil#ping to prove nodes are in)
//! provisioning.jwt                 the token every node boots with
//! provisioner/choria.conf          Choria client config of the provisioners
//! provisioner/provisioner-K.yaml   provisioner K's configuration
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use choria_config::files;
use choria_tokens::{
    add_org_issuer_data, sign_token, ClientIdClaims, ClientPermissions, Ed25519Seed, NewClient,
    NewProvisioning, ProvisioningClaims, SigningKey,
};

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

/// Inputs of [`Site::generate`].
#[derive(Debug, Clone)]
pub struct SiteOptions {
    /// Where to write everything.
    pub dir: PathBuf,
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

/// The provisioning access token (`cht`) of demo sites.
const ACCESS_TOKEN_LEN: usize = 24;

impl Site {
    /// Generates a new site into `options.dir` with services on `ports`.
    pub fn generate(options: &SiteOptions, ports: SitePorts) -> Result<Site, DemoError> {
        let dir = options.dir.clone();
        for sub in ["ca", "broker", "keys", "provisioner", "nodes"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|source| DemoError::Io {
                what: format!("creating {}", dir.join(sub).display()),
                source,
            })?;
        }
        let now = SystemTime::now();
        let broker_url = format!("tls://127.0.0.1:{}", ports.client);
        let provisioning_url = match options.flow {
            Flow::Jwt => broker_url.clone(),
            Flow::Pki => format!("wss://127.0.0.1:{}", ports.enrolment),
        };

        // TLS: one CA for the broker certificate, one for node certificates (pki flow).
        let ca = choria_pki::CertificateAuthority::generate("Choria Demo CA")?;
        let node_ca = choria_pki::CertificateAuthority::generate("Choria Demo Node CA")?;
        let broker_cert =
            ca.issue_server_certificate("broker.demo.local", &["localhost", "127.0.0.1"])?;
        write_public(&dir.join("ca/ca.pem"), ca.certificate_pem())?;
        write_secret(&dir.join("ca/ca.key"), ca.private_key_pem())?;
        write_public(&dir.join("ca/node-ca.pem"), node_ca.certificate_pem())?;
        write_secret(&dir.join("ca/node-ca.key"), node_ca.private_key_pem())?;
        write_public(
            &dir.join("ca/bundle.pem"),
            &format!("{}{}", ca.certificate_pem(), node_ca.certificate_pem()),
        )?;
        write_public(&dir.join("broker/broker.pem"), &broker_cert.certificate_pem)?;
        write_secret(&dir.join("broker/broker.key"), &broker_cert.private_key_pem)?;
        // In mtls mode everyone on the client port shows a certificate: the operator's
        // clients get theirs from the site CA, nodes from the helper's node CA.
        let client_certificate = |name: &str| -> Result<(PathBuf, PathBuf), DemoError> {
            let issued = ca.issue_client_certificate(&format!("{name}.demo.local"))?;
            let paths = (
                dir.join(format!("keys/{name}.pem")),
                dir.join(format!("keys/{name}.key")),
            );
            write_public(&paths.0, &issued.certificate_pem)?;
            write_secret(&paths.1, &issued.private_key_pem)?;
            Ok(paths)
        };
        let (fleet_client_certificate, provisioner_certificate) = match options.flow {
            Flow::Jwt => (None, None),
            Flow::Pki => (
                Some(client_certificate("fleet-client")?),
                Some(client_certificate("provisioner")?),
            ),
        };

        // The organisation issuer: the root of trust for every JWT in the fleet.
        let issuer = Ed25519Seed::generate();
        write_secret(&dir.join("keys/issuer.seed"), &issuer.to_hex())?;
        write_public(&dir.join("keys/issuer.public"), &issuer.public_key_hex())?;

        // The provisioning-token signer is separate from the issuer, as operators keep
        // the key that lets machines in the door away from the fleet's root of trust.
        let signer_pem = choria_pki::generate_rsa_key_pem(2048)?;
        write_secret(&dir.join("keys/provisioning-signer.pem"), &signer_pem)?;
        let signer = SigningKey::from_pem_or_seed_bytes(signer_pem.as_bytes())?;
        write_public(
            &dir.join("keys/provisioning-signer-public.pem"),
            &choria_pki::rsa_public_key_pem(&signer_pem)?,
        )?;

        let access_token = random_secret(ACCESS_TOKEN_LEN);
        let provisioner_password = random_secret(24);
        let system_password = random_secret(24);

        let provisioning = ProvisioningClaims::new(
            NewProvisioning {
                token: access_token.clone(),
                secure: true,
                urls: vec![provisioning_url.clone()],
                by_default: true,
                protocol_v2: options.flow == Flow::Jwt,
                validity: Duration::from_secs(7 * 24 * 3600),
                ..Default::default()
            },
            now,
        )?;
        let provisioning_token = dir.join("provisioning.jwt");
        write_secret(&provisioning_token, &sign_token(&provisioning, &signer)?)?;

        // The provisioner is a chain issuer: it signs server JWTs on the issuer's behalf.
        let provisioner_seed = Ed25519Seed::generate();
        let mut provisioner_claims = ClientIdClaims::new(
            NewClient {
                callerid: "choria=provisioner".into(),
                public_key: Some(provisioner_seed.public_key_bytes()),
                validity: Duration::from_secs(30 * 24 * 3600),
                permissions: Some(ClientPermissions {
                    provisioner: true,
                    fleet_management: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            now,
        )?;
        add_org_issuer_data(&mut provisioner_claims, &issuer)?;
        let provisioner_jwt =
            sign_token(&provisioner_claims, &SigningKey::Ed25519(issuer.clone()))?;
        write_secret(
            &dir.join("keys/provisioner.seed"),
            &provisioner_seed.to_hex(),
        )?;
        write_secret(&dir.join("keys/provisioner.jwt"), &provisioner_jwt)?;

        // An operator allowed to manage the fleet: proves each node is back in `choria`.
        let fleet_seed = Ed25519Seed::generate();
        let fleet_claims = ClientIdClaims::new(
            NewClient {
                callerid: "choria=demo".into(),
                public_key: Some(fleet_seed.public_key_bytes()),
                validity: Duration::from_secs(7 * 24 * 3600),
                permissions: Some(ClientPermissions {
                    fleet_management: true,
                    events_viewer: true,
                    ..Default::default()
                }),
                ..Default::default()
            },
            now,
        )?;
        let fleet_token = dir.join("keys/fleet-client.jwt");
        let fleet_seed_file = dir.join("keys/fleet-client.seed");
        write_secret(
            &fleet_token,
            &sign_token(&fleet_claims, &SigningKey::Ed25519(issuer.clone()))?,
        )?;
        write_secret(&fleet_seed_file, &fleet_seed.to_hex())?;

        let broker_config = dir.join("broker/broker.conf");
        write_secret(
            &broker_config,
            &broker_config_text(
                &dir,
                options.flow,
                ports,
                &issuer.public_key_hex(),
                &provisioner_password,
                &system_password,
            ),
        )?;

        let provisioner_choria_config = dir.join("provisioner/choria.conf");
        write_secret(
            &provisioner_choria_config,
            &provisioner_choria_text(&dir, &broker_url, provisioner_certificate.as_ref()),
        )?;
        let mut provisioner_configs = Vec::new();
        for index in 1..=options.provisioners.max(1) {
            let path = dir.join(format!("provisioner/provisioner-{index}.yaml"));
            let text = provisioner_config_text(
                &dir,
                options,
                index,
                ports.provisioner_monitor.saturating_add(index as u16 - 1),
                &access_token,
                &provisioner_password,
            )?;
            write_secret(&path, &text)?;
            provisioner_configs.push(path);
        }

        Ok(Site {
            flow: options.flow,
            ports,
            broker_config,
            provisioner_configs,
            provisioner_choria_config,
            provisioning_token,
            ca: dir.join("ca/ca.pem"),
            node_ca: (dir.join("ca/node-ca.pem"), dir.join("ca/node-ca.key")),
            issuer_public_hex: issuer.public_key_hex(),
            fleet_client: (fleet_token, fleet_seed_file),
            fleet_client_certificate,
            broker_url,
            provisioning_url,
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

fn broker_config_text(
    dir: &Path,
    flow: Flow,
    ports: SitePorts,
    issuer_public_hex: &str,
    provisioner_password: &str,
    system_password: &str,
) -> String {
    let p = |rel: &str| dir.join(rel).display().to_string();
    let mut lines = vec![
        "# Choria broker for the demo site (generated).".to_string(),
        "identity = broker.demo.local".into(),
        "plugin.choria.broker_network = true".into(),
        "plugin.choria.network.listen_address = 127.0.0.1".into(),
        format!("plugin.choria.network.client_port = {}", ports.client),
        format!("plugin.choria.stats_port = {}", ports.broker_stats),
        format!(
            "plugin.security.file.certificate = {}",
            p("broker/broker.pem")
        ),
        format!("plugin.security.file.key = {}", p("broker/broker.key")),
        "plugin.security.issuer.names = choria".into(),
        format!("plugin.security.issuer.choria.public = {issuer_public_hex}"),
        format!(
            "plugin.choria.network.provisioning.signer_cert = {}",
            p("keys/provisioning-signer-public.pem")
        ),
        format!("plugin.choria.network.provisioning.client_password = {provisioner_password}"),
        "plugin.choria.network.system.user = system".into(),
        format!("plugin.choria.network.system.password = {system_password}"),
        format!(
            "plugin.choria.network.stream.store = {}",
            p("broker/jetstream")
        ),
    ];
    match flow {
        Flow::Jwt => {
            lines.push("plugin.choria.network.tls_mode = jwt".into());
            lines.push(format!("plugin.security.file.ca = {}", p("ca/ca.pem")));
        }
        Flow::Pki => {
            lines.push("plugin.choria.network.tls_mode = mtls".into());
            lines.push(format!(
                "plugin.choria.network.enrolment_port = {}",
                ports.enrolment
            ));
            lines.push(format!("plugin.security.file.ca = {}", p("ca/bundle.pem")));
            lines.push(format!(
                "plugin.security.choria.ca = {}",
                p("ca/bundle.pem")
            ));
            // Certificate-only nodes are servers: with an allow list set the broker gives
            // verified connections without a JWT the default server permissions.
            lines.push("plugin.choria.network.client_hosts = 127.0.0.1".into());
        }
    }
    lines.push(String::new());
    lines.join("\n")
}

fn provisioner_choria_text(
    dir: &Path,
    broker_url: &str,
    certificate: Option<&(PathBuf, PathBuf)>,
) -> String {
    let p = |rel: &str| dir.join(rel).display().to_string();
    let mut lines = vec![
        "# Choria client configuration of the demo provisioners (generated).".to_string(),
        "identity = provisioner.demo.local".into(),
        format!("plugin.choria.middleware_hosts = {broker_url}"),
        "plugin.security.provider = choria".into(),
        format!(
            "plugin.security.choria.token_file = {}",
            p("keys/provisioner.jwt")
        ),
        format!(
            "plugin.security.choria.seed_file = {}",
            p("keys/provisioner.seed")
        ),
        format!("plugin.security.choria.ca = {}", p("ca/ca.pem")),
    ];
    if let Some((cert, key)) = certificate {
        lines.push(format!(
            "plugin.security.choria.certificate = {}",
            cert.display()
        ));
        lines.push(format!("plugin.security.choria.key = {}", key.display()));
    }
    lines.push(String::new());
    lines.join("\n")
}

fn provisioner_config_text(
    dir: &Path,
    options: &SiteOptions,
    index: usize,
    monitor_port: u16,
    access_token: &str,
    provisioner_password: &str,
) -> Result<String, DemoError> {
    let p = |rel: &str| dir.join(rel).display().to_string();
    let features = match options.flow {
        Flow::Jwt => serde_json::json!({"jwt": true, "ed25519": true}),
        // Nodes make their own RSA key and CSR; the helper's CA signs it.
        Flow::Pki => serde_json::json!({"pki": true, "jwt": true}),
    };
    let config = serde_json::json!({
        "workers": options.workers,
        "interval": "1m",
        "logfile": p(&format!("provisioner/provisioner-{index}.log")),
        "loglevel": "info",
        "helper": options.helper,
        "helper_mode": match options.helper_mode { HelperMode::Exec => "exec", HelperMode::Persistent => "persistent" },
        "token": access_token,
        "site": "demo",
        "monitor_port": monitor_port,
        "broker_provisioning_password": provisioner_password,
        "jwt_verify_cert": p("keys/provisioning-signer-public.pem"),
        "jwt_signing_key": p("keys/provisioner.seed"),
        "jwt_signing_token": p("keys/provisioner.jwt"),
        "leader_election": options.provisioners > 1,
        "features": features,
    });
    // JSON is YAML, and serde_json never emits anything YAML would read differently.
    serde_json::to_string_pretty(&config).map_err(|err| DemoError::Internal(err.to_string()))
}

fn write_secret(path: &Path, text: &str) -> Result<(), DemoError> {
    files::write_secret(path, text.as_bytes()).map_err(DemoError::from)
}

fn write_public(path: &Path, text: &str) -> Result<(), DemoError> {
    files::write_atomic(path, text.as_bytes(), 0o644).map_err(DemoError::from)
}

fn random_secret(len: usize) -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::thread_rng(), len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn options(dir: &Path, flow: Flow) -> SiteOptions {
        SiteOptions {
            dir: dir.to_path_buf(),
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
        let site = Site::generate(&options(dir.path(), Flow::Jwt), PORTS).expect("site");
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
        let site = Site::generate(&options(dir.path(), Flow::Pki), PORTS).expect("site");
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
