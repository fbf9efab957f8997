//! `choria-provisioner` as a real process: usage and configuration errors (B13) exit
//! with the documented codes; `run` starts against a real nats-server, writes its PID
//! file, and exits 0 on SIGTERM removing it (B11).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use choria_testkit::TestNats;

fn bin() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_choria-provisioner"));
    cmd.env_remove("RUST_LOG").env("HOME", "/nonexistent");
    cmd
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn missing_config_flag_is_a_usage_error() {
    let out = bin().arg("run").output().expect("run");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--config"));
}

#[test]
fn b13_invalid_configuration_names_the_key_and_exits_1() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write(
        dir.path(),
        "p.yaml",
        "interval: 5m\nfeatures:\n  jwt: true\n",
    );
    let choria = write(dir.path(), "client.conf", "identity = p1\n");
    let out = bin()
        .args(["run", "--config"])
        .arg(&config)
        .arg("--choria-config")
        .arg(&choria)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("Provisioning could not be configured"),
        "{stderr}"
    );
    assert!(stderr.contains("helper"), "{stderr}");
}

#[test]
fn a_missing_choria_config_is_explained_once_with_the_flag_to_pass() {
    let dir = tempfile::tempdir().expect("dir");
    let config = write(dir.path(), "p.yaml", "helper: /bin/true\ntoken: x\n");
    let out = bin()
        .args(["run", "--config"])
        .arg(&config)
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(
        stderr
            .matches("Could not load Choria Configuration")
            .count(),
        1,
        "{stderr}"
    );
    let system_default = [
        "/etc/choria/client.conf",
        "/usr/local/etc/choria/client.conf",
    ]
    .iter()
    .any(|p| Path::new(p).is_file());
    if !system_default {
        assert!(stderr.contains("pass --choria-config FILE"), "{stderr}");
    }
}

#[tokio::test]
async fn runs_writes_pid_and_stops_cleanly_on_sigterm() {
    let nats = TestNats::start("", false).await.expect("nats");
    let dir = tempfile::tempdir().expect("dir");
    let log = dir.path().join("prov.log");
    let config = write(
        dir.path(),
        "p.yaml",
        &format!(
            "helper: /bin/true\nchoria_insecure: true\nsite: cli\nlogfile: {}\nloglevel: info\n",
            log.display()
        ),
    );
    let choria = write(
        dir.path(),
        "client.conf",
        &format!(
            "identity = prov.example.net\nplugin.choria.middleware_hosts = {}\n",
            nats.url()
        ),
    );
    let pid = dir.path().join("prov.pid");
    // Default command: `run` may be omitted.
    let mut child = bin()
        .arg("--config")
        .arg(&config)
        .arg("--choria-config")
        .arg(&choria)
        .arg("--pid")
        .arg(&pid)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let started = Instant::now();
    while !pid.is_file() && started.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(pid.is_file(), "pid file written");
    let text = std::fs::read_to_string(&pid).expect("pid");
    assert_eq!(text, child.id().to_string(), "decimal pid, no newline");
    let status = Command::new("kill")
        .args(["-TERM", &text])
        .status()
        .expect("kill");
    assert!(status.success());
    let started = Instant::now();
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            break exit;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "exits after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(exit.code(), Some(0));
    assert!(!pid.exists(), "pid file removed");

    // `logfile` gets JSON lines, as upstream writes them, and is not world-readable.
    let text = std::fs::read_to_string(&log).expect("the logfile was written");
    assert!(text.contains("Choria Provisioner starting"), "{text}");
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|err| panic!("not a JSON line ({err}): {line}"));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&log).expect("log").permissions().mode() & 0o777;
    assert_eq!(mode & 0o007, 0, "mode {mode:o}");
}

#[test]
fn example_helper_subcommand_serves_json_lines() {
    use std::io::{BufRead, BufReader, Write};
    let mut child = bin()
        .args([
            "example-helper",
            "--broker-url",
            "tls://broker:4222",
            "--issuer-public",
        ])
        .arg("ab".repeat(32))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut stdin = child.stdin.take().expect("stdin");
    let request = serde_json::json!({
        "identity": "n1.example.net", "csr": null,
        "ed25519_pubkey": {"public_key": "cd".repeat(32), "directory": "/etc/choria", "signature": "00"},
        "inventory": "{}", "jwt": {"cht": "x"}
    });
    writeln!(stdin, "{request}\nnot json").expect("write");
    drop(stdin);
    let lines: Vec<String> = BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map(|l| l.expect("line"))
        .collect();
    assert!(child.wait().expect("wait").success());
    assert_eq!(lines.len(), 2);
    let first: serde_json::Value = serde_json::from_str(&lines[0]).expect("json");
    assert_eq!(first["defer"], false);
    assert_eq!(
        first["configuration"]["plugin.choria.middleware_hosts"],
        "tls://broker:4222"
    );
    let second: serde_json::Value = serde_json::from_str(&lines[1]).expect("json");
    assert_eq!(second["defer"], true);
}
