//! The broker's and the provisioner's `/metrics` in a real `choria demo` run, checked by
//! Prometheus' own `promtool`, and `dist/grafana-dashboard.json` checked against them: every
//! PromQL expression parses and every metric it names is in a real scrape.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Upstream's counter names have no `_total` suffix; the published dashboard (grafana.com
/// 12431) queries them by these names, so they stay, and so does this one lint.
const UPSTREAM_COUNTERS: [&str; 10] = [
    "choria_provisioner_discovered",
    "choria_provisioner_event_discovered",
    "choria_provisioner_discover_cycles",
    "choria_provisioner_discovery_errors",
    "choria_provisioner_provision_errors",
    "choria_provisioner_provisioned",
    "choria_provisioner_rpc_errors",
    "choria_provisioner_helper_errors",
    "choria_provisioner_helper_shutdown_requests",
    "choria_provisioner_paused",
];

fn promtool() -> &'static str {
    "promtool"
}

fn scrape(port: u16) -> String {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(
        head.starts_with("HTTP/1.") && head.contains(" 200 "),
        "{head}"
    );
    body.to_string()
}

fn value_of(text: &str, key: &str) -> Option<u16> {
    text.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(key)?;
        rest.trim_start_matches([' ', '=', ':', '"'])
            .trim_end_matches([',', '"'])
            .trim()
            .parse()
            .ok()
    })
}

/// Runs `promtool check metrics` on `text`; returns its complaints, one a line.
fn promtool_lint(text: &str) -> Vec<String> {
    let mut child = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian's prometheus package) is needed; scripts/setup installs it");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

struct Demo {
    child: Child,
    log: PathBuf,
}

impl Drop for Demo {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn start_demo(dir: &Path) -> Demo {
    let log = dir.join("demo.log");
    let file = std::fs::File::create(&log).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_choria"))
        .args([
            "demo",
            "--nodes",
            "60",
            "--boot-rate",
            "4",
            "--json",
            "--workdir",
        ])
        .arg(dir.join("site"))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    Demo { child, log }
}

/// Metric names a PromQL expression uses.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let re = regex::Regex::new(r"\bchoria_[a-z_]+\b").unwrap();
    re.find_iter(expr).map(|m| m.as_str().to_string()).collect()
}

fn exprs(value: &serde_json::Value, out: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("expr", serde_json::Value::String(e)) => out.push(e.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

#[test]
fn metrics_pass_promtool_and_the_dashboard_queries_what_is_there() {
    let dir = tempfile::tempdir().unwrap();
    let demo = start_demo(dir.path());
    let site = dir.path().join("site");
    let deadline = Instant::now() + Duration::from_secs(120);
    let (broker_port, provisioner_port) = loop {
        let broker = std::fs::read_to_string(site.join("broker/broker.conf")).unwrap_or_default();
        let yaml = std::fs::read_to_string(site.join("provisioner/provisioner-1.yaml"))
            .unwrap_or_default();
        if let (Some(b), Some(p)) = (
            value_of(&broker, "plugin.choria.stats_port"),
            value_of(&yaml, "\"monitor_port\""),
        ) {
            break (b, p);
        }
        assert!(Instant::now() < deadline, "no site");
        std::thread::sleep(Duration::from_millis(100));
    };
    // Scrape once nodes have gone through every stage, while the run goes on.
    let (broker, provisioner) = loop {
        let ready = std::net::TcpStream::connect(("127.0.0.1", provisioner_port)).is_ok()
            && std::net::TcpStream::connect(("127.0.0.1", broker_port)).is_ok();
        if ready {
            let provisioner = scrape(provisioner_port);
            let done = provisioner.lines().any(|l| {
                l.starts_with("choria_provisioner_provisioned{")
                    && l.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok()) >= Some(3.0)
            });
            if done {
                break (scrape(broker_port), provisioner);
            }
        }
        let log = std::fs::read_to_string(&demo.log).unwrap_or_default();
        assert!(Instant::now() < deadline, "nothing provisioned: {log}");
        std::thread::sleep(Duration::from_millis(200));
    };

    assert_eq!(promtool_lint(&broker), Vec::<String>::new(), "{broker}");
    for complaint in promtool_lint(&provisioner) {
        let name = complaint.split_whitespace().next().unwrap_or("");
        assert!(
            complaint.ends_with("counter metrics should have \"_total\" suffix")
                && UPSTREAM_COUNTERS.contains(&name),
            "promtool: {complaint}\n{provisioner}"
        );
    }

    // The dashboard: every expression is valid PromQL ...
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../dist/grafana-dashboard.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut all = Vec::new();
    exprs(&dashboard["panels"], &mut all);
    assert!(all.len() >= 20, "{} expressions", all.len());
    let mut rules = String::from("groups:\n  - name: dashboard\n    rules:\n");
    for (i, expr) in all.iter().enumerate() {
        let expr = expr.replace("$instance", "demo");
        rules.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {}\n",
            serde_json::to_string(&expr).unwrap()
        ));
    }
    let rules_file = dir.path().join("dashboard-rules.yml");
    std::fs::write(&rules_file, rules).unwrap();
    let out = Command::new(promtool())
        .args(["check", "rules"])
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // ... and names only metrics a real scrape has.
    let scraped: BTreeSet<String> = broker
        .lines()
        .chain(provisioner.lines())
        .filter_map(|l| {
            let l = l.strip_prefix("# TYPE ").unwrap_or(l);
            let name = l.split(['{', ' ']).next()?;
            (!name.starts_with('#') && !name.is_empty()).then(|| name.to_string())
        })
        .collect();
    let families: BTreeSet<String> = scraped
        .iter()
        .flat_map(|n| {
            let mut names = vec![n.clone()];
            for suffix in ["_bucket", "_sum", "_count"] {
                names.push(format!("{n}{suffix}"));
            }
            names
        })
        .collect();
    for expr in &all {
        for name in metric_names(expr) {
            assert!(
                families.contains(&name),
                "{name} (in {expr}) is not in a scrape"
            );
        }
    }
}
