//! Node connections against a real broker (TestSite: nats-server + authorization service):
//! provisioning mode with anonymous TLS and the provisioning JWT, normal mode with the
//! server JWT and a nonce signature over CA-verified TLS, and refusals.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use choria_server::connection::{connect, ConnectError, ConnectSpec, Credentials};
use choria_server::resolve::parse_urls;
use choria_testkit::site::TestSite;

const WAIT: Duration = Duration::from_secs(15);

fn provisioning_spec(site: &TestSite, identity: &str, jwt: String) -> ConnectSpec {
    ConnectSpec {
        servers: parse_urls(&site.broker_url).unwrap(),
        name: identity.into(),
        inbox_prefix: "provisioning.reply".into(),
        credentials: Credentials::Provisioning {
            jwt: jwt.into(),
            user: None,
        },
        ca: None,
        connect_timeout: choria_server::connection::CONNECT_TIMEOUT,
    }
}

#[tokio::test]
async fn provisioning_node_joins_the_provisioning_account() {
    let site = TestSite::start().await.unwrap();
    let cancel = CancellationToken::new();
    let spec = provisioning_spec(&site, "n1.example.net", site.provisioning_token.clone());
    let node = tokio::time::timeout(WAIT, connect(&spec, &cancel))
        .await
        .unwrap()
        .unwrap();
    let mut requests = node
        .subscribe("provisioning.node.n1.example.net")
        .await
        .unwrap();
    node.flush().await.unwrap();

    // The provisioner reaches the node on its directed subject: both are in `provisioning`.
    let provisioner = site.connect_provisioner().await.unwrap();
    provisioner
        .publish("provisioning.node.n1.example.net", "hello".into())
        .await
        .unwrap();
    provisioner.flush().await.unwrap();
    let message = tokio::time::timeout(WAIT, requests.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.payload.as_ref(), b"hello");
}

#[tokio::test]
async fn a_wrong_provisioning_token_never_connects() {
    let site = TestSite::start().await.unwrap();
    let cancel = CancellationToken::new();
    let spec = provisioning_spec(&site, "n2.example.net", "not.a.token".into());
    let stop = cancel.clone();
    let stopper = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let result = tokio::time::timeout(WAIT, connect(&spec, &cancel))
        .await
        .unwrap();
    assert!(matches!(result, Err(ConnectError::Cancelled)), "{result:?}");
    stopper.await.unwrap();
}

#[tokio::test]
async fn provisioned_node_connects_with_its_server_jwt() {
    let site = TestSite::start().await.unwrap();
    let (seed, _) = site.new_seed("n3").unwrap();
    let jwt = site
        .mint_server_token("n3.example.net", seed.public_key_bytes(), None)
        .unwrap();
    let cancel = CancellationToken::new();
    let spec = ConnectSpec {
        servers: parse_urls(&site.broker_url).unwrap(),
        name: "n3.example.net".into(),
        inbox_prefix: format!(
            "choria.reply.{}",
            choria_protocol::subjects::md5_hex("n3.example.net")
        ),
        credentials: Credentials::ServerJwt {
            jwt: jwt.into(),
            seed: Box::new(seed),
            certificate: None,
        },
        ca: Some(site.ca_path.clone()),
        connect_timeout: choria_server::connection::CONNECT_TIMEOUT,
    };
    let node = tokio::time::timeout(WAIT, connect(&spec, &cancel))
        .await
        .unwrap()
        .unwrap();
    let mut requests = node.subscribe("choria.node.n3.example.net").await.unwrap();
    node.flush().await.unwrap();

    let (client_seed, _) = site.new_seed("admin").unwrap();
    let client_jwt = site
        .mint_client_token(
            "choria=admin",
            client_seed.public_key_bytes(),
            Some(choria_tokens::ClientPermissions {
                fleet_management: true,
                ..Default::default()
            }),
        )
        .unwrap();
    let client = site
        .connect_jwt(&client_jwt, &client_seed, "admin")
        .await
        .unwrap();
    client
        .publish("choria.node.n3.example.net", "req".into())
        .await
        .unwrap();
    client.flush().await.unwrap();
    let message = tokio::time::timeout(WAIT, requests.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(message.payload.as_ref(), b"req");
}

#[tokio::test]
async fn verified_tls_refuses_an_unknown_ca() {
    let site = TestSite::start().await.unwrap();
    let (seed, _) = site.new_seed("n4").unwrap();
    let jwt = site
        .mint_server_token("n4.example.net", seed.public_key_bytes(), None)
        .unwrap();
    // A CA that did not sign the broker certificate.
    let other = rcgen::generate_simple_self_signed(vec!["other".to_string()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("other-ca.pem");
    std::fs::write(&ca, other.cert.pem()).unwrap();
    let cancel = CancellationToken::new();
    let spec = ConnectSpec {
        servers: parse_urls(&site.broker_url).unwrap(),
        name: "n4.example.net".into(),
        inbox_prefix: "choria.reply".into(),
        credentials: Credentials::ServerJwt {
            jwt: jwt.into(),
            seed: Box::new(seed),
            certificate: None,
        },
        ca: Some(ca),
        connect_timeout: choria_server::connection::CONNECT_TIMEOUT,
    };
    let stop = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(3)).await;
        stop.cancel();
    });
    let result = tokio::time::timeout(WAIT, connect(&spec, &cancel))
        .await
        .unwrap();
    assert!(matches!(result, Err(ConnectError::Cancelled)), "{result:?}");
}
