//! Hostile and broken input: every case ends in a precise error variant, never a panic.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use choria_tokens::*;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_781_481_600)
}

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(vectors().join(rel)).unwrap()
}

fn ed_key() -> PublicKey {
    read_public_key_file(vectors().join("tokens/ed25519/signer.public")).unwrap()
}

fn rsa_key() -> PublicKey {
    read_public_key_file(vectors().join("tokens/rsa/signer-public.pem")).unwrap()
}

fn b64(s: &str) -> String {
    URL_SAFE_NO_PAD.encode(s)
}

fn forged(header: &str, payload: &str, sig: &str) -> String {
    format!("{}.{}.{}", b64(header), b64(payload), sig)
}

#[test]
fn wrong_segment_counts() {
    for token in ["xx", "", "a.b", "a.b.c.d", "....."] {
        let err = parse_provisioning_token(token, &ed_key(), now()).unwrap_err();
        assert!(
            matches!(err, TokenError::SegmentCount { .. }),
            "{token:?}: {err}"
        );
        assert_eq!(token_purpose(token), Purpose::Unknown);
        assert!(token_algorithm(token).is_err());
    }
    let err = parse_token_unverified("xx").unwrap_err();
    assert!(err
        .to_string()
        .starts_with("token is malformed: token contains an invalid number of segments"));
}

#[test]
fn truncated_and_garbled_tokens() {
    let good = read("tokens/ed25519/good-provisioning.jwt");
    let good = good.trim();
    // Truncation at every length never panics and never validates.
    for len in 0..good.len() {
        assert!(
            parse_provisioning_token(&good[..len], &ed_key(), now()).is_err(),
            "len {len}"
        );
    }
    let (head, rest) = good.split_once('.').unwrap();
    let (payload, sig) = rest.split_once('.').unwrap();

    let err = parse_provisioning_token(&format!("!!{head}.{payload}.{sig}"), &ed_key(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Malformed {
                segment: Segment::Header,
                ..
            }
        ),
        "{err}"
    );
    let err = parse_provisioning_token(&format!("{head}.{payload}*.{sig}"), &ed_key(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Malformed {
                segment: Segment::Payload,
                ..
            }
        ),
        "{err}"
    );
    let err = parse_provisioning_token(&format!("{head}.{payload}.{sig}$"), &ed_key(), now())
        .unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Malformed {
                segment: Segment::Signature,
                ..
            }
        ),
        "{err}"
    );
    // A valid-looking but altered signature.
    let mut bad_sig: Vec<char> = sig.chars().collect();
    bad_sig[3] = if bad_sig[3] == 'A' { 'B' } else { 'A' };
    let bad_sig: String = bad_sig.into_iter().collect();
    let err = parse_provisioning_token(&format!("{head}.{payload}.{bad_sig}"), &ed_key(), now())
        .unwrap_err();
    assert!(matches!(err, TokenError::BadSignature { .. }), "{err}");
    // A signature of the wrong length.
    let err =
        parse_provisioning_token(&format!("{head}.{payload}.AAAA"), &ed_key(), now()).unwrap_err();
    assert!(matches!(err, TokenError::BadSignature { .. }), "{err}");
    // Surrounding whitespace (a token file with a newline) is fine.
    assert!(parse_provisioning_token(&format!("\n {good}\r\n"), &ed_key(), now()).is_ok());
}

