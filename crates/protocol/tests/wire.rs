//! Wire compatibility: the exact-bytes example of spec server-and-tokens §6.7, the JSON schema
//! rules of §6.5, v2 round trips with real ed25519 keys, and hostile inputs.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use base64::Engine as _;
use choria_protocol::envelope::{v1, v2, Filter};
use choria_protocol::message::{self, ReplyMeta, ReplySigner, RequestMeta, RequestSigner, Routing};
use choria_protocol::{ids, subjects, ProtocolError, RpcReply, RpcRequest, Version};

const SPEC_REQUEST: &str = r#"{"protocol":"choria:request:1","message":"{\"agent\":\"choria_provision\",\"action\":\"jwt\",\"data\":{\"token\":\"x\"}}","envelope":{"requestid":"0123456789abcdef0123456789abcdef","senderid":"provisioner.example.net","callerid":"choria=provisioner","collective":"provisioning","agent":"choria_provision","ttl":60,"time":1700000000,"filter":{"fact":[],"cf_class":[],"agent":[],"identity":[],"compound":[]}}}"#;

const SPEC_TRANSPORT: &str = r#"{"protocol":"choria:transport:1","data":"eyJwcm90b2NvbCI6ImNob3JpYTpzZWN1cmU6cmVxdWVzdDoxIiwibWVzc2FnZSI6IntcInByb3RvY29sXCI6XCJjaG9yaWE6cmVxdWVzdDoxXCIsXCJtZXNzYWdlXCI6XCJ7XFxcImFnZW50XFxcIjpcXFwiY2hvcmlhX3Byb3Zpc2lvblxcXCIsXFxcImFjdGlvblxcXCI6XFxcImp3dFxcXCIsXFxcImRhdGFcXFwiOntcXFwidG9rZW5cXFwiOlxcXCJ4XFxcIn19XCIsXCJlbnZlbG9wZVwiOntcInJlcXVlc3RpZFwiOlwiMDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWZcIixcInNlbmRlcmlkXCI6XCJwcm92aXNpb25lci5leGFtcGxlLm5ldFwiLFwiY2FsbGVyaWRcIjpcImNob3JpYT1wcm92aXNpb25lclwiLFwiY29sbGVjdGl2ZVwiOlwicHJvdmlzaW9uaW5nXCIsXCJhZ2VudFwiOlwiY2hvcmlhX3Byb3Zpc2lvblwiLFwidHRsXCI6NjAsXCJ0aW1lXCI6MTcwMDAwMDAwMCxcImZpbHRlclwiOntcImZhY3RcIjpbXSxcImNmX2NsYXNzXCI6W10sXCJhZ2VudFwiOltdLFwiaWRlbnRpdHlcIjpbXSxcImNvbXBvdW5kXCI6W119fX0iLCJzaWduYXR1cmUiOiJpbnNlY3VyZSIsInB1YmNlcnQiOiJpbnNlY3VyZSJ9","headers":{"reply-to":"provisioning.reply.14e7121541a0184fb18445801baaaf31.0123456789abcdef0123456789abcdef","mc_sender":"provisioner.example.net","seen-by":[["nats://broker:4222","provisioner.example.net","nats://broker:4222"]]}}"#;

fn spec_meta() -> RequestMeta {
    RequestMeta {
        id: "0123456789abcdef0123456789abcdef".into(),
        sender: "provisioner.example.net".into(),
        caller: "choria=provisioner".into(),
        collective: "provisioning".into(),
        agent: "choria_provision".into(),
        ttl: Duration::from_secs(60),
        time: ids::from_unix_seconds(1_700_000_000),
        filter: Filter::default(),
    }
}

fn spec_routing() -> Routing {
    Routing {
        reply_to: subjects::reply(
            "provisioning",
            "choria=provisioner",
            "0123456789abcdef0123456789abcdef",
            false,
        )
        .unwrap(),
        sender: "provisioner.example.net".into(),
        hops: vec![[
            "nats://broker:4222".into(),
            "provisioner.example.net".into(),
            "nats://broker:4222".into(),
        ]],
    }
}

