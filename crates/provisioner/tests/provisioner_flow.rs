//! End-to-end provisioning passes over a real nats-server: the provisioner service with
//! its real helper processes against test peers standing in for nodes (see
//! `support/test_peer_node.rs`). Covers the jwt+ed25519 chained flow, the pki flow with a
//! CA run by the helper, helper failure outcomes (defer, crash, hang, garbage, shutdown),
//! malformed node replies (B2) and two provisioners under leader election.

mod support;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use choria_connect::{parse_servers, Tls};
use choria_provisioner::metrics::Outcome;
use choria_provisioner::wire::Version;
use choria_provisioner::{login, Provisioner, Settings};
use choria_testkit::TestNats;
use choria_tokens::{
    add_org_issuer_data, parse_server_token, sign_token, ClientIdClaims, Ed25519Seed, NewClient,
    NewProvisioning, ProvisioningClaims, PublicKey, SigningKey,
};
use support::running::{until, Running};
use support::test_peer_node::{Quirk, TestPeerNode};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cret";

struct Org {
    seed: Ed25519Seed,
    dir: tempfile::TempDir,
}

impl Org {
    fn new() -> Org {
        Org {
            seed: Ed25519Seed::generate(),
            dir: tempfile::tempdir().expect("dir"),
        }
    }

    fn provisioning_jwt(&self) -> String {
        let claims = ProvisioningClaims::new(
            NewProvisioning {
                token: TOKEN.into(),
                urls: vec!["nats://127.0.0.1:4222".into()],
                validity: Duration::from_secs(3600),
                protocol_v2: true,
                ..Default::default()
            },
            SystemTime::now(),
        )
        .expect("claims");
        sign_token(&claims, &SigningKey::Ed25519(self.seed.clone())).expect("sign")
    }

    /// Writes a chain issuer token + seed for the provisioner; returns (seed, token) paths.
    fn chain_issuer(&self) -> (PathBuf, PathBuf) {
        let issuer_seed = Ed25519Seed::generate();
        let mut claims = ClientIdClaims::new(
            NewClient {
                callerid: "provisioner".into(),
                validity: Duration::from_secs(3600),
                public_key: Some(issuer_seed.public_key_bytes()),
                ..Default::default()
            },
            SystemTime::now(),
        )
        .expect("client claims");
        add_org_issuer_data(&mut claims, &self.seed).expect("org data");
        let token = sign_token(&claims, &SigningKey::Ed25519(self.seed.clone())).expect("sign");
        let seed_path = self.dir.path().join("signer.seed");
        let token_path = self.dir.path().join("signer.jwt");
        std::fs::write(&seed_path, issuer_seed.to_hex()).expect("seed");
        std::fs::write(&token_path, token).expect("token");
        (seed_path, token_path)
    }
}

fn helper_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/helpers/ed25519_helper.py")
}

async fn start(nats: &TestNats, yaml: &str, identity: &str) -> Running {
    start_with(nats, yaml, identity, Version::V1).await
}

async fn start_with(nats: &TestNats, yaml: &str, identity: &str, version: Version) -> Running {
    let settings = Settings::parse_str(yaml, Path::new("test.yaml")).expect("settings");
    let caller = format!("choria={identity}");
    let servers = parse_servers([nats.url()]).expect("url");
    let client = login(identity, &caller, servers, Tls::Off)
        .connect()
        .await
        .expect("connect");
    let provisioner = Provisioner::new(settings, client, identity, &caller)
        .with_election_api_prefix("$JS.API")
        .with_protocol(version);
    Running::spawn(provisioner)
}

