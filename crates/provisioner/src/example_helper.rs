//! A built-in helper for demos and tests of the jwt + ed25519 flow: decides every node's
//! configuration from a few site facts, and serves the persistent helper protocol.
//!
//! Run it as a subcommand of a binary (`serve_stdio`) and point `helper` at that
//! command with `helper_mode: persistent`.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::helper::{
    HelperReply, HelperRequest, ServerClaimsInput, ServerPermissionsInput, MAX_HELPER_OUTPUT,
};

/// Facts about the site the helper configures nodes for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExampleHelperSettings {
    /// Broker URL(s) written to `plugin.choria.middleware_hosts`.
    pub broker_url: String,
    /// Hex ed25519 public key of the organisation issuer.
    pub issuer_public: String,
    /// Collectives for the node (and its server token); empty means `choria`.
    pub collectives: Vec<String>,
    /// Path of the CA bundle on the node (`plugin.security.choria.ca`), if any.
    pub ca_file: Option<String>,
    /// Server token lifetime.
    pub validity: Duration,
    /// Extra configuration lines, added last (they override the defaults).
    pub extra_configuration: BTreeMap<String, String>,
}

impl Default for ExampleHelperSettings {
    fn default() -> Self {
        ExampleHelperSettings {
            broker_url: String::new(),
            issuer_public: String::new(),
            collectives: vec!["choria".into()],
            ca_file: None,
            validity: Duration::from_secs(365 * 24 * 3600),
            extra_configuration: BTreeMap::new(),
        }
    }
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
    if !crate::registry::valid_identity(&request.identity) {
        return defer("missing or unusable identity");
    }
    let Some(ed) = &request.ed25519_pubkey else {
        return defer("no ed25519 public key: enable features.ed25519 in the provisioner");
    };
    if ed.public_key.len() != 64 || hex::decode(&ed.public_key).is_err() {
        return defer("ed25519 public key is not 64 hex characters");
    }
    if !ed.directory.starts_with('/') {
        return defer("node did not report an absolute configuration directory");
    }
    if request.jwt.is_none() {
        return defer("no verified provisioning token: enable features.jwt");
    }
    if settings.issuer_public.len() != 64 {
        return defer("helper issuer public key is not configured");
    }
    let collectives = if settings.collectives.is_empty() {
        vec!["choria".to_string()]
    } else {
        settings.collectives.clone()
    };
    let dir = ed.directory.trim_end_matches('/');
    let mut configuration: BTreeMap<String, String> = [
        ("identity", request.identity.as_str()),
        ("loglevel", "info"),
        ("plugin.choria.server.provision", "false"),
        (
            "plugin.choria.middleware_hosts",
            settings.broker_url.as_str(),
        ),
        ("plugin.choria.use_srv", "false"),
        ("plugin.security.provider", "choria"),
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
    configuration.insert(
        "plugin.security.choria.token_file".into(),
        format!("{dir}/server.jwt"),
    );
    configuration.insert(
        "plugin.security.choria.seed_file".into(),
        format!("{dir}/server.seed"),
    );
    if let Some(ca) = &settings.ca_file {
        configuration.insert("plugin.security.choria.ca".into(), ca.clone());
    }
    configuration.extend(settings.extra_configuration.clone());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    HelperReply {
        msg: "configured by the built-in example helper".into(),
        configuration,
        server_claims: Some(ServerClaimsInput {
            exp: Some(now + settings.validity.as_secs() as i64),
            collectives,
            permissions: Some(ServerPermissionsInput {
                submission: true,
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..HelperReply::default()
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::Ed25519Input;

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
}
