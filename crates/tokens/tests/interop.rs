//! Our tokens verify with an independent JWT library (`jsonwebtoken`), and its tokens verify
//! with ours, for RS256 and EdDSA.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use choria_tokens::*;
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn client_claims(public_key: Option<[u8; 32]>) -> ClientIdClaims {
    ClientIdClaims::new(
        NewClient {
            callerid: "up=alice".into(),
            agents: vec!["rpcutil".into(), "choria_provision.jwt".into()],
            permissions: Some(ClientPermissions {
                fleet_management: true,
                provisioner: true,
                ..Default::default()
            }),
            public_key,
            validity: Duration::from_secs(3600),
            opa_policy: "package io.choria <&>".into(),
            ..Default::default()
        },
        SystemTime::now(),
    )
    .unwrap()
}

fn validation(alg: Algorithm) -> Validation {
    let mut v = Validation::new(alg);
    v.validate_nbf = true;
    v.leeway = 0;
    v.required_spec_claims.clear();
    v
}

#[test]
fn our_rs256_tokens_verify_with_jsonwebtoken() {
    let key = SigningKey::from_file(vectors().join("tokens/rsa/signer-key.pem")).unwrap();
    let claims = client_claims(None);
    let token = sign_token(&claims, &key).unwrap();
    let pem = std::fs::read(vectors().join("tokens/rsa/signer-public.pem")).unwrap();
    let decoded = jsonwebtoken::decode::<ClientIdClaims>(
        &token,
        &DecodingKey::from_rsa_pem(&pem).unwrap(),
        &validation(Algorithm::RS256),
    )
    .unwrap();
    assert_eq!(decoded.claims, claims);
    assert_eq!(decoded.header.alg, Algorithm::RS256);
}

#[test]
fn our_eddsa_tokens_verify_with_jsonwebtoken() {
    let seed = Ed25519Seed::generate();
    let claims = client_claims(Some(seed.public_key_bytes()));
    let token = sign_token(&claims, &SigningKey::Ed25519(seed.clone())).unwrap();
    let decoded = jsonwebtoken::decode::<ClientIdClaims>(
        &token,
        &DecodingKey::from_ed_der(&seed.public_key_bytes()),
        &validation(Algorithm::EdDSA),
    )
    .unwrap();
    assert_eq!(decoded.claims, claims);
    // And a different key fails there too.
    let other = Ed25519Seed::generate();
    assert!(jsonwebtoken::decode::<ClientIdClaims>(
        &token,
        &DecodingKey::from_ed_der(&other.public_key_bytes()),
        &validation(Algorithm::EdDSA),
    )
    .is_err());
}

#[test]
fn jsonwebtoken_rs256_tokens_verify_with_ours() {
    let claims = client_claims(None);
    let pem = std::fs::read(vectors().join("tokens/rsa/signer-key.pem")).unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::RS256),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    let ours = read_public_key_file(vectors().join("tokens/rsa/signer-public.pem")).unwrap();
    assert_eq!(
        parse_client_token(&token, &ours, SystemTime::now()).unwrap(),
        claims
    );
    // RS384 and RS512 are accepted too.
    for alg in [Algorithm::RS384, Algorithm::RS512] {
        let token = jsonwebtoken::encode(
            &Header::new(alg),
            &claims,
            &EncodingKey::from_rsa_pem(&pem).unwrap(),
        )
        .unwrap();
        assert_eq!(
            parse_client_token(&token, &ours, SystemTime::now()).unwrap(),
            claims,
            "{alg:?}"
        );
    }
    let other = read_public_key_file(vectors().join("tokens/rsa/other-public.pem")).unwrap();
    assert!(matches!(
        parse_client_token(&token, &other, SystemTime::now()),
        Err(TokenError::BadSignature { kind: KeyKind::Rsa })
    ));
}

#[test]
fn jsonwebtoken_eddsa_tokens_verify_with_ours() {
    let seed = Ed25519Seed::generate();
    let claims = client_claims(Some(seed.public_key_bytes()));
    let der = ed25519_dalek::SigningKey::from_bytes(
        &hex::decode(seed.to_hex()).unwrap().try_into().unwrap(),
    )
    .to_pkcs8_der()
    .unwrap();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::EdDSA),
        &claims,
        &EncodingKey::from_ed_der(der.as_bytes()),
    )
    .unwrap();
    assert_eq!(
        parse_client_token(&token, &seed.public_key(), SystemTime::now()).unwrap(),
        claims
    );
    // A PS256 token made by jsonwebtoken is refused by name.
    let pem = std::fs::read(vectors().join("tokens/rsa/signer-key.pem")).unwrap();
    let ps = jsonwebtoken::encode(
        &Header::new(Algorithm::PS256),
        &claims,
        &EncodingKey::from_rsa_pem(&pem).unwrap(),
    )
    .unwrap();
    let ours = read_public_key_file(vectors().join("tokens/rsa/signer-public.pem")).unwrap();
    assert!(matches!(
        parse_client_token(&ps, &ours, SystemTime::now()),
        Err(TokenError::UnsupportedAlgorithm { alg }) if alg == "PS256"
    ));
}

#[test]
fn go_escaping_of_html_characters() {
    let claims = client_claims(None);
    let json = go_json(&claims).unwrap();
    assert!(
        json.contains(r#""opa_policy":"package io.choria \u003c\u0026\u003e""#),
        "{json}"
    );
    let back: ClientIdClaims = serde_json::from_str(&json).unwrap();
    assert_eq!(back, claims);
}
