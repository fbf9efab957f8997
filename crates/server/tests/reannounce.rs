//! A provisioning-mode node against a real broker (TestSite) announces itself with its
//! startup event once the broker has admitted it, and again after every reconnect, so a
//! provisioner that missed the first event still hears of the node without waiting for a
//! discovery. The reconnect is forced by nats-server itself (`KICK` through the system
//! account), so the observer's own connection stays up.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use choria_protocol::lifecycle::{EventType, LifecycleEvent};
use choria_server::node::{Node, NodeOptions, Phase, RestartPolicy};
use choria_testkit::site::TestSite;

const WAIT: Duration = Duration::from_secs(30);
const IDENTITY: &str = "n1.example.net";

/// Waits for the next startup event of [`IDENTITY`].
async fn next_startup(events: &mut async_nats::Subscriber, limit: Duration) -> Option<Instant> {
    let deadline = tokio::time::Instant::now() + limit;
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, events.next()).await {
        let Ok(event) = LifecycleEvent::parse_subscribed(&message.payload) else {
            continue;
        };
        if event.event_type == EventType::Startup && event.identity == IDENTITY {
            return Some(Instant::now());
        }
    }
    None
}

/// The server id and client id of the connection named `name` in the `provisioning`
/// account.
async fn find_connection(system: &async_nats::Client, name: &str) -> (String, u64) {
    let request = json!({"acc": "provisioning", "limit": 1024});
    let reply = system
        .request("$SYS.REQ.SERVER.PING.CONNZ", request.to_string().into())
        .await
        .unwrap();
    let connz: Value = serde_json::from_slice(&reply.payload).unwrap();
    let server = connz["server"]["id"].as_str().unwrap().to_string();
    let cid = connz["data"]["connections"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .and_then(|c| c["cid"].as_u64())
        .unwrap_or_else(|| panic!("no connection named {name}: {connz}"));
    (server, cid)
}

#[tokio::test]
async fn a_provisioning_node_announces_itself_again_after_every_reconnect() {
    let site = TestSite::start().await.unwrap();
    let observer = site.connect_provisioner().await.unwrap();
    let mut events = observer
        .subscribe("choria.lifecycle.event.startup.>")
        .await
        .unwrap();
    observer.flush().await.unwrap();
    let system = site.connect_system().await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let node = Arc::new(Node::new(NodeOptions {
        config_file: dir.path().join("server.conf"),
        provisioning_jwt: Some(site.provisioning_token_path.clone()),
        identity: Some(IDENTITY.into()),
        restart: RestartPolicy::InPlace,
    }));
    let mut phase = node.phase();
    let cancel = CancellationToken::new();
    let (n, c) = (node.clone(), cancel.clone());
    let run = tokio::spawn(async move { n.run(c).await });

    tokio::time::timeout(WAIT, phase.wait_for(|p| *p == Phase::Provisioning))
        .await
        .expect("node ready for provisioning")
        .unwrap();
    assert!(
        next_startup(&mut events, WAIT).await.is_some(),
        "first startup event"
    );

    for round in 1..=2 {
        let (server, cid) = find_connection(&system, IDENTITY).await;
        let kicked = Instant::now();
        system
            .request(
                format!("$SYS.REQ.SERVER.{server}.KICK"),
                json!({ "cid": cid }).to_string().into(),
            )
            .await
            .unwrap();
        let again = next_startup(&mut events, WAIT).await;
        let Some(again) = again else {
            panic!(
                "no startup event after reconnect {round}\n{}",
                site.broker_log()
            );
        };
        println!(
            "reconnect {round}: startup event again {:.2?} after the kick",
            again - kicked
        );
        let (_, new_cid) = find_connection(&system, IDENTITY).await;
        assert_ne!(new_cid, cid, "a new connection");
        assert_eq!(*phase.borrow(), Phase::Provisioning);
    }
    cancel.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(10), run).await;
}
