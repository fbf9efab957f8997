//! Managed streams (spec §1.5) and the provisioning imports (§1.3): the leader election
//! bucket exists and the provisioner can campaign for `provisioner` from its own account.

use std::time::Duration;

use choria_testkit::site::{SiteOptions, TestSite};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioner_elects_through_the_imports() {
    let site = TestSite::start_with(SiteOptions {
        streams: true,
        ..Default::default()
    })
    .await
    .expect("site");
    let provisioner = site.connect_provisioner().await.expect("provisioner");

    let info = tokio::time::timeout(
        Duration::from_secs(5),
        provisioner.request(
            "choria.streams.STREAM.INFO.KV_CHORIA_LEADER_ELECTION",
            "".into(),
        ),
    )
    .await
    .expect("in time")
    .expect("stream info answers");
    let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("json");
    assert_eq!(
        info["config"]["name"], "KV_CHORIA_LEADER_ELECTION",
        "{info}"
    );
    assert_eq!(info["config"]["max_msgs_per_subject"], 1, "{info}");

    let campaign = || {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
        provisioner.request_with_headers(
            "$KV.CHORIA_LEADER_ELECTION.provisioner",
            headers,
            "leader-1".into(),
        )
    };
    let first = tokio::time::timeout(Duration::from_secs(5), campaign())
        .await
        .expect("in time")
        .expect("answer");
    let first: serde_json::Value = serde_json::from_slice(&first.payload).expect("json");
    assert_eq!(first["stream"], "KV_CHORIA_LEADER_ELECTION", "{first}");
    let second = tokio::time::timeout(Duration::from_secs(5), campaign())
        .await
        .expect("in time")
        .expect("answer");
    let second: serde_json::Value = serde_json::from_slice(&second.payload).expect("json");
    assert_eq!(second["error"]["err_code"], 10071, "{second}");
    // The default TTL is short enough for failover in seconds.
    assert_eq!(
        info["config"]["max_age"].as_u64(),
        u64::try_from(choria_broker::settings::DEFAULT_LEADER_ELECTION_TTL.as_nanos()).ok(),
        "{info}"
    );

    // A provisioning-mode node may not purge the key (its publish permissions stop it) ...
    let purge = || {
        serde_json::json!({"filter": "$KV.CHORIA_LEADER_ELECTION.provisioner"})
            .to_string()
            .into_bytes()
    };
    let hostile = site
        .connect_provisioning_node("would-be-evictor")
        .await
        .expect("node");
    let refused = tokio::time::timeout(
        Duration::from_secs(5),
        hostile.request(
            "choria.streams.STREAM.PURGE.KV_CHORIA_LEADER_ELECTION",
            purge().into(),
        ),
    )
    .await;
    assert!(
        !matches!(refused, Ok(Ok(_))),
        "a node purged the election key"
    );
    let still_held = tokio::time::timeout(Duration::from_secs(5), campaign())
        .await
        .expect("in time")
        .expect("answer");
    let still_held: serde_json::Value = serde_json::from_slice(&still_held.payload).expect("json");
    assert_eq!(still_held["error"]["err_code"], 10071, "{still_held}");

    // ... but the provisioner can release it, and a create succeeds at once afterwards.
    let released = tokio::time::timeout(
        Duration::from_secs(5),
        provisioner.request(
            "choria.streams.STREAM.PURGE.KV_CHORIA_LEADER_ELECTION",
            purge().into(),
        ),
    )
    .await
    .expect("in time")
    .expect("purge answers");
    let released: serde_json::Value = serde_json::from_slice(&released.payload).expect("json");
    assert_eq!(released["success"], true, "{released}");
    let again = tokio::time::timeout(Duration::from_secs(5), campaign())
        .await
        .expect("in time")
        .expect("answer");
    let again: serde_json::Value = serde_json::from_slice(&again.payload).expect("json");
    assert_eq!(again["stream"], "KV_CHORIA_LEADER_ELECTION", "{again}");

    // the managed streams exist in choria: lifecycle events from provisioning are stored
    let node = site
        .connect_provisioning_node("stored-node")
        .await
        .expect("node");
    node.publish(
        "choria.lifecycle.event.startup.provision_mode_server",
        "{}".into(),
    )
    .await
    .expect("pub");
    node.flush().await.expect("flush");
    let seed = choria_tokens::Ed25519Seed::generate();
    let token = site
        .mint_client_token(
            "up=admin",
            seed.public_key_bytes(),
            Some(choria_tokens::ClientPermissions {
                org_admin: true,
                ..Default::default()
            }),
        )
        .expect("token");
    let user = site
        .connect_jwt(&token, &seed, "streams-user")
        .await
        .expect("streams user");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let info = user
            .request("$JS.API.STREAM.INFO.CHORIA_EVENTS", "".into())
            .await
            .expect("CHORIA_EVENTS info");
        let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("json");
        if info["state"]["messages"].as_u64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "event never stored: {info}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for stream in [
        "CHORIA_MACHINE",
        "CHORIA_STREAM_ADVISORIES",
        "CHORIA_EXECUTOR",
    ] {
        let info = user
            .request(format!("$JS.API.STREAM.INFO.{stream}"), "".into())
            .await
            .expect("stream info");
        let info: serde_json::Value = serde_json::from_slice(&info.payload).expect("json");
        assert_eq!(info["config"]["name"], stream, "{info}");
    }
    site.shutdown().await;
}
