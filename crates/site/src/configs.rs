//! The text of a site's Choria config files: the broker's, and a client's (what the
//! provisioner reads as its `--choria-config`).

use std::path::Path;

use crate::generate::{Client, Site};
use crate::options::SiteOptions;
use crate::SYSTEM_USER;

/// The broker's configuration; `trust` is the CA file client certificates must chain to.
pub(crate) fn broker(site: &Site, options: &SiteOptions, trust: &Path) -> String {
    let broker = &options.broker;
    let mut lines = vec![
        format!("# Choria broker of the {} site (generated).", options.label),
        format!("identity = broker.{}", options.domain),
        "plugin.choria.broker_network = true".into(),
        "plugin.choria.network.listen_address = 127.0.0.1".into(),
        format!("plugin.choria.network.client_port = {}", broker.client_port),
        format!(
            "plugin.security.file.certificate = {}",
            site.broker_cert_path.display()
        ),
        format!(
            "plugin.security.file.key = {}",
            site.broker_key_path.display()
        ),
        format!("plugin.security.file.ca = {}", trust.display()),
        "plugin.security.issuer.names = choria".into(),
        format!(
            "plugin.security.issuer.choria.public = {}",
            site.org_issuer.public_key_hex()
        ),
        format!(
            "plugin.choria.network.provisioning.signer_cert = {}",
            site.provisioning_signer_public_path.display()
        ),
        format!(
            "plugin.choria.network.provisioning.client_password = {}",
            site.provisioner_password
        ),
        format!("plugin.choria.network.system.user = {SYSTEM_USER}"),
        format!(
            "plugin.choria.network.system.password = {}",
            site.system_password
        ),
    ];
    match broker.enrolment_port {
        Some(port) => {
            lines.push("plugin.choria.network.tls_mode = mtls".into());
            lines.push(format!("plugin.choria.network.enrolment_port = {port}"));
        }
        None => lines.push("plugin.choria.network.tls_mode = jwt".into()),
    }
    if let Some(port) = broker.stats_port {
        lines.push(format!("plugin.choria.stats_port = {port}"));
    }
    if broker.jetstream {
        lines.push(format!(
            "plugin.choria.network.stream.store = {}",
            site.dir.join("broker/jetstream").display()
        ));
    }
    if broker.pubsub_for_mtls {
        lines.push(format!("plugin.security.choria.ca = {}", trust.display()));
    }
    if !broker.client_hosts.is_empty() {
        lines.push(format!(
            "plugin.choria.network.client_hosts = {}",
            broker.client_hosts.join(", ")
        ));
    }
    lines.push(String::new());
    let mut text = lines.join("\n");
    text.push_str(&broker.extra_config);
    text
}

/// A Choria client configuration logging in as `client` (its token, seed, certificate).
pub(crate) fn client(site: &Site, client: &Client, label: &str) -> String {
    let mut lines = vec![
        format!("# Choria client configuration of the {label} site (generated)."),
        format!("identity = {}.{}", client.name, site.domain),
        format!("plugin.choria.middleware_hosts = {}", site.broker_url),
        "plugin.security.provider = choria".into(),
        format!(
            "plugin.security.choria.token_file = {}",
            client.token_path.display()
        ),
        format!(
            "plugin.security.choria.seed_file = {}",
            client.seed_path.display()
        ),
        format!("plugin.security.choria.ca = {}", site.ca_path.display()),
    ];
    if let Some((cert, key)) = &client.certificate {
        lines.push(format!(
            "plugin.security.choria.certificate = {}",
            cert.display()
        ));
        lines.push(format!("plugin.security.choria.key = {}", key.display()));
    }
    lines.push(String::new());
    lines.join("\n")
}
