//! [`Site::generate`]: writes a site's trust material and config files and returns every
//! path and secret it made, so callers never rebuild a path by hand.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use choria_config::files;
use choria_pki::CertificateAuthority;
use choria_tokens::{
    add_org_issuer_data, sign_token, ClientIdClaims, Ed25519Seed, NewClient, NewProvisioning,
    ProvisioningClaims, SigningKey,
};
use secrecy::ExposeSecret;

use crate::configs;
use crate::options::{ClientOptions, ProvisioningSigner, SiteOptions};
use crate::SiteError;

/// Length of generated passwords and access tokens (alphanumeric: about 143 bits).
const SECRET_LEN: usize = 24;

/// A generated site. Holds secrets: its `Debug` leaves them out.
#[derive(educe::Educe)]
#[educe(Debug)]
pub struct Site {
    /// The site directory.
    pub dir: PathBuf,
    /// DNS domain of the site's hosts.
    pub domain: String,
    /// Broker client URL (`tls://127.0.0.1:<port>`): where provisioned nodes and clients go.
    pub broker_url: String,
    /// Where nodes go while provisioning: the enrolment listener (`wss://`) in mTLS mode,
    /// else [`Site::broker_url`].
    pub provisioning_url: String,
    /// The site CA: signs the broker's and clients' certificates.
    pub ca: CertificateAuthority,
    /// Its certificate (PEM): what every client trusts.
    pub ca_path: PathBuf,
    /// The node CA, when asked for.
    pub node_ca: Option<NodeCa>,
    /// Broker certificate (PEM, names `localhost` and `127.0.0.1`).
    pub broker_cert_path: PathBuf,
    /// Broker private key (PEM, 0600).
    pub broker_key_path: PathBuf,
    /// The broker's Choria configuration (0600: it holds passwords).
    pub broker_config_path: PathBuf,
    /// The organisation issuer: verifies every server and client token, directly or
    /// through a chain issuer (`plugin.security.issuer.choria.public`).
    pub org_issuer: Ed25519Seed,
    /// File holding its seed (hex, 0600).
    pub org_issuer_seed_path: PathBuf,
    /// The provisioning-token signer.
    pub provisioning_signer: SigningKey,
    /// Its public key: the broker's `provisioning.signer_cert`, the provisioner's
    /// `jwt_verify_cert`.
    pub provisioning_signer_public_path: PathBuf,
    /// `cht` of the provisioning token.
    #[educe(Debug(ignore))]
    pub access_token: String,
    /// The provisioning token every node boots with.
    #[educe(Debug(ignore))]
    pub provisioning_token: String,
    /// File holding it (0600).
    pub provisioning_token_path: PathBuf,
    /// The provisioner, a chain issuer (`iss` = `I-<org public key>`).
    pub provisioner: Client,
    /// The provisioner's Choria client configuration (`provisioner/choria.conf`).
    pub provisioner_choria_config_path: PathBuf,
    /// Password of the [`crate::PROVISIONER_USER`] broker user.
    #[educe(Debug(ignore))]
    pub provisioner_password: String,
    /// Password of the [`crate::SYSTEM_USER`] broker user.
    #[educe(Debug(ignore))]
    pub system_password: String,
}

/// The CA a helper signs node certificates with (pki flow).
#[derive(Debug)]
pub struct NodeCa {
    /// The CA itself.
    pub ca: CertificateAuthority,
    /// Its certificate (PEM).
    pub certificate_path: PathBuf,
    /// Its private key (PEM, 0600).
    pub key_path: PathBuf,
}

/// A client's credentials. Holds secrets: its `Debug` leaves them out.
#[derive(Clone, educe::Educe)]
#[educe(Debug)]
pub struct Client {
    /// Its file stem under `keys/`.
    pub name: String,
    /// Its ed25519 key; the token names the public half.
    pub seed: Ed25519Seed,
    /// File holding the seed (hex, 0600).
    pub seed_path: PathBuf,
    /// Its client token.
    #[educe(Debug(ignore))]
    pub token: String,
    /// File holding the token (0600).
    pub token_path: PathBuf,
    /// The token's claims (a chain issuer needs them to sign with `sign_chained_token`).
    pub claims: ClientIdClaims,
    /// Its certificate and key (PEM), when asked for.
    pub certificate: Option<(PathBuf, PathBuf)>,
}

