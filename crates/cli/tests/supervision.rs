//! Supervisors own their children for life, tested on real processes crashed the way
//! operators crash them: a `kill -9`'d broker leaves no nats-server behind and a plain
//! restart works; a second broker on one JetStream store refuses to start; a demo stopped by
//! SIGTERM or SIGKILL takes its broker, nats-server and provisioners with it.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use choria_demo::{Flow, HelperMode, Site, SiteOptions, SitePorts};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

fn site(dir: &Path) -> Site {
    let port = || choria_testkit::free_port().unwrap();
    let ports = SitePorts {
        client: port(),
        enrolment: port(),
        broker_stats: port(),
        provisioner_monitor: port(),
    };
    let options = SiteOptions {
        flow: Flow::Jwt,
        provisioners: 1,
        helper: "true".into(),
        helper_mode: HelperMode::Exec,
        workers: 1,
    };
    Site::generate(dir, &options, ports).unwrap()
}

/// A broker process whose log goes to a file, killed (SIGKILL) if a test fails.
struct BrokerProcess {
    child: Child,
    log: PathBuf,
}

impl BrokerProcess {
    fn start(config: &Path, log: PathBuf) -> BrokerProcess {
        let file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_choria"))
            .args(["broker", "run", "--config"])
            .arg(config)
            .env(
                "CHORIA_NATS_SERVER",
                std::env::var_os("CHORIA_NATS_SERVER").unwrap_or_default(),
            )
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap();
        BrokerProcess { child, log }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.log().contains("broker ready") {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("broker exited with {status}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "broker not ready:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).unwrap())
    }

    /// The nats-server this broker runs (its direct child).
    fn nats_server_pid(&self) -> u32 {
        let parent = self.child.id();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .find(|pid| {
                let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                    return false;
                };
                let Some((head, rest)) = stat.rsplit_once(')') else {
                    return false;
                };
                let ppid = rest.split_whitespace().nth(1).and_then(|p| p.parse().ok());
                head.contains("(nats-server") && ppid == Some(parent)
            })
            .unwrap_or_else(|| panic!("no nats-server child of {parent}:\n{}", self.log()))
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every live descendant of `root`, found through `/proc/*/stat` parent links.
fn descendants(root: u32) -> Vec<(u32, String)> {
    let mut all = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let ppid: u32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let comm = head
            .rsplit_once('(')
            .map(|(_, c)| c.to_string())
            .unwrap_or_default();
        if state != "Z" && state != "X" {
            all.push((pid, ppid, comm));
        }
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(parent) = frontier.pop() {
        for (pid, ppid, comm) in &all {
            if *ppid == parent {
                found.push((*pid, comm.clone()));
                frontier.push(*pid);
            }
        }
    }
    found
}

/// Starts a demo that runs for a while, waits until its broker (with nats-server) and
/// provisioner run, stops it with `signal`, and checks every one of them went with it.
fn demo_children_go_with_the_demo(signal: Signal) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("demo.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut demo = Command::new(env!("CARGO_BIN_EXE_choria"))
        .args([
            "demo",
            "--nodes",
            "200",
            "--boot-rate",
            "5",
            "--json",
            "--workdir",
        ])
        .arg(dir.path().join("site"))
        .stdin(Stdio::null())
        .stdout(file.try_clone().unwrap())
        .stderr(file)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    let children = loop {
        let children = descendants(demo.id());
        let has = |name: &str| children.iter().any(|(_, comm)| comm.starts_with(name));
        if has("nats-server") && has("choria-provisio") {
            break children;
        }
        if let Some(status) = demo.try_wait().unwrap() {
            panic!(
                "demo ended ({status}) before its services ran: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        assert!(Instant::now() < deadline, "demo services never ran");
        std::thread::sleep(Duration::from_millis(100));
    };
    kill(Pid::from_raw(i32::try_from(demo.id()).unwrap()), signal).unwrap();
    let _ = demo.wait();
    for (pid, comm) in children {
        assert!(
            wait_gone(pid, Duration::from_secs(20)),
            "{comm} ({pid}) outlived the demo after {signal:?}"
        );
    }
}

#[test]
fn a_demo_stopped_with_sigterm_stops_its_services() {
    demo_children_go_with_the_demo(Signal::SIGTERM);
}

#[test]
fn a_demo_killed_with_sigkill_leaves_no_service_behind() {
    demo_children_go_with_the_demo(Signal::SIGKILL);
}

/// Running, and not a zombie waiting for a reaper.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(')')?.1.trim_start().chars().next()?;
            Some(!matches!(state, 'Z' | 'X'))
        })
        .unwrap_or(false)
}

fn wait_gone(pid: u32, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while alive(pid) {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

#[test]
fn kill_9_leaves_no_nats_server_and_a_plain_restart_works() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());

    let mut first = BrokerProcess::start(&site.broker_config, dir.path().join("first.log"));
    first.wait_ready();
    let orphan = first.nats_server_pid();
    kill(first.pid(), Signal::SIGKILL).unwrap();
    let _ = first.child.wait();
    assert!(
        wait_gone(orphan, Duration::from_secs(10)),
        "nats-server {orphan} outlived its broker"
    );

    let mut second = BrokerProcess::start(&site.broker_config, dir.path().join("second.log"));
    second.wait_ready();
    let serving = second.nats_server_pid();
    assert_ne!(serving, orphan);

    // A second broker for the same store must refuse, and must not disturb the first.
    let mut third = BrokerProcess::start(&site.broker_config, dir.path().join("third.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = third.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "second broker on one store kept running:\n{}",
            third.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(
        third.log().contains("is in use by another broker"),
        "{}",
        third.log()
    );
    assert!(
        alive(serving),
        "the refused broker disturbed the running one"
    );

    // A graceful stop takes nats-server with it too.
    kill(second.pid(), Signal::SIGTERM).unwrap();
    let _ = second.child.wait();
    assert!(wait_gone(serving, Duration::from_secs(10)));
}

#[test]
fn a_broker_refuses_a_client_port_something_else_holds() {
    let dir = tempfile::tempdir().unwrap();
    let site = site(dir.path());
    // Anything that answers like nats-server on the port: the probe must not take it for
    // the broker's own child.
    let squatter = std::net::TcpListener::bind(("127.0.0.1", site.ports.client)).unwrap();
    std::thread::spawn(move || {
        for stream in squatter.incoming().flatten() {
            use std::io::Write as _;
            let mut stream = stream;
            let _ = stream.write_all(b"INFO {\"server_id\":\"squatter\"}\r\n");
        }
    });
    let mut broker = BrokerProcess::start(&site.broker_config, dir.path().join("broker.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = broker.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "broker kept running on a taken port:\n{}",
            broker.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(!status.success());
    assert!(
        broker.log().contains("is already in use"),
        "{}",
        broker.log()
    );
}
