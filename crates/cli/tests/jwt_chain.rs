//! `choria jwt client|server --chain-issuer`: tokens minted through a delegated signer carry
//! only what the signer holds (issue 11, grants no wider than the credential).

use std::path::Path;
use std::process::{Command, Output};

fn choria(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_choria"))
        .current_dir(dir)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .arg("jwt")
        .args(args)
        .output()
        .expect("choria runs")
}

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
