//! Measures token signing and verification rates on this machine and prints one JSON line
//! per case (`cargo run -p choria-tokens --example throughput`). Dependencies are built at
//! opt-level 2 even in dev builds, so the crypto numbers are representative.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use choria_tokens::{
    parse_provisioning_token, parse_server_token, read_public_key_file, sign_nonce, sign_token,
    verify_nonce, Ed25519Seed, NewServer, ServerClaims, SignatureEncoding, SigningKey,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let vectors = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors");
    let now = SystemTime::now();
    let org = Ed25519Seed::generate();
    let node = Ed25519Seed::generate();
    let claims = ServerClaims::new(
        NewServer {
            identity: "n1.example.net".into(),
            collectives: vec!["choria".into()],
            public_key: Some(node.public_key_bytes()),
            validity: Duration::from_secs(3600),
            ..Default::default()
        },
        now,
    )?;
    let ed_key = SigningKey::Ed25519(org.clone());
    let ed_token = sign_token(&claims, &ed_key)?;
    let ed_public = org.public_key();
    let rsa_token = std::fs::read_to_string(vectors.join("tokens/rsa/good-provisioning.jwt"))?;
    let rsa_public = read_public_key_file(vectors.join("tokens/rsa/signer-public.pem"))?;
    let rsa_key = SigningKey::from_file(vectors.join("tokens/rsa/signer-key.pem"))?;

    measure("eddsa_sign_server_token", || {
        sign_token(&claims, &ed_key).map(drop)
    })?;
    measure("eddsa_verify_server_token", || {
        parse_server_token(&ed_token, &ed_public, now).map(drop)
    })?;
    measure("rs256_sign_server_token", || {
        sign_token(&claims, &rsa_key).map(drop)
    })?;
    measure("rs256_verify_provisioning_token", || {
        parse_provisioning_token(&rsa_token, &rsa_public, now).map(drop)
    })?;
    let sig = sign_nonce(&node, b"nonce-from-nats-server");
    let pk = node.public_key_hex();
    measure("nonce_verify", || {
        verify_nonce(
            &pk,
            b"nonce-from-nats-server",
            &sig,
            SignatureEncoding::Base64Url,
        )
    })?;
    Ok(())
}

fn measure<E>(name: &str, mut op: impl FnMut() -> Result<(), E>) -> Result<(), E> {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < Duration::from_millis(500) {
        op()?;
        count += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{{\"case\":\"{name}\",\"ops\":{count},\"seconds\":{secs:.3},\"ops_per_sec\":{:.0},\"us_per_op\":{:.1}}}",
        count as f64 / secs,
        secs * 1e6 / count as f64
    );
    Ok(())
}