#[tokio::test]
async fn jwt_ed25519_flow_issues_a_chained_server_token() {
    let nats = TestNats::start("", false).await.expect("nats");
    let org = Org::new();
    let (seed, token) = org.chain_issuer();
    let node = TestPeerNode::start(
        &nats.url(),
        "n1.example.net",
        TOKEN,
        &org.provisioning_jwt(),
        Quirk::None,
    )
    .await;
    // The example helper reads its settings from its environment, set with env(1).
    let yaml = format!(
        "helper: env CHORIA_DEMO_ISSUER_PUBLIC={} CHORIA_DEMO_BROKER_URL=nats://broker.example.net:4222 python3 {}\ntoken: {TOKEN}\nsite: T\nworkers: 2\njwt_verify_cert: {}\njwt_signing_key: {}\njwt_signing_token: {}\nfeatures:\n  ed25519: true\n",
        org.seed.public_key_hex(),
        helper_path().display(),
        org.seed.public_key_hex(),
        seed.display(),
        token.display()
    );
    // This flow speaks protocol v2, as upstream does with JWT credentials.
    let run = start_with(&nats, &yaml, "prov1.example.net", Version::V2).await;
    until("provisioned", Duration::from_secs(30), || {
        run.status.snapshot().provisioned == 1
    })
    .await;

    assert_eq!(
        node.actions(),
        ["jwt", "gen25519", "inventory", "configure", "restart"]
    );
    let configure = node.last("configure").expect("configure");
    for key in [
        "config",
        "token",
        "ca",
        "certificate",
        "ssldir",
        "key",
        "ecdh_public",
        "action_policies",
        "opa_policies",
        "server_jwt",
    ] {
        assert!(configure.get(key).is_some(), "configure input {key}");
    }
    assert_eq!(configure["token"], TOKEN);
    let config: serde_json::Value =
        serde_json::from_str(configure["config"].as_str().expect("config text")).expect("json");
    assert_eq!(config["identity"], "n1.example.net");
    assert_eq!(config["plugin.choria.server.provision"], "false");

    // The server token verifies through the chain against the organisation issuer.
    let jwt = configure["server_jwt"].as_str().expect("server jwt");
    let claims = parse_server_token(
        jwt,
        &PublicKey::ed25519_from_hex(&org.seed.public_key_hex()).expect("pk"),
        SystemTime::now(),
    )
    .expect("chained server token verifies");
    assert_eq!(claims.identity, "n1.example.net");
    assert_eq!(
        claims.standard.public_key,
        node.seen.lock().expect("lock").ed25519_public
    );
    assert!(
        claims.standard.iss.starts_with("C-"),
        "{}",
        claims.standard.iss
    );
    assert_eq!(claims.collectives, vec!["choria"]);
    assert_eq!(node.last("restart").expect("restart")["splay"], 1);

    let text = run.metrics.encode();
    assert!(
        text.contains("choria_provisioner_provisioned{site=\"T\"} 1"),
        "{text}"
    );
    assert!(
        text.contains(
            "choria_provisioner_rpc_time_count{rpc=\"choria_provision#gen25519\",site=\"T\"} 1"
        ),
        "{text}"
    );
    run.stop().await;
}

