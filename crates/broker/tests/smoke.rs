//! Smoke test: a TestSite broker admits a provisioning node and the provisioner.

use std::time::Duration;

use choria_testkit::site::TestSite;
use futures::StreamExt as _;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_node_and_provisioner_meet_in_the_provisioning_account() {
    let site = TestSite::start().await.expect("site");
    let node = site
        .connect_provisioning_node("n1.example.net")
        .await
        .expect("node connects");
    let provisioner = site
        .connect_provisioner()
        .await
        .expect("provisioner connects");
    let mut sub = node
        .subscribe("provisioning.node.n1.example.net")
        .await
        .expect("subscribe");
    node.flush().await.expect("flush");
    provisioner
        .publish("provisioning.node.n1.example.net", "hello".into())
        .await
        .expect("publish");
    provisioner.flush().await.expect("flush");
    let msg = tokio::time::timeout(Duration::from_secs(5), sub.next())
        .await
        .expect("in time")
        .expect("message");
    assert_eq!(msg.payload.as_ref(), b"hello");
    site.shutdown().await;
}
