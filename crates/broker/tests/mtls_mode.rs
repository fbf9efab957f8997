//! mTLS mode: the client port requires verified client certificates, the enrolment
//! listener (websocket + TLS, no client certificates) admits provisioning-mode servers and
//! JWT+nonce identities only (DESIGN "TLS modes", spec §2.7 rows 2, 4, 4b, 7, 8a).

mod common;

use std::path::PathBuf;

use choria_connect::{ClientCertificate, Tls};
use choria_testkit::site::{Credentials, SiteOptions, TestSite};
use common::*;
use secrecy::ExposeSecret;

fn client_cert(site: &TestSite, name: &str) -> (PathBuf, PathBuf) {
    let issued = site.ca.issue_client_certificate(name).expect("client cert");
    let cert = site.dir.path().join(format!("{name}-cert.pem"));
    let key = site.dir.path().join(format!("{name}-key.pem"));
    std::fs::write(&cert, issued.certificate_pem).expect("write");
    std::fs::write(&key, issued.private_key_pem.expose_secret()).expect("write");
    (cert, key)
}

async fn mtls_site() -> TestSite {
    TestSite::start_with(SiteOptions {
        mtls: true,
        // classic x509 fleet: no organisation issuer; JWTs verified by signer keys
        extra_config: String::from("plugin.security.issuer.names =\n"),
        ..Default::default()
    })
    .await
    .expect("mtls site")
}

async fn connect_cert(
    site: &TestSite,
    name: &str,
    user: Option<(&str, &str)>,
    token: Option<String>,
) -> Result<async_nats::Client, async_nats::ConnectError> {
    let (cert, key) = client_cert(site, name);
    let creds = Credentials {
        user: user.map(|(u, p)| (u.to_string(), p.to_string())),
        token,
        seed: None,
    };
    let mut login = site.login(&site.broker_url, creds, name).expect("login");
    login.tls = Tls::Verified {
        ca: site.ca_path.clone(),
        client: Some(ClientCertificate { cert, key }),
    };
    login
        .options()
        .expect("site TLS")
        .connect(login.servers.clone())
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_port_requires_certificates_and_places_mtls_identities() {
    let site = mtls_site().await;
    // anonymous TLS fails the handshake on the client port
    assert!(site.connect_provisioning_node("anon").await.is_err());
    // a verified certificate without token: legacy mTLS, unrestricted in choria
    let _legacy = connect_cert(&site, "rip.mcollective", None, None)
        .await
        .expect("mtls admitted");
    // provisioner with certificate and password
    let password = site.provisioner_password.clone();
    let _prov = connect_cert(
        &site,
        "provisioner-cert",
        Some(("provisioner", &password)),
        None,
    )
    .await
    .expect("provisioner over mTLS");
    // system user with certificate and password
    let syspass = site.system_password.clone();
    let system = connect_cert(&site, "system-cert", Some(("system", &syspass)), None)
        .await
        .expect("system over mTLS");
    assert_eq!(
        placement_via(&system, "rip.mcollective").await.map(|p| p.0),
        Some("choria".into())
    );
    assert_eq!(
        placement_via(&system, "provisioner-cert").await,
        Some(("provisioning".into(), "provisioner".into()))
    );
    // wrong provisioner password over mTLS
    let bad = connect_cert(
        &site,
        "provisioner-bad",
        Some(("provisioner", "nope")),
        None,
    )
    .await;
    assert_eq!(
        bad.err().map(|e| e.kind()),
        Some(async_nats::ConnectErrorKind::AuthorizationViolation)
    );
    // row 4b: a provisioning token over verified mTLS is refused
    let row4b = connect_cert(
        &site,
        "prov-over-mtls",
        None,
        Some(site.provisioning_token.clone()),
    )
    .await;
    assert_eq!(
        row4b.err().map(|e| e.kind()),
        Some(async_nats::ConnectErrorKind::AuthorizationViolation)
    );
    site.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_listener_admits_provisioning_servers_and_jwt_identities_only() {
    let site = mtls_site().await;
    let enrolment = site.enrolment_url.clone().expect("enrolment url");
    assert!(enrolment.starts_with("wss://"));
    let creds = Credentials {
        token: Some(site.provisioning_token.clone()),
        ..Default::default()
    };
    let mut node = connect_watched(&site, &enrolment, creds, "enrol-node")
        .await
        .expect("node admitted on enrolment");
    let _own = node
        .client
        .subscribe("provisioning.node.enrol-node")
        .await
        .expect("sub");
    node.expect_no_error().await;
    let _other = node
        .client
        .subscribe("provisioning.node.someone-else")
        .await
        .expect("sub");
    node.expect_error("Permissions Violation for Subscription")
        .await;
    // no token: refused
    refused_by(
        &site,
        "no_token",
        "no_token",
        assert_refused_at(&site, &enrolment, Credentials::default(), "enrol-anon"),
    )
    .await;
    // the provisioner's password alone is not enough on the enrolment listener
    let password = Some(("provisioner".to_string(), site.provisioner_password.clone()));
    refused_by(
        &site,
        "provisioner",
        "no_token",
        assert_refused_at(
            &site,
            &enrolment,
            Credentials {
                user: password,
                ..Default::default()
            },
            "enrol-prov",
        ),
    )
    .await;
    site.shutdown().await;
}