impl Site {
    /// Generates a new site into `options.dir`, replacing any files of an earlier one.
    pub fn generate(options: &SiteOptions) -> Result<Site, SiteError> {
        let dir = options.dir.clone();
        for sub in ["ca", "broker", "keys", "provisioner"] {
            let path = dir.join(sub);
            std::fs::create_dir_all(&path)
                .map_err(|source| SiteError::CreateDir { path, source })?;
        }
        let now = SystemTime::now();
        let broker = &options.broker;
        let broker_url = format!("tls://127.0.0.1:{}", broker.client_port);
        let provisioning_url = match broker.enrolment_port {
            Some(port) => format!("wss://127.0.0.1:{port}"),
            None => broker_url.clone(),
        };

        let ca = CertificateAuthority::generate(&format!("Choria {} CA", options.label))?;
        let ca_path = dir.join("ca/ca.pem");
        write_public(&ca_path, ca.certificate_pem())?;
        write_secret(&dir.join("ca/ca.key"), ca.private_key_pem())?;
        let node_ca = if options.node_ca {
            Some(NodeCa::generate(&dir, &options.label)?)
        } else {
            None
        };
        let broker_trust = match &node_ca {
            // Node certificates only reach an mTLS broker; a JWT broker trusts the site CA.
            Some(node_ca) => {
                let bundle = dir.join("ca/bundle.pem");
                let pems = format!("{}{}", ca.certificate_pem(), node_ca.ca.certificate_pem());
                write_public(&bundle, &pems)?;
                match broker.enrolment_port {
                    Some(_) => bundle,
                    None => ca_path.clone(),
                }
            }
            None => ca_path.clone(),
        };
        let broker_cert = ca.issue_server_certificate(
            &format!("broker.{}", options.domain),
            &["localhost", "127.0.0.1"],
        )?;
        let broker_cert_path = dir.join("broker/broker.pem");
        let broker_key_path = dir.join("broker/broker.key");
        write_public(&broker_cert_path, &broker_cert.certificate_pem)?;
        write_secret(
            &broker_key_path,
            broker_cert.private_key_pem.expose_secret(),
        )?;

        let org_issuer = Ed25519Seed::generate();
        let org_issuer_seed_path = dir.join("keys/issuer.seed");
        write_secret(&org_issuer_seed_path, &org_issuer.to_hex())?;
        write_public(
            &dir.join("keys/issuer.public"),
            &org_issuer.public_key_hex(),
        )?;

        let (provisioning_signer, provisioning_signer_public_path) =
            write_signer(&dir, &options.provisioning.signer)?;
        let access_token = match &options.provisioning.access_token {
            Some(token) => token.clone(),
            None => random_secret(),
        };
        let provisioning = ProvisioningClaims::new(
            NewProvisioning {
                token: access_token.clone(),
                secure: true,
                urls: vec![provisioning_url.clone()],
                by_default: true,
                protocol_v2: options.provisioning.protocol_v2,
                validity: options.provisioning.validity,
                ..Default::default()
            },
            now,
        )?;
        let provisioning_token = sign_token(&provisioning, &provisioning_signer)?;
        let provisioning_token_path = dir.join("provisioning.jwt");
        write_secret(&provisioning_token_path, &provisioning_token)?;

        let site = Site {
            provisioner: Client::issue(
                &dir,
                &ca,
                &options.domain,
                &org_issuer,
                &options.provisioner,
                true,
            )?,
            provisioner_choria_config_path: dir.join("provisioner/choria.conf"),
            provisioner_password: random_secret(),
            system_password: random_secret(),
            broker_config_path: dir.join("broker/broker.conf"),
            dir,
            domain: options.domain.clone(),
            broker_url,
            provisioning_url,
            ca,
            ca_path,
            node_ca,
            broker_cert_path,
            broker_key_path,
            org_issuer,
            org_issuer_seed_path,
            provisioning_signer,
            provisioning_signer_public_path,
            access_token,
            provisioning_token,
            provisioning_token_path,
        };
        write_secret(
            &site.broker_config_path,
            &configs::broker(&site, options, &broker_trust),
        )?;
        let provisioner = configs::client(&site, &site.provisioner, &options.label);
        write_secret(&site.provisioner_choria_config_path, &provisioner)?;
        Ok(site)
    }

