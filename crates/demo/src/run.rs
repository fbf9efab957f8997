//! The demo from start to finish: generate a site, start the broker and provisioners
//! as child processes, start the simulated fleet, watch every node come back, report.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::connect::ClientCredentials;
use crate::fleet::Fleet;
use crate::process::{own_peak_rss_mb, Service};
use crate::prove::FleetWatch;
use crate::report::{DemoReport, PeakRss};
use crate::site::{Flow, Site, SiteOptions, SitePorts};
use crate::DemoError;

/// How long the broker may take to accept its first authorised client.
const BROKER_PATIENCE: Duration = Duration::from_secs(30);

/// Everything `choria demo` can be asked to do.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Simulated nodes to provision.
    pub nodes: usize,
    /// Keep the site here instead of a temporary directory.
    pub workdir: Option<PathBuf>,
    /// The site's flow, provisioners and helper.
    pub site: SiteOptions,
    /// How fast nodes boot and how long the demo waits for them.
    pub pacing: Pacing,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// The programs the demo runs as child processes.
    pub binaries: Binaries,
}

/// How fast the fleet boots and how long the demo waits for it.
#[derive(Debug, Clone, Copy, Default)]
pub struct Pacing {
    /// Give up on nodes not in the fleet after this long (default scales with the fleet).
    pub timeout: Option<Duration>,
    /// Nodes booted per second; `None` boots them all at once.
    pub boot_rate: Option<u32>,
}

impl Pacing {
    fn deadline(&self, nodes: usize) -> Duration {
        // Generous: 60 s plus 100 ms a node; the benchmark measures speed, not this.
        let booting = match self.boot_rate.filter(|rate| *rate > 0) {
            Some(rate) => Duration::from_secs_f64(nodes as f64 / f64::from(rate)),
            None => Duration::ZERO,
        };
        self.timeout.unwrap_or(
            Duration::from_secs(60) + Duration::from_millis(100) * nodes as u32 + booting,
        )
    }
}

/// The programs the demo starts.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// The `choria` binary (runs the broker).
    pub choria: PathBuf,
    /// The `choria-provisioner` binary (runs provisioners; [`crate::helper::command_line`]
    /// runs the built-in helper with it).
    pub provisioner: PathBuf,
}

/// Runs the whole demo and returns its report; ctrl-c or SIGTERM ends it early with what
/// it has, and stops the broker and provisioners either way.
pub async fn run(options: DemoOptions) -> Result<DemoReport, DemoError> {
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
        on_signal.cancel();
    });
    run_until(options, cancel).await
}

/// What the provisioners pass on to their helper: the facts a helper needs to configure
/// nodes for this site (the node CA only in the pki flow, where the helper signs CSRs).
fn helper_environment(site: &Site, dir: &Path) -> Vec<(&'static str, String)> {
    let mut env = vec![
        ("CHORIA_DEMO_BROKER_URL", site.broker_url.clone()),
        ("CHORIA_DEMO_ISSUER_PUBLIC", site.issuer_public_hex.clone()),
        ("CHORIA_DEMO_CA_FILE", site.ca.display().to_string()),
        ("CHORIA_DEMO_SITE", dir.display().to_string()),
    ];
    if site.flow == Flow::Pki {
        env.push(("CHORIA_DEMO_NODE_CA", site.node_ca.0.display().to_string()));
        env.push((
            "CHORIA_DEMO_NODE_CA_KEY",
            site.node_ca.1.display().to_string(),
        ));
    }
    env
}

