//! `choria buildinfo` run as a real process, for a node with and without a provisioning token.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::Command;

fn choria() -> Command {
    Command::new(env!("CARGO_BIN_EXE_choria"))
}

fn vector(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/vectors")
        .join(path)
}

#[test]
fn buildinfo_with_a_provisioning_token_shows_its_settings() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("provisioning.jwt");
    std::fs::copy(vector("tokens/rsa/good-provisioning.jwt"), &jwt).unwrap();
    let out = choria()
        .arg("buildinfo")
        .arg("--provisioning-jwt")
        .arg(&jwt)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "Server Settings:

    Provisioning Target Resolver: Choria JWT Resolver
           Supports Provisioning: true
           Provisioning JWT file: {}
              Provisioning Token: *****
            Provisioning Default: false
                Provisioning TLS: {}
      Default Provisioning Agent: true
            Provisioning Brokers: nats://example.net:4222
",
        jwt.display(),
        chs(&jwt)
    );
    assert!(text.contains(&expected), "{text}");
    assert!(
        !text.contains("toomanysecrets"),
        "the token is never printed"
    );
}

#[test]
fn buildinfo_reads_the_jwt_path_from_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("p.jwt");
    std::fs::copy(vector("tokens/rsa/good-provisioning.jwt"), &jwt).unwrap();
    let config = dir.path().join("server.conf");
    std::fs::write(
        &config,
        format!(
            "plugin.choria.server.provision.jwt_file = {}\n",
            jwt.display()
        ),
    )
    .unwrap();
    let out = choria()
        .arg("buildinfo")
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("Supports Provisioning: true\n"), "{text}");
}

#[test]
fn buildinfo_without_a_token_does_not_support_provisioning() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("missing.jwt");
    let out = choria()
        .arg("buildinfo")
        .arg("--provisioning-jwt")
        .arg(&jwt)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "Server Settings:

    Provisioning Target Resolver: Choria JWT Resolver
           Supports Provisioning: false
           Provisioning JWT file: {}

Security Defaults:
",
        jwt.display()
    );
    assert!(text.contains(&expected), "{text}");
}

/// `chs` of the vector, read from its payload so the test does not hard-code it.
fn chs(jwt: &std::path::Path) -> bool {
    let text = std::fs::read_to_string(jwt).unwrap();
    let claims = choria_tokens::parse_provisioning_token_unverified(text.trim()).unwrap();
    claims.chs
}
