//! `choria-provisioner`: parses the command line (spec §7), loads both configurations and
//! runs the provisioner library until SIGINT/SIGTERM.
//!
//! Exit codes follow upstream: 0 after a signal, 1 for start-up failures (configuration,
//! Choria configuration, metrics listener), 2 for command line usage errors.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use choria_demo::helper::{self as example_helper, ExampleHelperSettings, NodeCa};
use choria_pki::CertificateAuthority;
use choria_provisioner::{CancellationToken, ClientSettings, Provisioner, Settings};

use crate::Failure;

/// Command line of `choria-provisioner`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "choria-provisioner",
    version = crate::VERSION,
    about = "The Choria Provisioning Framework",
    args_conflicts_with_subcommands = true
)]
pub struct ProvisionerCli {
    /// Log as JSON lines.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// Force debug logging.
    #[arg(long, global = true)]
    pub debug: bool,
    /// Print a man page or shell completions made from these definitions, then exit.
    #[arg(long, value_enum, value_name = "KIND")]
    pub generate: Option<crate::generate::Generate>,
    /// What to do (`run` when omitted).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Arguments of the default `run` command.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Run the provisioner (the default).
    Run(RunArgs),
    /// Serve the built-in example helper (persistent helper protocol on stdin/stdout).
    #[command(hide = true)]
    ExampleHelper(ExampleHelperArgs),
}

/// Arguments of `run`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct RunArgs {
    /// Provisioner configuration file (YAML or JSON).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Choria client configuration file.
    #[arg(long)]
    pub choria_config: Option<PathBuf>,
    /// Write the process id to this file.
    #[arg(long)]
    pub pid: Option<PathBuf>,
}

/// Arguments of the example helper.
#[derive(Debug, Clone, clap::Args)]
pub struct ExampleHelperArgs {
    /// Broker URL written into node configurations.
    #[arg(long, env = "CHORIA_DEMO_BROKER_URL")]
    pub broker_url: String,
    /// Hex ed25519 public key of the organisation issuer.
    #[arg(long, env = "CHORIA_DEMO_ISSUER_PUBLIC")]
    pub issuer_public: String,
    /// Collectives, comma separated.
    #[arg(long, default_value = "choria")]
    pub collectives: String,
    /// CA bundle path on the nodes.
    #[arg(long, env = "CHORIA_DEMO_CA_FILE")]
    pub ca_file: Option<String>,
    /// Certificate of the CA that signs node CSRs (pki flow).
    #[arg(long, env = "CHORIA_DEMO_NODE_CA", requires = "node_ca_key")]
    pub node_ca: Option<PathBuf>,
    /// Private key of that CA (PKCS#8 PEM).
    #[arg(long, env = "CHORIA_DEMO_NODE_CA_KEY", requires = "node_ca")]
    pub node_ca_key: Option<PathBuf>,
}

impl ProvisionerCli {
    /// Whether debug logging was asked for.
    pub fn debug(&self) -> bool {
        self.debug
    }
}

/// Runs `choria-provisioner`.
pub fn run(args: ProvisionerCli) -> anyhow::Result<ExitCode> {
    match args.command {
        Some(Command::ExampleHelper(helper)) => serve_example_helper(helper),
        Some(Command::Run(run)) => run_provisioner(run),
        None => run_provisioner(args.run),
    }
}

/// Where the service logs and at which level, from the `logfile` and `loglevel` keys of its
/// configuration. A configuration that does not load gives the defaults: `run` reports it.
pub fn log_settings(args: &ProvisionerCli) -> (crate::logging::Output, String) {
    use crate::logging::Output;
    use choria_provisioner::settings::LogTarget;
    let config = match &args.command {
        Some(Command::Run(run)) => run.config.as_ref(),
        _ => args.run.config.as_ref(),
    };
    let Some(settings) = config.and_then(|path| Settings::load(path).ok()) else {
        return (Output::Stdout, "info".into());
    };
    let output = match settings.logfile {
        LogTarget::Stdout => Output::Stdout,
        LogTarget::Stderr => Output::Stderr,
        LogTarget::Discard => Output::Discard,
        LogTarget::File(path) => Output::File(path),
    };
    // tracing has no fatal level; upstream's fatal lines are errors here.
    let level = match settings.loglevel.as_str() {
        "fatal" => "error".to_string(),
        level => level.to_string(),
    };
    (output, level)
}

fn serve_example_helper(args: ExampleHelperArgs) -> anyhow::Result<ExitCode> {
    let node_ca = match (&args.node_ca, &args.node_ca_key) {
        (Some(cert), Some(key)) => Some(load_node_ca(cert, key, args.ca_file.as_deref())?),
        _ => None,
    };
    let settings = ExampleHelperSettings {
        node_ca,
        broker_url: args.broker_url,
        issuer_public: args.issuer_public,
        collectives: choria_config::split_list(&args.collectives),
        ca_file: args.ca_file,
        ..ExampleHelperSettings::default()
    };
    example_helper::serve_stdio(&settings).context("example helper i/o failed")?;
    Ok(ExitCode::SUCCESS)
}

