//! The provisioner against a real site: a real broker (TestSite, JWT mode with TLS and the
//! authorization callout) and real `choria-server` nodes in provisioning mode. The
//! provisioner connects with its chain-issuer client token, password and nonce signature,
//! provisions each node through the jwt + ed25519 flow with the example Python helper, and
//! every node comes back in the `choria` account as a fleet member.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use choria_provisioner::wire::Version;
use choria_provisioner::{CancellationToken, Provisioner, Settings};
use choria_server::node::{Node, NodeOptions, Phase, RestartPolicy};
use choria_testkit::site::{SiteOptions, TestSite, PROVISIONER_CALLER, PROVISIONING_ACCESS_TOKEN};
use choria_tokens::{parse_server_token, Ed25519Seed};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn real_nodes_are_provisioned_into_the_fleet() {
    let site = TestSite::start().await.expect("site");
    let dir = tempfile::tempdir().expect("dir");

    let mut nodes = Vec::new();
    let cancel = CancellationToken::new();
    for i in 0..3 {
        let node_dir = dir.path().join(format!("n{i}"));
        std::fs::create_dir_all(&node_dir).expect("node dir");
        let node = Arc::new(Node::new(NodeOptions {
            config_file: node_dir.join("server.conf"),
            provisioning_jwt: Some(site.provisioning_token_path.clone()),
            identity: Some(format!("n{i}.example.net")),
            restart: RestartPolicy::InPlace,
        }));
        let phase = node.phase();
        let (n, c) = (node.clone(), cancel.clone());
        tokio::spawn(async move { n.run(c).await });
        nodes.push((node_dir, phase));
    }
    for (_, phase) in &mut nodes {
        tokio::time::timeout(
            WAIT,
            phase.wait_for(|p| *p == Phase::Provisioning || matches!(p, Phase::Failed(_))),
        )
        .await
        .expect("node waits for provisioning")
        .expect("phase");
    }

    let helper =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/helpers/ed25519_helper.py");
    let yaml = format!(
        "helper: env CHORIA_DEMO_ISSUER_PUBLIC={} CHORIA_DEMO_BROKER_URL={} CHORIA_DEMO_CA_FILE={} python3 {} --persistent\n\
         helper_mode: persistent\ntoken: {PROVISIONING_ACCESS_TOKEN}\nsite: real\nworkers: 4\n\
         jwt_verify_cert: {}\njwt_signing_key: {}\njwt_signing_token: {}\nfeatures:\n  ed25519: true\n",
        site.org_issuer.public_key_hex(),
        site.broker_url,
        site.ca_path.display(),
        helper.display(),
        site.provisioning_signer_public_path.display(),
        site.provisioner_seed_path.display(),
        site.provisioner_token_path.display(),
    );
    let settings = Settings::parse_str(&yaml, Path::new("site.yaml")).expect("settings");
    // The site's provisioner connection carries the password, the client JWT and the
    // nonce signature, with its inbox under the provisioner's reply prefix.
    let client = site
        .connect_provisioner()
        .await
        .expect("provisioner connects");
    let provisioner = Provisioner::new(
        settings,
        client,
        "provisioner.example.net",
        PROVISIONER_CALLER,
    )
    .with_protocol(Version::V2);
    let status = provisioner.status();
    let run = tokio::spawn(provisioner.run(cancel.clone()));

    for (node_dir, phase) in &mut nodes {
        let reached = tokio::time::timeout(
            WAIT,
            phase.wait_for(|p| *p == Phase::InFleet || matches!(p, Phase::Failed(_))),
        )
        .await
        .is_ok();
        assert!(
            reached,
            "node in {} reached the fleet; status {:?}\n{}",
            node_dir.display(),
            status.snapshot(),
            site.broker_log()
        );
        assert_eq!(*phase.borrow(), Phase::InFleet);
        let jwt = std::fs::read_to_string(node_dir.join("server.jwt")).expect("server.jwt written");
        let org = choria_tokens::PublicKey::ed25519_from_hex(&site.org_issuer.public_key_hex())
            .expect("org key");
        let claims = parse_server_token(jwt.trim(), &org, SystemTime::now())
            .expect("chained server token verifies");
        let seed = Ed25519Seed::from_file(node_dir.join("server.seed")).expect("seed");
        assert_eq!(claims.standard.public_key, seed.public_key_hex());
    }
    assert_eq!(status.snapshot().provisioned, 3);
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), run).await;
}