    /// A further client (a fleet operator, say) with a token signed by the organisation
    /// issuer, written to `keys/<name>.seed` / `.jwt` (and `.pem` / `.key`).
    pub fn add_client(&self, options: &ClientOptions) -> Result<Client, SiteError> {
        Client::issue(
            &self.dir,
            &self.ca,
            &self.domain,
            &self.org_issuer,
            options,
            false,
        )
    }
}

impl NodeCa {
    fn generate(dir: &Path, label: &str) -> Result<NodeCa, SiteError> {
        let ca = CertificateAuthority::generate(&format!("Choria {label} Node CA"))?;
        let certificate_path = dir.join("ca/node-ca.pem");
        let key_path = dir.join("ca/node-ca.key");
        write_public(&certificate_path, ca.certificate_pem())?;
        write_secret(&key_path, ca.private_key_pem())?;
        Ok(NodeCa {
            ca,
            certificate_path,
            key_path,
        })
    }
}

impl Client {
    /// Makes and writes a client's key, token (a chain issuer when `chain`) and certificate.
    fn issue(
        dir: &Path,
        ca: &CertificateAuthority,
        domain: &str,
        org_issuer: &Ed25519Seed,
        options: &ClientOptions,
        chain: bool,
    ) -> Result<Client, SiteError> {
        let name = &options.name;
        let seed = Ed25519Seed::generate();
        let mut claims = ClientIdClaims::new(
            NewClient {
                callerid: options.callerid.clone(),
                public_key: Some(seed.public_key_bytes()),
                validity: options.validity,
                permissions: Some(options.permissions),
                ..Default::default()
            },
            SystemTime::now(),
        )?;
        if chain {
            add_org_issuer_data(&mut claims, org_issuer)?;
        }
        let token = sign_token(&claims, &SigningKey::Ed25519(org_issuer.clone()))?;
        let seed_path = dir.join(format!("keys/{name}.seed"));
        let token_path = dir.join(format!("keys/{name}.jwt"));
        write_secret(&seed_path, &seed.to_hex())?;
        write_secret(&token_path, &token)?;
        let certificate = if options.certificate {
            let issued = ca.issue_client_certificate(&format!("{name}.{domain}"))?;
            let paths = (
                dir.join(format!("keys/{name}.pem")),
                dir.join(format!("keys/{name}.key")),
            );
            write_public(&paths.0, &issued.certificate_pem)?;
            write_secret(&paths.1, issued.private_key_pem.expose_secret())?;
            Some(paths)
        } else {
            None
        };
        Ok(Client {
            name: name.clone(),
            seed,
            seed_path,
            token,
            token_path,
            claims,
            certificate,
        })
    }
}

/// Writes the provisioning signer's private and public key files.
fn write_signer(
    dir: &Path,
    signer: &ProvisioningSigner,
) -> Result<(SigningKey, PathBuf), SiteError> {
    match signer {
        ProvisioningSigner::Rsa => {
            let pem = choria_pki::generate_rsa_key_pem(2048)?;
            write_secret(&dir.join("keys/provisioning-signer.pem"), &pem)?;
            let public = dir.join("keys/provisioning-signer-public.pem");
            write_public(&public, &choria_pki::rsa_public_key_pem(&pem)?)?;
            Ok((SigningKey::from_pem_or_seed_bytes(pem.as_bytes())?, public))
        }
        ProvisioningSigner::Ed25519(seed) => {
            write_secret(&dir.join("keys/provisioning-signer.seed"), &seed.to_hex())?;
            let public = dir.join("keys/provisioning-signer.public");
            write_public(&public, &seed.public_key_hex())?;
            Ok((SigningKey::Ed25519(seed.clone()), public))
        }
    }
}

fn write_secret(path: &Path, text: &str) -> Result<(), SiteError> {
    Ok(files::write_secret(path, text.as_bytes())?)
}

fn write_public(path: &Path, text: &str) -> Result<(), SiteError> {
    Ok(files::write_atomic(path, text.as_bytes(), 0o644)?)
}

