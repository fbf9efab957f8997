//! Starting and supervising a broker: writes the nats-server config, runs nats-server as a
//! child that is restarted with backoff when it dies, and runs the authorization service.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicU32, Ordering};

use nkeys::KeyPair;
use rand::distributions::{Alphanumeric, DistString as _};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::callout::{self, AuthService};
use crate::decision::{Policy, PROBE_USER};
use crate::metrics::{self, Metrics};
use crate::nats_server::{self, NatsServerError, NatsServerProcess, StoreLock};
use crate::natsconf::{self, Internal};
use crate::settings::{BrokerSettings, SettingsError};
use crate::streams;
use crate::verify::ChoriaVerifier;

/// How long nats-server may take to accept connections.
pub const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long we wait for the authorization service to answer the readiness probe.
pub const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Grace period for nats-server to exit after SIGTERM.
pub const STOP_GRACE: Duration = Duration::from_secs(10);
/// First and largest restart delay after nats-server dies.
pub const RESTART_BACKOFF: (Duration, Duration) =
    (Duration::from_millis(250), Duration::from_secs(30));

/// Name of the internal stream-manager user in the `choria` account.
const MANAGER_USER: &str = "_choria_broker_streams";

/// Errors starting a broker.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BrokerError {
    /// The settings cannot be used.
    #[error(transparent)]
    Settings(#[from] SettingsError),
    /// nats-server could not be found or started.
    #[error(transparent)]
    NatsServer(#[from] NatsServerError),
    /// A file in the work directory could not be written.
    #[error("could not write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The listen address does not resolve.
    #[error("cannot dial {0}: {1}")]
    Address(String, String),
    /// The authorization service could not subscribe.
    #[error("authorization service: {0}")]
    Service(#[from] callout::ServiceError),
    /// The generated service nkey has no usable seed.
    #[error("authorization service: could not read the service nkey seed: {0}")]
    ServiceSeed(#[source] nkeys::error::Error),
    /// The authorization service could not connect (async-nats' error, with its kind).
    #[error("authorization service: could not connect: {0}")]
    ServiceConnect(#[source] async_nats::ConnectError),
    /// The stream manager could not connect (async-nats' error, with its kind).
    #[error("authorization service: stream manager could not connect: {0}")]
    StreamsConnect(#[source] async_nats::ConnectError),
    /// The authorization service did not get a connection in time.
    #[error("authorization service: could not connect within {waited:?}; nats-server log:\n{log}")]
    ConnectTimeout {
        /// How long it tried.
        waited: Duration,
        /// The end of the nats-server log.
        log: String,
    },
    /// The broker did not admit the readiness probe in time.
    #[error("the authorization service did not answer within {waited:?}: {last_error}")]
    NotReady {
        /// How long we waited.
        waited: Duration,
        /// The last connection error.
        last_error: String,
    },
    /// The managed streams could not be configured.
    #[error(transparent)]
    Streams(#[from] streams::StreamError),
    /// The metrics listener could not be bound.
    #[error("could not listen for metrics on {addr}: {reason}")]
    Metrics {
        /// The address.
        addr: String,
        /// Why.
        reason: String,
    },
}

/// Entry point: `Broker::start`.
#[derive(Debug)]
pub struct Broker;

/// A running broker. Dropping it stops nats-server; prefer [`RunningBroker::shutdown`].
#[derive(Debug)]
pub struct RunningBroker {
    client_url: String,
    enrolment_url: Option<String>,
    log_path: PathBuf,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    metrics_addr: Option<SocketAddr>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    service_client: async_nats::Client,
    pid: Arc<AtomicU32>,
    /// Held until the broker is gone; the kernel releases it however the process ends.
    _store_lock: Option<StoreLock>,
}

impl Broker {
    /// Starts nats-server and the authorization service, returning once the service has
    /// admitted a readiness probe through the real client port.
    pub async fn start(
        settings: BrokerSettings,
        work_dir: &Path,
    ) -> Result<RunningBroker, BrokerError> {
        let verifier = Arc::new(ChoriaVerifier::from_settings(&settings)?);
        // Before anything listens: a second broker on the same store stops here.
        let store_lock = match &settings.streams {
            Some(streams) => Some(StoreLock::acquire(&streams.store)?),
            None => None,
        };
        std::fs::create_dir_all(work_dir).map_err(|e| BrokerError::Write {
            path: work_dir.to_path_buf(),
            reason: e.to_string(),
        })?;
        let service_user = KeyPair::new_user();
        let issuer = KeyPair::new_account();
        let manager_password = random_secret();
        let probe_password = random_secret();
        let config = natsconf::render(
            &settings,
            &Internal {
                service_user: &service_user.public_key(),
                issuer: &issuer.public_key(),
                manager_user: MANAGER_USER,
                manager_password: &manager_password,
            },
        );
        let config_path = work_dir.join("nats-server.conf");
        choria_config::files::write_secret(&config_path, config.as_bytes()).map_err(|e| {
            BrokerError::Write {
                path: config_path.clone(),
                reason: e.to_string(),
            }
        })?;
        let log_path = work_dir.join("nats-server.log");
        let host = settings.dial_host();
        let client_addr = resolve(&host, settings.client_port)?;
        let binary = nats_server::locate()?;
        let metrics = Metrics::new();
        let cancel = CancellationToken::new();

        let metrics_addr = match &settings.stats {
            None => None,
            Some((address, port)) => {
                let addr = resolve(address, *port)?;
                let listener = metrics::bind(addr)
                    .await
                    .map_err(|e| BrokerError::Metrics {
                        addr: addr.to_string(),
                        reason: e.to_string(),
                    })?;
                let bound = listener.local_addr().ok();
                let (m, c) = (metrics.clone(), cancel.clone());
                tokio::spawn(async move {
                    if let Err(e) = metrics::serve(listener, m, c).await {
                        tracing::error!(error = %e, "metrics server failed");
                    }
                });
                bound
            }
        };

        tracing::info!(config = %config_path.display(), "starting nats-server");
        let process =
            NatsServerProcess::start(&binary, &config_path, &log_path, client_addr, START_TIMEOUT)
                .await?;
        metrics.up.set(1);
        let pid = Arc::new(AtomicU32::new(process.pid().unwrap_or(0)));
        let client_url = format!("tls://{}", natsconf::host_port(&host, settings.client_port));
        let enrolment_url = settings
            .enrolment_port
            .map(|p| format!("wss://{}", natsconf::host_port(&host, p)));

        let mut tasks = Vec::new();
        tasks.push(tokio::spawn(supervise(
            process,
            Launch {
                binary,
                config: config_path.clone(),
                log: log_path.clone(),
                addr: client_addr,
            },
            metrics.clone(),
            pid.clone(),
            cancel.clone(),
        )));

        let ca = settings.tls.ca.clone();
        // In mtls mode the client port demands a certificate from everyone, the broker's
        // own connections included; they present the broker certificate.
        let identity = (settings.tls_mode == crate::TlsMode::Mtls)
            .then(|| (settings.tls.certificate.clone(), settings.tls.key.clone()));
        let tls = Tls {
            ca: ca.clone(),
            identity,
        };
        let service_options = tls.apply(
            async_nats::ConnectOptions::with_nkey(
                service_user.seed().map_err(BrokerError::ServiceSeed)?,
            )
            .name("choria_broker_auth_service")
            .retry_on_initial_connect()
            .max_reconnects(None),
        );
        let service_client =
            match tokio::time::timeout(READY_TIMEOUT, service_options.connect(&client_url)).await {
                Ok(Ok(client)) => client,
                Ok(Err(source)) => return Err(BrokerError::ServiceConnect(source)),
                Err(_) => {
                    return Err(BrokerError::ConnectTimeout {
                        waited: READY_TIMEOUT,
                        log: nats_server::read_tail(&log_path, 4096),
                    })
                }
            };
        let service = Arc::new(AuthService {
            policy: Policy {
                tls_mode: settings.tls_mode,
                provisioning_password: settings.provisioning_password.clone(),
                provisioner_without_token: settings.provisioner_without_token,
                system: settings.system.clone(),
                deny_server_connections: settings.deny_server_connections,
                issuer_mode: !settings.issuers.is_empty(),
                pubsub_for_mtls: settings.pubsub_for_mtls,
                client_hosts_set: !settings.client_hosts.is_empty(),
                fips: settings.fips,
                probe_password: probe_password.as_str().into(),
            },
            verifier,
            issuer,
            metrics: metrics.clone(),
            stale_after: Some(settings.auth_timeout),
        });
        let service_loop = callout::start(
            service_client.clone(),
            service,
            settings.auth_concurrency,
            cancel.clone(),
        )
        .await?;
        tasks.push(tokio::spawn(service_loop));

        let mut running = RunningBroker {
            client_url,
            enrolment_url,
            log_path,
            config_path,
            metrics,
            metrics_addr,
            cancel,
            tasks,
            service_client,
            pid,
            _store_lock: store_lock,
        };
        if let Err(e) = running.wait_ready(&tls, &probe_password).await {
            running.stop().await;
            return Err(e);
        }
        if let Some(streams) = &settings.streams {
            if streams.manage {
                if let Err(e) = running
                    .manage_streams(&tls, &manager_password, streams)
                    .await
                {
                    running.stop().await;
                    return Err(e);
                }
            }
        }
        tracing::info!(url = %running.client_url, "broker ready");
        Ok(running)
    }
}

impl RunningBroker {
    /// The client URL (`tls://host:port`).
    pub fn client_url(&self) -> &str {
        &self.client_url
    }

    /// The enrolment listener URL (`wss://host:port`), in mtls mode.
    pub fn enrolment_url(&self) -> Option<&str> {
        self.enrolment_url.as_deref()
    }

    /// nats-server's log file.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The generated nats-server configuration (0600: it holds internal credentials).
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// The last 64 KiB of nats-server's log.
    pub fn log_tail(&self) -> String {
        nats_server::read_tail(&self.log_path, 64 * 1024)
    }

    /// The current nats-server process id (0 while it is being restarted).
    pub fn nats_server_pid(&self) -> u32 {
        self.pid.load(Ordering::Relaxed)
    }

    /// The metrics of this broker.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Where `/metrics` is served, when `plugin.choria.stats_port` is set.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_addr
    }

    /// Stops the service and nats-server and waits for both.
    pub async fn shutdown(mut self) {
        self.stop().await;
    }

    async fn stop(&mut self) {
        let _ = self.service_client.drain().await;
        self.cancel.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }

    async fn wait_ready(&self, tls: &Tls, probe_password: &str) -> Result<(), BrokerError> {
        let started = Instant::now();
        let mut last_error = String::new();
        while started.elapsed() < READY_TIMEOUT {
            let attempt = tls
                .apply(async_nats::ConnectOptions::with_user_and_password(
                    PROBE_USER.into(),
                    probe_password.into(),
                ))
                .connection_timeout(Duration::from_secs(5))
                .connect(&self.client_url)
                .await;
            match attempt {
                Ok(client) => {
                    let _ = client.drain().await;
                    return Ok(());
                }
                Err(e) => last_error = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Err(BrokerError::NotReady {
            waited: READY_TIMEOUT,
            last_error,
        })
    }

    async fn manage_streams(
        &self,
        tls: &Tls,
        password: &str,
        settings: &crate::settings::StreamSettings,
    ) -> Result<(), BrokerError> {
        let client = tls
            .apply(
                async_nats::ConnectOptions::with_user_and_password(
                    MANAGER_USER.into(),
                    password.into(),
                )
                .name("choria_broker_streams"),
            )
            .connection_timeout(Duration::from_secs(10))
            .connect(&self.client_url)
            .await
            .map_err(BrokerError::StreamsConnect)?;
        let result = streams::ensure(&client, settings).await;
        let _ = client.drain().await;
        Ok(result?)
    }
}

impl Drop for RunningBroker {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// What the supervisor needs to restart nats-server exactly as it was started.
struct Launch {
    binary: PathBuf,
    config: PathBuf,
    log: PathBuf,
    addr: SocketAddr,
}

async fn supervise(
    mut process: NatsServerProcess,
    launch: Launch,
    metrics: Arc<Metrics>,
    pid: Arc<AtomicU32>,
    cancel: CancellationToken,
) {
    let mut backoff = RESTART_BACKOFF.0;
    loop {
        let started = Instant::now();
        let status = tokio::select! {
            _ = cancel.cancelled() => {
                tracing::info!("stopping nats-server");
                if let Err(e) = process.stop(STOP_GRACE).await {
                    tracing::warn!(error = %e, "nats-server did not stop cleanly");
                }
                metrics.up.set(0);
                return;
            }
            status = process.wait() => status,
        };
        metrics.up.set(0);
        pid.store(0, Ordering::Relaxed);
        let tail = nats_server::read_tail(&launch.log, 2048);
        match status {
            Ok(status) => {
                tracing::error!(%status, log_tail = %tail, "nats-server exited unexpectedly")
            }
            Err(e) => tracing::error!(error = %e, "lost track of nats-server"),
        }
        if started.elapsed() > Duration::from_secs(60) {
            backoff = RESTART_BACKOFF.0;
        }
        loop {
            tracing::info!(delay = ?backoff, "restarting nats-server");
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RESTART_BACKOFF.1);
            match NatsServerProcess::start(
                &launch.binary,
                &launch.config,
                &launch.log,
                launch.addr,
                START_TIMEOUT,
            )
            .await
            {
                Ok(p) => {
                    process = p;
                    pid.store(process.pid().unwrap_or(0), Ordering::Relaxed);
                    metrics.restarts.inc();
                    metrics.up.set(1);
                    break;
                }
                Err(e) => tracing::error!(error = %e, "nats-server restart failed"),
            }
        }
    }
}

fn resolve(host: &str, port: u16) -> Result<SocketAddr, BrokerError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    (bare, port)
        .to_socket_addrs()
        .map_err(|e| BrokerError::Address(format!("{host}:{port}"), e.to_string()))?
        .next()
        .ok_or_else(|| BrokerError::Address(format!("{host}:{port}"), "no address".into()))
}

/// TLS settings of the broker's own connections.
struct Tls {
    ca: PathBuf,
    identity: Option<(PathBuf, PathBuf)>,
}

impl Tls {
    fn apply(&self, options: async_nats::ConnectOptions) -> async_nats::ConnectOptions {
        let options = options
            .add_root_certificates(self.ca.clone())
            .require_tls(true);
        match &self.identity {
            Some((cert, key)) => options.add_client_certificate(cert.clone(), key.clone()),
            None => options,
        }
    }
}

fn random_secret() -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, 40)
}
