//! The broker_auth case table (spec §6.4, decision table §2.7) against a real nats-server in
//! JWT mode: placement, permissions and rejections for every kind of connecting party.

mod common;

use std::time::Duration;

use choria_testkit::site::{Credentials, TestSite};
use choria_tokens::{ClientPermissions, Ed25519Seed};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_token_lands_in_provisioning_with_only_prov_server_permissions() {
    let site = TestSite::start().await.expect("site");
    let creds = Credentials {
        token: Some(site.provisioning_token.clone()),
        ..Default::default()
    };
    let url = site.broker_url.clone();
    let mut node = connect_watched(&site, &url, creds, "n1.example.net")
        .await
        .expect("admitted");
    let (account, _) = placement(&site, "n1.example.net").await.expect("listed");
    assert_eq!(account, "provisioning");
    // allowed by P_PROV_SERVER (narrowed to its own node subject)
    let _own = node
        .client
        .subscribe("provisioning.node.n1.example.net")
        .await
        .expect("sub");
    let _bcast = node
        .client
        .subscribe("provisioning.broadcast.agent.discovery")
        .await
        .expect("sub");
    node.client
        .publish(
            "choria.lifecycle.event.startup.provision_mode_server",
            "{}".into(),
        )
        .await
        .expect("pub");
    node.client
        .publish("provisioning.registration.data", "{}".into())
        .await
        .expect("pub");
    node.expect_no_error().await;
    // beyond upstream: another node's subject is off limits
    let _other = node
        .client
        .subscribe("provisioning.node.n2.example.net")
        .await
        .expect("sub");
    node.expect_error(
        "Permissions Violation for Subscription to \"provisioning.node.n2.example.net\"",
    )
    .await;
    let _all = node
        .client
        .subscribe("provisioning.node.>")
        .await
        .expect("sub");
    node.expect_error("Permissions Violation for Subscription")
        .await;
    node.client
        .publish("provisioning.node.n2.example.net", "x".into())
        .await
        .expect("pub");
    node.expect_error("Permissions Violation for Publish").await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_or_missing_provisioning_tokens_are_refused() {
    let site = TestSite::start().await.expect("site");
    assert_refused_by(
        &site,
        Credentials::default(),
        "no-token",
        "no_token",
        "no_token",
    )
    .await;
    // signed by a key nobody trusts
    let rogue = Ed25519Seed::generate();
    let forged = {
        let claims =
            choria_tokens::verify::parse_provisioning_token_unverified(&site.provisioning_token)
                .expect("own token parses");
        choria_tokens::sign_token(&claims, &choria_tokens::SigningKey::Ed25519(rogue))
            .expect("sign")
    };
    assert_refused_by(
        &site,
        Credentials {
            token: Some(forged),
            ..Default::default()
        },
        "forged",
        "provisioning",
        "provisioning_refused",
    )
    .await;
    let vector = std::fs::read_to_string(choria_testkit::vectors_dir().join("broker/invalid.jwt"))
        .expect("vector");
    assert_refused_by(
        &site,
        Credentials {
            token: Some(vector.trim().into()),
            ..Default::default()
        },
        "invalid-vector",
        "provisioning",
        "provisioning_refused",
    )
    .await;
    // the service still serves
    site.connect_provisioning_node("after")
        .await
        .expect("good node still admitted");
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_jwt_with_good_nonce_gets_claim_permissions_and_bad_nonce_is_refused() {
    let site = TestSite::start().await.expect("site");
    let (seed, _) = site.new_seed("ginkgo").expect("seed");
    let token = site
        .mint_server_token("ginkgo.example.net", seed.public_key_bytes(), None)
        .expect("token");
    let creds = Credentials {
        token: Some(token.clone()),
        seed: Some(seed.clone()),
        ..Default::default()
    };
    let url = site.broker_url.clone();
    let mut server = connect_watched(&site, &url, creds, "ginkgo.example.net")
        .await
        .expect("admitted");
    assert_eq!(
        placement(&site, "ginkgo.example.net").await,
        Some(("choria".into(), "ginkgo.example.net".into()))
    );
    server
        .client
        .publish("choria.lifecycle.x", "{}".into())
        .await
        .expect("pub");
    server
        .client
        .publish("choria.machine.transition", "{}".into())
        .await
        .expect("pub");
    let _node = server
        .client
        .subscribe("choria.node.ginkgo.example.net")
        .await
        .expect("sub");
    server.expect_no_error().await;
    server
        .client
        .publish("choria.submission.in.x", "{}".into())
        .await
        .expect("pub");
    server
        .expect_error("Permissions Violation for Publish")
        .await;
    let _other = server
        .client
        .subscribe("choria.node.other.node")
        .await
        .expect("sub");
    server
        .expect_error("Permissions Violation for Subscription")
        .await;

    // the right token with a signature by another key
    let wrong = Ed25519Seed::generate();
    assert_refused_by(
        &site,
        Credentials {
            token: Some(token.clone()),
            seed: Some(wrong),
            ..Default::default()
        },
        "bad-nonce",
        "jwt",
        "nonce_mismatch",
    )
    .await;
    // no signature at all
    assert_refused_by(
        &site,
        Credentials {
            token: Some(token),
            ..Default::default()
        },
        "no-nonce",
        "jwt",
        "nonce_not_signed",
    )
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_need_fleet_management_to_publish_rpc_requests() {
    let site = TestSite::start().await.expect("site");
    let (seed, _) = site.new_seed("plain").expect("seed");
    let plain = site
        .mint_client_token("up=plain", seed.public_key_bytes(), None)
        .expect("token");
    let url = site.broker_url.clone();
    let mut client = connect_watched(
        &site,
        &url,
        Credentials {
            token: Some(plain),
            seed: Some(seed),
            ..Default::default()
        },
        "plain",
    )
    .await
    .expect("admitted");
    assert_eq!(
        placement(&site, "plain").await,
        Some(("choria".into(), "up=plain".into()))
    );
    client
        .client
        .publish("choria.node.srv-1.example.net", "x".into())
        .await
        .expect("pub");
    client
        .expect_error("Permissions Violation for Publish to \"choria.node.srv-1.example.net\"")
        .await;

    let (seed, _) = site.new_seed("fleet").expect("seed");
    let fleet = site
        .mint_client_token(
            "up=fleet",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                fleet_management: true,
                ..Default::default()
            }),
        )
        .expect("token");
    let mut admin = connect_watched(
        &site,
        &url,
        Credentials {
            token: Some(fleet),
            seed: Some(seed),
            ..Default::default()
        },
        "fleet",
    )
    .await
    .expect("admitted");
    admin
        .client
        .publish("choria.node.srv-1.example.net", "x".into())
        .await
        .expect("pub");
    admin
        .client
        .publish("choria.broadcast.agent.rpcutil", "x".into())
        .await
        .expect("pub");
    admin.expect_no_error().await;
    // a client token verified by no issuer is refused
    let rogue_site_seed = Ed25519Seed::generate();
    let claims = choria_tokens::ClientIdClaims::new(
        choria_tokens::NewClient {
            callerid: "up=rogue".into(),
            public_key: Some(rogue_site_seed.public_key_bytes()),
            ..Default::default()
        },
        std::time::SystemTime::now(),
    )
    .expect("claims");
    let rogue = choria_tokens::sign_token(
        &claims,
        &choria_tokens::SigningKey::Ed25519(rogue_site_seed.clone()),
    )
    .expect("sign");
    assert_refused_by(
        &site,
        Credentials {
            token: Some(rogue),
            seed: Some(rogue_site_seed),
            ..Default::default()
        },
        "rogue",
        "jwt",
        "issuer_refused",
    )
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn system_user_needs_password_and_a_system_user_jwt() {
    let site = TestSite::start().await.expect("site");
    let system = site.connect_system().await.expect("system user admitted");
    let conns = choria_broker::report::connections(&system, "system", Duration::from_secs(1))
        .await
        .expect("connz works");
    assert!(
        conns.iter().any(|c| c.authorized_user == "system"),
        "{conns:?}"
    );
    // password alone (no JWT) over unverified TLS
    assert_refused_by(
        &site,
        Credentials {
            user: Some(("system".into(), site.system_password.clone())),
            ..Default::default()
        },
        "sys-nojwt",
        "system",
        "no_token",
    )
    .await;
    // JWT without system_user
    let (seed, _) = site.new_seed("nosys").expect("seed");
    let token = site
        .mint_client_token("up=nosys", seed.public_key_bytes(), None)
        .expect("token");
    assert_refused_by(
        &site,
        Credentials {
            user: Some(("system".into(), site.system_password.clone())),
            token: Some(token),
            seed: Some(seed),
        },
        "sys-noclaim",
        "system",
        "no_system_claim",
    )
    .await;
    // right JWT, wrong password
    let (seed, _) = site.new_seed("sys").expect("seed");
    let token = site
        .mint_client_token(
            "up=sys",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                system_user: true,
                ..Default::default()
            }),
        )
        .expect("token");
    assert_refused_by(
        &site,
        Credentials {
            user: Some(("system".into(), "wrong".into())),
            token: Some(token),
            seed: Some(seed),
        },
        "sys-badpass",
        "system",
        "wrong_credentials",
    )
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioner_user_needs_password_token_with_provisioner_claim_and_nonce() {
    let site = TestSite::start().await.expect("site");
    let _provisioner = site
        .connect_provisioner()
        .await
        .expect("provisioner admitted");
    assert_eq!(
        placement(&site, "choria-provisioner").await,
        Some(("provisioning".into(), "provisioner".into()))
    );
    let user = |pass: &str| Some(("provisioner".to_string(), pass.to_string()));
    let good = Credentials {
        user: user(&site.provisioner_password),
        token: Some(site.provisioner_token.clone()),
        seed: Some(site.provisioner_seed.clone()),
    };
    assert_refused_by(
        &site,
        Credentials {
            user: user("wrong"),
            ..good.clone()
        },
        "prov-badpass",
        "provisioner",
        "wrong_password",
    )
    .await;
    assert_refused_by(
        &site,
        Credentials {
            user: user(""),
            ..good.clone()
        },
        "prov-nopass",
        "provisioner",
        "no_password",
    )
    .await;
    assert_refused_by(
        &site,
        Credentials {
            token: None,
            ..good.clone()
        },
        "prov-notoken",
        "provisioner",
        "no_token",
    )
    .await;
    assert_refused_by(
        &site,
        Credentials {
            seed: None,
            ..good.clone()
        },
        "prov-nonce",
        "provisioner",
        "nonce_not_signed",
    )
    .await;
    assert_refused_by(
        &site,
        Credentials {
            seed: Some(Ed25519Seed::generate()),
            ..good.clone()
        },
        "prov-wrongkey",
        "provisioner",
        "nonce_mismatch",
    )
    .await;
    let (seed, _) = site.new_seed("notprov").expect("seed");
    let token = site
        .mint_client_token("up=notprov", seed.public_key_bytes(), None)
        .expect("token");
    assert_refused_by(
        &site,
        Credentials {
            user: user(&site.provisioner_password),
            token: Some(token),
            seed: Some(seed),
        },
        "prov-noclaim",
        "provisioner",
        "no_provisioner_claim",
    )
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_is_isolated_from_choria_except_lifecycle_events() {
    let site = TestSite::start().await.expect("site");
    let provisioner = site.connect_provisioner().await.expect("provisioner");
    let (seed, _) = site.new_seed("viewer").expect("seed");
    let viewer_token = site
        .mint_client_token(
            "up=viewer",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                events_viewer: true,
                fleet_management: true,
                ..Default::default()
            }),
        )
        .expect("token");
    let viewer = site
        .connect_jwt(&viewer_token, &seed, "viewer")
        .await
        .expect("viewer");
    let mut seen_by_provisioner = provisioner.subscribe("choria.>").await.expect("sub");
    let mut marker = provisioner
        .subscribe("provisioning.marker")
        .await
        .expect("sub");
    let mut lifecycle = viewer
        .subscribe("choria.lifecycle.event.>")
        .await
        .expect("sub");
    provisioner.flush().await.expect("flush");
    viewer.flush().await.expect("flush");

    // choria account traffic does not reach the provisioning account
    viewer
        .publish("choria.broadcast.agent.rpcutil", "secret".into())
        .await
        .expect("pub");
    viewer.flush().await.expect("flush");
    let node = site.connect_provisioning_node("n9").await.expect("node");
    // lifecycle events published in provisioning arrive in choria
    node.publish(
        "choria.lifecycle.event.startup.provision_mode_server",
        "{\"id\":\"n9\"}".into(),
    )
    .await
    .expect("pub");
    node.flush().await.expect("flush");
    let event = recv(&mut lifecycle).await;
    assert_eq!(
        event.subject.as_str(),
        "choria.lifecycle.event.startup.provision_mode_server"
    );
    // the provisioner sees the node's lifecycle event (same account) but not the choria RPC
    let local = recv(&mut seen_by_provisioner).await;
    assert_eq!(
        local.subject.as_str(),
        "choria.lifecycle.event.startup.provision_mode_server"
    );
    assert_nothing_before_marker(
        &mut seen_by_provisioner,
        &provisioner,
        "provisioning.marker",
        &mut marker,
    )
    .await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fleet_client_and_server_do_request_reply_on_choria_subjects() {
    let site = TestSite::start().await.expect("site");
    let (server_seed, _) = site.new_seed("srv").expect("seed");
    let server_token = site
        .mint_server_token("srv-1.example.net", server_seed.public_key_bytes(), None)
        .expect("token");
    let server = site
        .connect_jwt_with_inbox(
            &server_token,
            &server_seed,
            "srv-1.example.net",
            "choria",
            "srv-1.example.net",
        )
        .await
        .expect("server");
    let mut requests = server
        .subscribe("choria.node.srv-1.example.net")
        .await
        .expect("sub");
    server.flush().await.expect("flush");
    let responder = tokio::spawn(async move {
        let request = recv(&mut requests).await;
        let reply = request.reply.expect("reply subject");
        server.publish(reply, "pong".into()).await.expect("reply");
        server.flush().await.expect("flush");
    });
    let (client_seed, _) = site.new_seed("cli").expect("seed");
    let client_token = site
        .mint_client_token(
            "up=operator",
            client_seed.public_key_bytes(),
            Some(ClientPermissions {
                fleet_management: true,
                ..Default::default()
            }),
        )
        .expect("token");
    let client = site
        .connect_jwt_with_inbox(
            &client_token,
            &client_seed,
            "operator",
            "choria",
            "up=operator",
        )
        .await
        .expect("client");
    let answer = tokio::time::timeout(
        Duration::from_secs(5),
        client.request("choria.node.srv-1.example.net", "ping".into()),
    )
    .await
    .expect("in time")
    .expect("answer");
    assert_eq!(answer.payload.as_ref(), b"pong");
    responder.await.expect("responder");
    site.shutdown().await;
}
