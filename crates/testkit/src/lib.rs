//! Test kit: starts real nats-server processes on free loopback ports for tests and
//! benchmarks, and prints their logs when a test fails. No mocked broker anywhere; SRV
//! lookups are tested against a real (small) DNS server, [`dns::TestDns`].
#![deny(missing_docs)]

pub mod delivery;
pub mod dns;
pub mod site;

use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::time::Duration;

use choria_broker::nats_server::{self, NatsServerError, NatsServerProcess};

/// How long a test server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(20);

/// Errors from the test kit.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// nats-server could not be found or started.
    #[error(transparent)]
    NatsServer(#[from] NatsServerError),
    /// A file or port operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
}

/// Returns a loopback port that was free a moment ago.
///
/// The listener is dropped before the port is used, so a race with another process is
/// possible but rare on a test machine; servers fail loudly if it happens.
pub fn free_port() -> Result<u16, TestkitError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|source| TestkitError::Io {
        what: "binding 127.0.0.1:0".into(),
        source,
    })?;
    listener
        .local_addr()
        .map(|addr| addr.port())
        .map_err(|source| TestkitError::Io {
            what: "reading a bound port".into(),
            source,
        })
}

/// A plain nats-server for tests, in its own temporary directory.
#[derive(Debug)]
pub struct TestNats {
    process: Option<NatsServerProcess>,
    port: u16,
    dir: tempfile::TempDir,
}

impl TestNats {
    /// Starts nats-server on a free port with `extra` appended to a minimal config
    /// (`listen`, `server_name`, and a JetStream store inside the temp directory when
    /// `jetstream` is true).
    pub async fn start(extra: &str, jetstream: bool) -> Result<TestNats, TestkitError> {
        let dir = tempfile::tempdir().map_err(|source| TestkitError::Io {
            what: "creating a temp dir".into(),
            source,
        })?;
        let port = free_port()?;
        let mut config = format!("listen: 127.0.0.1:{port}\nserver_name: testkit_{port}\n");
        if jetstream {
            config.push_str(&format!(
                "jetstream {{ store_dir: {:?} }}\n",
                dir.path().join("jetstream")
            ));
        }
        config.push_str(extra);
        let process = start_config(dir.path(), &config, port).await?;
        Ok(TestNats {
            process: Some(process),
            port,
            dir,
        })
    }

    /// The `nats://` URL of the client port.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding config, log and store.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(NatsServerProcess::log_tail)
            .unwrap_or_default()
    }
}

impl Drop for TestNats {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!(
                "---- nats-server log (port {}) ----\n{}",
                self.port,
                self.log()
            );
        }
        // Dropping the process kills it (kill_on_drop).
        self.process.take();
    }
}

/// Writes `config` into `dir/nats.conf` and starts nats-server with it, waiting until
/// 127.0.0.1:`port` accepts connections.
pub async fn start_config(
    dir: &Path,
    config: &str,
    port: u16,
) -> Result<NatsServerProcess, TestkitError> {
    let config_path = dir.join("nats.conf");
    std::fs::write(&config_path, config).map_err(|source| TestkitError::Io {
        what: format!("writing {}", config_path.display()),
        source,
    })?;
    let binary = nats_server::locate()?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    Ok(NatsServerProcess::start(
        &binary,
        &config_path,
        &dir.join("nats.log"),
        addr,
        START_TIMEOUT,
    )
    .await?)
}

/// The workspace root (for finding shared vectors and built binaries).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The `shared/vectors` directory beside the workspace (`../shared/vectors`).
pub fn vectors_dir() -> PathBuf {
    workspace_root().join("..").join("shared").join("vectors")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn starts_a_real_server_that_routes_messages() {
        let nats = TestNats::start("", true).await.expect("start nats-server");
        let client = async_nats::connect(nats.url()).await.expect("connect");
        let mut sub = client.subscribe("testkit.hello").await.expect("subscribe");
        client
            .publish("testkit.hello", "world".into())
            .await
            .expect("publish");
        client.flush().await.expect("flush");
        let message = tokio::time::timeout(Duration::from_secs(5), futures_next(&mut sub))
            .await
            .expect("message in time")
            .expect("message");
        assert_eq!(message.payload.as_ref(), b"world");
    }

    #[tokio::test]
    async fn a_bad_config_reports_the_server_log() {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port().expect("port");
        let err = start_config(dir.path(), "listen: 127.0.0.1:{port\nnonsense {{{", port)
            .await
            .expect_err("bad config must fail");
        let text = err.to_string();
        assert!(text.contains("exited"), "{text}");
    }

    #[test]
    fn vectors_are_beside_the_workspace() {
        assert!(
            vectors_dir().join("README.md").is_file(),
            "{:?}",
            vectors_dir()
        );
    }

    async fn futures_next(sub: &mut async_nats::Subscriber) -> Option<async_nats::Message> {
        use futures::StreamExt;
        sub.next().await
    }
}
