//! `choria jwt` end to end: the built binary creates keys and tokens in temp dirs, views them
//! in upstream's layout (spec §3.5) and exits 0/1/2 as documented.
#![allow(clippy::unwrap_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime};

use choria_tokens::*;

fn vectors() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
}

fn choria(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choria"))
        .current_dir(dir)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .arg("jwt")
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr(out: &Output) -> String {
    String::from_utf8(out.stderr.clone()).unwrap()
}

fn code(out: &Output) -> i32 {
    out.status.code().unwrap()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn payload_json(token: &str) -> String {
    token_payload_json(token).unwrap()
}

/// Runs `keys` in `dir` and returns (seed path, public path).
fn make_keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let seed = dir.join(format!("{name}.seed"));
    let public = dir.join(format!("{name}.public"));
    let out = choria(
        dir,
        &["keys", seed.to_str().unwrap(), public.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    (seed, public)
}

#[test]
fn keys_are_private_and_never_overwritten_silently() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("k.seed");
    let public = dir.path().join("k.public");
    let out = choria(dir.path(), &["keys", "k.seed", "k.public"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let seed_hex = std::fs::read_to_string(&seed).unwrap();
    let public_hex = std::fs::read_to_string(&public).unwrap();
    assert_eq!(seed_hex.len(), 64, "no trailing newline");
    assert_eq!(public_hex.len(), 64);
    assert_eq!(mode(&seed), 0o600);
    assert_eq!(mode(&public), 0o600);
    assert_eq!(
        Ed25519Seed::from_hex(&seed_hex).unwrap().public_key_hex(),
        public_hex
    );
    assert_eq!(
        stdout(&out),
        format!("Public Key: {public_hex}\n\nEd25519 seed saved in k.seed\n")
    );

    let again = choria(dir.path(), &["keys", "k.seed"]);
    assert_eq!(code(&again), 1);
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    assert_eq!(std::fs::read_to_string(&seed).unwrap(), seed_hex);

    // The public file alone existing is also refused, and nothing is written.
    std::fs::remove_file(&seed).unwrap();
    let again = choria(dir.path(), &["keys", "k.seed", "k.public"]);
    assert_eq!(code(&again), 1);
    assert!(!seed.exists());

    let show = choria(dir.path(), &["keys", "--force", "k.seed", "k.public"]);
    assert_eq!(code(&show), 0, "{}", stderr(&show));
    let forced_hex = std::fs::read_to_string(&seed).unwrap();
    assert_ne!(forced_hex, seed_hex);
    let shown = choria(dir.path(), &["keys", "--show-public", "k.seed"]);
    assert_eq!(
        stdout(&shown),
        format!(
            "Public Key: {}\n",
            std::fs::read_to_string(&public).unwrap()
        )
    );
}

#[test]
fn provisioning_round_trip_with_ed25519() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, public) = make_keys(dir.path(), "org");
    let out = choria(
        dir.path(),
        &[
            "provisioning",
            "prov.jwt",
            seed.to_str().unwrap(),
            "--token",
            "s3cret",
            "--urls",
            "nats://b:4222",
            "--default",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "Saved token to prov.jwt, use 'choria jwt view prov.jwt' to view it\n"
    );
    let file = dir.path().join("prov.jwt");
    assert_eq!(mode(&file), 0o600);
    let token = std::fs::read_to_string(&file).unwrap();
    assert!(!token.ends_with('\n'));
    let json = payload_json(&token);
    assert!(
        json.starts_with(r#"{"cht":"s3cret","chs":false,"chu":"nats://b:4222","chpd":true,"extensions":null,"ou":"choria","purpose":"choria_provisioning","iss":"Choria Tokens Package","sub":"choria_provisioning","exp":"#),
        "{json}"
    );
    let claims = parse_provisioning_token(
        &token,
        &read_public_key_file(&public).unwrap(),
        SystemTime::now(),
    )
    .unwrap();
    let validity = claims.standard.exp.unwrap() - claims.standard.iat.unwrap();
    assert_eq!(validity, 365 * 24 * 3600);
    assert_eq!(
        Ksuid::parse(&claims.standard.jti).unwrap().unix_seconds(),
        claims.standard.iat.unwrap()
    );

    let view = choria(dir.path(), &["view", "prov.jwt", public.to_str().unwrap()]);
    assert_eq!(code(&view), 0, "{}", stderr(&view));
    let text = stdout(&view);
    assert!(
        text.starts_with("Validated Provisioning Token prov.jwt\n\n"),
        "{text}"
    );
    assert!(
        text.contains("\n                         Token: *****\n"),
        "{text}"
    );
    assert!(
        text.contains("\n                        Secure: false\n"),
        "{text}"
    );
    assert!(
        text.contains("\n       Provisioning by default: true\n"),
        "{text}"
    );
    assert!(!text.contains("s3cret"));

    // The default sub command is view.
    let plain = choria(dir.path(), &["prov.jwt"]);
    assert_eq!(code(&plain), 0, "{}", stderr(&plain));
    assert!(stdout(&plain).starts_with("Unvalidated Provisioning Token prov.jwt\n"));

    // Refuses to overwrite, --force replaces.
    let again = choria(
        dir.path(),
        &[
            "provisioning",
            "prov.jwt",
            seed.to_str().unwrap(),
            "--token",
            "x",
            "--srv",
            "example.net",
        ],
    );
    assert_eq!(code(&again), 1);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), token);
    let forced = choria(
        dir.path(),
        &[
            "provisioning",
            "prov.jwt",
            seed.to_str().unwrap(),
            "--force",
            "--token",
            "x",
            "--srv",
            "example.net",
            "--no-insecure",
            "--protocol-v2",
            "--upgrade",
            "--username",
            "u",
            "--password",
            "p",
            "--org",
            "acme",
            "--registration",
            "/r.json",
            "--facts",
            "/f.json",
            "--extensions",
            r#"{"b":1,"a":"<x>"}"#,
            "--validity",
            "1d2h",
        ],
    );
    assert_eq!(code(&forced), 0, "{}", stderr(&forced));
    let token = std::fs::read_to_string(&file).unwrap();
    let json = payload_json(&token);
    assert!(
        json.starts_with(r#"{"cht":"x","chs":true,"chsrv":"example.net","chpd":false,"chrd":"/r.json","chf":"/f.json","chusr":"u","chpwd":"p","extensions":{"a":"\u003cx\u003e","b":1},"ou":"acme","v2":true,"update":true,"purpose":"choria_provisioning""#),
        "{json}"
    );
    let claims = parse_provisioning_token_unverified(&token).unwrap();
    assert_eq!(
        claims.standard.exp.unwrap() - claims.standard.iat.unwrap(),
        26 * 3600
    );
    let view = choria(dir.path(), &["view", "prov.jwt", public.to_str().unwrap()]);
    let text = stdout(&view);
    for line in [
        "                    SRV Domain: example.net",
        "               Broker Username: u",
        "               Broker Password: *****",
        "      Using version 2 Protocol: true",
        "       Server Version Upgrades: true",
        "                    Extensions: {",
        "                                  \"a\": \"\\u003cx\\u003e\",",
        "Provisioning Registration Data: /r.json",
        "            Provisioning Facts: /f.json",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
}

#[test]
fn provisioning_round_trip_with_rsa_and_wrong_keys() {
    let dir = tempfile::tempdir().unwrap();
    let key = vectors().join("tokens/rsa/signer-key.pem");
    let out = choria(
        dir.path(),
        &[
            "prov",
            "t.jwt",
            key.to_str().unwrap(),
            "--token",
            "t",
            "--urls",
            "nats://a:1",
            "--urls",
            "nats://b:2",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let token = std::fs::read_to_string(dir.path().join("t.jwt")).unwrap();
    assert_eq!(token_algorithm(&token).unwrap(), "RS256");
    assert!(payload_json(&token).contains(r#""chu":"nats://a:1,nats://b:2""#));

    let good = vectors().join("tokens/rsa/signer-public.pem");
    let view = choria(dir.path(), &["view", "t.jwt", good.to_str().unwrap()]);
    assert_eq!(code(&view), 0, "{}", stderr(&view));
    assert!(stdout(&view).starts_with("Validated Provisioning Token t.jwt"));

    let other = vectors().join("tokens/rsa/other-public.pem");
    let view = choria(dir.path(), &["view", "t.jwt", other.to_str().unwrap()]);
    assert_eq!(code(&view), 1);
    assert!(
        stderr(&view).contains(
            "could not parse token: token signature is invalid: crypto/rsa: verification error"
        ),
        "{}",
        stderr(&view)
    );

    let ed = vectors().join("tokens/ed25519/signer.public");
    let view = choria(dir.path(), &["view", "t.jwt", ed.to_str().unwrap()]);
    assert_eq!(code(&view), 1);
    assert!(
        stderr(&view).contains("rsa public key required"),
        "{}",
        stderr(&view)
    );
}

#[test]
fn provisioning_usage_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, _) = make_keys(dir.path(), "org");
    let seed = seed.to_str().unwrap();
    let out = choria(
        dir.path(),
        &["provisioning", "p.jwt", seed, "--urls", "nats://b:4222"],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--token is required"),
        "{}",
        stderr(&out)
    );
    let out = choria(dir.path(), &["provisioning", "p.jwt", seed, "--token", "t"]);
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("URLs or a SRV Domain is required"),
        "{}",
        stderr(&out)
    );
    let out = choria(
        dir.path(),
        &[
            "provisioning",
            "p.jwt",
            seed,
            "--token",
            "t",
            "--srv",
            "x",
            "--extensions",
            "[1]",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("invalid extensions"),
        "{}",
        stderr(&out)
    );
    let out = choria(
        dir.path(),
        &[
            "provisioning",
            "p.jwt",
            seed,
            "--token",
            "t",
            "--srv",
            "x",
            "--validity",
            "soon",
        ],
    );
    assert_eq!(code(&out), 2);
    let out = choria(
        dir.path(),
        &[
            "provisioning",
            "p.jwt",
            "missing.seed",
            "--token",
            "t",
            "--srv",
            "x",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("missing.seed"), "{}", stderr(&out));
    assert!(!dir.path().join("p.jwt").exists());
}

#[test]
fn view_of_the_ed25519_vector_matches_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let file = vectors().join("tokens/ed25519/good-provisioning.jwt");
    let name = file.to_str().unwrap();
    let out = choria(dir.path(), &["view", name]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    let expected = format!(
        "Unvalidated Provisioning Token {name}

                    Expires At: 2032-06-21 11:42:57 +0000 UTC (<dur>)
                         Token: *****
                        Secure: true
                          URLS: nats://example:4222
       Provisioning by default: true
Provisioning Registration Data: ,
       Server Version Upgrades: false
               Standard Claims: {{
                                  \"purpose\": \"choria_provisioning\",
                                  \"iss\": \"ginkgo\",
                                  \"sub\": \"choria_provisioning\",
                                  \"exp\": 1971430977,
                                  \"nbf\": 1656070977,
                                  \"iat\": 1656070977
                                }}
"
    );
    let got: Vec<&str> = text.lines().collect();
    let want: Vec<&str> = expected.lines().collect();
    assert_eq!(got.len(), want.len(), "{text}");
    for (g, w) in got.iter().zip(&want) {
        if let Some(prefix) = w.strip_suffix("(<dur>)") {
            // The remaining time depends on today's date.
            assert!(g.starts_with(prefix) && g.ends_with("s)"), "{g:?}");
        } else {
            assert_eq!(g, w);
        }
    }
    // Validated with the right key, refused with the wrong one.
    let public = vectors().join("tokens/ed25519/signer.public");
    let out = choria(dir.path(), &["view", name, public.to_str().unwrap()]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).starts_with("Validated Provisioning Token"));
    let other = vectors().join("tokens/ed25519/other.public");
    let out = choria(dir.path(), &["view", name, other.to_str().unwrap()]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("ed25519: verification error"),
        "{}",
        stderr(&out)
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn view_of_the_rsa_vector_matches_the_spec() {
    let dir = tempfile::tempdir().unwrap();
    let file = vectors().join("tokens/rsa/good-provisioning.jwt");
    let public = vectors().join("tokens/rsa/signer-public.pem");
    let out = choria(
        dir.path(),
        &["view", file.to_str().unwrap(), public.to_str().unwrap()],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let expected = format!(
        "Validated Provisioning Token {}

                         Token: *****
                        Secure: true
                          URLS: nats://example.net:4222
       Provisioning by default: false
       Server Version Upgrades: false
               Standard Claims: {{
                                  \"purpose\": \"choria_provisioning\",
                                  \"iss\": \"choria cli\",
                                  \"sub\": \"choria_provisioning\",
                                  \"nbf\": 1636712894,
                                  \"iat\": 1636712894
                                }}
",
        file.display()
    );
    assert_eq!(stdout(&out), expected);

    let json = choria(dir.path(), &["view", "--json", file.to_str().unwrap()]);
    assert_eq!(code(&json), 0);
    assert_eq!(
        stdout(&json),
        "{\n  \"chpd\": false,\n  \"chs\": true,\n  \"cht\": \"toomanysecrets\",\n  \"chu\": \"nats://example.net:4222\",\n  \"iat\": 1636712894,\n  \"iss\": \"choria cli\",\n  \"nbf\": 1636712894,\n  \"purpose\": \"choria_provisioning\",\n  \"sub\": \"choria_provisioning\"\n}\n"
    );
}

#[test]
fn view_fails_on_garbage_and_expired_tokens() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.jwt"), "xx").unwrap();
    let out = choria(
        dir.path(),
        &[
            "view",
            "bad.jwt",
            vectors()
                .join("tokens/ed25519/signer.public")
                .to_str()
                .unwrap(),
        ],
    );
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("invalid number of segments"),
        "{}",
        stderr(&out)
    );

    std::fs::write(dir.path().join("big.jwt"), "a".repeat(200_000)).unwrap();
    let out = choria(dir.path(), &["view", "big.jwt"]);
    assert_eq!(code(&out), 1);
    assert!(stderr(&out).contains("too large"), "{}", stderr(&out));

    // An expired token: made for a time long gone.
    let seed = Ed25519Seed::generate();
    let past = SystemTime::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    let claims = ProvisioningClaims::new(
        NewProvisioning {
            token: "t".into(),
            srv_domain: "example.net".into(),
            validity: Duration::from_secs(60),
            ..Default::default()
        },
        past,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("old.jwt"),
        sign_token(&claims, &SigningKey::Ed25519(seed.clone())).unwrap(),
    )
    .unwrap();
    std::fs::write(dir.path().join("old.public"), seed.public_key_hex()).unwrap();
    let out = choria(dir.path(), &["view", "old.jwt"]);
    assert_eq!(code(&out), 1);
    assert!(
        stdout(&out).contains("Expires At: 2020-09-13 12:27:40 +0000 UTC (expired "),
        "{}",
        stdout(&out)
    );
    let out = choria(dir.path(), &["view", "old.jwt", "old.public"]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("token is expired"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn server_token_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let (org_seed, org_public) = make_keys(dir.path(), "org");
    let (_, node_public) = make_keys(dir.path(), "node");
    let node_hex = std::fs::read_to_string(&node_public).unwrap();
    let out = choria(
        dir.path(),
        &[
            "server",
            "server.jwt",
            "n1.example.net",
            node_public.to_str().unwrap(),
            org_seed.to_str().unwrap(),
            "--collectives",
            "choria",
            "--collectives",
            "other",
            "--submission",
            "--streams",
            "--governor",
            "--subjects",
            "x.y",
            "--validity",
            "1h30m",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let token = std::fs::read_to_string(dir.path().join("server.jwt")).unwrap();
    assert_eq!(mode(&dir.path().join("server.jwt")), 0o600);
    let claims = parse_server_token(
        &token,
        &read_public_key_file(&org_public).unwrap(),
        SystemTime::now(),
    )
    .unwrap();
    assert_eq!(claims.identity, "n1.example.net");
    assert_eq!(claims.collectives, ["choria", "other"]);
    assert_eq!(claims.standard.public_key, node_hex);
    assert_eq!(
        claims.standard.exp.unwrap() - claims.standard.iat.unwrap(),
        5400
    );
    assert_eq!(
        claims.permissions,
        Some(ServerPermissions {
            submission: true,
            streams: true,
            governor: true,
            service_host: false
        })
    );
    assert!(payload_json(&token).starts_with(r#"{"identity":"n1.example.net","collectives":["choria","other"],"permissions":{"submission":true,"streams":true,"governor":true},"ou":"choria","pub_subjects":["x.y"],"purpose":"choria_server","public_key":""#));

    let view = choria(
        dir.path(),
        &["view", "server.jwt", org_public.to_str().unwrap()],
    );
    assert_eq!(code(&view), 0, "{}", stderr(&view));
    let text = stdout(&view);
    let md5 = choria_protocol::subjects::md5_hex("n1.example.net");
    let expected_tail = format!(
        "          Collectives: choria, other
           Public Key: {node_hex}
    Organization Unit: choria
  Additional Subjects: x.y
   Private Network ID: {md5}

   Broker Permissions:

          Can publish Choria Submission messages
          Can access Choria Streams
          Can access Choria Governor

"
    );
    assert!(text.starts_with("Validated Server Token server.jwt\n\n             Identity: n1.example.net\n           Expires At: "), "{text}");
    assert!(text.ends_with(&expected_tail), "{text}");

    // Governor needs streams; a bad public key is a usage error.
    let out = choria(
        dir.path(),
        &[
            "server",
            "s2.jwt",
            "n2",
            &node_hex,
            org_seed.to_str().unwrap(),
            "--governor",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(stderr(&out).contains("cannot set --governor unless --stream-user is also set"));
    let out = choria(
        dir.path(),
        &["server", "s2.jwt", "n2", "abcd", org_seed.to_str().unwrap()],
    );
    assert_eq!(code(&out), 2);
    // Default collective and empty permissions.
    let out = choria(
        dir.path(),
        &[
            "server",
            "s2.jwt",
            "n2",
            &node_hex,
            org_seed.to_str().unwrap(),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let view = choria(dir.path(), &["view", "s2.jwt"]);
    let text = stdout(&view);
    assert!(
        text.contains("          Collectives: mcollective\n"),
        "{text}"
    );
    assert!(
        text.ends_with(
            "   Broker Permissions:\n\n          No server specific permissions granted\n\n"
        ),
        "{text}"
    );
}

#[test]
fn client_token_round_trip_and_chain_issuer() {
    let dir = tempfile::tempdir().unwrap();
    let (org_seed, org_public) = make_keys(dir.path(), "org");
    let (_, prov_public) = make_keys(dir.path(), "prov");
    let prov_hex = std::fs::read_to_string(&prov_public).unwrap();
    let org_hex = std::fs::read_to_string(&org_public).unwrap();
    let out = choria(
        dir.path(),
        &[
            "client",
            "issuer.jwt",
            "choria=provisioner",
            org_seed.to_str().unwrap(),
            "--public-key",
            &prov_hex,
            "--issuer",
            "--server-provisioner",
            "--agents",
            "rpcutil",
            "--agents",
            "choria_provision",
            "--publish",
            "p.>",
            "--subscribe",
            "s.>",
            "--validity",
            "2d",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let token = std::fs::read_to_string(dir.path().join("issuer.jwt")).unwrap();
    let org_key = read_public_key_file(&org_public).unwrap();
    let claims = parse_client_token(&token, &org_key, SystemTime::now()).unwrap();
    assert!(is_chained_issuer(&claims.standard, true));
    assert_eq!(claims.standard.iss, format!("I-{org_hex}"));
    let perms = claims.permissions.unwrap();
    assert!(perms.provisioner && perms.fleet_management && !perms.authentication_delegator);

    let view = choria(dir.path(), &["c", "x.jwt", "up=bob", "missing"]);
    assert_eq!(code(&view), 2);
    let view = choria(
        dir.path(),
        &["view", "issuer.jwt", org_public.to_str().unwrap()],
    );
    assert_eq!(code(&view), 0, "{}", stderr(&view));
    let text = stdout(&view);
    let md5 = choria_protocol::subjects::md5_hex("choria=provisioner");
    let head = format!(
        "Validated Client Identification Token issuer.jwt

          Caller ID: choria=provisioner
  Organization Unit: choria
     Allowed Agents: rpcutil, choria_provision
         Public Key: {prov_hex}
 Private Network ID: {md5}
         Expires At: "
    );
    assert!(text.starts_with(&head), "{text}");
    let tail = format!(
        " Subscriptions Subjects: s.>
   Publish Subjects: p.>
        Trust Chain: Can Issue Clients as part of a trust chain with Issuer {org_hex}

 Client Permissions:

      Can manage Choria fleet nodes
      Can provision Choria Servers

"
    );
    assert!(text.ends_with(&tail), "{text}");

    // The issuer can now issue a server token that verifies against the org key only.
    let mut issuer_seed_file = dir.path().join("prov.seed");
    let issuer_seed = Ed25519Seed::from_file(&issuer_seed_file).unwrap();
    let mut leaf = ServerClaims::new(
        NewServer {
            identity: "n9".into(),
            collectives: vec!["choria".into()],
            public_key: Some(Ed25519Seed::generate().public_key_bytes()),
            validity: Duration::from_secs(600),
            ..Default::default()
        },
        SystemTime::now(),
    )
    .unwrap();
    let leaf_token = sign_chained_token(&mut leaf, &claims, &issuer_seed).unwrap();
    std::fs::write(dir.path().join("leaf.jwt"), &leaf_token).unwrap();
    let view = choria(
        dir.path(),
        &["view", "leaf.jwt", org_public.to_str().unwrap()],
    );
    assert_eq!(code(&view), 0, "{}", stderr(&view));
    assert!(stdout(&view).contains(&format!(
        "          Trust Chain: Issued by {}\n",
        claims.standard.jti
    )));
    let view = choria(
        dir.path(),
        &["view", "leaf.jwt", prov_public.to_str().unwrap()],
    );
    assert_eq!(code(&view), 1);
    assert!(
        stderr(&view).contains("chain issuer credentials not signed by org issuer"),
        "{}",
        stderr(&view)
    );

    // Plain client with default permissions and --issuer refused with an RSA key.
    issuer_seed_file.set_file_name("none");
    let out = choria(
        dir.path(),
        &[
            "client",
            "bob.jwt",
            "up=bob",
            org_seed.to_str().unwrap(),
            "--no-fleet-management",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let view = choria(dir.path(), &["view", "bob.jwt"]);
    assert!(
        stdout(&view)
            .ends_with(" Client Permissions:\n\n      No user specific permissions granted\n\n"),
        "{}",
        stdout(&view)
    );
    let rsa = vectors().join("tokens/rsa/signer-key.pem");
    let out = choria(
        dir.path(),
        &[
            "client",
            "rsa.jwt",
            "up=x",
            rsa.to_str().unwrap(),
            "--issuer",
            "--public-key",
            &prov_hex,
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--issuer needs an ed25519 seed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn view_refuses_foreign_algorithms_and_future_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let (seed, public) = make_keys(dir.path(), "org");
    let public = public.to_str().unwrap();
    let forged = [
        ("hs.jwt", "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJwdXJwb3NlIjoiY2hvcmlhX3Byb3Zpc2lvbmluZyIsImNodCI6IngiLCJjaHMiOnRydWUsImNocGQiOmZhbHNlfQ.c2lnbmF0dXJl", "HS256"),
        ("none.jwt", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJwdXJwb3NlIjoiY2hvcmlhX3Byb3Zpc2lvbmluZyIsImNodCI6IngiLCJjaHMiOnRydWUsImNocGQiOmZhbHNlfQ.", "none"),
    ];
    for (name, token, alg) in forged {
        std::fs::write(dir.path().join(name), token).unwrap();
        let out = choria(dir.path(), &["view", name, public]);
        assert_eq!(code(&out), 1, "{name}");
        assert!(
            stderr(&out).contains(&format!("unsupported signing algorithm \"{alg}\"")),
            "{}",
            stderr(&out)
        );
        // Without a key it is only displayed, marked unvalidated.
        let out = choria(dir.path(), &["view", name]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
        assert!(stdout(&out).starts_with("Unvalidated Provisioning Token"));
    }

    let key = SigningKey::from_file(&seed).unwrap();
    let future = SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000);
    let claims = ProvisioningClaims::new(
        NewProvisioning {
            token: "t".into(),
            srv_domain: "example.net".into(),
            validity: Duration::from_secs(60),
            ..Default::default()
        },
        future,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("future.jwt"),
        sign_token(&claims, &key).unwrap(),
    )
    .unwrap();
    let out = choria(dir.path(), &["view", "future.jwt", public]);
    assert_eq!(code(&out), 1);
    assert!(
        stderr(&out).contains("token is not valid yet"),
        "{}",
        stderr(&out)
    );

    // A chain issuer needs its own public key.
    let out = choria(
        dir.path(),
        &[
            "client",
            "i.jwt",
            "choria=x",
            seed.to_str().unwrap(),
            "--issuer",
        ],
    );
    assert_eq!(code(&out), 2);
    assert!(
        stderr(&out).contains("--issuer needs --public-key"),
        "{}",
        stderr(&out)
    );
}

/// Tokens minted through a delegated signer (`--chain-issuer`) carry only what the signer
/// holds (issue 11, grants no wider than the credential).
fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_chain_issuer_mints_only_what_it_holds() {
    let dir = tempfile::tempdir().expect("dir");
    let d = dir.path();
    ok(&choria(d, &["keys", "org.seed", "org.public"]));
    ok(&choria(d, &["keys", "prov.seed", "prov.public"]));
    let prov_public = std::fs::read_to_string(d.join("prov.public")).expect("public");
    ok(&choria(
        d,
        &[
            "client",
            "prov.jwt",
            "choria=provisioner",
            "org.seed",
            "--issuer",
            "--server-provisioner",
            "--public-key",
            &prov_public,
        ],
    ));
    let holder = "1454a451cdefe5937da64a79faffa6e54f3c083ae78f72bb7f39a7aa37975c8b";

    let admin = choria(
        d,
        &[
            "client",
            "admin.jwt",
            "choria=mallory",
            "prov.seed",
            "--chain-issuer",
            "prov.jwt",
            "--org-admin",
            "--public-key",
            holder,
        ],
    );
    assert!(!admin.status.success(), "org_admin through the provisioner");
    let err = String::from_utf8_lossy(&admin.stderr);
    assert!(err.contains("org_admin"), "{err}");
    assert!(!d.join("admin.jwt").exists());

    // what the provisioner holds (provisioner implies fleet management) it may delegate,
    // and servers it may always make
    ok(&choria(
        d,
        &[
            "client",
            "ops.jwt",
            "choria=ops",
            "prov.seed",
            "--chain-issuer",
            "prov.jwt",
            "--public-key",
            holder,
        ],
    ));
    ok(&choria(
        d,
        &[
            "server",
            "n1.jwt",
            "n1.example.net",
            holder,
            "prov.seed",
            "--chain-issuer",
            "prov.jwt",
        ],
    ));
    ok(&choria(d, &["view", "n1.jwt", "org.public"]));
    let wide = choria(
        d,
        &[
            "server",
            "n2.jwt",
            "n2.example.net",
            holder,
            "prov.seed",
            "--chain-issuer",
            "prov.jwt",
            "--subjects",
            ">",
        ],
    );
    assert!(!wide.status.success(), "extra subjects the issuer lacks");

    // the signing key must be the chain issuer's
    let wrong = choria(
        d,
        &[
            "server",
            "n3.jwt",
            "n3.example.net",
            holder,
            "org.seed",
            "--chain-issuer",
            "prov.jwt",
        ],
    );
    assert!(!wrong.status.success());
}
