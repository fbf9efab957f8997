//! Every token vector of `shared/vectors/README.md` reaches the stated conclusion, and the
//! derived ed25519 vectors are reproduced byte for byte from their claims.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use choria_tokens::*;

/// 2026-06-15T00:00:00Z, the reference "now" of the spec.
fn spec_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_781_481_600)
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(vectors().join(rel)).unwrap()
}

fn key(rel: &str) -> PublicKey {
    read_public_key_file(vectors().join(rel)).unwrap()
}

fn seed(rel: &str) -> Ed25519Seed {
    Ed25519Seed::from_file(vectors().join(rel)).unwrap()
}

#[test]
fn seeds_derive_their_public_files() {
    assert_eq!(
        seed("tokens/ed25519/signer.seed").public_key_hex(),
        read("tokens/ed25519/signer.public")
    );
    assert_eq!(
        seed("tokens/ed25519/other.seed").public_key_hex(),
        read("tokens/ed25519/other.public")
    );
    assert_eq!(
        read("tokens/ed25519/signer.public"),
        "3899a8bb4b6e6e09c91c27f28f086f0b40f1d3091a8c83c07320bc6cfdf67730"
    );
    let signing = SigningKey::from_file(vectors().join("tokens/ed25519/signer.seed")).unwrap();
    assert_eq!(signing.kind(), KeyKind::Ed25519);
    let signing = SigningKey::from_file(vectors().join("tokens/rsa/signer-key.pem")).unwrap();
    assert_eq!(signing.public_key(), key("tokens/rsa/signer-public.pem"));
}

#[test]
fn ed25519_provisioning_vector() {
    let token = read("tokens/ed25519/good-provisioning.jwt");
    assert_eq!(token_algorithm(&token).unwrap(), "EdDSA");
    assert_eq!(token_purpose(&token), Purpose::Provisioning);

    let claims =
        parse_provisioning_token(&token, &key("tokens/ed25519/signer.public"), spec_now()).unwrap();
    assert_eq!(claims.ou, "choria");
    assert_eq!(claims.cht, "x");
    assert!(claims.chs && claims.chpd);
    assert_eq!(claims.chu, "nats://example:4222");
    assert_eq!(claims.standard.exp, Some(1_971_430_977));
    assert_eq!(
        clock::format_unix(1_971_430_977),
        "2032-06-21 11:42:57 +0000 UTC"
    );
    assert!(claims.extensions.is_none());
    assert!(claims.standard.jti.is_empty());

    let err = parse_provisioning_token(&token, &key("tokens/ed25519/other.public"), spec_now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::BadSignature {
                kind: KeyKind::Ed25519
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("ed25519: verification error"));

    for rsa in [
        "tokens/rsa/signer-public.pem",
        "broker/rip.mcollective.cert.pem",
    ] {
        let err = parse_provisioning_token(&token, &key(rsa), spec_now()).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::KeyMismatch {
                    required: KeyKind::Ed25519,
                    given: KeyKind::Rsa,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("ed25519 public key required"));
    }

    // exp is enforced without leeway: valid one second before, expired at exp.
    let signer = key("tokens/ed25519/signer.public");
    assert!(parse_provisioning_token(&token, &signer, at(1_971_430_976)).is_ok());
    let err = parse_provisioning_token(&token, &signer, at(1_971_430_977)).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Expired {
                expired_at: 1_971_430_977
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("token is expired"));
    // nbf likewise.
    let err = parse_provisioning_token(&token, &signer, at(1_656_070_976)).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::NotYetValid {
                not_before: 1_656_070_977
            }
        ),
        "{err}"
    );
}

