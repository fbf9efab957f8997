//! Smoke test: a TestSite broker admits a provisioning node and the provisioner.

use choria_testkit::delivery::publish_until_received;
use choria_testkit::site::TestSite;

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
    // Retried: the node's SUB may still be queued in nats-server when the provisioner
    // publishes on its own connection.
    let msg = publish_until_received(
        &provisioner,
        "provisioning.node.n1.example.net",
        b"hello",
        &mut sub,
    )
    .await;
    assert_eq!(msg.payload.as_ref(), b"hello");
    site.shutdown().await;
}