fn spec_payload() -> Vec<u8> {
    let mut data = serde_json::Map::new();
    data.insert("token".into(), "x".into());
    RpcRequest::new("choria_provision", "jwt", data)
        .encode()
        .unwrap()
}

#[test]
fn spec_6_7_request_encodes_to_the_exact_bytes() {
    let bytes = message::encode_request(
        Version::V1,
        &spec_meta(),
        &spec_payload(),
        &RequestSigner::Insecure,
        &spec_routing(),
    )
    .unwrap();
    assert_eq!(String::from_utf8(bytes).unwrap(), SPEC_TRANSPORT);
}

#[test]
fn spec_6_7_layers_decode_to_the_documented_values() {
    let t = v1::Transport::decode(SPEC_TRANSPORT.as_bytes()).unwrap();
    let secure_bytes = base64::engine::general_purpose::STANDARD
        .decode(&t.data)
        .unwrap();
    let secure = v1::SecureRequest::decode(&secure_bytes).unwrap();
    assert_eq!(secure.message, SPEC_REQUEST);
    assert!(secure.is_insecure());
    let req = v1::Request::decode(SPEC_REQUEST.as_bytes()).unwrap();
    assert_eq!(req.envelope.ttl, 60);

    let got = message::decode_request(SPEC_TRANSPORT.as_bytes()).unwrap();
    assert_eq!(got.version, Version::V1);
    assert_eq!(got.meta, spec_meta());
    assert_eq!(got.routing, spec_routing());
    assert_eq!(got.payload, spec_payload());
    assert!(got.security.is_insecure());
    assert!(matches!(
        got.security.verify_ed25519(&[0u8; 32]),
        Err(ProtocolError::Unsigned)
    ));
    assert!(got
        .meta
        .check_age(ids::from_unix_seconds(1_700_000_030))
        .is_ok());
    assert!(got
        .meta
        .check_age(ids::from_unix_seconds(1_700_000_060))
        .is_err());
    let rpc = RpcRequest::decode(&got.payload).unwrap();
    assert_eq!(
        (rpc.agent.as_str(), rpc.action.as_str()),
        ("choria_provision", "jwt")
    );
}

#[test]
fn v1_reply_round_trip_with_hash() {
    let request = message::decode_request(SPEC_TRANSPORT.as_bytes()).unwrap();
    let now = ids::from_unix_seconds(1_700_000_001);
    let meta = ReplyMeta::for_request(&request.meta, "n1.example.net", now);
    let mut data = serde_json::Map::new();
    data.insert("jwt".into(), "t<&>".into());
    let payload = RpcReply::ok("jwt", data).encode().unwrap();
    let routing = Routing {
        sender: "n1.example.net".into(),
        ..Routing::default()
    };
    let bytes =
        message::encode_reply(Version::V1, &meta, &payload, &ReplySigner::None, &routing).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"protocol":"choria:transport:1","data":""#),
        "{text}"
    );
    assert!(
        text.ends_with(r#""headers":{"mc_sender":"n1.example.net"}}"#),
        "{text}"
    );
    // Go escapes <, > and & inside JSON strings; the hash covers those exact bytes.
    assert!(String::from_utf8(payload.clone())
        .unwrap()
        .contains(r"t\u003c\u0026\u003e"));

    let got = message::decode_reply(&bytes).unwrap();
    assert_eq!(got.meta, meta);
    assert_eq!(got.payload, payload);
    assert!(RpcReply::decode(&got.payload).unwrap().is_ok());

    // Tampering with the reply breaks the hash.
    let t = v1::Transport::decode(&bytes).unwrap();
    let mut secure: v1::SecureReply = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&t.data)
            .unwrap(),
    )
    .unwrap();
    secure.message = secure.message.replace("n1.example.net", "evil.example.net");
    let forged = v1::Transport {
        data: base64::engine::general_purpose::STANDARD
            .encode(serde_json::to_vec(&secure).unwrap()),
        ..t
    };
    assert!(matches!(
        message::decode_reply(&serde_json::to_vec(&forged).unwrap()),
        Err(ProtocolError::HashMismatch)
    ));
}

