//! Broker discovery through DNS SRV, end to end: a real DNS server on 127.0.0.1 publishes
//! `_choria-provisioner._tcp.example.net` (for the node's provisioning token `chsrv`) and
//! `_mcollective-server._tcp.example.net` (for the provisioner, whose Choria client config
//! has no `plugin.choria.middleware_hosts`), both pointing at a real TLS broker. The node
//! is provisioned into the fleet with neither side given a broker address.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use choria_provisioner::{CancellationToken, ClientSettings, Provisioner, Settings};
use choria_resolve::Resolver;
use choria_server::node::{Node, NodeOptions, Phase, RestartPolicy};
use choria_testkit::dns::TestDns;
use choria_testkit::site::{
    TestSite, PROVISIONER_CALLER, PROVISIONING_ACCESS_TOKEN, TOKEN_VALIDITY,
};
use choria_tokens::{sign_token, NewProvisioning, ProvisioningClaims, SigningKey};

const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn node_and_provisioner_find_the_broker_through_srv() {
    let site = TestSite::start().await.expect("site");
    let dir = tempfile::tempdir().expect("dir");
    let port = choria_resolve::parse_url(&site.broker_url)
        .expect("broker url")
        .port;
    let dns = TestDns::start().await.expect("DNS server");
    dns.add_srv(
        "_choria-provisioner._tcp.example.net",
        0,
        0,
        port,
        "127.0.0.1",
    );
    // A lower-priority record that must not be tried first, then the real broker.
    dns.add_srv(
        "_mcollective-server._tcp.example.net",
        20,
        0,
        1,
        "127.0.0.1",
    );
    dns.add_srv(
        "_mcollective-server._tcp.example.net",
        10,
        0,
        port,
        "127.0.0.1",
    );
    let resolver = Resolver::with_nameservers(&[dns.addr()]).expect("resolver");

    // The node: a provisioning token naming only an SRV domain.
    let claims = ProvisioningClaims::new(
        NewProvisioning {
            secure: true,
            by_default: true,
            token: PROVISIONING_ACCESS_TOKEN.into(),
            srv_domain: "example.net".into(),
            org: "choria".into(),
            validity: TOKEN_VALIDITY,
            protocol_v2: true,
            ..Default::default()
        },
        SystemTime::now(),
    )
    .expect("claims");
    let token = sign_token(
        &claims,
        &SigningKey::Ed25519(site.provisioning_signer.clone()),
    )
    .expect("signed token");
    let token_path = dir.path().join("provisioning.jwt");
    std::fs::write(&token_path, token).expect("write token");
    let node_dir = dir.path().join("n1");
    std::fs::create_dir_all(&node_dir).expect("node dir");
    let node = Arc::new(
        Node::new(NodeOptions {
            config_file: node_dir.join("server.conf"),
            provisioning_jwt: Some(token_path),
            identity: Some("n1.example.net".into()),
            restart: RestartPolicy::InPlace,
        })
        .with_resolver(resolver.clone()),
    );
    let mut phase = node.phase();
    let cancel = CancellationToken::new();
    let (n, c) = (node.clone(), cancel.clone());
    tokio::spawn(async move { n.run(c).await });
    tokio::time::timeout(
        WAIT,
        phase.wait_for(|p| *p == Phase::Provisioning || matches!(p, Phase::Failed(_))),
    )
    .await
    .expect("node reaches the broker found through SRV")
    .expect("phase");
    assert_eq!(*phase.borrow(), Phase::Provisioning);

    // The provisioner: a Choria client config with an SRV domain and no broker list.
    let helper =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/helpers/ed25519_helper.py");
    let yaml = format!(
        "helper: env CHORIA_DEMO_ISSUER_PUBLIC={} CHORIA_DEMO_BROKER_URL={} CHORIA_DEMO_CA_FILE={} python3 {} --persistent\n\
         helper_mode: persistent\ntoken: {PROVISIONING_ACCESS_TOKEN}\nsite: srv\nworkers: 2\n\
         broker_provisioning_password: {}\n\
         jwt_verify_cert: {}\njwt_signing_key: {}\njwt_signing_token: {}\nfeatures:\n  ed25519: true\n",
        site.org_issuer.public_key_hex(),
        site.broker_url,
        site.ca_path.display(),
        helper.display(),
        site.provisioner_password,
        site.provisioning_signer_public_path.display(),
        site.provisioner_seed_path.display(),
        site.provisioner_token_path.display(),
    );
    let settings = Settings::parse_str(&yaml, Path::new("srv.yaml")).expect("settings");
    let client_conf = dir.path().join("client.conf");
    std::fs::write(
        &client_conf,
        format!(
            "identity = provisioner.example.net\nplugin.choria.srv_domain = example.net\n\
             discovery_timeout = 3\nplugin.security.provider = choria\n\
             plugin.security.choria.token_file = {}\nplugin.security.choria.seed_file = {}\n\
             plugin.security.choria.ca = {}\n",
            site.provisioner_token_path.display(),
            site.provisioner_seed_path.display(),
            site.ca_path.display(),
        ),
    )
    .expect("write client.conf");
    let client = ClientSettings::load(&client_conf, &settings).expect("client settings");
    assert_eq!(client.caller_id, PROVISIONER_CALLER);
    let urls = client
        .broker_urls(Some(&resolver))
        .await
        .expect("SRV brokers");
    assert_eq!(
        urls,
        [
            format!("nats://127.0.0.1:{port}"),
            "nats://127.0.0.1:1".to_string()
        ]
    );
    let nats = client
        .connect_with(Some(&resolver))
        .await
        .expect("provisioner connects to the broker found through SRV");
    let provisioner = Provisioner::new(settings, nats, &client.identity, &client.caller_id)
        .with_protocol(client.protocol())
        .with_timeouts(client.timeouts);
    let status = provisioner.status();
    let run = tokio::spawn(provisioner.run(cancel.clone()));

    let reached = tokio::time::timeout(
        WAIT,
        phase.wait_for(|p| *p == Phase::InFleet || matches!(p, Phase::Failed(_))),
    )
    .await
    .is_ok();
    assert!(
        reached && *phase.borrow() == Phase::InFleet,
        "node reached the fleet; phase {:?}, status {:?}\n{}",
        *phase.borrow(),
        status.snapshot(),
        site.broker_log()
    );
    assert_eq!(status.snapshot().provisioned, 1);
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(15), run).await;
}

#[tokio::test]
async fn no_srv_records_is_a_start_up_error_naming_the_keys() {
    let dns = TestDns::start().await.expect("DNS server");
    let resolver = Resolver::with_nameservers(&[dns.addr()]).expect("resolver");
    let settings = Settings::parse_str(
        "helper: /bin/true\nchoria_insecure: true\n",
        Path::new("p.yaml"),
    )
    .expect("settings");
    let config = choria_config::Config::parse_str(
        "identity = p.example.net\nplugin.choria.srv_domain = example.net\n",
        "client.conf",
    )
    .expect("config");
    let client = ClientSettings::from_config(&config, &settings).expect("client settings");
    let err = client
        .connect_with(Some(&resolver))
        .await
        .expect_err("nothing to connect to");
    let text = err.to_string();
    for needle in [
        "plugin.choria.middleware_hosts",
        "plugin.choria.srv_domain",
        "_mcollective-server._tcp.example.net",
        "_x-puppet-mcollective._tcp.example.net",
    ] {
        assert!(text.contains(needle), "{needle} missing from: {text}");
    }
    // Both names, asked SRV_ATTEMPTS times.
    assert_eq!(
        dns.questions(),
        2 * choria_provisioner::client::SRV_ATTEMPTS as usize
    );
}
