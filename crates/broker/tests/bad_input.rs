//! Hostile and broken input to the authorization service: every case is refused with a
//! reason and the service keeps admitting good connections afterwards.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_nats::{Auth, ConnectOptions};
use choria_testkit::site::{Credentials, TestSite};
use choria_tokens::{sign_payload, sign_token, ClientIdClaims, Ed25519Seed, NewClient, SigningKey};
use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_oversized_mistyped_expired_and_replayed_credentials_are_refused() {
    let site = TestSite::start().await.expect("site");
    let seed = Ed25519Seed::generate();
    let with_token = |t: String| Credentials {
        token: Some(t),
        seed: Some(seed.clone()),
        ..Default::default()
    };

    for garbage in [
        "x",
        "a.b.c",
        "....",
        "eyJhbGciOiJub25lIn0.e30.",
        "\u{0}\u{1}",
    ] {
        assert_refused_by(
            &site,
            with_token(garbage.into()),
            "garbage",
            "unknown_purpose",
            "unknown_purpose",
        )
        .await;
    }
    // larger than the service's token limit but within nats-server's control line
    assert_refused_by(
        &site,
        with_token(format!("e30.{}.sig", "A".repeat(20 * 1024))),
        "big",
        "token_too_large",
        "token_too_large",
    )
    .await;
    // 1 MB: nats-server itself refuses the CONNECT line
    let huge = site
        .connect_with(with_token("A".repeat(1 << 20)), "huge")
        .await;
    assert!(huge.is_err(), "a 1 MB token must not be admitted");

    // a validly signed client token whose claims have the wrong types
    let payload = serde_json::json!({
        "purpose": "choria_client_id", "callerid": "up=typed", "ou": "choria", "public_key": seed.public_key_hex(),
        "permissions": "all of them", "exp": 4102444800i64
    });
    let signed_by_org = |payload: serde_json::Value| {
        sign_payload(
            payload.to_string().as_bytes(),
            &SigningKey::Ed25519(site.org_issuer.clone()),
        )
        .expect("sign")
    };
    assert_refused_by(
        &site,
        with_token(signed_by_org(payload)),
        "mistyped",
        "jwt",
        "issuer_refused",
    )
    .await;
    let payload = serde_json::json!({"purpose": "choria_server", "ou": "choria", "identity": 7, "collectives": "c1", "public_key": seed.public_key_hex()});
    assert_refused_by(
        &site,
        with_token(signed_by_org(payload)),
        "mistyped-server",
        "jwt",
        "issuer_refused",
    )
    .await;

    // an expired client token
    let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
    let claims = ClientIdClaims::new(
        NewClient {
            callerid: "up=old".into(),
            public_key: Some(seed.public_key_bytes()),
            validity: Duration::from_secs(3600),
            ..Default::default()
        },
        two_hours_ago,
    )
    .expect("claims");
    let expired = sign_token(&claims, &SigningKey::Ed25519(site.org_issuer.clone())).expect("sign");
    assert_refused_by(
        &site,
        with_token(expired),
        "expired",
        "jwt",
        "issuer_refused",
    )
    .await;

    // a nonce signature captured from one connection replayed on another
    let token = site
        .mint_client_token("up=replay", seed.public_key_bytes(), None)
        .expect("token");
    let captured: Arc<Mutex<Option<Vec<u8>>>> = Arc::default();
    let (t, s, c) = (token.clone(), seed.clone(), captured.clone());
    let first = site
        .tls_options(ConnectOptions::with_auth_callback(move |nonce: Vec<u8>| {
            let (t, s, c) = (t.clone(), s.clone(), c.clone());
            async move {
                let sig = s.sign(&nonce).to_vec();
                if let Ok(mut slot) = c.lock() {
                    *slot = Some(sig.clone());
                }
                let mut auth = Auth::new();
                auth.token = Some(t);
                auth.signature = Some(sig);
                Ok(auth)
            }
        }))
        .expect("site TLS")
        .name("replay-source")
        .connect(&site.broker_url)
        .await;
    assert!(first.is_ok(), "the original connection is admitted");
    let replayed = captured
        .lock()
        .expect("lock")
        .clone()
        .expect("a signature was captured");
    let t = token.clone();
    let second = refused_by(
        &site,
        "jwt",
        "nonce_mismatch",
        site.tls_options(ConnectOptions::with_auth_callback(
            move |_nonce: Vec<u8>| {
                let (t, sig) = (t.clone(), replayed.clone());
                async move {
                    let mut auth = Auth::new();
                    auth.token = Some(t);
                    auth.signature = Some(sig);
                    Ok(auth)
                }
            },
        ))
        .expect("site TLS")
        .name("replay")
        .connect(&site.broker_url),
    )
    .await;
    match second {
        Ok(_) => panic!("a replayed nonce signature was admitted"),
        Err(e) => assert_eq!(
            e.kind(),
            async_nats::ConnectErrorKind::AuthorizationViolation,
            "{e}"
        ),
    }

    // still serving
    site.connect_provisioning_node("still-serving")
        .await
        .expect("service still answers");
    let log = site.broker_log();
    assert!(
        !log.contains(&site.provisioner_password),
        "secrets never reach the log"
    );
    site.shutdown().await;
}