#[test]
fn v1_rsa_signed_request_verifies_over_the_request_text() {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/tokens/rsa/"
    );
    let key = rsa::RsaPrivateKey::from_pkcs1_pem(
        &std::fs::read_to_string(format!("{dir}signer-key.pem")).unwrap(),
    )
    .unwrap();
    let other = rsa::RsaPrivateKey::from_pkcs1_pem(
        &std::fs::read_to_string(format!("{dir}other-key.pem")).unwrap(),
    )
    .unwrap();
    let signer = RequestSigner::Rsa {
        key: &key,
        certificate_pem: "-----BEGIN CERTIFICATE-----\n",
    };
    let bytes = message::encode_request(
        Version::V1,
        &spec_meta(),
        &spec_payload(),
        &signer,
        &spec_routing(),
    )
    .unwrap();
    let got = message::decode_request(&bytes).unwrap();
    assert!(!got.security.is_insecure());
    assert_eq!(
        got.security.certificate_pem(),
        Some("-----BEGIN CERTIFICATE-----\n")
    );
    got.security.verify_rsa(&key.to_public_key()).unwrap();
    assert!(matches!(
        got.security.verify_rsa(&other.to_public_key()),
        Err(ProtocolError::BadSignature(_))
    ));
    if let message::RequestSecurity::V1 { message, .. } = &got.security {
        assert_eq!(message, SPEC_REQUEST);
    } else {
        panic!("expected v1 security");
    }
}