#[tokio::test]
async fn two_provisioners_share_one_election_through_the_broker() {
    let site = TestSite::start_with(SiteOptions {
        streams: true,
        extra_config: "plugin.choria.network.stream.leader_election_ttl = 3s\n".into(),
        ..Default::default()
    })
    .await
    .expect("site");
    let dir = tempfile::tempdir().expect("dir");
    let cancel = CancellationToken::new();
    let node_dir = dir.path().join("n1");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let node = Arc::new(Node::new(NodeOptions {
        config_file: node_dir.join("server.conf"),
        provisioning_jwt: Some(site.provisioning_token_path.clone()),
        identity: Some("n1.example.net".into()),
        restart: RestartPolicy::InPlace,
    }));
    let mut phase = node.phase();
    let (n, c) = (node.clone(), cancel.clone());
    tokio::spawn(async move { n.run(c).await });

    let helper =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/helpers/ed25519_helper.py");
    let yaml = format!(
        "helper: env CHORIA_DEMO_ISSUER_PUBLIC={} CHORIA_DEMO_BROKER_URL={} CHORIA_DEMO_CA_FILE={} python3 {}\n\
         token: {PROVISIONING_ACCESS_TOKEN}\nleader_election: true\n\
         jwt_verify_cert: {}\njwt_signing_key: {}\njwt_signing_token: {}\nfeatures:\n  ed25519: true\n",
        site.org_issuer.public_key_hex(),
        site.broker_url,
        site.ca_path.display(),
        helper.display(),
        site.provisioning_signer_public_path.display(),
        site.provisioner_seed_path.display(),
        site.provisioner_token_path.display(),
    );
    let mut running = Vec::new();
    for name in ["pa.example.net", "pb.example.net"] {
        let settings = Settings::parse_str(&yaml, Path::new("site.yaml")).expect("settings");
        let client = site.connect_provisioner().await.expect("connect");
        let p =
            Provisioner::new(settings, client, name, PROVISIONER_CALLER).with_protocol(Version::V2);
        let status = p.status();
        let own = CancellationToken::new();
        let task = tokio::spawn(p.run(own.clone()));
        running.push((status, own, task));
    }
    let leader_seen = tokio::time::timeout(WAIT, async {
        loop {
            if running
                .iter()
                .any(|(s, _, _)| s.snapshot().role == "leader")
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(
        leader_seen.is_ok(),
        "a leader was elected through choria.streams\n{}",
        site.broker_log()
    );
    let reached = tokio::time::timeout(
        WAIT,
        phase.wait_for(|p| *p == Phase::InFleet || matches!(p, Phase::Failed(_))),
    )
    .await
    .is_ok();
    assert!(
        reached && *phase.borrow() == Phase::InFleet,
        "node provisioned"
    );
    let roles: Vec<&str> = running.iter().map(|(s, _, _)| s.snapshot().role).collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "leader").count(),
        1,
        "{roles:?}"
    );
    let provisioned: u64 = running
        .iter()
        .map(|(s, _, _)| s.snapshot().provisioned)
        .sum();
    assert_eq!(provisioned, 1, "configured by one provisioner only");

    // Stop the leader; the standby takes over once the key's TTL passes.
    let leader = running
        .iter()
        .position(|(s, _, _)| s.snapshot().role == "leader")
        .expect("leader");
    let (_, own, task) = running.remove(leader);
    own.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), task).await;
    let (standby, own, _) = &running[0];
    let took_over = tokio::time::timeout(Duration::from_secs(30), async {
        while standby.snapshot().role != "leader" {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await;
    assert!(took_over.is_ok(), "standby took over");
    own.cancel();
    cancel.cancel();
}

/// PKI flow on a real node, with the helper generating the key (spec §4.4): the node
/// decrypts our X25519 + legacy-PEM encrypted key and stores exactly the helper's key,
/// beside the certificate the helper's CA signed.
#[tokio::test]
async fn pki_flow_with_key_delivery_to_a_real_node() {
    let site = TestSite::start().await.expect("site");
    let dir = tempfile::tempdir().expect("dir");
    let ca_key = rcgen::KeyPair::generate().expect("ca key");
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "Helper CA");
    let ca = params.self_signed(&ca_key).expect("ca");
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).expect("ca.pem");
    std::fs::write(dir.path().join("ca.key"), ca_key.serialize_pem()).expect("ca.key");
    let helper = dir.path().join("keygen_helper.py");
    std::fs::write(
        &helper,
        r#"import json, os, subprocess, sys, tempfile
d = os.path.dirname(os.path.abspath(__file__))
req = json.load(sys.stdin)
ident = req["identity"]
assert req["csr"]["csr"].startswith("-----BEGIN CERTIFICATE REQUEST")
with tempfile.TemporaryDirectory() as t:
    run = lambda *a: subprocess.run(a, check=True, capture_output=True)
    run("openssl", "genrsa", "-traditional", "-out", t + "/k.pem", "2048")
    run("openssl", "req", "-new", "-key", t + "/k.pem", "-subj", "/CN=" + ident, "-out", t + "/r.csr")
    run("openssl", "x509", "-req", "-in", t + "/r.csr", "-CA", d + "/ca.pem", "-CAkey", d + "/ca.key",
        "-CAcreateserial", "-CAserial", t + "/ca.srl", "-days", "1", "-out", t + "/c.pem")
    key = open(t + "/k.pem").read()
    cert = open(t + "/c.pem").read()
open(d + "/delivered-" + ident + ".pem", "w").write(key)
print(json.dumps({"key": key, "certificate": cert, "ca": open(d + "/ca.pem").read(), "ssldir": "/ignored",
  "configuration": {"identity": ident, "plugin.choria.server.provision": "false",
                    "plugin.security.provider": "file", "plugin.choria.middleware_hosts": "tls://127.0.0.1:1"}}))
"#,
    )
    .expect("helper");

    let node_dir = dir.path().join("web1");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let node = Arc::new(Node::new(NodeOptions {
        config_file: node_dir.join("server.conf"),
        provisioning_jwt: Some(site.provisioning_token_path.clone()),
        identity: Some("web1.example.net".into()),
        restart: RestartPolicy::InPlace,
    }));
    let mut phase = node.phase();
    let cancel = CancellationToken::new();
    let (n, c) = (node.clone(), cancel.clone());
    tokio::spawn(async move { n.run(c).await });

    let yaml = format!(
        "helper: python3 {}\ntoken: {PROVISIONING_ACCESS_TOKEN}\njwt_verify_cert: {}\nfeatures:\n  pki: true\n  jwt: true\n",
        helper.display(),
        site.provisioning_signer_public_path.display(),
    );
    let settings = Settings::parse_str(&yaml, Path::new("site.yaml")).expect("settings");
    let client = site.connect_provisioner().await.expect("connect");
    let provisioner = Provisioner::new(
        settings,
        client,
        "provisioner.example.net",
        PROVISIONER_CALLER,
    )
    .with_protocol(Version::V2);
    let status = provisioner.status();
    let run = tokio::spawn(provisioner.run(cancel.clone()));

    let provisioned = tokio::time::timeout(WAIT, async {
        while status.snapshot().provisioned + status.snapshot().failed == 0 {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(provisioned.is_ok(), "pass finished");
    assert_eq!(
        status.snapshot().provisioned,
        1,
        "{:?} phase {:?}",
        status.snapshot(),
        *phase.borrow_and_update()
    );
    let delivered = std::fs::read_to_string(dir.path().join("delivered-web1.example.net.pem"))
        .expect("helper key");
    let stored = std::fs::read_to_string(node_dir.join("ssl/private.pem")).expect("node key");
    let der = |text: &str| pem::parse(text.trim()).expect("pem").contents().to_vec();
    assert_eq!(
        der(&stored),
        der(&delivered),
        "node decrypted exactly the helper's key"
    );
    let cert = std::fs::read_to_string(node_dir.join("ssl/certificate.pem")).expect("certificate");
    assert!(cert.contains("BEGIN CERTIFICATE"));
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), run).await;
}
