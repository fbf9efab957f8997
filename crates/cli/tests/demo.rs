//! End to end: `choria demo` runs a real broker, provisioner and simulated fleet, and every
//! node must come back in the `choria` account (issue: the main job).

use std::process::Command;

fn demo(args: &[&str]) -> (std::process::ExitStatus, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_choria"))
        .arg("demo")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run choria demo");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn last_json(stdout: &str) -> serde_json::Value {
    let line = stdout.lines().last().expect("a last line");
    serde_json::from_str(line).unwrap_or_else(|err| panic!("last line is not JSON ({err}): {line}"))
}

/// `python3 <examples/helpers/name>`, the command line of an example helper.
fn python_helper(name: &str) -> String {
    let helper = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/helpers")
        .join(name);
    assert!(helper.is_file(), "missing {}", helper.display());
    format!("python3 {}", helper.display())
}

#[test]
fn every_node_of_a_small_fleet_comes_back_in_the_fleet() {
    let workdir = tempfile::tempdir().expect("temp dir");
    let site = workdir.path().join("site");
    let (status, stdout, stderr) = demo(&[
        "--nodes",
        "8",
        "--json",
        "--timeout",
        "120",
        "--workdir",
        site.to_str().expect("utf8 path"),
    ]);
    assert!(
        status.success(),
        "demo failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report = last_json(&stdout);
    assert_eq!(report["nodes"], 8, "{report}");
    assert_eq!(report["in_fleet"], 8, "{report}");
    assert_eq!(report["failed"], 0, "{report}");
    assert!(
        report["nodes_per_second"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
    for key in ["p50", "p90", "p99"] {
        assert!(report["latency_ms"][key].as_f64().is_some(), "{report}");
    }
    for key in ["broker", "provisioner", "nodes"] {
        assert!(
            report["peak_rss_mb"][key].as_f64().unwrap_or(0.0) > 0.0,
            "{report}"
        );
    }
    // Each node really was configured: its state directory holds a server JWT and seed.
    let node = site.join("nodes").join("node00001.demo.local");
    let conf = std::fs::read_to_string(node.join("server.conf")).expect("server.conf");
    assert!(
        conf.contains("plugin.choria.server.provision=false"),
        "{conf}"
    );
    assert!(
        node.join("server.jwt").is_file(),
        "no server.jwt in {}",
        node.display()
    );
    assert!(
        node.join("server.seed").is_file(),
        "no server.seed in {}",
        node.display()
    );
}

#[test]
fn the_pki_flow_enrols_nodes_with_certificates_from_their_own_csrs() {
    let workdir = tempfile::tempdir().expect("temp dir");
    let site = workdir.path().join("site");
    let (status, stdout, stderr) = demo(&[
        "--nodes",
        "3",
        "--flow",
        "pki",
        "--json",
        "--timeout",
        "120",
        "--workdir",
        site.to_str().expect("utf8 path"),
    ]);
    assert!(
        status.success(),
        "demo failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(last_json(&stdout)["in_fleet"], 3, "{stdout}");
    let ssl = site.join("nodes/node00002.demo.local/ssl");
    let certificate = std::fs::read_to_string(ssl.join("certificate.pem")).expect("certificate");
    assert!(certificate.contains("BEGIN CERTIFICATE"), "{certificate}");
    assert!(
        ssl.join("private.pem").is_file(),
        "the node kept its own key"
    );
    let conf = std::fs::read_to_string(site.join("nodes/node00002.demo.local/server.conf"))
        .expect("server.conf");
    assert!(conf.contains("plugin.security.provider=file"), "{conf}");
}

#[test]
fn a_fleet_with_an_external_python_helper_comes_back_too() {
    let command = python_helper("ed25519_helper.py");
    let (status, stdout, stderr) = demo(&[
        "--nodes",
        "4",
        "--json",
        "--timeout",
        "120",
        "--helper",
        &command,
        "--helper-mode",
        "exec",
    ]);
    assert!(
        status.success(),
        "demo failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(last_json(&stdout)["in_fleet"], 4);
}

#[test]
fn a_helper_written_for_upstream_works_unchanged_in_exec_mode_by_default() {
    // Issue 13 item 5: no --helper-mode (exec is the default for --helper), and the helper
    // sets keys the node does not implement, which must be reported, never fatal.
    let command = python_helper("upstream_style_helper.py");
    let workdir = tempfile::tempdir().expect("temp dir");
    let site = workdir.path().join("site");
    let (status, stdout, stderr) = demo(&[
        "--nodes",
        "3",
        "--json",
        "--timeout",
        "120",
        "--helper",
        &command,
        "--workdir",
        site.to_str().expect("utf8 path"),
    ]);
    assert!(
        status.success(),
        "demo failed: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert_eq!(last_json(&stdout)["in_fleet"], 3, "{stdout}");
    // The helper set no collectives: the nodes joined upstream's default and were proven there.
    let jwt = std::fs::read_to_string(site.join("nodes/node00001.demo.local/server.jwt"))
        .expect("server.jwt");
    let claims = choria_tokens::parse_server_token_unverified(jwt.trim()).expect("server token");
    assert_eq!(claims.collectives, ["mcollective"]);
}

#[test]
fn bad_arguments_are_usage_errors() {
    let (status, _, stderr) = demo(&["--nodes", "0"]);
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("--nodes"), "{stderr}");
}