#[tokio::test]
async fn pki_flow_delivers_a_certificate_signed_by_the_helpers_ca() {
    let nats = TestNats::start("", false).await.expect("nats");
    let dir = tempfile::tempdir().expect("dir");
    // A real CA the helper signs with through the openssl command line.
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Test CA");
    let ca = params.self_signed(&ca_key).expect("ca");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca.pem");
    std::fs::write(dir.path().join("ca.key"), ca_key.serialize_pem()).expect("ca.key");
    let helper = dir.path().join("pki_helper.py");
    std::fs::write(
        &helper,
        r#"import json, subprocess, sys, os
d = os.path.dirname(os.path.abspath(__file__))
req = json.load(sys.stdin)
csr = req["csr"]["csr"]
out = subprocess.run(["openssl", "x509", "-req", "-days", "1", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key", "-CAcreateserial", "-CAserial", d + "/ca.srl"], input=csr.encode(), capture_output=True)
if out.returncode != 0:
    print(json.dumps({"defer": True, "msg": out.stderr.decode()}))
    sys.exit(0)
print(json.dumps({"certificate": out.stdout.decode(), "ca": open(d + "/ca.pem").read(), "ssldir": "/ignored",
  "configuration": {"identity": req["identity"], "plugin.choria.server.provision": "false", "plugin.security.provider": "file"}}))
"#,
    )
    .expect("helper");
    let node = TestPeerNode::start(&nats.url(), "web1.example.net", TOKEN, "", Quirk::None).await;
    let yaml = format!(
        "helper: python3 {}\ntoken: {TOKEN}\nfeatures:\n  pki: true\n",
        helper.display()
    );
    let run = start(&nats, &yaml, "prov1.example.net").await;
    until("provisioned", Duration::from_secs(30), || {
        run.status.snapshot().provisioned == 1
    })
    .await;
    assert_eq!(
        node.actions(),
        ["inventory", "gencsr", "configure", "restart"]
    );
    let configure = node.last("configure").expect("configure");
    assert_eq!(
        node.last("gencsr").expect("gencsr")["cn"],
        "web1.example.net"
    );
    assert_eq!(
        configure["ssldir"], "/etc/choria/web1.example.net/ssl",
        "CSR ssldir wins"
    );
    let cert_pem = configure["certificate"].as_str().expect("cert");
    let block = pem::parse(cert_pem).expect("pem");
    let (_, cert) = x509_parser::parse_x509_certificate(block.contents()).expect("x509");
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .expect("cn")
        .as_str()
        .expect("str")
        .to_string();
    assert_eq!(cn, "web1.example.net");
    assert_eq!(
        cert.issuer()
            .iter_common_name()
            .next()
            .expect("issuer")
            .as_str()
            .expect("str"),
        "Test CA"
    );
    assert!(configure["ca"]
        .as_str()
        .expect("ca")
        .contains("BEGIN CERTIFICATE"));
    run.stop().await;
}

#[tokio::test]
async fn helper_failures_have_documented_outcomes_and_metrics() {
    let nats = TestNats::start("", false).await.expect("nats");
    let dir = tempfile::tempdir().expect("dir");
    let helper = dir.path().join("moody.sh");
    std::fs::write(
        &helper,
        r#"#!/bin/sh
input=$(cat)
case "$input" in
  *defer.example.net*) echo '{"defer":true,"msg":"not yet"}';;
  *crash.example.net*) echo "boom" >&2; exit 3;;
  *hang.example.net*) sleep 30;;
  *garbage.example.net*) echo 'this is not json';;
  *down.example.net*) echo '{"shutdown":true,"msg":"decommissioned"}';;
  *) echo '{"configuration":{"identity":"x","plugin.choria.server.provision":"false"}}';;
esac
"#,
    )
    .expect("helper");
    let mut nodes = Vec::new();
    for name in [
        "defer", "crash", "hang", "garbage", "down", "badkey", "badtypes", "good",
    ] {
        let quirk = match name {
            "badkey" => Quirk::ShortPublicKey,
            "badtypes" => Quirk::WrongTypes,
            _ => Quirk::None,
        };
        nodes.push(
            TestPeerNode::start(
                &nats.url(),
                &format!("{name}.example.net"),
                TOKEN,
                "",
                quirk,
            )
            .await,
        );
    }
    let yaml = format!(
        // One pass per node: per-node retries (tests/retries.rs) are off.
        "helper: /bin/sh {}\nhelper_timeout: 1s\ntoken: {TOKEN}\nworkers: 8\nretry_backoff: 0s\njwt_verify_cert: {}\njwt_signing_key: {}\nfeatures:\n  ed25519: false\n",
        helper.display(),
        "00".repeat(32),
        "/dev/null"
    );
    let run = start(&nats, &yaml, "prov1.example.net").await;
    let m = run.metrics.clone();
    until("all passes finished", Duration::from_secs(30), || {
        let s = run.status.snapshot();
        s.provisioned + s.failed + s.deferred + s.shutdown >= 8
    })
    .await;
    assert_eq!(m.outcome_count(Outcome::Deferred), 1);
    assert_eq!(m.outcome_count(Outcome::Shutdown), 1);
    assert_eq!(m.helper_shutdown_requests.load(Ordering::Relaxed), 1);
    assert_eq!(
        m.outcome_count(Outcome::Provisioned),
        2,
        "good and badkey (ed25519 off)"
    );
    // crash, hang and garbage fail in the helper; badtypes fails on its inventory (B2).
    assert_eq!(m.helper_errors.load(Ordering::Relaxed), 3);
    assert_eq!(m.outcome_count(Outcome::Failed), 4);
    assert_eq!(m.rpc_error_count("rpcutil#inventory"), 1);
    let by_name = |n: &str| {
        nodes
            .iter()
            .find(|p| p.identity == format!("{n}.example.net"))
            .expect("node")
    };
    assert_eq!(by_name("down").actions(), ["inventory", "shutdown"]);
    assert_eq!(by_name("defer").actions(), ["inventory"]);
    assert_eq!(
        by_name("badtypes").actions(),
        ["inventory"],
        "B2/B7: malformed reply not retried"
    );
    run.stop().await;
}