/// Loads the helper's CA; nodes are given the site CA bundle (`--ca-file`) to verify the
/// broker, or the node CA itself when there is none.
fn load_node_ca(cert: &Path, key: &Path, ca_file: Option<&str>) -> anyhow::Result<NodeCa> {
    let read = |path: &Path| {
        std::fs::read_to_string(path).with_context(|| format!("could not read {}", path.display()))
    };
    let (cert_pem, key_pem) = (read(cert)?, read(key)?);
    let authority = CertificateAuthority::from_pem(&cert_pem, &key_pem).with_context(|| {
        format!(
            "{} and {} are not a usable CA",
            cert.display(),
            key.display()
        )
    })?;
    let trust_bundle = match ca_file {
        Some(path) => read(Path::new(path))?,
        None => cert_pem,
    };
    Ok(NodeCa {
        authority: Arc::new(authority),
        trust_bundle,
    })
}

fn run_provisioner(args: RunArgs) -> anyhow::Result<ExitCode> {
    let Some(config) = args.config else {
        return Err(Failure::usage("required flag --config not provided").into());
    };
    if !config.is_file() {
        return Err(
            Failure::usage(format!("--config: file {} not found", config.display())).into(),
        );
    }
    let settings = Settings::load(&config)
        .map_err(|err| Failure::failed(format!("Provisioning could not be configured: {err}")))?;
    let (choria_config, defaulted) = match args.choria_config {
        Some(path) if path.is_file() => (path, false),
        Some(path) => {
            return Err(Failure::usage(format!(
                "--choria-config: file {} not found",
                path.display()
            ))
            .into())
        }
        None => (default_choria_config(), true),
    };
    // ClientError already reads "Could not load Choria Configuration: …" (upstream's text);
    // say it once, and say how to point at the file when none of the defaults exists.
    let client = ClientSettings::load(&choria_config, &settings).map_err(|err| {
        let missing = defaulted && !choria_config.is_file();
        Failure::failed(if missing {
            format!(
                "{err}; pass --choria-config FILE (looked for ~/.choriarc, ~/.mcollective, /etc/choria/client.conf, /usr/local/etc/choria/client.conf and {})",
                choria_config.display()
            )
        } else {
            err.to_string()
        })
    })?;

    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let connects = choria_provisioner::Connects::new();
        let nats = client
            .connect_counting(None, Some(connects.clone()))
            .await
            .map_err(|err| {
                Failure::failed(format!("Provisioning could not configure Choria: {err}"))
            })?;
        let provisioner = Provisioner::new(settings, nats, &client.identity, &client.caller_id)
            .with_connects(connects)
            .with_protocol(client.protocol())
            .with_timeouts(client.timeouts);
        let cancel = CancellationToken::new();
        spawn_signal_handler(cancel.clone())?;
        let pid_guard = match &args.pid {
            Some(path) => Some(PidFile::write(path)?),
            None => None,
        };
        let result = provisioner.run(cancel).await;
        drop(pid_guard);
        result.map_err(|err| Failure::failed(err.to_string()))?;
        Ok(ExitCode::SUCCESS)
    })
}

/// How long a stopping provisioner may drain before it exits anyway.
const DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);

fn spawn_signal_handler(cancel: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("cannot install the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot install the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("shutting down on signal");
        cancel.cancel();
        // A second signal while draining exits at once, and so does a drain that outlasts
        // DRAIN_LIMIT (a broker that went away with us can leave a flush waiting forever).
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = tokio::time::sleep(DRAIN_LIMIT) => {
                tracing::warn!("still draining after {DRAIN_LIMIT:?}; exiting now");
            }
        }
        std::process::exit(0);
    });
    Ok(())
}

/// The upstream search order for the Choria client config.
fn default_choria_config() -> PathBuf {
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        let home = PathBuf::from(home);
        candidates.push(home.join(".choriarc"));
        candidates.push(home.join(".mcollective"));
    }
    candidates.push(PathBuf::from("/etc/choria/client.conf"));
    candidates.push(PathBuf::from("/usr/local/etc/choria/client.conf"));
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/etc/puppetlabs/mcollective/client.cfg"))
}

/// A PID file removed again on drop (B11: clean exits leave nothing behind).
struct PidFile(PathBuf);

impl PidFile {
    fn write(path: &Path) -> anyhow::Result<PidFile> {
        choria_config::files::write_atomic(path, std::process::id().to_string().as_bytes(), 0o644)
            .with_context(|| format!("cannot write pid file {}", path.display()))?;
        Ok(PidFile(path.to_path_buf()))
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
