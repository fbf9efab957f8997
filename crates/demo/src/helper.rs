//! The demo site's provisioning helper: decides every node's configuration from a few site
//! facts, and serves the persistent helper protocol (`choria-provisioner example-helper`).
//!
//! It configures nodes for the jwt flow (server JWT for the node's ed25519 key), the pki
//! flow (its CA signs the node's CSR; the node then connects with mTLS), or both at once.
//! Run it as a subcommand of a binary (`serve_stdio`) and point `helper` at that command
//! with `helper_mode: persistent`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use choria_pki::{CertificateAuthority, PkiError};
use choria_provisioner::helper::{
    CsrInput, Ed25519Input, HelperReply, HelperRequest, ServerClaimsInput, ServerPermissionsInput,
    MAX_HELPER_OUTPUT,
};
use choria_provisioner::registry::valid_identity;

/// Facts about the site the helper configures nodes for.
#[derive(Debug, Clone)]
pub struct ExampleHelperSettings {
    /// Broker URL(s) written to `plugin.choria.middleware_hosts`.
    pub broker_url: String,
    /// Hex ed25519 public key of the organisation issuer.
    pub issuer_public: String,
    /// Collectives for the node (and its server token); empty means `choria`.
    pub collectives: Vec<String>,
    /// Path of the CA bundle on the node (`plugin.security.choria.ca`), if any.
    pub ca_file: Option<String>,
    /// The CA that signs node certificate requests (pki flow), with the PEM bundle nodes
    /// are given to verify the broker.
    pub node_ca: Option<NodeCa>,
    /// Server token and certificate lifetime.
    pub validity: Duration,
    /// Extra configuration lines, added last (they override the defaults).
    pub extra_configuration: BTreeMap<String, String>,
}

/// The helper's certificate authority for the pki flow.
#[derive(Debug, Clone)]
pub struct NodeCa {
    /// Signs node CSRs.
    pub authority: Arc<CertificateAuthority>,
    /// PEM bundle written to the node's `ca.pem` (must verify the broker).
    pub trust_bundle: String,
}

impl Default for ExampleHelperSettings {
    fn default() -> Self {
        ExampleHelperSettings {
            broker_url: String::new(),
            issuer_public: String::new(),
            collectives: vec!["choria".into()],
            ca_file: None,
            node_ca: None,
            validity: Duration::from_secs(365 * 24 * 3600),
            extra_configuration: BTreeMap::new(),
        }
    }
}

