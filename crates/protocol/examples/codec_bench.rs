//! Measures request/reply encode and decode rates of `choria-protocol` and prints one JSON line
//! per case. Run with `cargo run --release -p choria-protocol --example codec_bench`.

use std::time::{Duration, Instant};

use choria_protocol::message::{self, ReplyMeta, ReplySigner, RequestMeta, RequestSigner, Routing};
use choria_protocol::{ids, RpcReply, RpcRequest, Version};

fn rate(name: &str, iterations: u32, mut f: impl FnMut()) {
    let start = Instant::now();
    for _ in 0..iterations {
        f();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"case\":\"{name}\",\"iterations\":{iterations},\"seconds\":{secs:.4},\"per_second\":{:.0}}}",
        f64::from(iterations) / secs
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
    let now = ids::from_unix_seconds(1_700_000_000);
    let meta = RequestMeta::new(
        "prov",
        "choria=prov",
        "provisioning",
        "choria_provision",
        Duration::from_secs(60),
        now,
    );
    let mut data = serde_json::Map::new();
    data.insert("token".into(), "toomanysecrets".into());
    let payload = RpcRequest::new("choria_provision", "jwt", data).encode()?;
    let routing = Routing {
        reply_to: "provisioning.reply.x.y".into(),
        sender: "prov".into(),
        hops: vec![],
    };
    let n = 20_000;
    let filter = choria_protocol::Filter::default();
    rate("gojson_filter", n, || {
        let _ = choria_protocol::gojson::to_vec(&filter);
    });
    rate("serde_json_filter", n, || {
        let _ = serde_json::to_vec(&filter);
    });
    rate("rpc_encode", n, || {
        let _ = RpcRequest::new("a", "b", Default::default()).encode();
    });

    let v1 = message::encode_request(
        Version::V1,
        &meta,
        &payload,
        &RequestSigner::Insecure,
        &routing,
    )?;
    rate("v1_insecure_request_encode", n, || {
        let _ = message::encode_request(
            Version::V1,
            &meta,
            &payload,
            &RequestSigner::Insecure,
            &routing,
        );
    });
    rate("v1_request_decode", n, || {
        let _ = message::decode_request(&v1);
    });
    let signer = RequestSigner::Ed25519 {
        key: &seed,
        caller_jwt: "jwt",
        signer_jwt: None,
    };
    let v2 = message::encode_request(Version::V2, &meta, &payload, &signer, &routing)?;
    rate("v2_signed_request_encode", n, || {
        let _ = message::encode_request(Version::V2, &meta, &payload, &signer, &routing);
    });
    let public = seed.verifying_key().to_bytes();
    rate("v2_request_decode_and_verify", n, || {
        if let Ok(r) = message::decode_request(&v2) {
            let _ = r.security.verify_ed25519(&public);
        }
    });
    let reply_payload = RpcReply::ok("jwt", Default::default()).encode()?;
    let rmeta = ReplyMeta::for_request(&meta, "n1", now);
    let reply = message::encode_reply(
        Version::V1,
        &rmeta,
        &reply_payload,
        &ReplySigner::None,
        &Routing::default(),
    )?;
    rate("v1_reply_decode", n, || {
        let _ = message::decode_reply(&reply);
    });
    Ok(())
}
