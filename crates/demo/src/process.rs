//! The site's services as real child processes (`choria broker run`,
//! `choria-provisioner run`), with their logs in the site directory and their peak memory.

use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Child;

use crate::DemoError;

/// A supervised child process of the demo, killed when dropped.
#[derive(Debug)]
pub struct Service {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Service {
    /// Starts `program args…` with stdout and stderr appended to `log`.
    pub fn spawn(
        name: &str,
        program: &Path,
        args: &[&str],
        log: &Path,
    ) -> Result<Service, DemoError> {
        Service::spawn_with_env(name, program, args, log, &[])
    }

    /// Like [`Service::spawn`] with extra environment variables.
    pub fn spawn_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        log: &Path,
        env: &[(&str, String)],
    ) -> Result<Service, DemoError> {
        let io = |what: &str, source| DemoError::Io {
            what: format!("{what} for {name}"),
            source,
        };
        // Logs name nodes and callers: readable by the owner's group, never by the world.
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(log)
            .map_err(|e| io("opening the log", e))?;
        let err = out.try_clone().map_err(|e| io("opening the log", e))?;
        // The demo's broker and provisioners go when the demo goes, even after kill -9.
        let child = choria_broker::child::dying_with_parent(program)
            .args(args)
            .envs(env.iter().map(|(key, value)| (key, value)))
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| io(&format!("starting {}", program.display()), e))?;
        Ok(Service {
            name: name.to_string(),
            child,
            log: log.to_path_buf(),
        })
    }

    /// The service's name in reports.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Fails with the log's tail if the process has exited.
    pub fn check_running(&mut self) -> Result<(), DemoError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(DemoError::ServiceExited {
                name: self.name.clone(),
                status: status.to_string(),
                log: log_tail(&self.log),
            }),
            Err(source) => Err(DemoError::Io {
                what: format!("checking {}", self.name),
                source,
            }),
        }
    }

    /// Peak resident memory in MiB of the process and all its descendants (the broker's
    /// nats-server child counts as broker memory).
    pub fn peak_rss_mb(&self) -> f64 {
        self.pid()
            .map(|pid| tree_peak_rss_kb(pid) as f64 / 1024.0)
            .unwrap_or(0.0)
    }

    /// Peak resident memory in MiB of the process alone, without its children.
    pub fn own_peak_rss_mb(&self) -> f64 {
        self.pid()
            .map(|pid| peak_rss_kb(pid) as f64 / 1024.0)
            .unwrap_or(0.0)
    }

    /// Peak resident memory in MiB of the process's live descendants (a provisioner's
    /// helpers), summed.
    pub fn descendants_peak_rss_mb(&self) -> f64 {
        self.pid()
            .map(|pid| children(pid).into_iter().map(tree_peak_rss_kb).sum::<u64>() as f64 / 1024.0)
            .unwrap_or(0.0)
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace` before killing it.
    pub async fn stop(mut self, grace: Duration) {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }

    /// Kills the process at once, as a crash would.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// The last 4 KiB of a log file, for error messages.
pub fn log_tail(path: &Path) -> String {
    choria_broker::nats_server::read_tail(path, 4096)
}

/// `VmHWM` (peak resident set) of `pid` plus its descendants, in KiB.
pub fn tree_peak_rss_kb(pid: u32) -> u64 {
    let mut total = peak_rss_kb(pid);
    for child in children(pid) {
        total += tree_peak_rss_kb(child);
    }
    total
}

/// `VmHWM` of one process in KiB (0 when unknown).
pub fn peak_rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmHWM:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// The demo process's own peak resident memory in MiB (the simulated fleet).
pub fn own_peak_rss_mb() -> f64 {
    peak_rss_kb(std::process::id()) as f64 / 1024.0
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_peak_memory() {
        assert!(peak_rss_kb(std::process::id()) > 0);
        assert_eq!(peak_rss_kb(u32::MAX), 0);
    }

    #[tokio::test]
    async fn a_service_that_exits_reports_its_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("svc.log");
        let mut svc = Service::spawn(
            "sh",
            Path::new("/bin/sh"),
            &["-c", "echo boom; exit 3"],
            &log,
        )
        .expect("spawn");
        let mut waited = 0;
        loop {
            match svc.check_running() {
                Ok(()) if waited < 100 => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    waited += 1;
                }
                Ok(()) => panic!("sh did not exit"),
                Err(DemoError::ServiceExited { name, log, .. }) => {
                    assert_eq!(name, "sh");
                    assert!(log.contains("boom"), "{log}");
                    break;
                }
                Err(other) => panic!("unexpected {other}"),
            }
        }
    }

    #[tokio::test]
    async fn peak_memory_includes_children() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("svc.log");
        let svc = Service::spawn("sh", Path::new("/bin/sh"), &["-c", "sleep 5 & wait"], &log)
            .expect("spawn");
        tokio::time::sleep(Duration::from_millis(200)).await;
        let pid = svc.pid().expect("pid");
        assert!(
            tree_peak_rss_kb(pid) > peak_rss_kb(pid),
            "child sleep must add memory"
        );
        assert!(svc.descendants_peak_rss_mb() > 0.0, "the child is counted");
        assert!(svc.own_peak_rss_mb() > 0.0);
        assert!(
            svc.own_peak_rss_mb() < svc.peak_rss_mb(),
            "alone is less than the tree"
        );
        svc.stop(Duration::from_secs(2)).await;
    }
}