#[tokio::test]
async fn b2_malformed_ed25519_key_fails_only_that_node() {
    let nats = TestNats::start("", false).await.expect("nats");
    let org = Org::new();
    let (seed, token) = org.chain_issuer();
    let jwt = org.provisioning_jwt();
    let bad = TestPeerNode::start(
        &nats.url(),
        "bad.example.net",
        TOKEN,
        &jwt,
        Quirk::ShortPublicKey,
    )
    .await;
    let good = TestPeerNode::start(&nats.url(), "good.example.net", TOKEN, &jwt, Quirk::None).await;
    // This pass also runs the example helper in persistent mode.
    let yaml = format!(
        "helper: env CHORIA_DEMO_ISSUER_PUBLIC={} python3 {} --persistent\nhelper_mode: persistent\ntoken: {TOKEN}\njwt_verify_cert: {}\njwt_signing_key: {}\njwt_signing_token: {}\nfeatures:\n  ed25519: true\n",
        org.seed.public_key_hex(), helper_path().display(), org.seed.public_key_hex(), seed.display(), token.display()
    );
    let run = start(&nats, &yaml, "prov1.example.net").await;
    until("both finished", Duration::from_secs(30), || {
        let s = run.status.snapshot();
        s.provisioned + s.failed >= 2
    })
    .await;
    let s = run.status.snapshot();
    assert_eq!((s.provisioned, s.failed), (1, 1));
    assert_eq!(
        bad.actions(),
        ["jwt", "gen25519"],
        "no retry of a deterministic failure (B7)"
    );
    assert!(good.actions().contains(&"restart".to_string()));
    run.stop().await;
}

#[tokio::test]
async fn s3_token_mismatch_is_refused() {
    let nats = TestNats::start("", false).await.expect("nats");
    let org = Org::new();
    let node = TestPeerNode::start(
        &nats.url(),
        "n1.example.net",
        "other",
        &org.provisioning_jwt(),
        Quirk::None,
    )
    .await;
    let yaml = format!(
        "helper: /bin/true\ntoken: other\njwt_verify_cert: {}\nfeatures:\n  jwt: true\n",
        org.seed.public_key_hex()
    );
    let run = start(&nats, &yaml, "prov1.example.net").await;
    until("failed", Duration::from_secs(30), || {
        run.status.snapshot().failed == 1
    })
    .await;
    assert_eq!(node.actions(), ["jwt"]);
    assert!(run.metrics.encode().contains("reason=\"jwt\""));
    run.stop().await;
}