#[test]
fn non_json_and_wrongly_typed_payloads() {
    let header = r#"{"alg":"EdDSA","typ":"JWT"}"#;
    for payload in [
        "not json",
        "[1,2]",
        "\"x\"",
        r#"{"exp":"soon"}"#,
        r#"{"chs":"yes"}"#,
        "{",
    ] {
        let token = forged(header, payload, "AAAA");
        let err = parse_provisioning_token(&token, &ed_key(), now()).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Malformed {
                    segment: Segment::Payload,
                    ..
                }
            ),
            "{payload}: {err}"
        );
        assert_eq!(token_purpose(&token), Purpose::Unknown);
    }
    let token = forged("nope", "{}", "AAAA");
    let err = parse_provisioning_token(&token, &ed_key(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Malformed {
                segment: Segment::Header,
                ..
            }
        ),
        "{err}"
    );
    let token = forged(r#"{"typ":"JWT"}"#, "{}", "AAAA");
    let err = parse_provisioning_token(&token, &ed_key(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Malformed {
                segment: Segment::Header,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn refused_algorithms() {
    let payload = r#"{"purpose":"choria_provisioning","cht":"x","chs":true,"chpd":false}"#;
    for alg in ["none", "HS256", "HS512", "PS256", "ES256", "EdDSA2", ""] {
        let header = format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#);
        for sig in ["", "AAAA"] {
            let token = forged(&header, payload, sig);
            for key in [ed_key(), rsa_key()] {
                let err = parse_provisioning_token(&token, &key, now()).unwrap_err();
                assert!(
                    matches!(&err, TokenError::UnsupportedAlgorithm { alg: a } if a == alg),
                    "{alg}: {err}"
                );
            }
        }
    }
    // HS256 with the RSA public key PEM as the HMAC secret (the classic confusion attack).
    let hs = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &serde_json::json!({"purpose": "choria_provisioning", "cht": "x", "chs": true, "chpd": false}),
        &jsonwebtoken::EncodingKey::from_secret(read("tokens/rsa/signer-public.pem").as_bytes()),
    )
    .unwrap();
    let err = parse_provisioning_token(&hs, &rsa_key(), now()).unwrap_err();
    assert!(
        matches!(err, TokenError::UnsupportedAlgorithm { .. }),
        "{err}"
    );
    // Unverified reads still work (it is only a claim set) and report the algorithm.
    assert_eq!(token_algorithm(&hs).unwrap(), "HS256");
    assert!(parse_provisioning_token_unverified(&hs).is_ok());
}

#[test]
fn key_type_mismatches() {
    let ed_token = read("tokens/ed25519/good-provisioning.jwt");
    let err = parse_provisioning_token(&ed_token, &rsa_key(), now()).unwrap_err();
    assert!(matches!(
        err,
        TokenError::KeyMismatch {
            required: KeyKind::Ed25519,
            given: KeyKind::Rsa,
            ..
        }
    ));
    let rsa_token = read("tokens/rsa/good-provisioning.jwt");
    let err = parse_provisioning_token(&rsa_token, &ed_key(), now()).unwrap_err();
    assert!(matches!(
        err,
        TokenError::KeyMismatch {
            required: KeyKind::Rsa,
            given: KeyKind::Ed25519,
            ..
        }
    ));
}

#[test]
fn oversized_tokens_are_refused_before_decoding() {
    let big = "a".repeat(1024 * 1024);
    let err = parse_provisioning_token(&big, &ed_key(), now()).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::TooLarge {
                size: 1_048_576,
                limit: MAX_TOKEN_SIZE
            }
        ),
        "{err}"
    );
    assert!(matches!(
        parse_token_unverified(&big),
        Err(TokenError::TooLarge { .. })
    ));
    assert_eq!(token_purpose(&big), Purpose::Unknown);
    // A well formed but huge token is refused the same way.
    let payload = format!(
        r#"{{"purpose":"choria_provisioning","cht":"{}"}}"#,
        "x".repeat(70_000)
    );
    let token = forged(r#"{"alg":"EdDSA"}"#, &payload, "AAAA");
    assert!(matches!(
        parse_token_unverified(&token),
        Err(TokenError::TooLarge { .. })
    ));
}

#[test]
fn expired_and_not_yet_valid() {
    let seed = Ed25519Seed::generate();
    let key = SigningKey::Ed25519(seed.clone());
    let t0 = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let claims = ProvisioningClaims::new(
        NewProvisioning {
            token: "t".into(),
            srv_domain: "example.net".into(),
            validity: Duration::from_secs(60),
            ..Default::default()
        },
        t0,
    )
    .unwrap();
    let token = sign_token(&claims, &key).unwrap();
    let pk = seed.public_key();
    assert!(parse_provisioning_token(&token, &pk, t0).is_ok());
    assert!(parse_provisioning_token(&token, &pk, t0 + Duration::from_secs(59)).is_ok());
    let err = parse_provisioning_token(&token, &pk, t0 + Duration::from_secs(60)).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::Expired {
                expired_at: 1_800_000_060
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("2027-01-15"), "{err}");
    let err = parse_provisioning_token(&token, &pk, t0 - Duration::from_secs(1)).unwrap_err();
    assert!(
        matches!(
            err,
            TokenError::NotYetValid {
                not_before: 1_800_000_000
            }
        ),
        "{err}"
    );
}

#[test]
fn bad_key_files_name_the_path() {
    let dir = tempfile::tempdir().unwrap();
    let cases: [(&str, &[u8]); 6] = [
        ("empty", b""),
        ("short.public", b"3899a8bb"),
        (
            "nothex.public",
            b"zz99a8bb4b6e6e09c91c27f28f086f0b40f1d3091a8c83c07320bc6cfdf67730",
        ),
        (
            "rsa-public.pem",
            b"-----BEGIN RSA PUBLIC KEY-----\ngarbage\n-----END RSA PUBLIC KEY-----\n",
        ),
        (
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        ),
        ("binary", &[0xff, 0xfe, 0x00, 0x01]),
    ];
    for (name, content) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        let err = read_public_key_file(&path).unwrap_err();
        assert!(
            matches!(&err, TokenError::KeyFile { path: p, .. } if *p == path),
            "{name}: {err}"
        );
        assert!(SigningKey::from_file(&path).is_err(), "{name}");
    }
    let missing = dir.path().join("missing");
    assert!(matches!(
        read_public_key_file(&missing),
        Err(TokenError::KeyFile { .. })
    ));
    // A seed with a newline is tolerated; 63 characters are not.
    let seed = Ed25519Seed::generate();
    let path = dir.path().join("nl.seed");
    std::fs::write(&path, format!("{}\n", seed.to_hex())).unwrap();
    assert_eq!(
        Ed25519Seed::from_file(&path).unwrap().public_key_hex(),
        seed.public_key_hex()
    );
    assert!(matches!(
        SigningKey::from_file(&path).unwrap(),
        SigningKey::Ed25519(_)
    ));
    std::fs::write(&path, &seed.to_hex()[..63]).unwrap();
    let err = SigningKey::from_file(&path).unwrap_err();
    assert!(
        !err.to_string().contains(&seed.to_hex()[..63]),
        "errors must not echo secrets"
    );
}

#[test]
fn secrets_stay_out_of_debug_output() {
    let seed = Ed25519Seed::generate();
    let hex_seed = seed.to_hex();
    assert!(!format!("{seed:?}").contains(&hex_seed));
    assert!(!format!("{:?}", SigningKey::Ed25519(seed)).contains(&hex_seed));
    let rsa = SigningKey::from_file(vectors().join("tokens/rsa/signer-key.pem")).unwrap();
    assert_eq!(format!("{rsa:?}"), "SigningKey::Rsa(2048 bits)");
}

#[test]
fn purpose_detection() {
    let payload = |p: &str| forged(r#"{"alg":"EdDSA"}"#, p, "");
    assert_eq!(
        token_purpose(&payload(r#"{"sub":"choria_provisioning"}"#)),
        Purpose::Provisioning
    );
    assert_eq!(
        token_purpose(&payload(r#"{"purpose":"choria_server"}"#)),
        Purpose::Server
    );
    assert_eq!(
        token_purpose(&payload(r#"{"purpose":"choria_client_id"}"#)),
        Purpose::ClientId
    );
    assert_eq!(
        token_purpose(&payload(
            r#"{"purpose":"other","sub":"choria_provisioning"}"#
        )),
        Purpose::Unknown
    );
    assert_eq!(token_purpose(&payload(r#"{"chs":true}"#)), Purpose::Unknown);
    // The raw claim survives for reporting (the broker's "do not know how to handle").
    assert_eq!(
        claimed_purpose(&payload(r#"{"purpose":"choria_server"}"#)),
        ClaimedPurpose::Known(Purpose::Server)
    );
    assert_eq!(
        claimed_purpose(&payload(r#"{"sub":"choria_provisioning"}"#)),
        ClaimedPurpose::Known(Purpose::Provisioning)
    );
    assert_eq!(
        claimed_purpose(&payload(
            r#"{"purpose":"other","sub":"choria_provisioning"}"#
        )),
        ClaimedPurpose::Other("other".into())
    );
    assert_eq!(
        claimed_purpose(&payload(r#"{"purpose":7}"#)),
        ClaimedPurpose::Other(String::new())
    );
    assert_eq!(
        claimed_purpose("garbage"),
        ClaimedPurpose::Other(String::new())
    );
    // Fractional times are accepted and truncated.
    let claims = parse_provisioning_token_unverified(&payload(
        r#"{"sub":"choria_provisioning","exp":1.9e9,"nbf":1700000000.7}"#,
    ))
    .unwrap();
    assert_eq!(claims.standard.exp, Some(1_900_000_000));
    assert_eq!(claims.standard.nbf, Some(1_700_000_000));
    assert_eq!(claims.ou, "choria");
    assert!(matches!(
        parse_client_token_unverified(&payload(r#"{"purpose":"choria_server"}"#)),
        Err(TokenError::WrongPurpose {
            expected: Purpose::ClientId,
            ..
        })
    ));
}

#[test]
fn random_mutations_never_panic_or_validate() {
    use rand::{Rng as _, SeedableRng as _};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let alphabet = b"ABCxyz019-_.=+/ {}\"";
    for vector in [
        "tokens/ed25519/good-provisioning.jwt",
        "tokens/derived/chained-server.jwt",
        "tokens/rsa/good-provisioning.jwt",
    ] {
        let good = read(vector).trim().as_bytes().to_vec();
        for _ in 0..300 {
            let mut bytes = good.clone();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..bytes.len());
                bytes[at] = alphabet[rng.gen_range(0..alphabet.len())];
            }
            let Ok(token) = String::from_utf8(bytes.clone()) else {
                continue;
            };
            if bytes == good {
                continue;
            }
            let _ = token_purpose(&token);
            let _ = parse_token_unverified(&token);
            for key in [ed_key(), rsa_key()] {
                let _ = parse_server_token(&token, &key, now());
                let _ = parse_client_token(&token, &key, now());
                if let Ok(c) = parse_provisioning_token(&token, &key, now()) {
                    // Base64 has slack bits in the last character of a segment: a change that
                    // decodes to the same bytes is the same token.
                    let original =
                        parse_provisioning_token(std::str::from_utf8(&good).unwrap(), &key, now())
                            .unwrap();
                    assert_eq!(c, original, "{token}");
                }
            }
        }
    }
}

#[test]
fn binary_der_public_keys_are_accepted() {
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    use rsa::pkcs8::EncodePublicKey as _;
    let PublicKey::Rsa(rsa) = rsa_key() else {
        unreachable!()
    };
    let pkcs1 = rsa.to_pkcs1_der().unwrap();
    assert_eq!(
        PublicKey::from_key_file_bytes(pkcs1.as_bytes()).unwrap(),
        rsa_key()
    );
    let spki = rsa.to_public_key_der().unwrap();
    assert_eq!(
        PublicKey::from_key_file_bytes(spki.as_bytes()).unwrap(),
        rsa_key()
    );
    let token = read("tokens/rsa/good-provisioning.jwt");
    let key = PublicKey::from_key_file_bytes(pkcs1.as_bytes()).unwrap();
    assert!(parse_provisioning_token(&token, &key, now()).is_ok());
    // PKCS#1 DER under a PEM label, as the provisioning agent's gencsr emits it.
    let pem = pem::encode(&pem::Pem::new("PUBLIC KEY", pkcs1.as_bytes().to_vec()));
    assert_eq!(
        PublicKey::from_key_file_bytes(pem.as_bytes()).unwrap(),
        rsa_key()
    );
}

#[test]
fn duplicate_claims_are_refused() {
    let payload = |p: &str| forged(r#"{"alg":"EdDSA"}"#, p, "");
    for p in [
        r#"{"purpose":"choria_provisioning","cht":"a","cht":"b"}"#,
        r#"{"purpose":"choria_server","purpose":"choria_provisioning"}"#,
    ] {
        let err = parse_provisioning_token_unverified(&payload(p)).unwrap_err();
        assert!(
            matches!(
                err,
                TokenError::Malformed {
                    segment: Segment::Payload,
                    ..
                }
            ),
            "{p}: {err}"
        );
    }
}
