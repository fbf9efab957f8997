//! The generated nats-server configuration is accepted by the real nats-server (`-t`) for a
//! full option set: mtls + enrolment listener, JetStream, cluster routes with auth.

use choria_broker::natsconf::{render, Internal};
use choria_broker::BrokerSettings;
use choria_config::Config;
use secrecy::ExposeSecret;

#[test]
fn full_configuration_passes_nats_server_config_test() {
    let dir = tempfile::tempdir().expect("dir");
    let ca = choria_pki::CertificateAuthority::generate("conf test").expect("ca");
    let cert = ca
        .issue_server_certificate("localhost", &["127.0.0.1"])
        .expect("cert");
    let path = |n: &str| dir.path().join(n);
    std::fs::write(path("ca.pem"), ca.certificate_pem()).expect("write");
    std::fs::write(path("cert.pem"), &cert.certificate_pem).expect("write");
    std::fs::write(path("key.pem"), cert.private_key_pem.expose_secret()).expect("write");
    let text = format!(
        "plugin.choria.broker_network = true\n\
         identity = b1.example.net\n\
         plugin.choria.network.listen_address = 127.0.0.1\n\
         plugin.choria.network.client_port = 14333\n\
         plugin.choria.network.tls_mode = mtls\n\
         plugin.choria.network.enrolment_port = 14334\n\
         plugin.security.file.certificate = {d}/cert.pem\n\
         plugin.security.file.key = {d}/key.pem\n\
         plugin.security.file.ca = {d}/ca.pem\n\
         plugin.choria.network.provisioning.client_password = s3cret\n\
         plugin.choria.network.system.user = system\n\
         plugin.choria.network.system.password = \"quoted\\pass\n\
         plugin.choria.network.stream.store = {d}/js\n\
         plugin.choria.network.peers = nats://b2.example.net:15222, b3.example.net:15222\n\
         plugin.choria.network.peer_port = 15222\n\
         plugin.choria.network.peer_user = bob\n\
         plugin.choria.network.peer_password = secret\n\
         plugin.choria.network.mapping.names = reg\n\
         plugin.choria.network.mapping.reg.source = in.registration.*.>\n\
         plugin.choria.network.mapping.reg.destination = registration.{{{{partition(5,1)}}}}.{{{{wildcard(1)}}}}.>\n",
        d = dir.path().display()
    );
    let settings =
        BrokerSettings::from_config(&Config::parse_str(&text, "full.conf").expect("parse"))
            .expect("settings");
    assert_eq!(settings.cluster.as_ref().map(|c| c.peers.len()), Some(2));
    assert_eq!(settings.streams.as_ref().map(|s| s.replicas), Some(2));
    let user = nkeys::KeyPair::new_user();
    let issuer = nkeys::KeyPair::new_account();
    let conf = render(
        &settings,
        &Internal {
            service_user: &user.public_key(),
            issuer: &issuer.public_key(),
            manager_user: "manager",
            manager_password: "pa\"ss",
        },
    );
    for needle in [
        "verify: true",
        "websocket {",
        "routes: [ \"nats://bob:secret@b2.example.net:15222\", \"nats://bob:secret@b3.example.net:15222\" ]",
        "jetstream: enabled",
        "choria.streams.STREAM.INFO.KV_CHORIA_LEADER_ELECTION",
        "auth_callout {",
        "\"in.registration.*.>\": \"registration.{{partition(5,1)}}.{{wildcard(1)}}.>\"",
    ] {
        assert!(conf.contains(needle), "missing {needle:?} in:\n{conf}");
    }
    std::fs::write(path("nats.conf"), &conf).expect("write");
    let binary = choria_broker::nats_server::locate().expect("nats-server");
    let out = std::process::Command::new(binary)
        .arg("-c")
        .arg(path("nats.conf"))
        .arg("-t")
        .output()
        .expect("run nats-server -t");
    assert!(
        out.status.success(),
        "nats-server rejected the config:\n{}\n{}\n{conf}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
