//! Generates the nats-server configuration for a Choria broker: accounts, the auth callout,
//! imports/exports of spec §1.3, TLS, JetStream, cluster routes and the enrolment listener.

use std::fmt::Write as _;

use secrecy::ExposeSecret;

use crate::decision::TlsMode;
use crate::settings::BrokerSettings;

/// The account the authorization service lives in: `AUTH_` and a tag of the broker's callout
/// issuer key. Each broker of a cluster needs its own name because accounts of the same name
/// share interest over routes, and nats-server would hand one broker's authorization requests
/// to a peer's service, whose responses it cannot verify ("signing key is unknown").
pub fn auth_account(issuer: &str) -> String {
    let tag: String = issuer.chars().skip(1).take(10).collect();
    format!("AUTH_{tag}")
}

/// NATS CONNECT lines may carry Choria JWTs of a few KiB; nats-server's 4 KiB default is too
/// small for chain-issued tokens, and anything larger than this is refused by nats-server.
pub const MAX_CONTROL_LINE: usize = 32 * 1024;

/// Credentials that only the broker process knows (written to the 0600 config file).
pub struct Internal<'a> {
    /// Public nkey (`U...`) of the authorization service's user in [`auth_account`].
    pub service_user: &'a str,
    /// Public nkey (`A...`) that signs authorization responses.
    pub issuer: &'a str,
    /// User in `choria` that manages streams (bypasses the callout).
    pub manager_user: &'a str,
    /// Its password.
    pub manager_password: &'a str,
}

/// Renders the nats-server configuration text.
pub fn render(settings: &BrokerSettings, internal: &Internal<'_>) -> String {
    let mut out = String::new();
    let q = quote;
    let _ = writeln!(out, "server_name: {}", q(&settings.identity));
    let _ = writeln!(
        out,
        "listen: {}",
        q(&host_port(&settings.listen_address, settings.client_port))
    );
    let _ = writeln!(out, "max_control_line: {MAX_CONTROL_LINE}");
    let _ = writeln!(out, "max_connections: 50000");
    let _ = writeln!(
        out,
        "write_deadline: {}",
        q(&format!("{}ms", settings.write_deadline.as_millis()))
    );
    let _ = writeln!(out, "tls {{");
    let _ = writeln!(
        out,
        "  cert_file: {}",
        q(&settings.tls.certificate.display().to_string())
    );
    let _ = writeln!(
        out,
        "  key_file: {}",
        q(&settings.tls.key.display().to_string())
    );
    let _ = writeln!(
        out,
        "  ca_file: {}",
        q(&settings.tls.ca.display().to_string())
    );
    let _ = writeln!(out, "  timeout: {}", secs(settings.tls_timeout));
    if settings.tls_mode == TlsMode::Mtls {
        let _ = writeln!(out, "  verify: true");
    }
    let _ = writeln!(out, "}}");
    let provisioning = settings.provisioning_password.is_some();

    let _ = writeln!(out, "system_account: system");
    let auth = auth_account(internal.issuer);
    let _ = writeln!(out, "accounts {{");
    let _ = writeln!(
        out,
        "  {auth} {{ users: [ {{ nkey: {} }} ] }}",
        q(internal.service_user)
    );
    let _ = writeln!(out, "  choria {{");
    if settings.streams.is_some() {
        let _ = writeln!(out, "    jetstream: enabled");
    }
    let _ = writeln!(
        out,
        "    users: [ {{ user: {}, password: {} }} ]",
        q(internal.manager_user),
        q(internal.manager_password)
    );
    if !settings.mappings.is_empty() {
        let _ = writeln!(out, "    mappings: {{");
        for (source, destination) in &settings.mappings {
            let _ = writeln!(out, "      {}: {}", q(source), q(destination));
        }
        let _ = writeln!(out, "    }}");
    }
    if provisioning {
        let _ = writeln!(out, "    exports: [");
        let _ = writeln!(out, "      {{ service: \"$JS.API.STREAM.INFO.KV_CHORIA_LEADER_ELECTION\", accounts: [provisioning], response_type: singleton }}");
        let _ = writeln!(out, "      {{ service: \"$KV.CHORIA_LEADER_ELECTION.provisioner\", accounts: [provisioning], response_type: singleton }}");
        // Beyond upstream: a leader that stops cleanly purges its key, so a standby takes
        // over at once instead of after the bucket TTL.
        let _ = writeln!(out, "      {{ service: \"$JS.API.STREAM.PURGE.KV_CHORIA_LEADER_ELECTION\", accounts: [provisioning], response_type: singleton }}");
        let _ = writeln!(out, "    ]");
        let _ = writeln!(out, "    imports: [");
        let _ = writeln!(
            out,
            "      {{ stream: {{ account: provisioning, subject: \"choria.lifecycle.>\" }} }}"
        );
        let _ = writeln!(out, "    ]");
    }
    let _ = writeln!(out, "  }}");
    if provisioning {
        let _ = writeln!(out, "  provisioning {{");
        let _ = writeln!(
            out,
            "    exports: [ {{ stream: \"choria.lifecycle.>\", accounts: [choria] }} ]"
        );
        let _ = writeln!(out, "    imports: [");
        let _ = writeln!(out, "      {{ service: {{ account: choria, subject: \"$JS.API.STREAM.INFO.KV_CHORIA_LEADER_ELECTION\" }}, to: \"choria.streams.STREAM.INFO.KV_CHORIA_LEADER_ELECTION\" }}");
        let _ = writeln!(out, "      {{ service: {{ account: choria, subject: \"$KV.CHORIA_LEADER_ELECTION.provisioner\" }} }}");
        let _ = writeln!(out, "      {{ service: {{ account: choria, subject: \"$KV.CHORIA_LEADER_ELECTION.provisioner\" }}, to: \"choria.streams.$KV.CHORIA_LEADER_ELECTION.provisioner\" }}");
        let _ = writeln!(out, "      {{ service: {{ account: choria, subject: \"$JS.API.STREAM.PURGE.KV_CHORIA_LEADER_ELECTION\" }}, to: \"choria.streams.STREAM.PURGE.KV_CHORIA_LEADER_ELECTION\" }}");
        let _ = writeln!(out, "    ]");
        let _ = writeln!(out, "  }}");
    }
    let _ = writeln!(out, "  system {{ }}");
    let _ = writeln!(out, "}}");

    let _ = writeln!(out, "authorization {{");
    let _ = writeln!(out, "  timeout: {}", secs(settings.auth_timeout));
    let _ = writeln!(out, "  auth_callout {{");
    let _ = writeln!(out, "    issuer: {}", q(internal.issuer));
    let _ = writeln!(out, "    account: {auth}");
    let _ = writeln!(
        out,
        "    auth_users: [ {}, {} ]",
        q(internal.service_user),
        q(internal.manager_user)
    );
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "}}");

    if let Some(streams) = &settings.streams {
        let _ = writeln!(
            out,
            "jetstream {{ store_dir: {} }}",
            q(&streams.store.display().to_string())
        );
    }
    if let Some(cluster) = &settings.cluster {
        let _ = writeln!(out, "cluster {{");
        let _ = writeln!(out, "  name: {}", q(&settings.cluster_name));
        let _ = writeln!(
            out,
            "  listen: {}",
            q(&host_port(&settings.listen_address, cluster.port))
        );
        let _ = writeln!(out, "  no_advertise: true");
        let _ = writeln!(out, "  pool_size: -1");
        if !cluster.user.is_empty() {
            let _ = writeln!(
                out,
                "  authorization {{ user: {}, password: {} }}",
                q(&cluster.user),
                q(cluster.password.expose_secret())
            );
        }
        let routes: Vec<String> = cluster
            .peers
            .iter()
            .map(|peer| {
                q(&route_url(
                    peer,
                    &cluster.user,
                    cluster.password.expose_secret(),
                ))
            })
            .collect();
        let _ = writeln!(out, "  routes: [ {} ]", routes.join(", "));
        let _ = writeln!(out, "}}");
    }
    if let Some(port) = settings.enrolment_port {
        let _ = writeln!(out, "websocket {{");
        let _ = writeln!(
            out,
            "  listen: {}",
            q(&host_port(&settings.listen_address, port))
        );
        let _ = writeln!(out, "  compression: true");
        // The enrolment listener takes the same power-on storms as the client port.
        let _ = writeln!(
            out,
            "  handshake_timeout: \"{}ms\"",
            settings.tls_timeout.as_millis()
        );
        let _ = writeln!(
            out,
            "  tls {{ cert_file: {}, key_file: {} }}",
            q(&settings.tls.certificate.display().to_string()),
            q(&settings.tls.key.display().to_string())
        );
        let _ = writeln!(out, "}}");
    }
    out
}