/// Why the helper defers a node instead of configuring it (the reply's `msg`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request has no identity a node could have.
    #[error("missing or unusable identity")]
    Identity,
    /// The provisioner sent no verified provisioning JWT.
    #[error("no verified provisioning token: enable features.jwt")]
    NoJwt,
    /// The helper was started without the issuer key.
    #[error("helper issuer public key is not configured")]
    NoIssuer,
    /// A CSR arrived but the helper has no CA.
    #[error("node sent a CSR but the helper has no CA: set CHORIA_DEMO_NODE_CA")]
    NoCa,
    /// Neither flow is possible.
    #[error("neither an ed25519 public key nor a CSR: enable features.ed25519 or features.pki")]
    NoKey,
    /// The node's ssldir is relative.
    #[error("node did not report an absolute ssldir")]
    RelativeSsldir,
    /// The CSR cannot be read.
    #[error("unusable CSR: {0}")]
    Csr(#[source] PkiError),
    /// The CSR names another node.
    #[error("CSR is for {name:?}, not for the node's identity {identity:?}")]
    CsrName {
        /// Common name in the CSR.
        name: String,
        /// The node's identity.
        identity: String,
    },
    /// The CA could not sign.
    #[error("could not sign the CSR: {0}")]
    Sign(#[source] PkiError),
    /// The node's ed25519 key is not hex of the right length.
    #[error("ed25519 public key is not 64 hex characters")]
    PublicKey,
    /// The node's configuration directory is relative.
    #[error("node did not report an absolute configuration directory")]
    RelativeDirectory,
}

fn defer(message: &str) -> HelperReply {
    HelperReply {
        defer: true,
        msg: message.to_string(),
        ..HelperReply::default()
    }
}

/// The reply for one node; defers when the request lacks what the flow needs.
pub fn reply_for(settings: &ExampleHelperSettings, request: &HelperRequest) -> HelperReply {
    match configure(settings, request) {
        Ok(reply) => reply,
        Err(why) => defer(&why.to_string()),
    }
}

fn configure(
    settings: &ExampleHelperSettings,
    request: &HelperRequest,
) -> Result<HelperReply, Refusal> {
    if !valid_identity(&request.identity) {
        return Err(Refusal::Identity);
    }
    if request.jwt.is_none() {
        return Err(Refusal::NoJwt);
    }
    if settings.issuer_public.len() != 64 {
        return Err(Refusal::NoIssuer);
    }
    let pki = match (&request.csr, &settings.node_ca) {
        (Some(csr), Some(ca)) => Some((csr, ca)),
        (Some(_), None) => return Err(Refusal::NoCa),
        (None, _) => None,
    };
    let ed25519 = request.ed25519_pubkey.as_ref();
    if pki.is_none() && ed25519.is_none() {
        return Err(Refusal::NoKey);
    }
    let collectives = if settings.collectives.is_empty() {
        vec!["choria".to_string()]
    } else {
        settings.collectives.clone()
    };
    let mut reply = HelperReply {
        msg: "configured by the built-in example helper".into(),
        configuration: base_configuration(settings, &request.identity, &collectives),
        ..HelperReply::default()
    };
    if let Some((csr, ca)) = pki {
        add_certificate(&mut reply, settings, &request.identity, csr, ca)?;
    }
    if let Some(ed) = ed25519 {
        add_server_token(&mut reply, settings, ed, collectives)?;
    }
    reply
        .configuration
        .extend(settings.extra_configuration.clone());
    Ok(reply)
}

fn base_configuration(
    settings: &ExampleHelperSettings,
    identity: &str,
    collectives: &[String],
) -> BTreeMap<String, String> {
    let mut configuration: BTreeMap<String, String> = [
        ("identity", identity),
        ("loglevel", "info"),
        ("plugin.choria.server.provision", "false"),
        (
            "plugin.choria.middleware_hosts",
            settings.broker_url.as_str(),
        ),
        ("plugin.choria.use_srv", "false"),
        ("plugin.security.issuer.names", "choria"),
        (
            "plugin.security.issuer.choria.public",
            settings.issuer_public.as_str(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    configuration.insert("collectives".into(), collectives.join(","));
    configuration.insert("main_collective".into(), collectives[0].clone());
    if let Some(ca) = &settings.ca_file {
        configuration.insert("plugin.security.choria.ca".into(), ca.clone());
    }
    configuration
}

/// pki flow: sign the node's own CSR and point its file security provider at the result.
fn add_certificate(
    reply: &mut HelperReply,
    settings: &ExampleHelperSettings,
    identity: &str,
    csr: &CsrInput,
    ca: &NodeCa,
) -> Result<(), Refusal> {
    if !csr.ssldir.starts_with('/') {
        return Err(Refusal::RelativeSsldir);
    }
    let name = choria_pki::csr_common_name(&csr.csr).map_err(Refusal::Csr)?;
    if name != identity {
        return Err(Refusal::CsrName {
            name,
            identity: identity.to_string(),
        });
    }
    reply.certificate = ca
        .authority
        .sign_csr(&csr.csr, settings.validity)
        .map_err(Refusal::Sign)?;
    reply.ca = ca.trust_bundle.clone();
    reply.ssldir = csr.ssldir.clone();
    let ssldir = csr.ssldir.trim_end_matches('/');
    // Both providers' keys: `file` for certificate-only nodes, `choria` for nodes that
    // also get a server JWT and show the certificate to brokers in mtls mode.
    for (key, file) in [
        ("plugin.security.file.certificate", "certificate.pem"),
        ("plugin.security.file.key", "private.pem"),
        ("plugin.security.file.ca", "ca.pem"),
        ("plugin.security.choria.certificate", "certificate.pem"),
        ("plugin.security.choria.key", "private.pem"),
        ("plugin.security.choria.ca", "ca.pem"),
    ] {
        reply
            .configuration
            .insert(key.into(), format!("{ssldir}/{file}"));
    }
    reply
        .configuration
        .insert("plugin.choria.ssldir".into(), ssldir.to_string());
    reply
        .configuration
        .insert("plugin.security.provider".into(), "file".into());
    Ok(())
}

/// jwt flow: a server token for the node's ed25519 key, signed by the provisioner.
fn add_server_token(
    reply: &mut HelperReply,
    settings: &ExampleHelperSettings,
    ed: &Ed25519Input,
    collectives: Vec<String>,
) -> Result<(), Refusal> {
    if ed.public_key.len() != 64 || hex::decode(&ed.public_key).is_err() {
        return Err(Refusal::PublicKey);
    }
    if !ed.directory.starts_with('/') {
        return Err(Refusal::RelativeDirectory);
    }
    let dir = ed.directory.trim_end_matches('/');
    reply
        .configuration
        .insert("plugin.security.provider".into(), "choria".into());
    reply.configuration.insert(
        "plugin.security.choria.token_file".into(),
        format!("{dir}/server.jwt"),
    );
    reply.configuration.insert(
        "plugin.security.choria.seed_file".into(),
        format!("{dir}/server.seed"),
    );
    let now = choria_tokens::clock::unix_seconds(SystemTime::now());
    reply.server_claims = Some(ServerClaimsInput {
        exp: Some(now + settings.validity.as_secs() as i64),
        collectives,
        permissions: Some(ServerPermissionsInput {
            submission: true,
            ..Default::default()
        }),
        ..Default::default()
    });
    Ok(())
}

/// Answers one request line (JSON in, JSON out); garbage in gives a defer out.
pub fn answer_line(settings: &ExampleHelperSettings, line: &str) -> String {
    let reply = match serde_json::from_str::<HelperRequest>(line) {
        Ok(request) => reply_for(settings, &request),
        Err(err) => defer(&format!("request is not a helper request: {err}")),
    };
    // HelperReply holds only strings, maps and bools, which always serialise.
    serde_json::to_string(&reply)
        .unwrap_or_else(|_| r#"{"defer":true,"msg":"encoding failed"}"#.into())
}

/// Serves the persistent helper protocol on stdin/stdout until stdin closes.
pub fn serve_stdio(settings: &ExampleHelperSettings) -> std::io::Result<()> {
    serve(settings, std::io::stdin().lock(), std::io::stdout().lock())
}

/// Serves the persistent helper protocol on any line reader and writer.
pub fn serve(
    settings: &ExampleHelperSettings,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    for line in input.lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let reply = if line.len() > MAX_HELPER_OUTPUT {
            serde_json::to_string(&defer("request too large")).unwrap_or_default()
        } else {
            answer_line(settings, &line)
        };
        writeln!(output, "{reply}")?;
        output.flush()?;
    }
    Ok(())
}

/// The helper command line that runs this helper through `provisioner_binary`
/// (`choria-provisioner example-helper`), quoted as the provisioner splits it.
pub fn command_line(provisioner_binary: &Path) -> String {
    format!(
        "{} example-helper",
        shell_quote(&provisioner_binary.display().to_string())
    )
}

/// Quotes a path for the helper command line, which the provisioner splits shell-style.
fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helper_paths_are_quoted_for_the_shell() {
        assert_eq!(shell_quote("/usr/bin/choria"), "/usr/bin/choria");
        assert_eq!(shell_quote("/tmp/my dir/choria"), "'/tmp/my dir/choria'");
        assert_eq!(shell_quote("/tmp/it's"), "'/tmp/it'\\''s'");
    }

    fn settings() -> ExampleHelperSettings {
        ExampleHelperSettings {
            broker_url: "tls://broker:4222".into(),
            issuer_public: "ab".repeat(32),
            ..Default::default()
        }
    }

    fn request() -> HelperRequest {
        HelperRequest {
            identity: "n1.example.net".into(),
            csr: None,
            ed25519_pubkey: Some(Ed25519Input {
                public_key: "cd".repeat(32),
                directory: "/var/lib/n1/".into(),
                signature: "00".into(),
            }),
            inventory: "{}".into(),
            jwt: Some(serde_json::json!({"cht": "x"})),
        }
    }

    #[test]
    fn configures_a_node_for_the_site() {
        let reply = reply_for(&settings(), &request());
        assert!(!reply.defer, "{reply:?}");
        assert_eq!(
            reply.configuration["plugin.security.choria.seed_file"],
            "/var/lib/n1/server.seed"
        );
        assert_eq!(
            reply.configuration["plugin.choria.middleware_hosts"],
            "tls://broker:4222"
        );
        assert_eq!(
            reply.configuration["plugin.choria.server.provision"],
            "false"
        );
        assert_eq!(
            reply.server_claims.as_ref().map(|c| c.collectives.clone()),
            Some(vec!["choria".to_string()])
        );
    }

    #[test]
    fn defers_what_it_cannot_vouch_for_and_serves_lines() {
        let mut no_key = request();
        no_key.ed25519_pubkey = None;
        assert!(reply_for(&settings(), &no_key).defer);
        let input = format!(
            "{}\n\nnot json\n",
            serde_json::to_string(&request()).expect("json")
        );
        let mut out = Vec::new();
        serve(&settings(), input.as_bytes(), &mut out).expect("serve");
        let lines: Vec<&str> = std::str::from_utf8(&out).expect("utf8").lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].contains("\"defer\":false"));
        assert!(lines[1].contains("\"defer\":true"));
    }

    fn pki_request(common_name: &str) -> HelperRequest {
        let key = choria_pki::generate_rsa_key_pem(2048).expect("rsa");
        HelperRequest {
            csr: Some(CsrInput {
                csr: choria_pki::generate_csr(common_name, &key).expect("csr"),
                public_key: String::new(),
                ssldir: "/var/lib/n1/ssl".into(),
            }),
            ed25519_pubkey: None,
            ..request()
        }
    }

    #[test]
    fn signs_the_node_csr_with_its_ca_in_the_pki_flow() {
        let authority = CertificateAuthority::generate("Helper CA").expect("ca");
        let mut settings = settings();
        assert!(
            reply_for(&settings, &pki_request("n1.example.net")).defer,
            "a CSR without a CA to sign it is deferred"
        );
        let authority_pem = authority.certificate_pem().to_string();
        settings.node_ca = Some(NodeCa {
            trust_bundle: authority_pem.clone(),
            authority: Arc::new(authority),
        });
        let reply = reply_for(&settings, &pki_request("n1.example.net"));
        assert!(!reply.defer, "{reply:?}");
        assert!(reply.certificate.starts_with("-----BEGIN CERTIFICATE-----"));
        assert_eq!(reply.ssldir, "/var/lib/n1/ssl");
        assert!(
            reply.server_claims.is_none(),
            "no ed25519 key, no server JWT"
        );
        assert_eq!(reply.configuration["plugin.security.provider"], "file");
        assert_eq!(
            reply.configuration["plugin.security.file.certificate"],
            "/var/lib/n1/ssl/certificate.pem"
        );
        let cert = choria_pki::verify_certificate(
            &reply.certificate,
            authority_pem.as_str(),
            SystemTime::now(),
        )
        .expect("signed by the helper's CA");
        assert!(cert.common_name.contains("n1.example.net"));

        let other = reply_for(&settings, &pki_request("intruder.example.net"));
        assert!(other.defer, "a CSR for another name is refused");
        assert!(other.msg.contains("intruder.example.net"), "{}", other.msg);
    }
}
