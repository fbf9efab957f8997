//! Two brokers joined by cluster routes (`plugin.choria.network.peers`): each runs its own
//! authorization service, and placement, isolation and the lifecycle import hold across them.

mod common;

use choria_broker::{Broker, BrokerSettings, RunningBroker};
use choria_testkit::delivery::publish_until_received;
use choria_testkit::free_port;
use choria_testkit::site::{Credentials, SiteOptions, TestSite};
use choria_tokens::{ClientPermissions, Ed25519Seed};
use common::*;

const PEER_USER: &str = "routes";
const PEER_PASSWORD: &str = "route-secret";

/// Site A runs broker A; broker B is started from the same Choria config with its own
/// identity, ports and work directory, and each names the other as its peer.
struct Cluster {
    site: TestSite,
    b: RunningBroker,
    b_url: String,
}

async fn start_cluster() -> Cluster {
    let (a_peer, b_peer) = (free_port().expect("port"), free_port().expect("port"));
    let site = TestSite::start_with(SiteOptions {
        extra_config: format!(
            "plugin.choria.network.peer_port = {a_peer}\n\
             plugin.choria.network.peers = nats://127.0.0.1:{b_peer}\n\
             plugin.choria.network.peer_user = {PEER_USER}\n\
             plugin.choria.network.peer_password = {PEER_PASSWORD}\n"
        ),
        ..Default::default()
    })
    .await
    .expect("broker A starts");

    let b_port = free_port().expect("port");
    let mut config = std::fs::read_to_string(&site.broker_config_path).expect("A's config");
    config.push_str(&format!(
        "identity = testsite-broker-b\n\
         plugin.choria.network.client_port = {b_port}\n\
         plugin.choria.network.peer_port = {b_peer}\n\
         plugin.choria.network.peers = nats://127.0.0.1:{a_peer}\n"
    ));
    let b_config = site.dir.path().join("broker-b.conf");
    std::fs::write(&b_config, config).expect("B's config");
    let parsed = choria_config::Config::load(&b_config).expect("B's config parses");
    let settings = BrokerSettings::from_config(&parsed).expect("B's settings");
    let b = Broker::start(settings, &site.dir.path().join("broker-b"))
        .await
        .expect("broker B starts");
    let b_url = b.client_url().to_string();
    Cluster { site, b, b_url }
}

fn provisioning_token(site: &TestSite) -> Credentials {
    Credentials {
        token: Some(site.provisioning_token.clone()),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn brokers_of_a_cluster_authorize_and_route_every_account() {
    let cluster = start_cluster().await;
    let site = &cluster.site;

    // A provisioning node admitted by broker B's authorization service ...
    let node = connect_watched(
        site,
        &cluster.b_url,
        provisioning_token(site),
        "n1.example.net",
    )
    .await
    .expect("B admits the provisioning node");
    let mut own = node
        .client
        .subscribe("provisioning.node.n1.example.net")
        .await
        .expect("sub");
    node.client.flush().await.expect("flush");

    // ... is reached by the provisioner admitted by broker A.
    let provisioner = site
        .connect_provisioner()
        .await
        .expect("A admits the provisioner");
    let message = publish_until_received(
        &provisioner,
        "provisioning.node.n1.example.net",
        b"hello",
        &mut own,
    )
    .await;
    assert_eq!(message.payload.as_ref(), b"hello");

    // The system account spans the cluster: A's system user sees B's connection placed.
    let (account, _) = placement(site, "n1.example.net")
        .await
        .expect("the node on B is listed through A");
    assert_eq!(account, "provisioning");

    // A provisioned server on B lands in `choria` and hears a fleet client on A.
    let seed = Ed25519Seed::generate();
    let token = site
        .mint_server_token("s1.example.net", seed.public_key_bytes(), None)
        .expect("server token");
    let server = connect_watched(
        site,
        &cluster.b_url,
        Credentials {
            token: Some(token),
            seed: Some(seed),
            ..Default::default()
        },
        "s1.example.net",
    )
    .await
    .expect("B admits the server");
    let mut server_node = server
        .client
        .subscribe("choria.node.s1.example.net")
        .await
        .expect("sub");
    server.client.flush().await.expect("flush");
    let client_seed = Ed25519Seed::generate();
    let client_token = site
        .mint_client_token(
            "choria=operator",
            client_seed.public_key_bytes(),
            Some(ClientPermissions {
                fleet_management: true,
                events_viewer: true,
                ..Default::default()
            }),
        )
        .expect("client token");
    let client = site
        .connect_jwt(&client_token, &client_seed, "operator")
        .await
        .expect("A admits the fleet client");
    publish_until_received(
        &client,
        "choria.node.s1.example.net",
        b"hello",
        &mut server_node,
    )
    .await;
    let (account, _) = placement(site, "s1.example.net").await.expect("listed");
    assert_eq!(account, "choria");

    // Lifecycle events published by a provisioning node on B arrive in `choria` on A ...
    let mut lifecycle = client
        .subscribe("choria.lifecycle.event.>")
        .await
        .expect("sub");
    client.flush().await.expect("flush");
    publish_until_received(
        &node.client,
        "choria.lifecycle.event.startup.provision_mode_server",
        b"{}",
        &mut lifecycle,
    )
    .await;

    // ... but nothing of `choria` reaches the provisioning node: it is a different account
    // on every broker of the cluster.
    let mut leak = node.client.subscribe("choria.node.>").await.expect("sub");
    let mut marker = node
        .client
        .subscribe("provisioning.node.n1.example.net")
        .await
        .expect("sub");
    // Both subscriptions are in place on B and known to A once the first marker arrives.
    publish_until_received(
        &provisioner,
        "provisioning.node.n1.example.net",
        b"ready",
        &mut marker,
    )
    .await;
    client
        .publish("choria.node.s1.example.net", "fleet only".into())
        .await
        .expect("publish");
    client.flush().await.expect("flush");
    assert_nothing_before_marker(
        &mut leak,
        &provisioner,
        "provisioning.node.n1.example.net",
        &mut marker,
    )
    .await;

    cluster.b.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_broker_refuses_what_its_peer_refuses() {
    let cluster = start_cluster().await;
    let site = &cluster.site;
    for url in [site.broker_url.clone(), cluster.b_url.clone()] {
        assert_refused_at(
            site,
            &url,
            Credentials {
                token: Some("not.a.token".into()),
                ..Default::default()
            },
            "garbage.example.net",
        )
        .await;
        // The provisioner password alone is not enough in JWT mode, on either broker.
        assert_refused_at(
            site,
            &url,
            Credentials {
                user: Some(("provisioner".into(), site.provisioner_password.clone())),
                ..Default::default()
            },
            "choria-provisioner",
        )
        .await;
    }
    cluster.b.shutdown().await;
}