#[tokio::test]
async fn two_provisioners_elect_one_leader_and_only_it_provisions() {
    let nats = TestNats::start("", true).await.expect("nats");
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.expect("connect"));
    js.create_key_value(async_nats::jetstream::kv::Config {
        bucket: "CHORIA_LEADER_ELECTION".into(),
        max_age: Duration::from_secs(2),
        history: 1,
        ..Default::default()
    })
    .await
    .expect("bucket");
    let node = TestPeerNode::start(&nats.url(), "n1.example.net", TOKEN, "", Quirk::None).await;
    let yaml = format!("helper: /bin/sh -c 'cat >/dev/null; echo {{\\\"configuration\\\":{{\\\"a\\\":\\\"b\\\"}}}}'\ntoken: {TOKEN}\nleader_election: true\nleader_election_ttl: 2s\n");
    let a = start(&nats, &yaml, "a.example.net").await;
    let b = start(&nats, &yaml, "b.example.net").await;
    until("one leader", Duration::from_secs(15), || {
        a.status.snapshot().role == "leader" || b.status.snapshot().role == "leader"
    })
    .await;
    until("provisioned", Duration::from_secs(30), || {
        a.status.snapshot().provisioned + b.status.snapshot().provisioned == 1
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (sa, sb) = (a.status.snapshot(), b.status.snapshot());
    assert!(
        (sa.role == "leader") ^ (sb.role == "leader"),
        "{sa:?} {sb:?}"
    );
    assert_eq!(sa.provisioned + sb.provisioned, 1);
    assert_eq!(
        node.actions().iter().filter(|a| *a == "configure").count(),
        1,
        "configured once"
    );
    let (leader, standby) = if sa.role == "leader" { (a, b) } else { (b, a) };
    assert!(standby.status.snapshot().paused);
    // Stop the leader. It does not delete the key on the way out, so from the bucket's
    // view this is the same as a crash: the key has to expire before the standby wins.
    leader.stop().await;
    until("standby takes over", Duration::from_secs(15), || {
        standby.status.snapshot().role == "leader"
    })
    .await;
    assert!(!standby.status.snapshot().paused);
    standby.stop().await;
}

#[tokio::test]
async fn upgrades_are_issued_once_and_b12_loops_are_stopped() {
    let nats = TestNats::start("", false).await.expect("nats");
    let works = TestPeerNode::start(
        &nats.url(),
        "works.example.net",
        TOKEN,
        "",
        Quirk::UpgradeWorks,
    )
    .await;
    let stuck = TestPeerNode::start(
        &nats.url(),
        "stuck.example.net",
        TOKEN,
        "",
        Quirk::UpgradeStuck,
    )
    .await;
    let yaml = format!(
        "helper: /bin/sh -c 'cat >/dev/null; echo {{\\\"upgrade\\\":\\\"0.2.0\\\",\\\"configuration\\\":{{\\\"a\\\":\\\"b\\\"}}}}'\n\
         token: {TOKEN}\nupgrades_repository: https://repo.example.net/choria\nfeatures:\n  upgrades: true\n"
    );
    let run = start(&nats, &yaml, "prov1.example.net").await;
    until("both settled", Duration::from_secs(30), || {
        let s = run.status.snapshot();
        s.provisioned >= 1 && s.failed >= 1
    })
    .await;
    assert_eq!(
        works.actions(),
        [
            "inventory",
            "release_update",
            "inventory",
            "configure",
            "restart"
        ]
    );
    assert_eq!(
        works.last("release_update").expect("update")["version"],
        "0.2.0"
    );
    assert_eq!(
        works.last("release_update").expect("update")["repository"],
        "https://repo.example.net/choria"
    );
    assert_eq!(
        stuck.actions(),
        ["inventory", "release_update", "inventory"],
        "no second release_update (B12)"
    );
    assert_eq!(run.metrics.outcome_count(Outcome::Upgraded), 2);
    assert!(run.metrics.encode().contains("reason=\"upgrade\""));
    run.stop().await;
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).await.expect("read");
    text
}