fn random_secret() -> String {
    use rand::distributions::{Alphanumeric, DistString};
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, SECRET_LEN)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use choria_config::Config;
    use choria_tokens::{ClientPermissions, PublicKey};

    use super::*;
    use crate::options::BrokerOptions;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    }

    fn jwt_site(dir: &Path) -> Site {
        let mut options = SiteOptions::new(dir, "Unit", "unit.test", 14222);
        options.broker.jetstream = true;
        options.broker.stats_port = Some(14224);
        options.broker.extra_config = "plugin.choria.network.client_port = 14299\n".into();
        Site::generate(&options).expect("site")
    }

    #[test]
    fn secrets_are_private_and_every_file_is_written() {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = jwt_site(dir.path());
        let secrets = [
            "ca/ca.key",
            "broker/broker.key",
            "broker/broker.conf",
            "keys/issuer.seed",
            "keys/provisioning-signer.seed",
            "keys/provisioner.seed",
            "keys/provisioner.jwt",
            "provisioning.jwt",
            "provisioner/choria.conf",
        ];
        for secret in secrets {
            assert_eq!(mode(&dir.path().join(secret)), 0o600, "{secret}");
        }
        for public in [
            "ca/ca.pem",
            "broker/broker.pem",
            "keys/issuer.public",
            "keys/provisioning-signer.public",
        ] {
            assert_eq!(mode(&dir.path().join(public)), 0o644, "{public}");
        }
        assert_eq!(site.ca_path, dir.path().join("ca/ca.pem"));
        assert!(site.node_ca.is_none());
        assert!(!dir.path().join("ca/node-ca.pem").exists());
        assert!(site.provisioner.certificate.is_none());
        assert_eq!(site.access_token.len(), SECRET_LEN);
        assert_ne!(site.provisioner_password, site.system_password);
    }

    #[test]
    fn tokens_verify_with_the_generated_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = jwt_site(dir.path());
        let now = SystemTime::now();

        let signer = choria_tokens::read_public_key_file(&site.provisioning_signer_public_path)
            .expect("signer public key");
        let token = std::fs::read_to_string(&site.provisioning_token_path).expect("token");
        assert_eq!(token, site.provisioning_token);
        let claims = choria_tokens::parse_provisioning_token(&token, &signer, now)
            .expect("provisioning token verifies");
        assert_eq!(claims.chu, "tls://127.0.0.1:14222");
        assert_eq!(claims.cht, site.access_token);
        assert!(claims.v2);

        let issuer = PublicKey::ed25519_from_hex(
            &std::fs::read_to_string(dir.path().join("keys/issuer.public")).expect("issuer"),
        )
        .expect("issuer key");
        let provisioner = std::fs::read_to_string(&site.provisioner.token_path).expect("jwt");
        let parsed = choria_tokens::parse_client_token(&provisioner, &issuer, now)
            .expect("provisioner token verifies");
        assert_eq!(parsed.callerid, "choria=provisioner");
        assert!(choria_tokens::is_chained_issuer(&parsed.standard, true));
        let seed = std::fs::read_to_string(&site.provisioner.seed_path).expect("seed");
        assert_eq!(
            Ed25519Seed::from_hex(&seed).expect("seed").public_key_hex(),
            parsed.standard.public_key
        );

        let operator = site
            .add_client(&ClientOptions {
                name: "operator".into(),
                callerid: "choria=operator".into(),
                permissions: ClientPermissions {
                    fleet_management: true,
                    ..Default::default()
                },
                validity: Duration::from_secs(3600),
                certificate: true,
            })
            .expect("client");
        let parsed = choria_tokens::parse_client_token(&operator.token, &issuer, now)
            .expect("client token verifies");
        assert!(!choria_tokens::is_chained_issuer(&parsed.standard, false));
        assert_eq!(mode(&operator.seed_path), 0o600);
        let (cert, key) = operator.certificate.expect("certificate");
        assert_eq!(mode(&key), 0o600);
        let pem = std::fs::read_to_string(cert).expect("cert");
        choria_pki::verify_certificate(&pem, site.ca.certificate_pem(), now)
            .expect("the site CA issued the client certificate");
    }

    #[test]
    fn configs_parse_and_extra_lines_override() {
        let dir = tempfile::tempdir().expect("temp dir");
        let site = jwt_site(dir.path());
        let broker = Config::load(&site.broker_config_path).expect("broker config parses");
        assert_eq!(broker.get("identity"), Some("broker.unit.test"));
        assert_eq!(broker.get("plugin.choria.network.tls_mode"), Some("jwt"));
        assert_eq!(
            broker.get("plugin.choria.network.client_port"),
            Some("14299")
        );
        assert_eq!(broker.get("plugin.choria.stats_port"), Some("14224"));
        assert_eq!(
            broker.get("plugin.security.file.ca"),
            Some(site.ca_path.display().to_string().as_str())
        );
        assert_eq!(
            broker.get("plugin.security.issuer.choria.public"),
            Some(site.org_issuer.public_key_hex().as_str())
        );
        assert_eq!(
            broker.get("plugin.choria.network.provisioning.client_password"),
            Some(site.provisioner_password.as_str())
        );
        assert!(broker.get("plugin.choria.network.stream.store").is_some());
        assert_eq!(broker.get("plugin.security.choria.ca"), None);
        assert_eq!(broker.get("plugin.choria.network.client_hosts"), None);

        let client =
            Config::load(&site.provisioner_choria_config_path).expect("client config parses");
        assert_eq!(client.get("identity"), Some("provisioner.unit.test"));
        assert_eq!(
            client.get("plugin.choria.middleware_hosts"),
            Some(site.broker_url.as_str())
        );
        assert_eq!(
            client.get("plugin.security.choria.token_file"),
            Some(site.provisioner.token_path.display().to_string().as_str())
        );
        assert_eq!(client.get("plugin.security.choria.certificate"), None);
    }

    #[test]
    fn an_mtls_site_with_a_node_ca_and_an_rsa_signer() {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut options = SiteOptions::new(dir.path(), "Unit", "unit.test", 14222);
        options.broker = BrokerOptions {
            enrolment_port: Some(14223),
            pubsub_for_mtls: true,
            client_hosts: vec!["127.0.0.1".into(), "::1".into()],
            ..BrokerOptions::new(14222)
        };
        options.provisioning.signer = ProvisioningSigner::Rsa;
        options.provisioning.protocol_v2 = false;
        options.provisioner.certificate = true;
        options.node_ca = true;
        let site = Site::generate(&options).expect("site");
        let now = SystemTime::now();

        assert_eq!(site.provisioning_url, "wss://127.0.0.1:14223");
        let signer = choria_tokens::read_public_key_file(&site.provisioning_signer_public_path)
            .expect("RSA public key");
        let claims =
            choria_tokens::parse_provisioning_token(&site.provisioning_token, &signer, now)
                .expect("provisioning token verifies");
        assert_eq!(claims.chu, "wss://127.0.0.1:14223");
        assert!(!claims.v2);
        assert_eq!(
            mode(&dir.path().join("keys/provisioning-signer.pem")),
            0o600
        );

        let node_ca = site.node_ca.as_ref().expect("node CA");
        assert_eq!(mode(&node_ca.key_path), 0o600);
        let bundle = dir.path().join("ca/bundle.pem");
        let broker = Config::load(&site.broker_config_path).expect("broker config parses");
        assert_eq!(broker.get("plugin.choria.network.tls_mode"), Some("mtls"));
        assert_eq!(
            broker.get("plugin.choria.network.enrolment_port"),
            Some("14223")
        );
        let bundle_text = bundle.display().to_string();
        assert_eq!(
            broker.get("plugin.security.file.ca"),
            Some(bundle_text.as_str())
        );
        assert_eq!(
            broker.get("plugin.security.choria.ca"),
            Some(bundle_text.as_str())
        );
        assert_eq!(
            broker.get_list_or_empty("plugin.choria.network.client_hosts"),
            ["127.0.0.1", "::1"]
        );
        let node = node_ca
            .ca
            .issue_client_certificate("n1.unit.test")
            .expect("node cert");
        let pems = std::fs::read_to_string(&bundle).expect("bundle");
        choria_pki::verify_certificate(&node.certificate_pem, &pems, now)
            .expect("the bundle trusts node certificates");

        let client =
            Config::load(&site.provisioner_choria_config_path).expect("client config parses");
        let (cert, key) = site.provisioner.certificate.as_ref().expect("certificate");
        assert!(cert.is_file());
        assert_eq!(
            client.get("plugin.security.choria.key"),
            Some(key.display().to_string().as_str())
        );
    }
}
