//! The `choria_provision` agent driven the way the provisioner drives it (spec §4.12),
//! on real files in a temp directory, plus the bad inputs it must refuse cleanly.
#![allow(clippy::unwrap_used)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use aes::cipher::{block_padding::Pkcs7, BlockEncryptMut, KeyIvInit};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use rsa::pkcs1::EncodeRsaPrivateKey;
use serde_json::{json, Value};

use choria_pki::key_transfer::{bytes_to_key, EcdhKeyPair};
use choria_protocol::StatusCode;
use choria_server::agents::provision::{
    Effect, NodeFiles, ProvisionAgent, ProvisionContext, RequestInfo,
};

const TOKEN: &str = "toomanysecrets";

struct Fixture {
    _dir: tempfile::TempDir,
    config: PathBuf,
    agent: ProvisionAgent,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("server.conf");
    let jwt = dir.path().join("provisioning.jwt");
    fs::write(&jwt, "header.payload.signature\n").unwrap();
    let agent = ProvisionAgent::new(ProvisionContext {
        identity: "n1.example.net".into(),
        files: NodeFiles {
            config_file: Some(config.clone()),
            jwt_file: Some(jwt),
            ssldir: None,
        },
        token: TOKEN.into(),
        provision_mode: true,
        ..ProvisionContext::default()
    });
    Fixture {
        _dir: dir,
        config,
        agent,
    }
}

fn provisioner() -> RequestInfo {
    RequestInfo {
        request_id: "0123456789abcdef0123456789abcdef".into(),
        sender: "provisioner.example.net".into(),
        caller: "choria=provisioner".into(),
    }
}