/// `host:port`, bracketing IPv6 literals.
pub fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn secs(d: std::time::Duration) -> String {
    format!("{:.3}", d.as_secs_f64())
}

/// The URL nats-server dials for `peer`. Inbound routes must present `peer_user` and
/// `peer_password`, and nats-server only sends credentials that are in the route URL, so they
/// are added to peers that carry none (upstream leaves them out and its routes fail
/// authentication; a peer URL with its own credentials is used unchanged).
pub fn route_url(peer: &str, user: &str, password: &str) -> String {
    let text = if peer.contains("://") {
        peer.to_string()
    } else {
        format!("nats://{peer}")
    };
    if user.is_empty() {
        return text;
    }
    match url::Url::parse(&text) {
        Ok(mut parsed) if parsed.username().is_empty() => {
            let with_credentials = parsed.set_username(user).is_ok()
                && parsed
                    .set_password(Some(password).filter(|p| !p.is_empty()))
                    .is_ok();
            if with_credentials {
                parsed.to_string()
            } else {
                text
            }
        }
        _ => text,
    }
}

/// A double-quoted nats-server config string (JSON escaping is accepted by its parser).
fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_urls_carry_the_peer_credentials() {
        assert_eq!(
            route_url("b2.example.net:5222", "routes", "p@ss/word"),
            "nats://routes:p%40ss%2Fword@b2.example.net:5222"
        );
        assert_eq!(
            route_url("nats://other:secret@b2:5222", "routes", "x"),
            "nats://other:secret@b2:5222",
            "credentials in the peer URL win"
        );
        assert_eq!(route_url("b2:5222", "", ""), "nats://b2:5222");
    }

    #[test]
    fn ipv6_hosts_are_bracketed() {
        assert_eq!(host_port("::", 4222), "[::]:4222");
        assert_eq!(host_port("127.0.0.1", 4222), "127.0.0.1:4222");
    }

    #[test]
    fn quoting_escapes() {
        assert_eq!(quote("a\"b"), "\"a\\\"b\"");
    }
}