#[tokio::test]
async fn metrics_and_healthz_are_served() {
    let nats = TestNats::start("", false).await.expect("nats");
    let settings = Settings::parse_str("helper: /bin/true\nsite: web\n", Path::new("t.yaml"))
        .expect("settings");
    let servers = parse_servers([nats.url()]).expect("url");
    let client = login("p", "choria=p", servers, Tls::Off)
        .connect()
        .await
        .expect("connect");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let provisioner =
        Provisioner::new(settings, client, "p", "choria=p").with_monitor_listener(listener);
    let cancel = CancellationToken::new();
    let task = tokio::spawn(provisioner.run(cancel.clone()));
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(addr, "/metrics").await;
        if metrics.contains("choria_provisioner_discover_cycles{site=\"web\"} 1") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        metrics.contains("choria_provisioner_discover_cycles{site=\"web\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("# TYPE choria_provisioner_rpc_time summary"));
    let health = http_get(addr, "/healthz").await;
    assert!(
        health.starts_with("HTTP/1.0 200") || health.starts_with("HTTP/1.1 200"),
        "{health}"
    );
    assert!(
        health.contains("\"role\":\"active\"") && health.contains("\"paused\":false"),
        "{health}"
    );
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
}

#[tokio::test]
async fn many_nodes_are_each_configured_exactly_once() {
    const NODES: usize = 60;
    let nats = TestNats::start("", false).await.expect("nats");
    let mut peers = Vec::new();
    for i in 0..NODES {
        peers.push(
            TestPeerNode::start(
                &nats.url(),
                &format!("m{i}.example.net"),
                TOKEN,
                "",
                Quirk::None,
            )
            .await,
        );
    }
    let yaml = format!(
        "helper: /bin/sh -c 'while read l; do echo {{\\\"configuration\\\":{{\\\"a\\\":\\\"b\\\"}}}}; done'\n\
         helper_mode: persistent\ntoken: {TOKEN}\nworkers: 16\n"
    );
    let started = std::time::Instant::now();
    let run = start(&nats, &yaml, "prov1.example.net").await;
    until("all provisioned", Duration::from_secs(60), || {
        run.status.snapshot().provisioned == NODES as u64
    })
    .await;
    // Measurement only (printed with --nocapture), never asserted.
    eprintln!(
        "provisioned {NODES} nodes in {:?} with 16 workers",
        started.elapsed()
    );
    for peer in &peers {
        assert_eq!(
            peer.actions(),
            ["inventory", "configure", "restart"],
            "{}",
            peer.identity
        );
    }
    assert_eq!(run.status.snapshot().failed, 0);
    run.stop().await;
}

#[tokio::test]
async fn registration_and_startup_events_queue_nodes() {
    let nats = TestNats::start("", false).await.expect("nats");
    // One pass per node: per-node retries (tests/retries.rs) are off.
    let run = start(
        &nats,
        "helper: /bin/false\nretry_backoff: 0s\n",
        "prov1.example.net",
    )
    .await;
    // Discovery ran once (nobody answered); now nodes announce themselves.
    until("first discovery", Duration::from_secs(10), || {
        run.metrics.discover_cycles.load(Ordering::Relaxed) == 1
    })
    .await;
    let reg = TestPeerNode::start(&nats.url(), "reg.example.net", TOKEN, "", Quirk::None).await;
    let evt = TestPeerNode::start(&nats.url(), "evt.example.net", TOKEN, "", Quirk::None).await;
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let id = choria_protocol::ids::new_request_id();
    let registration =
        choria_provisioner::wire::encode_request(&choria_provisioner::wire::RequestSpec {
            version: Version::V1,
            request_id: &id,
            sender_id: "reg.example.net",
            caller_id: "choria=reg.example.net",
            collective: "provisioning",
            agent: "registration",
            payload: b"{}",
            agent_filter: vec![],
            reply_to: "",
        })
        .expect("encode");
    client
        .publish("provisioning.registration.data", registration.into())
        .await
        .expect("publish");
    let event = br#"{"specversion":"1.0","source":"io.choria.lifecycle","type":"io.choria.lifecycle.v1.startup","data":{"protocol":"io.choria.lifecycle.v1.startup","identity":"evt.example.net","component":"provision_mode_server"}}"#;
    client
        .publish(
            "choria.lifecycle.event.startup.provision_mode_server",
            event.as_slice().into(),
        )
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    until("both passes ran", Duration::from_secs(10), || {
        run.status.snapshot().failed == 2
    })
    .await;
    assert_eq!(reg.actions(), ["inventory"]);
    assert_eq!(evt.actions(), ["inventory"]);
    assert_eq!(run.metrics.event_discovered.load(Ordering::Relaxed), 1);
    assert_eq!(
        run.metrics.helper_errors.load(Ordering::Relaxed),
        2,
        "/bin/false fails each pass"
    );
    run.stop().await;
}

#[tokio::test]
async fn b6_refused_shutdown_is_a_failure_not_a_success() {
    let nats = TestNats::start("", false).await.expect("nats");
    let old =
        TestPeerNode::start(&nats.url(), "old.example.net", TOKEN, "", Quirk::OldServer).await;
    let yaml = format!(
        "helper: /bin/sh -c 'cat >/dev/null; echo {{\\\"shutdown\\\":true}}'\ntoken: {TOKEN}\n"
    );
    let run = start(&nats, &yaml, "prov1.example.net").await;
    until("pass finished", Duration::from_secs(10), || {
        run.status.snapshot().failed == 1
    })
    .await;
    assert_eq!(
        old.actions(),
        ["inventory", "shutdown"],
        "unknown action is not retried (B7)"
    );
    assert_eq!(run.metrics.provisioned.load(Ordering::Relaxed), 0);
    assert_eq!(
        run.metrics.helper_shutdown_requests.load(Ordering::Relaxed),
        0
    );
    assert!(run.metrics.encode().contains("reason=\"shutdown_refused\""));
    run.stop().await;
}