fn call(
    agent: &mut ProvisionAgent,
    action: &str,
    data: Value,
) -> (choria_protocol::RpcReply, Effect) {
    agent.handle(action, &data, &provisioner(), Instant::now())
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Encrypts the way OpenSSL writes a traditional PEM (upper-case IV), independently of
/// `choria_pki::key_transfer::encrypt_legacy_pem`, so the node is tested against a second
/// writer.
fn encrypt_for(server_public: &str, provisioner: &EcdhKeyPair, der: &[u8]) -> String {
    let secret = provisioner.shared_secret(server_public).unwrap();
    let iv = [3u8; 16];
    let key = bytes_to_key(&secret, &iv[..8], 32);
    let data = cbc::Encryptor::<aes::Aes256>::new_from_slices(&key, &iv)
        .unwrap()
        .encrypt_padded_vec_mut::<Pkcs7>(der);
    let mut block = pem::Pem::new("RSA PRIVATE KEY", data);
    block.headers_mut().add("Proc-Type", "4,ENCRYPTED").unwrap();
    block
        .headers_mut()
        .add(
            "DEK-Info",
            &format!("AES-256-CBC,{}", hex::encode_upper(iv)),
        )
        .unwrap();
    pem::encode(&block)
}

#[test]
fn full_provisioning_sequence_writes_every_file() {
    let mut f = fixture();
    let dir = f.config.parent().unwrap().to_path_buf();

    let (reply, _) = call(&mut f.agent, "jwt", json!({"token": TOKEN}));
    assert_eq!(reply.statuscode, StatusCode::Ok, "{}", reply.statusmsg);
    assert_eq!(reply.data["jwt"], "header.payload.signature\n");
    let server_public = reply.data["ecdh_public"].as_str().unwrap().to_string();
    assert_eq!(server_public.len(), 64);

    let nonce = "0123456789abcdef0123456789abcdef";
    let (reply, _) = call(
        &mut f.agent,
        "gen25519",
        json!({"token": TOKEN, "nonce": nonce}),
    );
    assert_eq!(reply.statuscode, StatusCode::Ok, "{}", reply.statusmsg);
    let public: [u8; 32] = hex::decode(reply.data["public_key"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    let signature: [u8; 64] = hex::decode(reply.data["signature"].as_str().unwrap())
        .unwrap()
        .try_into()
        .unwrap();
    VerifyingKey::from_bytes(&public)
        .unwrap()
        .verify(nonce.as_bytes(), &Signature::from_bytes(&signature))
        .expect("nonce signature verifies with the returned key");
    assert_eq!(mode(&dir.join("server.seed")), 0o600);
    assert_eq!(fs::read(dir.join("server.seed")).unwrap().len(), 64);

    let (reply, _) = call(
        &mut f.agent,
        "gencsr",
        json!({"token": TOKEN, "cn": "n1.example.net"}),
    );
    assert_eq!(reply.statuscode, StatusCode::Ok, "{}", reply.statusmsg);
    assert!(reply.data["csr"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE REQUEST"));
    let ssldir = PathBuf::from(reply.data["ssldir"].as_str().unwrap());
    assert_eq!(mode(&ssldir.join("private.pem")), 0o600);
    assert!(ssldir.join("csr.pem").exists());

    let provisioner_keys = EcdhKeyPair::generate();
    let rsa_key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 1024).unwrap();
    let der = rsa_key.to_pkcs1_der().unwrap();
    let encrypted = encrypt_for(&server_public, &provisioner_keys, der.as_bytes());
    let config = json!({
        "identity": "n1.example.net",
        "plugin.security.provider": "choria",
        "plugin.choria.server.provision": "false",
    });
    let (reply, effect) = call(
        &mut f.agent,
        "configure",
        json!({
            "token": TOKEN,
            "config": config.to_string(),
            "certificate": "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            "ca": "-----BEGIN CERTIFICATE-----\nMIIC\n-----END CERTIFICATE-----\n",
            "ssldir": ssldir.display().to_string(),
            "key": encrypted,
            "ecdh_public": provisioner_keys.public_hex(),
            "action_policies": {"rpcutil.policy": "policy default allow\n"},
            "opa_policies": {"default.rego": "package choria.aaa.policy\n"},
            "server_jwt": "a.b.c",
        }),
    );
    assert_eq!(reply.statuscode, StatusCode::Ok, "{}", reply.statusmsg);
    assert_eq!(effect, Effect::Provisioned);
    assert_eq!(
        reply.data["message"],
        format!("Wrote 4 lines to {}", f.config.display())
    );
    assert_eq!(mode(&f.config), 0o600);
    let written = fs::read_to_string(&f.config).unwrap();
    assert!(written.contains("identity=n1.example.net\n"));
    let key_pem = pem::parse(fs::read(ssldir.join("private.pem")).unwrap()).unwrap();
    assert_eq!(key_pem.contents(), der.as_bytes());
    assert!(
        !ssldir.join("csr.pem").exists(),
        "a delivered key replaces the CSR"
    );
    assert_eq!(fs::read_to_string(dir.join("server.jwt")).unwrap(), "a.b.c");
    assert_eq!(mode(&dir.join("server.jwt")), 0o600);
    assert_eq!(mode(&dir.join("policies/rpcutil.policy")), 0o400);
    assert!(dir.join("policies/rego/default.rego").exists());

    let (reply, effect) = call(&mut f.agent, "restart", json!({"token": TOKEN, "splay": 1}));
    assert_eq!(reply.statuscode, StatusCode::Ok, "{}", reply.statusmsg);
    assert_eq!(reply.data["message"], "Restarting Choria Server after 2s");
    assert_eq!(
        effect,
        Effect::Restart {
            after: Duration::from_secs(2)
        }
    );
    // A second restart while one is scheduled is refused.
    let (reply, _) = call(&mut f.agent, "restart", json!({"token": TOKEN, "splay": 1}));
    assert_eq!(reply.statuscode, StatusCode::Aborted);
}

#[test]
fn wrong_token_is_refused_and_changes_nothing() {
    let mut f = fixture();
    let (reply, _) = call(
        &mut f.agent,
        "gen25519",
        json!({"token": "nope", "nonce": "n"}),
    );
    assert_eq!(reply.statuscode, StatusCode::Aborted);
    assert_eq!(reply.statusmsg, "Incorrect provision token supplied");
    assert!(!f.config.parent().unwrap().join("server.seed").exists());
}

#[test]
fn wrong_input_types_are_invalid_data() {
    let mut f = fixture();
    let (reply, _) = call(
        &mut f.agent,
        "restart",
        json!({"token": TOKEN, "splay": "soon"}),
    );
    assert_eq!(reply.statuscode, StatusCode::InvalidData);
    assert!(
        reply
            .statusmsg
            .starts_with("Could not parse request data for choria_provision#restart: "),
        "{}",
        reply.statusmsg
    );
    let (reply, _) = call(
        &mut f.agent,
        "configure",
        json!({"token": TOKEN, "config": {"a": 1}}),
    );
    assert_eq!(reply.statuscode, StatusCode::InvalidData);
    let (reply, _) = call(
        &mut f.agent,
        "configure",
        json!({"token": TOKEN, "config": "{\"a\": 1}"}),
    );
    assert_eq!(reply.statuscode, StatusCode::Aborted);
    assert!(
        reply
            .statusmsg
            .starts_with("Could not decode configuration data: "),
        "{}",
        reply.statusmsg
    );
    let (reply, _) = call(&mut f.agent, "jwt", json!("a string"));
    assert_eq!(reply.statuscode, StatusCode::InvalidData);
    let (reply, _) = call(
        &mut f.agent,
        "restart",
        json!({"token": TOKEN, "splay": -1}),
    );
    assert_eq!(reply.statuscode, StatusCode::InvalidData);
    let (reply, _) = call(&mut f.agent, "frobnicate", json!({}));
    assert_eq!(reply.statuscode, StatusCode::UnknownAction);
    assert_eq!(
        reply.statusmsg,
        "Unknown action frobnicate for agent choria_provision"
    );
}

#[test]
fn a_second_caller_cannot_take_the_lock() {
    let mut f = fixture();
    let (reply, _) = call(&mut f.agent, "jwt", json!({"token": TOKEN}));
    assert_eq!(reply.statuscode, StatusCode::Ok);
    let other = RequestInfo {
        request_id: "x".into(),
        sender: "other.example.net".into(),
        caller: "choria=other".into(),
    };
    let (reply, _) = f
        .agent
        .handle("jwt", &json!({"token": TOKEN}), &other, Instant::now());
    assert_eq!(reply.statuscode, StatusCode::Aborted);
    assert_eq!(reply.statusmsg, "Could not obtain provisioning lock");
    // Unlocked actions still work for others; the lock expires after two minutes.
    let later = Instant::now() + Duration::from_secs(121);
    let (reply, _) = f
        .agent
        .handle("jwt", &json!({"token": TOKEN}), &other, later);
    assert_eq!(reply.statuscode, StatusCode::Ok);
}

#[test]
fn path_traversal_in_policy_names_is_refused_before_writing() {
    let mut f = fixture();
    let dir = f.config.parent().unwrap().to_path_buf();
    for name in [
        "../evil.policy",
        "/etc/evil.policy",
        "a/../../b.policy",
        "..policy",
    ] {
        let (reply, _) = call(
            &mut f.agent,
            "configure",
            json!({
                "token": TOKEN,
                "config": "{\"identity\":\"n1\"}",
                "action_policies": {name: "policy default allow"},
                "server_jwt": "a.b.c",
            }),
        );
        assert_eq!(reply.statuscode, StatusCode::Aborted, "{name}");
        assert!(
            reply
                .statusmsg
                .starts_with("Could not save Action Policies: "),
            "{}",
            reply.statusmsg
        );
        assert!(!f.config.exists(), "nothing written for {name}");
        assert!(!dir.join("server.jwt").exists());
    }
    let (reply, _) = call(
        &mut f.agent,
        "configure",
        json!({"token": TOKEN, "config": "{\"identity\":\"n1\"}", "opa_policies": {"x.policy": "p"}}),
    );
    assert_eq!(reply.statuscode, StatusCode::Aborted);
    assert!(
        reply.statusmsg.contains("to have .rego extension"),
        "{}",
        reply.statusmsg
    );
}

#[test]
fn failed_configure_leaves_the_node_provisionable() {
    // A configure that fails after validation (here: a key we cannot decrypt because no
    // `jwt` call made our ECDH half) must leave no configuration behind, exactly as a
    // kill before the final rename does.
    let mut f = fixture();
    let (reply, _) = call(
        &mut f.agent,
        "configure",
        json!({
            "token": TOKEN,
            "config": "{\"identity\":\"n1\"}",
            "key": "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n",
            "ecdh_public": "00".repeat(32),
            "certificate": "c", "ca": "c", "ssldir": "ssl",
        }),
    );
    assert_eq!(reply.statuscode, StatusCode::Aborted);
    assert!(
        reply.statusmsg.starts_with("TLS Setup Failed: "),
        "{}",
        reply.statusmsg
    );
    assert!(!f.config.exists());
    let leftovers: Vec<_> = fs::read_dir(f.config.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the provisioning JWT: {leftovers:?}"
    );
}

#[test]
fn outside_provisioning_mode_only_token_actions_work() {
    let mut f = fixture();
    f.agent.context.provision_mode = false;
    let (reply, _) = call(&mut f.agent, "gencsr", json!({"token": TOKEN}));
    assert_eq!(
        reply.statusmsg,
        "Cannot reconfigure a server that is not in provisioning mode"
    );
    let (reply, _) = call(&mut f.agent, "release_update", json!({"token": TOKEN}));
    assert_eq!(
        reply.statusmsg,
        "Cannot update a server that is not in provisioning mode"
    );
    fs::write(&f.config, "plugin.choria.server.provision=true\n").unwrap();
    let (reply, _) = call(&mut f.agent, "restart", json!({"token": TOKEN}));
    assert_eq!(
        reply.statusmsg,
        format!(
            "Configuration {} enables provisioning, restart cannot continue",
            f.config.display()
        )
    );
    let (reply, effect) = call(&mut f.agent, "reprovision", json!({"token": TOKEN}));
    assert_eq!(reply.statuscode, StatusCode::Ok, "{}", reply.statusmsg);
    assert!(matches!(effect, Effect::Restart { .. }));
    let written = fs::read_to_string(&f.config).unwrap();
    assert!(written.contains("plugin.choria.server.provision=1\n"));
}

#[test]
fn release_update_says_it_is_not_supported() {
    let mut f = fixture();
    let (reply, _) = call(&mut f.agent, "release_update", json!({"token": TOKEN}));
    assert_eq!(
        reply.statusmsg,
        "Version updates is not enabled in the configuration"
    );
    f.agent.context.allow_update = true;
    let (reply, _) = call(
        &mut f.agent,
        "release_update",
        json!({"token": TOKEN, "version": "1.0.0"}),
    );
    assert_eq!(reply.statuscode, StatusCode::Aborted);
    assert!(
        reply.statusmsg.contains("not supported"),
        "{}",
        reply.statusmsg
    );
}