#[test]
fn rsa_provisioning_vector() {
    let token = read("tokens/rsa/good-provisioning.jwt");
    assert_eq!(token_algorithm(&token).unwrap(), "RS256");
    let signer = key("tokens/rsa/signer-public.pem");
    let claims = parse_provisioning_token(&token, &signer, spec_now()).unwrap();
    assert_eq!(claims.cht, "toomanysecrets");
    assert_eq!(claims.chu, "nats://example.net:4222");
    assert!(!claims.chpd);
    assert_eq!(claims.standard.exp, None);
    assert!(claims.extensions.is_none());
    // No exp: never expires under JWT rules, even far in the future.
    assert!(parse_provisioning_token(&token, &signer, at(4_102_444_800)).is_ok());
    // ... but the effective-expiry helper treats "no expiry" as expired (upstream quirk).
    assert!(claims.standard.is_expired(spec_now()));

    let err = parse_provisioning_token(&token, &key("tokens/rsa/other-public.pem"), spec_now())
        .unwrap_err();
    assert!(
        matches!(err, TokenError::BadSignature { kind: KeyKind::Rsa }),
        "{err}"
    );
    assert!(err.to_string().contains("crypto/rsa: verification error"));

    let err = parse_provisioning_token(&token, &key("tokens/ed25519/signer.public"), spec_now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::KeyMismatch {
                required: KeyKind::Rsa,
                given: KeyKind::Ed25519,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("rsa public key required"));

    let err = parse_server_token(&token, &signer, spec_now()).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::WrongPurpose {
                expected: Purpose::Server,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("not a server token"));
    assert!(parse_server_token_unverified(&token).is_err());
    assert_eq!(
        parse_token_unverified(&token).unwrap()["sub"],
        "choria_provisioning"
    );
}

#[test]
fn broker_vectors_verify_with_an_expired_certificate() {
    let cert = key("broker/rip.mcollective.cert.pem");
    for (file, secure) in [("broker/secure.jwt", true), ("broker/insecure.jwt", false)] {
        let token = read(file);
        assert_eq!(token_purpose(&token), Purpose::Provisioning, "{file}");
        let claims = parse_provisioning_token(&token, &cert, spec_now()).unwrap();
        assert_eq!(claims.chs, secure, "{file}");
        assert!(claims.standard.purpose.is_empty());
        assert_eq!(claims.standard.sub, "choria_provisioning");
        assert_eq!(claims.ou, "choria");
    }
    let err = parse_provisioning_token(&read("broker/invalid.jwt"), &cert, spec_now()).unwrap_err();
    assert!(
        matches!(err, TokenError::BadSignature { kind: KeyKind::Rsa }),
        "{err}"
    );
    for other in [
        "tokens/rsa/signer-public.pem",
        "tokens/rsa/other-public.pem",
    ] {
        assert!(
            parse_provisioning_token(&read("broker/invalid.jwt"), &key(other), spec_now()).is_err()
        );
    }
}

fn derived_server_claims() -> ServerClaims {
    ServerClaims {
        identity: "ginkgo.example.net".into(),
        collectives: vec!["choria".into()],
        permissions: Some(ServerPermissions {
            submission: true,
            ..Default::default()
        }),
        ou: "choria".into(),
        pub_subjects: vec![],
        standard: StandardClaims {
            purpose: Purpose::Server.as_str().into(),
            public_key: read("tokens/ed25519/other.public"),
            iss: DEFAULT_ISSUER.into(),
            exp: Some(4_102_444_800),
            nbf: Some(1_700_000_000),
            iat: Some(1_700_000_000),
            jti: Ksuid::from_parts(1_700_000_000, [0; 16])
                .unwrap()
                .to_string(),
            ..Default::default()
        },
    }
}

fn derived_handler_claims() -> ClientIdClaims {
    let mut claims = ClientIdClaims {
        callerid: "choria=handler".into(),
        ou: "choria".into(),
        permissions: Some(ClientPermissions::default()),
        standard: StandardClaims {
            purpose: Purpose::ClientId.as_str().into(),
            public_key: read("tokens/ed25519/other.public"),
            iss: DEFAULT_ISSUER.into(),
            exp: Some(4_102_444_800),
            nbf: Some(1_700_000_000),
            iat: Some(1_700_000_000),
            jti: Ksuid::from_parts(1_700_000_000, [1; 16])
                .unwrap()
                .to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    add_org_issuer_data(&mut claims, &seed("tokens/ed25519/signer.seed")).unwrap();
    claims
}

#[test]
fn derived_server_vector_is_reproduced_and_verifies() {
    let token = read("tokens/derived/server.jwt");
    let signer = SigningKey::Ed25519(seed("tokens/ed25519/signer.seed"));
    assert_eq!(
        sign_token(&derived_server_claims(), &signer).unwrap(),
        token
    );

    let claims =
        parse_server_token(&token, &key("tokens/ed25519/signer.public"), spec_now()).unwrap();
    assert_eq!(claims, derived_server_claims());
    assert_eq!(
        claims.standard.public_key,
        read("tokens/ed25519/other.public")
    );
    assert!(claims
        .is_matching_public_key(&seed("tokens/ed25519/other.seed").public_key_bytes())
        .unwrap());
    let err =
        parse_server_token(&token, &key("tokens/ed25519/other.public"), spec_now()).unwrap_err();
    assert!(matches!(err, TokenError::BadSignature { .. }), "{err}");
}

#[test]
fn derived_chain_issuer_vector_is_reproduced_and_verifies() {
    let token = read("tokens/derived/chain-issuer-client.jwt");
    let signer = SigningKey::Ed25519(seed("tokens/ed25519/signer.seed"));
    assert_eq!(
        sign_token(&derived_handler_claims(), &signer).unwrap(),
        token
    );

    let claims =
        parse_client_token(&token, &key("tokens/ed25519/signer.public"), spec_now()).unwrap();
    assert_eq!(claims.callerid, "choria=handler");
    assert!(is_chained_issuer(&claims.standard, true));
    let org = seed("tokens/ed25519/signer.seed").public_key();
    let PublicKey::Ed25519(org) = org else {
        unreachable!()
    };
    assert!(is_signed_by_issuer(&claims.standard, &org).unwrap());
    let PublicKey::Ed25519(other) = key("tokens/ed25519/other.public") else {
        unreachable!()
    };
    assert_eq!(
        is_signed_by_issuer(&claims.standard, &other),
        Err(ChainError::PublicKeysDoNotMatch)
    );
}

#[test]
fn derived_chained_server_vector_is_reproduced_and_verifies() {
    let token = read("tokens/derived/chained-server.jwt");
    let mut leaf = ServerClaims {
        identity: "chained.example.net".into(),
        collectives: vec!["choria".into()],
        ou: "choria".into(),
        standard: StandardClaims {
            purpose: Purpose::Server.as_str().into(),
            public_key: read("tokens/ed25519/signer.public"),
            exp: Some(4_102_444_800),
            nbf: Some(1_700_000_000),
            iat: Some(1_700_000_000),
            jti: Ksuid::from_parts(1_700_000_000, [2; 16])
                .unwrap()
                .to_string(),
            ..Default::default()
        },
        ..Default::default()
    };
    let made = sign_chained_token(
        &mut leaf,
        &derived_handler_claims(),
        &seed("tokens/ed25519/other.seed"),
    )
    .unwrap();
    assert_eq!(made, token);
    assert_eq!(
        leaf.standard.iss,
        format!(
            "C-2YBXZHs5jCkPh7Cbnk8e3AMAlJR.{}",
            read("tokens/ed25519/other.public")
        )
    );

    let claims =
        parse_server_token(&token, &key("tokens/ed25519/signer.public"), spec_now()).unwrap();
    assert_eq!(claims.identity, "chained.example.net");
    assert_eq!(claims.standard.issexp, Some(4_102_444_800));

    let err =
        parse_server_token(&token, &key("tokens/ed25519/other.public"), spec_now()).unwrap_err();
    assert!(
        matches!(err, TokenError::Chain(ChainError::NotSignedByOrgIssuer)),
        "{err}"
    );
    assert!(err
        .to_string()
        .contains("chain issuer credentials not signed by org issuer"));
}

#[test]
fn chain_errors_follow_the_upstream_order() {
    let token = read("tokens/derived/chained-server.jwt");
    let base = parse_server_token_unverified(&token).unwrap().standard;
    let PublicKey::Ed25519(org) = key("tokens/ed25519/signer.public") else {
        unreachable!()
    };
    assert!(chain_issuer_key(&base, &org).is_ok());

    type Mutation = Box<dyn Fn(&mut StandardClaims)>;
    let cases: Vec<(Mutation, ChainError)> = vec![
        (Box::new(|c| c.iss.clear()), ChainError::NoIssuer),
        (Box::new(|c| c.public_key.clear()), ChainError::NoPublicKey),
        (
            Box::new(|c| c.tcs.clear()),
            ChainError::NoTrustChainSignature,
        ),
        (Box::new(|c| c.jti.clear()), ChainError::NoId),
        (Box::new(|c| c.iat = None), ChainError::NoIssuedTime),
        (Box::new(|c| c.exp = Some(0)), ChainError::NoExpires),
        (
            Box::new(|c| c.jti = "short".into()),
            ChainError::InvalidKsuid,
        ),
        (
            Box::new(|c| c.iat = Some(1_700_000_001)),
            ChainError::IdNotBasedOnIssuedTime,
        ),
        (Box::new(|c| c.issexp = None), ChainError::NoIssuerExpires),
        (
            Box::new(|c| c.iss = "C-abc".into()),
            ChainError::InvalidIssuerContent,
        ),
        (
            Box::new(|c| c.iss = "C-.abc".into()),
            ChainError::InvalidIdInIssuer,
        ),
        (
            Box::new(|c| c.iss = "C-abc.".into()),
            ChainError::InvalidPublicKeyInIssuer,
        ),
        (
            Box::new(|c| c.iss = "C-abc.zz".into()),
            ChainError::InvalidPublicKeyInIssuerData,
        ),
        (
            Box::new(|c| c.tcs = "abc".into()),
            ChainError::InvalidTrustChainSignature(None),
        ),
        (
            Box::new(|c| c.tcs = format!("{}x", c.tcs)),
            ChainError::InvalidSignatureInChainSignature(String::new()),
        ),
        (
            Box::new(|c| c.jti = "2YBXZHtzBAr2gPJKy8UTd6CETFT".into()),
            ChainError::InvalidChainSignature,
        ),
        (
            Box::new(|c| c.iss = "X-foo".into()),
            ChainError::UnsupportedIssuerFormat,
        ),
    ];
    for (mutate, expected) in cases {
        let mut claims = base.clone();
        mutate(&mut claims);
        let got = chain_issuer_key(&claims, &org).unwrap_err();
        assert_eq!(
            std::mem::discriminant(&got),
            std::mem::discriminant(&expected),
            "{got} vs {expected}"
        );
    }
}

#[test]
fn chain_issuer_requirements() {
    let now = at(1_700_000_000);
    let holder = seed("tokens/ed25519/other.seed");
    let mut not_issuer = derived_handler_claims();
    not_issuer.standard.tcs.clear();
    let mut leaf = derived_server_claims();
    let err = sign_chained_token(&mut leaf, &not_issuer, &holder).unwrap_err();
    assert!(
        matches!(err, TokenError::ChainCreation(ChainError::NotAChainIssuer)),
        "{err}"
    );

    let mut no_exp = derived_handler_claims();
    no_exp.standard.exp = None;
    let err = sign_chained_token(&mut leaf, &no_exp, &holder).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::ChainCreation(ChainError::IssuerHasNoExpiry)
        ),
        "{err}"
    );

    // The leaf's exp is capped at the issuer's exp, and the issuer expiry is enforced.
    let mut handler = derived_handler_claims();
    handler.standard.exp = Some(1_700_000_100);
    let mut leaf = derived_server_claims();
    let token = sign_chained_token(&mut leaf, &handler, &holder).unwrap();
    assert_eq!(leaf.standard.exp, Some(1_700_000_100));
    let org = key("tokens/ed25519/signer.public");
    assert!(parse_server_token(&token, &org, now).is_ok());
    let err = parse_server_token(&token, &org, at(1_700_000_100)).unwrap_err();
    assert!(matches!(err, TokenError::Expired { .. }), "{err}");

    // A provisioning token carrying tcs with a non C- issuer is always rejected (quirk).
    let mut prov = ProvisioningClaims::new(
        NewProvisioning {
            token: "t".into(),
            urls: vec!["nats://b:4222".into()],
            ..Default::default()
        },
        now,
    )
    .unwrap();
    prov.standard.tcs = "abcd".into();
    let token = sign_token(
        &prov,
        &SigningKey::Ed25519(seed("tokens/ed25519/signer.seed")),
    )
    .unwrap();
    let err = parse_provisioning_token(&token, &org, now).unwrap_err();
    assert!(matches!(err, TokenError::IssuerExpired { .. }), "{err}");
}
