//! What a package ships, checked against the real binaries: `--version` stamps, man pages
//! and completions from `--generate`, the systemd units under `systemd-analyze verify`, and
//! the example configurations under the same loaders the services use.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

const CHORIA: &str = env!("CARGO_BIN_EXE_choria");
const PROVISIONER: &str = env!("CARGO_BIN_EXE_choria-provisioner");

fn dist() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist")
}

fn stdout_of(bin: &str, args: &[&str]) -> String {
    let out = Command::new(bin).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn version_names_the_release_the_commit_and_the_build_date() {
    let date = regex::Regex::new(r"built \d{4}-\d{2}-\d{2}\)").unwrap();
    let commit = regex::Regex::new(r"\(commit ([0-9a-f]{12}(-dirty)?|unknown), ").unwrap();
    for (bin, name) in [(CHORIA, "choria"), (PROVISIONER, "choria-provisioner")] {
        let text = stdout_of(bin, &["--version"]);
        let want = format!("{name} {} ", env!("CARGO_PKG_VERSION"));
        assert!(text.starts_with(&want), "{text}");
        assert!(commit.is_match(&text), "{text}");
        assert!(date.is_match(&text), "{text}");
    }
}

#[test]
fn generated_man_pages_render_with_man() {
    let dir = tempfile::tempdir().unwrap();
    for (bin, name) in [(CHORIA, "choria"), (PROVISIONER, "choria-provisioner")] {
        let page = stdout_of(bin, &["--generate", "man"]);
        assert!(page.contains(&format!(".TH {name}")), "{page}");
        let path = dir.path().join(format!("{name}.1"));
        std::fs::write(&path, page).unwrap();
        let out = Command::new("man")
            .arg("-l")
            .arg(&path)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "100")
            .output()
            .expect("man (Debian's man-db) is needed; scripts/setup installs it");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("SUBCOMMANDS") || text.contains("OPTIONS"),
            "{text}"
        );
    }
    let page = stdout_of(CHORIA, &["--generate", "man"]);
    for sub in ["jwt", "broker", "server", "demo"] {
        assert!(page.contains(sub), "choria(1) lacks {sub}");
    }
}

#[test]
fn bash_completions_are_valid_bash_and_know_the_subcommands() {
    let dir = tempfile::tempdir().unwrap();
    for (bin, name) in [(CHORIA, "choria"), (PROVISIONER, "choria-provisioner")] {
        let script = stdout_of(bin, &["--generate", "complete-bash"]);
        let path = dir.path().join(name);
        std::fs::write(&path, &script).unwrap();
        let out = Command::new("bash").arg("-n").arg(&path).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(script.contains("complete -F"), "{script}");
    }
    let script = stdout_of(CHORIA, &["--generate", "complete-bash"]);
    assert!(script.contains("buildinfo") && script.contains("demo"));
    for kind in [
        "complete-zsh",
        "complete-fish",
        "complete-powershell",
        "complete-elvish",
    ] {
        assert!(stdout_of(CHORIA, &["--generate", kind]).contains("choria"));
    }
}

#[test]
fn a_bare_choria_is_a_usage_error() {
    let out = Command::new(CHORIA).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("subcommand"));
}

/// Points every unit at the binaries under test and their man pages at a temporary
/// MANPATH, then runs `systemd-analyze verify` (which checks both exist).
#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man/man1");
    std::fs::create_dir_all(&man1).unwrap();
    for (bin, name) in [(CHORIA, "choria"), (PROVISIONER, "choria-provisioner")] {
        let page = stdout_of(bin, &["--generate", "man"]);
        std::fs::write(man1.join(format!("{name}.1")), page).unwrap();
    }
    let mut units = Vec::new();
    for name in [
        "choria-broker.service",
        "choria-server.service",
        "choria-provisioner.service",
    ] {
        let text = std::fs::read_to_string(dist().join("systemd").join(name)).unwrap();
        assert!(
            text.contains("Restart=on-failure"),
            "{name} must restart on failure"
        );
        let text = text
            .replace("/usr/sbin/choria-provisioner ", &format!("{PROVISIONER} "))
            .replace("/usr/bin/choria ", &format!("{CHORIA} "));
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        units.push(path);
    }
    for unprivileged in ["choria-broker.service", "choria-provisioner.service"] {
        let text = std::fs::read_to_string(dist().join("systemd").join(unprivileged)).unwrap();
        assert!(
            text.contains("\nUser=choria\n"),
            "{unprivileged} runs as root"
        );
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .args(&units)
        .env("MANPATH", dir.path().join("man"))
        .output()
        .expect("systemd-analyze (Debian's systemd) is needed; scripts/setup installs it");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The example configurations load with the services' own loaders once an operator has
/// replaced the `CHANGE_ME` values and put the named files in place.
#[test]
fn example_configurations_load_with_the_real_settings_loaders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().display().to_string();
    let issuer = choria_tokens::Ed25519Seed::generate().public_key_hex();
    let broker = std::fs::read_to_string(dist().join("etc/choria/broker.conf"))
        .unwrap()
        .replace(
            "plugin.security.issuer.choria.public = CHANGE_ME",
            &format!("plugin.security.issuer.choria.public = {issuer}"),
        )
        .replace("CHANGE_ME", "a-long-random-password")
        .replace("/etc/choria/", &format!("{root}/etc/choria/"));
    for file in [
        "etc/choria/ssl/broker.pem",
        "etc/choria/ssl/broker.key",
        "etc/choria/ssl/ca.pem",
        "etc/choria/provisioning-signer.pem",
    ] {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    let config = choria_config::Config::parse_str(&broker, "broker.conf").unwrap();
    let settings = choria_broker::settings::BrokerSettings::from_config(&config).unwrap();
    assert!(format!("{settings:?}").contains("broker.example.net"));

    let yaml =
        std::fs::read_to_string(dist().join("etc/choria-provisioner/choria-provisioner.yaml"))
            .unwrap()
            .replace("CHANGE_ME", "a-long-random-secret")
            .replace(
                "/etc/choria-provisioner/",
                &format!("{root}/etc/choria-provisioner/"),
            );
    for file in [
        "provisioner.seed",
        "provisioner.jwt",
        "provisioning-signer.pem",
        "helper",
    ] {
        let path = dir.path().join("etc/choria-provisioner").join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }
    let path = Path::new("choria-provisioner.yaml");
    let settings = choria_provisioner::Settings::parse_str(&yaml, path).unwrap();
    assert_eq!(settings.workers, 4);

    for file in [
        "etc/choria/server.conf",
        "etc/choria-provisioner/choria.cfg",
    ] {
        let text = std::fs::read_to_string(dist().join(file)).unwrap();
        let config = choria_config::Config::parse_str(&text, file).unwrap();
        assert!(config.get("loglevel").is_some() || config.get("identity").is_some());
    }
}
