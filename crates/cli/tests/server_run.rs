//! `choria server run` as a real process: usage errors, no configuration and no token,
//! and a node that starts from a provisioning token and joins a real broker.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use choria_protocol::message::{self, RequestMeta, RequestSigner, Routing};
use choria_protocol::{subjects, RpcRequest, Version};
use choria_testkit::site::{TestSite, PROVISIONER_CALLER, PROVISIONING_ACCESS_TOKEN};

fn choria() -> Command {
    Command::new(env!("CARGO_BIN_EXE_choria"))
}

#[test]
fn run_without_config_is_a_usage_error() {
    let out = choria().args(["server", "run"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("server run requires a configuration file"),
        "{err}"
    );
}

#[test]
fn no_config_and_no_token_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = choria()
        .args(["server", "run", "--config"])
        .arg(dir.path().join("server.conf"))
        .arg("--provisioning-jwt")
        .arg(dir.path().join("missing.jwt"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was not found and provisioning is disabled"),
        "{err}"
    );
}

// Multi-threaded: the site's authorization service runs in this process and must keep
// answering while the test thread waits for the child's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starts_in_provisioning_mode_and_joins_the_broker() {
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut child = choria()
        .args(["server", "run", "--identity", "cli.example.net", "--config"])
        .arg(dir.path().join("server.conf"))
        .arg("--provisioning-jwt")
        .arg(&site.provisioning_token_path)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (ready, seen) = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("node ready") => return (Some(line), seen),
                Ok(line) => seen.push(line),
                Err(_) => break,
            }
        }
        (None, seen)
    })
    .await
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let ready =
        ready.unwrap_or_else(|| panic!("node never became ready; log:\n{}", seen.join("\n")));
    assert!(ready.contains("Provisioning"), "{ready}");
    assert!(
        seen.iter()
            .any(|l| l.contains("starting node") && l.contains("Provisioning")),
        "{}",
        seen.join("\n")
    );
}

/// Collects the child's stderr lines until one contains each of `wanted` in order, or a
/// minute passes (safety net). Returns the lines seen.
async fn wait_for_lines(
    rx: mpsc::Receiver<String>,
    wanted: Vec<&'static str>,
) -> (bool, Vec<String>, mpsc::Receiver<String>) {
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut seen = Vec::new();
        let mut next = 0;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let hit = line.contains(wanted[next]);
                    seen.push(line);
                    if hit {
                        next += 1;
                        if next == wanted.len() {
                            return (true, seen, rx);
                        }
                    }
                }
                Err(_) => break,
            }
        }
        (false, seen, rx)
    })
    .await
    .unwrap()
}

fn provisioning_request(identity: &str, action: &str, data: serde_json::Value) -> Vec<u8> {
    let serde_json::Value::Object(data) = data else {
        panic!("object")
    };
    let meta = RequestMeta::new(
        "provisioner.example.net",
        PROVISIONER_CALLER,
        "provisioning",
        "choria_provision",
        Duration::from_secs(60),
        std::time::SystemTime::now(),
    );
    let payload = RpcRequest::new("choria_provision", action, data)
        .encode()
        .unwrap();
    let routing = Routing {
        reply_to: subjects::reply("provisioning", PROVISIONER_CALLER, &meta.id, false).unwrap(),
        sender: "provisioner.example.net".into(),
        hops: vec![],
    };
    let _ = identity;
    message::encode_request(
        Version::V1,
        &meta,
        &payload,
        &RequestSigner::Insecure,
        &routing,
    )
    .unwrap()
}

// The standalone restart path: `restart` makes the process re-execute itself, and the new
// process reads the configuration `configure` wrote and joins the fleet in normal mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_re_executes_into_normal_mode() {
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let identity = "reexec.example.net";
    let mut child = choria()
        .args(["server", "run", "--identity", identity, "--config"])
        .arg(dir.path().join("server.conf"))
        .arg("--provisioning-jwt")
        .arg(&site.provisioning_token_path)
        .env("RUST_LOG", "info")
        .env("NO_COLOR", "1")
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let (ok, seen, rx) = wait_for_lines(rx, vec!["node ready"]).await;
    assert!(ok, "node never became ready:\n{}", seen.join("\n"));

    // The node's identity key, as gen25519 would have made it, and its server JWT.
    let seed = choria_tokens::Ed25519Seed::generate();
    std::fs::write(dir.path().join("server.seed"), seed.to_hex()).unwrap();
    let server_jwt = site
        .mint_server_token(identity, seed.public_key_bytes(), None)
        .unwrap();
    let config = serde_json::json!({
        "identity": identity,
        "plugin.choria.server.provision": "false",
        "plugin.security.provider": "choria",
        "plugin.security.choria.token_file": dir.path().join("server.jwt").display().to_string(),
        "plugin.security.choria.seed_file": dir.path().join("server.seed").display().to_string(),
        "plugin.security.choria.ca": site.ca_path.display().to_string(),
        "plugin.choria.middleware_hosts": site.broker_url,
    });
    let provisioner = site.connect_provisioner().await.unwrap();
    let subject = format!("provisioning.node.{identity}");
    let token = PROVISIONING_ACCESS_TOKEN;
    for (action, data) in [
        (
            "configure",
            serde_json::json!({"token": token, "config": config.to_string(), "server_jwt": server_jwt}),
        ),
        ("restart", serde_json::json!({"token": token, "splay": 1})),
    ] {
        provisioner
            .publish(
                subject.clone(),
                provisioning_request(identity, action, data).into(),
            )
            .await
            .unwrap();
    }
    provisioner.flush().await.unwrap();

    let (ok, seen, _rx) = wait_for_lines(rx, vec!["restarting", "mode=Normal", "node ready"]).await;
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        ok,
        "node did not come back in normal mode:\n{}",
        seen.join("\n")
    );
    assert!(
        seen.last().unwrap().contains("InFleet"),
        "{}",
        seen.join("\n")
    );
}
