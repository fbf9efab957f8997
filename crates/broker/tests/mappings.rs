//! Subject mappings in the choria account (spec §1.4, upstream suite broker_mappings:
//! `in.registration.*.>` -> `registration.{{partition(5,1)}}.{{wildcard(1)}}.>`).

mod common;

use choria_testkit::site::{SiteOptions, TestSite};
use choria_tokens::{ClientPermissions, Ed25519Seed};
use common::recv;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registration_is_partitioned_like_upstream() {
    let site = TestSite::start_with(SiteOptions {
        extra_config: "plugin.choria.network.mapping.names = reg\n\
            plugin.choria.network.mapping.reg.source = in.registration.*.>\n\
            plugin.choria.network.mapping.reg.destination = registration.{{partition(5,1)}}.{{wildcard(1)}}.>\n"
            .into(),
        ..Default::default()
    })
    .await
    .expect("site");
    let seed = Ed25519Seed::generate();
    let token = site
        .mint_client_token(
            "up=admin",
            seed.public_key_bytes(),
            Some(ClientPermissions {
                org_admin: true,
                ..Default::default()
            }),
        )
        .expect("token");
    let admin = site
        .connect_jwt(&token, &seed, "admin")
        .await
        .expect("admin");
    let mut sub = admin.subscribe("registration.>").await.expect("sub");
    admin.flush().await.expect("flush");
    for (node, partition) in [
        ("dev1", 2),
        ("dev2", 1),
        ("dev3", 0),
        ("dev4", 2),
        ("dev5", 1),
    ] {
        admin
            .publish(format!("in.registration.{node}.x"), "{}".into())
            .await
            .expect("pub");
        let message = recv(&mut sub).await;
        assert_eq!(
            message.subject.as_str(),
            format!("registration.{partition}.{node}.x")
        );
    }
    site.shutdown().await;
}
