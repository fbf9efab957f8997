//! The broker with trust anchors from shared/vectors: upstream-format tokens are placed as
//! spec §2.7 says (rows 4, 5) and a token signed by another key is refused.

mod common;

use choria_testkit::site::{Credentials, SiteOptions, TestSite};
use choria_testkit::vectors_dir;
use std::time::SystemTime;

use choria_tokens::{
    sign_token, ClientIdClaims, ClientPermissions, Ed25519Seed, NewClient, SigningKey,
};
use common::*;

fn vector(rel: &str) -> String {
    std::fs::read_to_string(vectors_dir().join(rel))
        .expect("vector")
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vector_tokens_are_placed_by_the_broker() {
    let signer_public = vector("tokens/ed25519/signer.public");
    let site = TestSite::start_with(SiteOptions {
        extra_config: format!(
            "plugin.security.issuer.choria.public = {signer_public}\nplugin.choria.network.provisioning.signer_cert = {}\n",
            vectors_dir().join("tokens/ed25519/signer.public").display()
        ),
        ..Default::default()
    })
    .await
    .expect("site");

    let signer = Ed25519Seed::from_hex(&vector("tokens/ed25519/signer.seed")).expect("seed");
    let admin = Ed25519Seed::generate();
    let claims = ClientIdClaims::new(
        NewClient {
            callerid: "up=admin".into(),
            public_key: Some(admin.public_key_bytes()),
            permissions: Some(ClientPermissions {
                system_user: true,
                ..Default::default()
            }),
            ..Default::default()
        },
        SystemTime::now(),
    )
    .expect("claims");
    let admin_token = sign_token(&claims, &SigningKey::Ed25519(signer.clone())).expect("sign");
    let system = site
        .connect_with(
            Credentials {
                user: Some(("system".into(), site.system_password.clone())),
                token: Some(admin_token),
                seed: Some(admin),
            },
            "system",
        )
        .await
        .expect("system user with a vector-signed token");
    let placement = |name: &'static str| {
        let system = system.clone();
        async move { placement_via(&system, name).await }
    };

    // row 4: EdDSA provisioning token (signed by signer.seed) -> provisioning
    let creds = Credentials {
        token: Some(vector("tokens/ed25519/good-provisioning.jwt")),
        ..Default::default()
    };
    let url = site.broker_url.clone();
    let _node = connect_watched(&site, &url, creds, "vector-node")
        .await
        .expect("admitted");
    let (account, _) = placement("vector-node").await.expect("listed");
    assert_eq!(account, "provisioning");

    // row 5: server.jwt (public_key = other.public) with a nonce signed by other.seed -> choria
    let other = Ed25519Seed::from_hex(&vector("tokens/ed25519/other.seed")).expect("seed");
    let creds = Credentials {
        token: Some(vector("tokens/derived/server.jwt")),
        seed: Some(other),
        ..Default::default()
    };
    let mut server = connect_watched(&site, &url, creds, "ginkgo.example.net")
        .await
        .expect("admitted");
    assert_eq!(
        placement("ginkgo.example.net").await,
        Some(("choria".into(), "ginkgo.example.net".into()))
    );
    // permissions {"submission": true} allow the submission subject in collective choria
    server
        .client
        .publish("choria.submission.in.x", "{}".into())
        .await
        .expect("pub");
    server.expect_no_error().await;

    // the same server token with a nonce signed by the token's *signer* is refused
    let creds = Credentials {
        token: Some(vector("tokens/derived/server.jwt")),
        seed: Some(signer),
        ..Default::default()
    };
    assert_refused_by(&site, creds, "wrong-holder", "jwt", "nonce_mismatch").await;
    site.shutdown().await;
}