fn ed_key(name: &str) -> ed25519_dalek::SigningKey {
    let path = format!(
        "{}/../../../shared/vectors/tokens/ed25519/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    let seed: [u8; 32] = hex::decode(std::fs::read_to_string(path).unwrap().trim())
        .unwrap()
        .try_into()
        .unwrap();
    ed25519_dalek::SigningKey::from_bytes(&seed)
}

#[test]
fn v2_signed_request_and_reply_round_trip() {
    let key = ed_key("signer.seed");
    let other = ed_key("other.seed");
    let now = ids::from_unix_seconds(1_700_000_000);
    let mut meta = RequestMeta::new(
        "client.example.net",
        "choria=rip",
        "choria",
        "rpcutil",
        Duration::from_secs(10),
        now,
    );
    meta.filter = Filter::for_agent("rpcutil");
    let payload = RpcRequest::new("rpcutil", "ping", Default::default())
        .encode()
        .unwrap();
    let routing = Routing {
        reply_to: subjects::reply("choria", "choria=rip", &meta.id, false).unwrap(),
        sender: "client.example.net".into(),
        hops: vec![],
    };
    let signer = RequestSigner::Ed25519 {
        key: &key,
        caller_jwt: "caller.jwt.here",
        signer_jwt: None,
    };
    let bytes = message::encode_request(Version::V2, &meta, &payload, &signer, &routing).unwrap();
    let text = String::from_utf8(bytes.clone()).unwrap();
    assert!(
        text.starts_with(r#"{"protocol":"io.choria.protocol.v2.transport","data":""#),
        "{text}"
    );
    assert!(
        text.contains(r#""headers":{"reply":"choria.reply."#),
        "{text}"
    );

    let got = message::decode_request(&bytes).unwrap();
    assert_eq!(got.version, Version::V2);
    assert_eq!(got.meta, meta);
    assert_eq!(got.payload, payload);
    assert_eq!(got.routing, routing);
    assert_eq!(got.security.caller_jwt(), Some("caller.jwt.here"));
    assert_eq!(got.security.signer_jwt(), None);
    got.security
        .verify_ed25519(&key.verifying_key().to_bytes())
        .unwrap();
    assert!(matches!(
        got.security
            .verify_ed25519(&other.verifying_key().to_bytes()),
        Err(ProtocolError::BadSignature(_))
    ));
    assert!(got.security.verify_rsa(&rsa_public()).is_err());

    // Reply signed by the server.
    let rmeta = ReplyMeta::for_request(&got.meta, "n1.example.net", now);
    let reply_payload = RpcReply::ok("ping", Default::default()).encode().unwrap();
    let rsigner = ReplySigner::Ed25519 {
        key: &other,
        sender_jwt: "server.jwt",
    };
    let rbytes = message::encode_reply(
        Version::V2,
        &rmeta,
        &reply_payload,
        &rsigner,
        &Routing {
            sender: "n1.example.net".into(),
            ..Routing::default()
        },
    )
    .unwrap();
    let reply = message::decode_reply(&rbytes).unwrap();
    assert_eq!(reply.meta, rmeta);
    assert_eq!(reply.payload, reply_payload);
    reply
        .verify_ed25519(&other.verifying_key().to_bytes())
        .unwrap();
    assert!(reply
        .verify_ed25519(&key.verifying_key().to_bytes())
        .is_err());
    assert_eq!(
        reply.signature.as_ref().map(|s| s.2.as_str()),
        Some("server.jwt")
    );

    // Unsigned v2 reply.
    let unsigned = message::encode_reply(
        Version::V2,
        &rmeta,
        &reply_payload,
        &ReplySigner::None,
        &Routing::default(),
    )
    .unwrap();
    let text = String::from_utf8(unsigned.clone()).unwrap();
    assert!(!text.contains("headers"), "{text}");
    assert!(matches!(
        message::decode_reply(&unsigned)
            .unwrap()
            .verify_ed25519(&[0; 32]),
        Err(ProtocolError::Unsigned)
    ));
}

fn rsa_public() -> rsa::RsaPublicKey {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/vectors/tokens/rsa/"
    );
    rsa::RsaPrivateKey::from_pkcs1_pem(
        &std::fs::read_to_string(format!("{dir}signer-key.pem")).unwrap(),
    )
    .unwrap()
    .to_public_key()
}

#[test]
fn v2_insecure_request_carries_the_insecure_marker() {
    let meta = RequestMeta::new(
        "n1",
        "choria=n1",
        "provisioning",
        "registration",
        Duration::from_secs(60),
        ids::from_unix_seconds(1_700_000_000),
    );
    let bytes = message::encode_request(
        Version::V2,
        &meta,
        b"{}",
        &RequestSigner::Insecure,
        &Routing::default(),
    )
    .unwrap();
    let t = v2::Transport::decode(&bytes).unwrap();
    assert!(t.headers.is_none());
    let secure: v2::SecureRequest = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&t.data)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(secure.signature, "aW5zZWN1cmU=");
    assert_eq!(secure.caller, "");
    let got = message::decode_request(&bytes).unwrap();
    assert!(got.security.is_insecure());
    assert!(matches!(
        got.security.verify_ed25519(&[1; 32]),
        Err(ProtocolError::Unsigned)
    ));
}

#[test]
fn discovery_ping_is_base64_in_v1() {
    let mut meta = spec_meta();
    meta.agent = "discovery".into();
    meta.filter = Filter::for_agent("choria_provision");
    let bytes = message::encode_request(
        Version::V1,
        &meta,
        b"ping",
        &RequestSigner::Insecure,
        &spec_routing(),
    )
    .unwrap();
    let got = message::decode_request(&bytes).unwrap();
    let message::RequestSecurity::V1 { message: text, .. } = &got.security else {
        panic!("v1")
    };
    assert!(text.contains(r#""message":"cGluZw==""#), "{text}");
    assert_eq!(got.payload, b"ping");
    assert_eq!(got.meta.filter.agent, vec!["choria_provision"]);
}

#[test]
fn schema_rules_of_6_5_are_enforced_both_ways() {
    // v1 ttl below 30 cannot be sent.
    let mut meta = spec_meta();
    meta.ttl = Duration::from_secs(29);
    assert!(matches!(
        message::encode_request(
            Version::V1,
            &meta,
            b"{}",
            &RequestSigner::Insecure,
            &spec_routing()
        ),
        Err(ProtocolError::Schema { field: "ttl", .. })
    ));
    // v1 request ids must be 32 characters.
    let mut meta = spec_meta();
    meta.id = "short".into();
    assert!(matches!(
        message::encode_request(
            Version::V1,
            &meta,
            b"{}",
            &RequestSigner::Insecure,
            &spec_routing()
        ),
        Err(ProtocolError::Schema {
            field: "requestid",
            ..
        })
    ));
    // Received: ttl too small, empty agent, wrong protocol, version mismatch.
    let bad_ttl = SPEC_REQUEST.replace(r#""ttl":60"#, r#""ttl":5"#);
    assert!(matches!(
        v1::Request::decode(bad_ttl.as_bytes()),
        Err(ProtocolError::Schema { field: "ttl", .. })
    ));
    let no_agent =
        SPEC_REQUEST.replace(r#""agent":"choria_provision","ttl""#, r#""agent":"","ttl""#);
    assert!(matches!(
        v1::Request::decode(no_agent.as_bytes()),
        Err(ProtocolError::Schema { field: "agent", .. })
    ));
    let v2_proto = SPEC_REQUEST.replace("choria:request:1", "io.choria.protocol.v2.request");
    assert!(matches!(
        v1::Request::decode(v2_proto.as_bytes()),
        Err(ProtocolError::VersionMismatch { .. })
    ));
    let unknown = SPEC_REQUEST.replace("choria:request:1", "choria:request:9");
    assert!(matches!(
        v1::Request::decode(unknown.as_bytes()),
        Err(ProtocolError::UnknownProtocol { .. })
    ));
    let missing = SPEC_REQUEST.replace(r#""callerid":"choria=provisioner","#, "");
    assert!(matches!(
        v1::Request::decode(missing.as_bytes()),
        Err(ProtocolError::Json { .. })
    ));
    // v2 requests need ttl >= 1 and a positive time.
    let v2req = r#"{"protocol":"io.choria.protocol.v2.request","message":"e30=","id":"x","sender":"s","caller":"c","collective":"choria","agent":"a","ttl":0,"time":5}"#;
    assert!(matches!(
        v2::Request::decode(v2req.as_bytes()),
        Err(ProtocolError::Schema { field: "ttl", .. })
    ));
    // v1 secure request fields must be non-empty.
    let sr = r#"{"protocol":"choria:secure:request:1","message":"x","signature":"","pubcert":"insecure"}"#;
    assert!(matches!(
        v1::SecureRequest::decode(sr.as_bytes()),
        Err(ProtocolError::Schema {
            field: "signature",
            ..
        })
    ));
}

#[test]
fn hostile_transports_fail_cleanly() {
    let cases: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        br#"{"protocol":"choria:transport:1"}"#.to_vec(),
        br#"{"protocol":"choria:transport:1","data":"!!!"}"#.to_vec(),
        br#"{"protocol":"choria:transport:1","data":"e30="}"#.to_vec(),
        br#"{"protocol":"io.choria.protocol.v2.transport","data":"bm90IGpzb24="}"#.to_vec(),
        br#"{"protocol":"choria:transport:1","data":"e30=","headers":{"seen-by":[["a"]]}}"#
            .to_vec(),
        vec![b'['; 10_000],
    ];
    for c in &cases {
        assert!(
            message::decode_request(c).is_err(),
            "{}",
            String::from_utf8_lossy(c)
        );
        assert!(message::decode_reply(c).is_err());
    }
    let big = format!(
        r#"{{"protocol":"choria:transport:1","data":"{}"}}"#,
        "A".repeat(5 * 1024 * 1024)
    );
    assert!(matches!(
        message::decode_request(big.as_bytes()),
        Err(ProtocolError::TooLarge { .. })
    ));

    // Random mutations of a valid message never panic.
    let mut seed = 0x1234_5678_9abc_def0u64;
    let base = SPEC_TRANSPORT.as_bytes();
    for _ in 0..3_000 {
        let mut m = base.to_vec();
        for _ in 0..4 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let i = (seed as usize) % m.len();
            m[i] = (seed >> 40) as u8;
        }
        let _ = message::decode_request(&m);
        let _ = message::decode_reply(&m);
        let _ = choria_protocol::LifecycleEvent::parse(&m);
        let _ = RpcRequest::decode(&m);
    }
}
