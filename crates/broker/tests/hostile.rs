//! A hostile credential holder against a real broker: grants no wider than the credential
//! (issue 11 item 3). Every refusal is asserted by its metric rule.

mod common;

use std::time::{Duration, SystemTime};

use choria_testkit::site::{Credentials, SiteOptions, TestSite};
use choria_tokens::{
    add_chain_issuer_data, sign_payload, sign_token, ClientIdClaims, ClientPermissions,
    Ed25519Seed, NewClient, NewServer, ServerClaims, SigningKey,
};
use common::*;

fn jwt(token: String, seed: &Ed25519Seed) -> Credentials {
    Credentials {
        token: Some(token),
        seed: Some(seed.clone()),
        ..Default::default()
    }
}

/// A client token signed with the provisioner's chain key, as someone holding the
/// provisioner's seed and token can make it (without our minting tools, which refuse).
fn chained_client(site: &TestSite, holder: &Ed25519Seed, perms: ClientPermissions) -> String {
    let mut claims = ClientIdClaims::new(
        NewClient {
            callerid: "choria=mallory".into(),
            public_key: Some(holder.public_key_bytes()),
            permissions: Some(perms),
            validity: Duration::from_secs(600),
            ..Default::default()
        },
        SystemTime::now(),
    )
    .expect("claims");
    add_chain_issuer_data(
        &mut claims.standard,
        &site.provisioner_claims,
        &site.provisioner_seed,
    )
    .expect("chain data");
    sign_token(&claims, &SigningKey::Ed25519(site.provisioner_seed.clone())).expect("sign")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delegated_signer_cannot_mint_more_than_it_holds() {
    let site = TestSite::start().await.expect("site");
    let holder = Ed25519Seed::generate();
    for (name, perms) in [
        (
            "org_admin",
            ClientPermissions {
                org_admin: true,
                ..Default::default()
            },
        ),
        (
            "fleet_management",
            ClientPermissions {
                fleet_management: true,
                ..Default::default()
            },
        ),
    ] {
        assert_refused_by(
            &site,
            jwt(chained_client(&site, &holder, perms), &holder),
            name,
            "jwt",
            "beyond_issuer",
        )
        .await;
    }
    // a chain-issued client token without privileges is still admitted
    let modest = ClientPermissions::default();
    site.connect_with(
        jwt(chained_client(&site, &holder, modest), &holder),
        "modest",
    )
    .await
    .expect("a grant within the signer's is admitted");
    // and the server tokens it exists to issue still work
    let node = Ed25519Seed::generate();
    let token = site
        .mint_server_token("n1.example.net", node.public_key_bytes(), None)
        .expect("server token");
    site.connect_jwt(&token, &node, "n1.example.net")
        .await
        .expect("provisioned server admitted");
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_identities_collectives_and_callers_are_refused() {
    let site = TestSite::start().await.expect("site");
    let seed = Ed25519Seed::generate();
    let server = |identity: &str, collective: &str| {
        let claims = ServerClaims::new(
            NewServer {
                identity: identity.into(),
                collectives: vec![collective.into()],
                public_key: Some(seed.public_key_bytes()),
                validity: Duration::from_secs(600),
                ..Default::default()
            },
            SystemTime::now(),
        )
        .expect("claims");
        sign_token(&claims, &SigningKey::Ed25519(site.org_issuer.clone())).expect("sign")
    };
    for (name, identity, collective, rule) in [
        ("id-gt", ">", "choria", "invalid_identity"),
        ("id-star", "*", "choria", "invalid_identity"),
        ("id-tail", "n1.>", "choria", "invalid_identity"),
        ("coll-star", "n1.example.net", "*", "invalid_collective"),
        (
            "coll-dot",
            "n1.example.net",
            "choria.node",
            "invalid_collective",
        ),
    ] {
        assert_refused_by(
            &site,
            jwt(server(identity, collective), &seed),
            name,
            "jwt",
            rule,
        )
        .await;
    }
    for caller in ["*", "choria=>", "choria=a b"] {
        let token = site
            .mint_client_token(caller, seed.public_key_bytes(), None)
            .expect("client token");
        assert_refused_by(
            &site,
            jwt(token, &seed),
            "caller",
            "jwt",
            "invalid_callerid",
        )
        .await;
    }
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_without_ou_is_refused_in_issuer_mode() {
    let site = TestSite::start().await.expect("site");
    let seed = Ed25519Seed::generate();
    let payload = serde_json::json!({
        "purpose": "choria_client_id", "callerid": "choria=noou",
        "public_key": seed.public_key_hex(), "exp": 4102444800i64,
    });
    let token = sign_payload(
        &serde_json::to_vec(&payload).expect("json"),
        &SigningKey::Ed25519(site.org_issuer.clone()),
    )
    .expect("sign");
    assert_refused_by(&site, jwt(token, &seed), "no-ou", "jwt", "no_ou").await;
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_enrolment_listener_admits_no_fleet_credentials() {
    let site = TestSite::start_with(SiteOptions {
        mtls: true,
        ..Default::default()
    })
    .await
    .expect("mtls site");
    let enrolment = site.enrolment_url.clone().expect("enrolment url");
    let seed = Ed25519Seed::generate();
    let client = site
        .mint_client_token(
            "choria=fleet",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                fleet_management: true,
                ..Default::default()
            }),
        )
        .expect("client token");
    refused_by(
        &site,
        "enrolment",
        "client_token",
        assert_refused_at(&site, &enrolment, jwt(client, &seed), "enrol-client"),
    )
    .await;
    let server = site
        .mint_server_token("n9.example.net", seed.public_key_bytes(), None)
        .expect("server token");
    refused_by(
        &site,
        "enrolment",
        "server_token",
        assert_refused_at(&site, &enrolment, jwt(server, &seed), "enrol-server"),
    )
    .await;
    // provisioning-mode servers still enrol there
    site.connect_url(
        &enrolment,
        Credentials {
            token: Some(site.provisioning_token.clone()),
            ..Default::default()
        },
        "enrol-node",
    )
    .await
    .expect("provisioning-mode server admitted");
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_log_is_not_world_readable() {
    use std::os::unix::fs::PermissionsExt as _;
    let site = TestSite::start().await.expect("site");
    let path = site.broker().expect("broker").log_path().to_path_buf();
    let mode = std::fs::metadata(&path).expect("log").permissions().mode() & 0o777;
    assert_eq!(mode, 0o640, "{}", path.display());
    site.shutdown().await;
}
