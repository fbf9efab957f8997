//! End to end against a real broker (TestSite): a node in normal mode with a certificate,
//! key and CA (file provider, protocol v1) answers an RSA-signed `rpcutil#ping` from a caller
//! whose certificate the site CA issued, and drops the same request signed with a
//! certificate from another CA.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use rsa::pkcs8::DecodePrivateKey as _;
use secrecy::ExposeSecret;
use serde_json::Map;
use tokio_util::sync::CancellationToken;

use choria_pki::CertificateAuthority;
use choria_protocol::message::{self, RequestMeta, RequestSigner, Routing};
use choria_protocol::{subjects, RpcReply, RpcRequest, Version};
use choria_server::connection::{ClientCertificate, Tls};
use choria_server::node::{Node, NodeOptions, Phase, RestartPolicy};
use choria_testkit::site::{Credentials, SiteOptions, TestSite};
use choria_tokens::{ClientPermissions, Ed25519Seed};

const WAIT: Duration = Duration::from_secs(30);
const IDENTITY: &str = "n1.example.net";
const COLLECTIVE: &str = "mcollective";
const CALLER: &str = "choria=bob.mcollective";

#[tokio::test]
async fn certificate_node_answers_only_requests_signed_by_a_certificate_of_its_ca() {
    // mTLS broker; verified connections without a JWT are servers (the demo's pki flow).
    let site = TestSite::start_with(SiteOptions {
        mtls: true,
        extra_config: "plugin.choria.network.client_hosts = 127.0.0.1\n".into(),
        ..SiteOptions::default()
    })
    .await
    .unwrap();

    // The node: certificate, key and CA in its ssl directory, no server JWT.
    let dir = tempfile::tempdir().unwrap();
    let ssl = dir.path().join("ssl");
    std::fs::create_dir(&ssl).unwrap();
    let node_cert = site.ca.issue_client_certificate(IDENTITY).unwrap();
    std::fs::write(ssl.join("certificate.pem"), &node_cert.certificate_pem).unwrap();
    std::fs::write(
        ssl.join("private.pem"),
        node_cert.private_key_pem.expose_secret(),
    )
    .unwrap();
    std::fs::write(ssl.join("ca.pem"), site.ca.certificate_pem()).unwrap();
    let config_file = dir.path().join("server.conf");
    std::fs::write(
        &config_file,
        format!(
            "identity = {IDENTITY}\n\
             plugin.choria.server.provision = false\n\
             plugin.choria.middleware_hosts = {url}\n\
             plugin.choria.ssldir = {ssl}\n\
             plugin.security.file.ca = {ca}\n\
             collectives = {COLLECTIVE}\n",
            url = site.broker_url,
            ssl = ssl.display(),
            ca = ssl.join("ca.pem").display(),
        ),
    )
    .unwrap();
    let node = Arc::new(Node::new(NodeOptions {
        config_file,
        provisioning_jwt: None,
        identity: Some(IDENTITY.into()),
        restart: RestartPolicy::InPlace,
    }));
    let mut phase = node.phase();
    let cancel = CancellationToken::new();
    let runner = {
        let (node, cancel) = (node.clone(), cancel.clone());
        tokio::spawn(async move { node.run(cancel).await })
    };
    tokio::time::timeout(
        WAIT,
        phase.wait_for(|p| matches!(p, Phase::InFleet | Phase::Failed(_))),
    )
    .await
    .expect("phase in time")
    .unwrap();
    assert_eq!(*phase.borrow(), Phase::InFleet);

    // The caller: one RSA key behind two certificates for the same name, one from the
    // site CA and one from another CA.
    let key_pem = choria_pki::generate_rsa_key_pem(2048).unwrap();
    let key = rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem).unwrap();
    let csr = choria_pki::generate_csr("bob.mcollective", &key_pem).unwrap();
    let good_cert = site.ca.sign_csr(&csr, Duration::from_secs(3600)).unwrap();
    let other_ca = CertificateAuthority::generate("Choria Test Site CA").unwrap();
    let bad_cert = other_ca.sign_csr(&csr, Duration::from_secs(3600)).unwrap();

    // The transport connection is a client with a certificate and a JWT allowed
    // everywhere; the request signature is what the node checks.
    let transport_cert = site
        .ca
        .issue_client_certificate("client.example.net")
        .unwrap();
    std::fs::write(
        dir.path().join("client.pem"),
        &transport_cert.certificate_pem,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("client-key.pem"),
        transport_cert.private_key_pem.expose_secret(),
    )
    .unwrap();
    let seed = Ed25519Seed::generate();
    let token = site
        .mint_client_token(
            "choria=transport",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                org_admin: true,
                ..ClientPermissions::default()
            }),
        )
        .unwrap();
    let credentials = Credentials {
        token: Some(token),
        seed: Some(seed),
        ..Credentials::default()
    };
    let mut login = site.login(&site.broker_url, credentials, "client").unwrap();
    login.tls = Tls::Verified {
        ca: site.ca_path.clone(),
        client: Some(ClientCertificate {
            cert: dir.path().join("client.pem"),
            key: dir.path().join("client-key.pem"),
        }),
    };
    let client = login.connect().await.unwrap();
    let prefix = subjects::reply_prefix(COLLECTIVE, CALLER, false).unwrap();
    let mut replies = client.subscribe(format!("{prefix}.>")).await.unwrap();
    client.flush().await.unwrap();

    let mut ids = Vec::new();
    for certificate_pem in [&bad_cert, &good_cert] {
        let meta = RequestMeta::new(
            "client.example.net",
            CALLER,
            COLLECTIVE,
            "rpcutil",
            Duration::from_secs(60),
            SystemTime::now(),
        );
        let payload = RpcRequest::new("rpcutil", "ping", Map::new())
            .encode()
            .unwrap();
        let routing = Routing {
            reply_to: subjects::reply(COLLECTIVE, CALLER, &meta.id, false).unwrap(),
            sender: "client.example.net".into(),
            hops: vec![],
        };
        let signer = RequestSigner::Rsa {
            key: &key,
            certificate_pem,
        };
        let bytes =
            message::encode_request(Version::V1, &meta, &payload, &signer, &routing).unwrap();
        client
            .publish(format!("{COLLECTIVE}.node.{IDENTITY}"), bytes.into())
            .await
            .unwrap();
        ids.push(meta.id);
    }
    client.flush().await.unwrap();

    let first = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("a reply in time")
        .unwrap();
    let decoded = message::decode_reply(&first.payload).unwrap();
    assert_eq!(decoded.version, Version::V1);
    assert_eq!(
        decoded.meta.request_id, ids[1],
        "only the request signed by a certificate of the node's CA is answered"
    );
    let reply = RpcReply::decode(&decoded.payload).unwrap();
    assert!(reply.is_ok(), "ping failed: {}", reply.statusmsg);
    assert!(
        tokio::time::timeout(Duration::from_millis(500), replies.next())
            .await
            .is_err(),
        "the request signed by another CA's certificate got a reply"
    );

    cancel.cancel();
    let _ = tokio::time::timeout(WAIT, runner).await;
}
