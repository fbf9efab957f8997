//! SRV resolution against a real DNS server on 127.0.0.1 (`choria_testkit::dns::TestDns`).

use std::time::Duration;

use choria_resolve::{middleware, provisioning, ResolveError, Resolver};
use choria_testkit::dns::TestDns;
use tokio_util::sync::CancellationToken;

const PROVISIONER: &str = "_choria-provisioner._tcp.example.net";
const MCOLLECTIVE: &str = "_mcollective-server._tcp.example.net";
const PUPPET: &str = "_x-puppet-mcollective._tcp.example.net";

async fn dns() -> (TestDns, Resolver) {
    let dns = TestDns::start().await.expect("start the DNS server");
    let resolver = Resolver::with_nameservers(&[dns.addr()]).expect("resolver");
    (dns, resolver)
}

fn strings(urls: &[choria_resolve::BrokerUrl]) -> Vec<String> {
    urls.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn a_node_finds_its_provisioning_brokers_in_answer_order() {
    let (dns, resolver) = dns().await;
    dns.add_srv(PROVISIONER, 20, 0, 4333, "b2.example.net.");
    dns.add_srv(PROVISIONER, 10, 0, 4222, "b1.example.net");
    let cancel = CancellationToken::new();
    let urls = provisioning::targets("", "example.net", Some(&resolver), &cancel)
        .await
        .expect("targets");
    assert_eq!(
        strings(&urls),
        ["nats://b2.example.net:4333", "nats://b1.example.net:4222"]
    );
}

#[tokio::test]
async fn a_node_keeps_asking_until_a_record_appears() {
    let (dns, resolver) = dns().await;
    let cancel = CancellationToken::new();
    let lookup = {
        let (resolver, cancel) = (resolver.clone(), cancel.clone());
        tokio::spawn(async move {
            provisioning::targets("", "example.net.", Some(&resolver), &cancel).await
        })
    };
    // NXDOMAIN at first, then an empty answer: both mean "ask again".
    wait_for_questions(&dns, 1).await;
    dns.add_empty(PROVISIONER);
    let seen = dns.questions();
    wait_for_questions(&dns, seen + 1).await;
    dns.add_srv(PROVISIONER, 0, 0, 4222, "127.0.0.1");
    let urls = tokio::time::timeout(Duration::from_secs(30), lookup)
        .await
        .expect("found within the backoff")
        .expect("task")
        .expect("targets");
    assert_eq!(strings(&urls), ["nats://127.0.0.1:4222"]);
    assert!(dns.questions() >= 3, "asked {} times", dns.questions());
}

#[tokio::test]
async fn a_node_waiting_for_records_stops_on_cancel() {
    let (dns, resolver) = dns().await;
    let cancel = CancellationToken::new();
    let lookup = {
        let (resolver, cancel) = (resolver.clone(), cancel.clone());
        tokio::spawn(async move {
            provisioning::targets("", "example.net", Some(&resolver), &cancel).await
        })
    };
    wait_for_questions(&dns, 1).await;
    cancel.cancel();
    let result = tokio::time::timeout(Duration::from_secs(5), lookup)
        .await
        .expect("stops promptly")
        .expect("task");
    assert_eq!(result, Err(ResolveError::Cancelled));
}

#[tokio::test]
async fn a_client_asks_both_names_and_sorts_by_priority_then_weight() {
    let (dns, resolver) = dns().await;
    // Only the second name: it is found.
    dns.add_srv(PUPPET, 5, 0, 4222, "puppet.example.net");
    let urls = middleware::brokers(&resolver, "example.net")
        .await
        .expect("brokers");
    assert_eq!(strings(&urls), ["nats://puppet.example.net:4222"]);

    // The first name wins once it has records, sorted by priority, then heavier weight.
    dns.add_srv(MCOLLECTIVE, 20, 100, 4222, "c.example.net");
    dns.add_srv(MCOLLECTIVE, 10, 1, 4222, "b.example.net");
    dns.add_srv(MCOLLECTIVE, 10, 60, 4223, "a.example.net");
    let urls = middleware::brokers(&resolver, "example.net")
        .await
        .expect("brokers");
    assert_eq!(
        strings(&urls),
        [
            "nats://a.example.net:4223",
            "nats://b.example.net:4222",
            "nats://c.example.net:4222"
        ]
    );
}

#[tokio::test]
async fn a_client_with_no_records_gets_an_error_naming_both_names() {
    let (dns, resolver) = dns().await;
    dns.add_empty(MCOLLECTIVE); // NOERROR, no answers; the other name is NXDOMAIN
    let err = middleware::brokers(&resolver, "example.net")
        .await
        .expect_err("nothing to find");
    assert!(matches!(err, ResolveError::NoRecords { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains(MCOLLECTIVE) && text.contains(PUPPET),
        "{text}"
    );
    assert_eq!(dns.questions(), 2);
}

async fn wait_for_questions(dns: &TestDns, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while dns.questions() < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the DNS server saw only {} questions",
            dns.questions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