/// Runs the demo until every node is in the fleet, the deadline passes, or `cancel` fires.
pub async fn run_until(
    options: DemoOptions,
    cancel: CancellationToken,
) -> Result<DemoReport, DemoError> {
    let (_temp, dir) = match &options.workdir {
        Some(dir) => (None, dir.clone()),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("choria-demo-")
                .tempdir()
                .map_err(|source| DemoError::Io {
                    what: "creating a temporary site directory".into(),
                    source,
                })?;
            let dir = temp.path().to_path_buf();
            (Some(temp), dir)
        }
    };
    let ports = SitePorts {
        client: free_port()?,
        enrolment: free_port()?,
        broker_stats: free_port()?,
        provisioner_monitor: free_port()?,
    };
    let site = Site::generate(&dir, &options.site, ports)?;
    tracing::info!(dir = %dir.display(), flow = site.flow.as_str(), "site generated");

    let mut broker = Service::spawn(
        "broker",
        &options.binaries.choria,
        &[
            "broker",
            "run",
            "--config",
            &site.broker_config.display().to_string(),
        ],
        &dir.join("broker/broker.log"),
    )?;
    let credentials = ClientCredentials::load(&site.fleet_client.0, &site.fleet_client.1)?
        .with_certificate(site.fleet_client_certificate.clone());
    let client = tokio::select! {
        client = credentials.connect_until(&site.broker_url, &site.ca, "demo-fleet-client", BROKER_PATIENCE) => client,
        _ = wait_exit(&mut broker) => return Err(exited(&mut broker)),
    }?;
    let watch = FleetWatch::start(client, credentials, options.nodes).await?;

    let mut provisioners = Vec::new();
    for (index, config) in site.provisioner_configs.iter().enumerate() {
        let name = format!("provisioner-{}", index + 1);
        let service = Service::spawn_with_env(
            &name,
            &options.binaries.provisioner,
            &[
                "run",
                "--config",
                &config.display().to_string(),
                "--choria-config",
                &site.provisioner_choria_config.display().to_string(),
            ],
            &dir.join(format!("provisioner/{name}.out")),
            &helper_environment(&site, &dir),
        )?;
        provisioners.push(service);
    }

    let started = Instant::now();
    let fleet = Fleet::start(
        &site,
        options.nodes,
        options.pacing.boot_rate,
        watch.boots(),
        cancel.child_token(),
    )?;
    let progress = options
        .progress
        .then(|| crate::progress::Progress::new(options.nodes as u64));

    let deadline = started + options.pacing.deadline(options.nodes);
    let mut peak = PeakRss::default();
    loop {
        let status = watch.status();
        if let Some(bar) = &progress {
            bar.update(&status);
        }
        peak.broker = peak.broker.max(broker.peak_rss_mb());
        let mut helpers = 0.0;
        for provisioner in &provisioners {
            peak.provisioner = peak.provisioner.max(provisioner.own_peak_rss_mb());
            helpers += provisioner.descendants_peak_rss_mb();
        }
        peak.helpers = peak.helpers.max(helpers);
        if status.in_fleet >= options.nodes || Instant::now() >= deadline || cancel.is_cancelled() {
            break;
        }
        broker.check_running()?;
        tokio::select! {
            _ = watch.changed() => {}
            _ = tokio::time::sleep(Duration::from_millis(250)) => {}
            _ = cancel.cancelled() => {}
        }
    }
    let elapsed = watch
        .last_arrival()
        .map(|at| at.duration_since(started))
        .unwrap_or_else(|| started.elapsed());
    if let Some(bar) = &progress {
        bar.finish(&watch.status());
    }
    peak.nodes = own_peak_rss_mb();
    let status = watch.status();
    let mut latencies = watch.latencies();
    let report = DemoReport::new(
        options.nodes,
        status.provisioned,
        &mut latencies,
        elapsed,
        peak,
    );

    watch.stop().await;
    fleet.stop().await;
    for provisioner in provisioners {
        provisioner.stop(Duration::from_secs(5)).await;
    }
    broker.stop(Duration::from_secs(10)).await;
    Ok(report)
}

async fn wait_exit(service: &mut Service) {
    loop {
        if service.check_running().is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn exited(service: &mut Service) -> DemoError {
    match service.check_running() {
        Err(err) => err,
        Ok(()) => DemoError::Internal(format!(
            "{} was reported as exited but runs",
            service.name()
        )),
    }
}

/// A loopback port that was free a moment ago.
fn free_port() -> Result<u16, DemoError> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|source| DemoError::Io {
            what: "finding a free loopback port".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::HelperMode;

    #[test]
    fn the_default_deadline_grows_with_the_fleet() {
        let options = DemoOptions {
            nodes: 1000,
            workdir: None,
            site: SiteOptions {
                flow: Flow::Jwt,
                provisioners: 1,
                helper: "choria-provisioner example-helper".into(),
                helper_mode: HelperMode::Persistent,
                workers: 4,
            },
            pacing: Pacing::default(),
            progress: false,
            binaries: Binaries {
                choria: PathBuf::from("choria"),
                provisioner: PathBuf::from("choria-provisioner"),
            },
        };
        assert_eq!(
            options.pacing.deadline(options.nodes),
            Duration::from_secs(160)
        );
    }
}
