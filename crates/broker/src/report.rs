//! `choria broker server report conns`: asks every server for its connections through
//! `$SYS.REQ.SERVER.PING.CONNZ` as the system user and renders a table or JSON.

use std::time::Duration;

use choria_connect::{parse_servers, ClientCertificate, Login, Tls, Token, UserPassword};
use futures::StreamExt as _;
use serde::{Deserialize, Serialize};

/// The largest CONNZ response we accept from one server.
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// One connection as shown in the report.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(default)]
pub struct ConnInfo {
    /// Connection id on its server.
    pub cid: u64,
    /// Connection name (a node's identity).
    pub name: String,
    /// Account.
    pub account: String,
    /// User name from the authorization (`provisioner`, caller id, identity or empty).
    pub authorized_user: String,
    /// Remote IP.
    pub ip: String,
    /// Uptime as reported by nats-server.
    pub uptime: String,
    /// Messages received from the client.
    pub in_msgs: u64,
    /// Messages sent to the client.
    pub out_msgs: u64,
    /// Subscription count.
    pub subscriptions: u64,
    /// The server holding the connection (filled in by us).
    pub server: String,
}

#[derive(Deserialize)]
struct ServerInfo {
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct Connz {
    #[serde(default)]
    connections: Vec<ConnInfo>,
}

#[derive(Deserialize)]
struct ConnzResponse {
    server: Option<ServerInfo>,
    data: Option<Connz>,
    error: Option<serde_json::Value>,
}

/// Errors of the report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// Subscribing or publishing failed.
    #[error("could not query {subject}: {reason}")]
    Request {
        /// The subject.
        subject: &'static str,
        /// Why.
        reason: String,
    },
    /// A server answered with an error.
    #[error("server {server} refused the connection report: {error}")]
    Server {
        /// The server name.
        server: String,
        /// Its error object.
        error: String,
    },
    /// Connecting as the system user failed.
    #[error("connecting as the system user: {0}")]
    Connect(#[source] choria_connect::ConnectError),
    /// No server answered.
    #[error("no server answered {0} (is the user in the system account?)")]
    NoAnswer(&'static str),
}

const CONNZ: &str = "$SYS.REQ.SERVER.PING.CONNZ";

/// How the report connects as the system user. Holds secrets: not `Debug`.
pub struct SystemLogin {
    /// Broker URL (`tls://host:port`).
    pub url: String,
    /// CA the broker certificate chains to.
    pub ca: Option<std::path::PathBuf>,
    /// `plugin.choria.network.system.user`.
    pub user: String,
    /// `plugin.choria.network.system.password`.
    pub password: String,
    /// JWT mode: a client token with `system_user` (or `org_admin`).
    pub token: Option<String>,
    /// JWT mode: the seed matching the token's `public_key`, to sign the nonce.
    pub seed: Option<choria_tokens::Ed25519Seed>,
    /// mTLS mode: client certificate and key.
    pub certificate: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Connects as the system user: its user and password, the client JWT signing the nonce
/// in JWT mode, the client certificate in mTLS mode; TLS verified with `ca` (the
/// system's roots when there is none).
pub async fn connect_system(login: SystemLogin) -> Result<async_nats::Client, ReportError> {
    let SystemLogin {
        url,
        ca,
        user,
        password,
        token,
        seed,
        certificate,
    } = login;
    let client = certificate.map(|(cert, key)| ClientCertificate { cert, key });
    let tls = match ca {
        Some(ca) => Tls::Verified { ca, client },
        None => Tls::SystemRoots { client },
    };
    let token = match (token, seed) {
        (Some(jwt), Some(seed)) => Some(Token::signed(jwt, seed)),
        (Some(jwt), None) => Some(Token::Bearer(jwt.into())),
        (None, _) => None,
    };
    let servers = parse_servers([&url]).map_err(ReportError::Connect)?;
    Login {
        user: Some(UserPassword::new(user, password)),
        token,
        ..Login::new(servers, "choria broker server report", tls)
    }
    .connect()
    .await
    .map_err(ReportError::Connect)
}

/// Collects the connections of `account` from every server that answers within `wait`.
pub async fn connections(
    client: &async_nats::Client,
    account: &str,
    wait: Duration,
) -> Result<Vec<ConnInfo>, ReportError> {
    let request = serde_json::json!({
        "auth": true, "subscriptions": true, "subscriptions_detail": false,
        "acc": account, "state": 0, "limit": 1024, "offset": 0
    });
    let inbox = client.new_inbox();
    let mut replies = client
        .subscribe(inbox.clone())
        .await
        .map_err(|e| ReportError::Request {
            subject: CONNZ,
            reason: e.to_string(),
        })?;
    client
        .publish_with_reply(CONNZ, inbox, request.to_string().into())
        .await
        .map_err(|e| ReportError::Request {
            subject: CONNZ,
            reason: e.to_string(),
        })?;
    let mut out = Vec::new();
    let mut answered = false;
    let deadline = tokio::time::Instant::now() + wait;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, replies.next()).await {
        if message.payload.len() > MAX_RESPONSE_BYTES {
            continue;
        }
        let Ok(response) = serde_json::from_slice::<ConnzResponse>(&message.payload) else {
            continue;
        };
        answered = true;
        let server = response.server.map(|s| s.name).unwrap_or_default();
        if let Some(error) = response.error {
            return Err(ReportError::Server {
                server,
                error: error.to_string(),
            });
        }
        for mut conn in response.data.map(|d| d.connections).unwrap_or_default() {
            conn.server = server.clone();
            out.push(conn);
        }
    }
    if !answered {
        return Err(ReportError::NoAnswer(CONNZ));
    }
    out.sort_by(|a, b| {
        b.subscriptions
            .cmp(&a.subscriptions)
            .then(a.cid.cmp(&b.cid))
    });
    Ok(out)
}

/// Renders the connections as an aligned text table.
pub fn table(conns: &[ConnInfo]) -> String {
    let header = [
        "CID", "Name", "Server", "Account", "User", "IP", "Uptime", "In Msgs", "Out Msgs", "Subs",
    ];
    let rows: Vec<[String; 10]> = conns
        .iter()
        .map(|c| {
            [
                c.cid.to_string(),
                c.name.clone(),
                c.server.clone(),
                c.account.clone(),
                c.authorized_user.clone(),
                c.ip.clone(),
                c.uptime.clone(),
                c.in_msgs.to_string(),
                c.out_msgs.to_string(),
                c.subscriptions.to_string(),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row.iter()) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in &rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out.push_str(&format!("\n{} connection(s)\n", conns.len()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connz_json_decodes_and_renders() {
        let raw = r#"{"server":{"name":"b1"},"data":{"connections":[{"cid":3,"name":"n1","account":"provisioning","authorized_user":"","ip":"127.0.0.1","uptime":"1s","in_msgs":2,"out_msgs":1,"subscriptions":5,"extra":true}]}}"#;
        let parsed: ConnzResponse = serde_json::from_str(raw).expect("json");
        let conns = parsed.data.expect("data").connections;
        assert_eq!(conns[0].subscriptions, 5);
        let text = table(&conns);
        assert!(text.contains("provisioning"), "{text}");
        assert!(text.contains("1 connection(s)"), "{text}");
    }
}
