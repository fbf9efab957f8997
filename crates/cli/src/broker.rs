//! `choria broker run` and `choria broker server report conns`: parse flags, read the config,
//! call `choria_broker`, print. All policy lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use choria_broker::{report, Broker, BrokerSettings};
use choria_config::Config;

/// Arguments of `choria broker`.
#[derive(Debug, clap::Args)]
pub struct BrokerArgs {
    #[command(subcommand)]
    command: BrokerCommand,
}

impl BrokerArgs {
    /// Whether this is a one-shot command (a report) rather than the long-running broker.
    pub fn is_one_shot(&self) -> bool {
        matches!(self.command, BrokerCommand::Server { .. })
    }
}

#[derive(Debug, clap::Subcommand)]
enum BrokerCommand {
    /// Run the broker: a supervised nats-server plus the authorization service.
    Run {
        /// The broker's Choria configuration file.
        #[arg(long)]
        config: PathBuf,
        /// Where to keep the generated nats-server config and its log
        /// (default: `broker` beside the config file).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
    /// Ask the broker's nats-server (as the system user).
    Server {
        #[command(subcommand)]
        command: ServerCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ServerCommand {
    /// Reports about the servers.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ReportCommand {
    /// Connections of one account.
    #[command(visible_aliases = ["conn", "connz", "connections"])]
    Conns {
        /// The account to report on (`choria`, `provisioning`, `system`).
        #[arg(long, default_value = "choria")]
        account: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Configuration with the system user (`plugin.choria.network.system.*`), the CA
        /// and, in JWT mode, `plugin.security.choria.token_file` / `seed_file`.
        #[arg(long)]
        config: PathBuf,
        /// Broker URL (default: `tls://127.0.0.1:<client_port>` from the config).
        #[arg(long)]
        server: Option<String>,
        /// How long to collect answers from the servers.
        #[arg(long, default_value = "2s", value_parser = parse_wait)]
        wait: Duration,
    },
}

fn parse_wait(text: &str) -> Result<Duration, String> {
    choria_config::parse_duration(text).map_err(|e| e.to_string())
}

/// Runs `choria broker`.
pub fn run(args: BrokerArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    match args.command {
        BrokerCommand::Run { config, work_dir } => runtime.block_on(run_broker(config, work_dir)),
        BrokerCommand::Server {
            command:
                ServerCommand::Report {
                    command:
                        ReportCommand::Conns {
                            account,
                            json,
                            config,
                            server,
                            wait,
                        },
                },
        } => runtime.block_on(report_conns(config, server, account, json, wait)),
    }
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| crate::Failure::usage(format!("{e}")).into())
}

async fn run_broker(config: PathBuf, work_dir: Option<PathBuf>) -> anyhow::Result<ExitCode> {
    let cfg = load(&config)?;
    let settings = BrokerSettings::from_config(&cfg)
        .map_err(|e| crate::Failure::usage(format!("{}: {e}", config.display())))?;
    let work_dir = work_dir.unwrap_or_else(|| {
        config
            .parent()
            .map(|p| p.join("broker"))
            .unwrap_or_else(|| PathBuf::from("broker"))
    });
    let broker = Broker::start(settings, &work_dir)
        .await
        .context("starting the broker")?;
    tracing::info!(
        url = broker.client_url(),
        "choria broker running; ctrl-c or SIGTERM stops it"
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted"),
        _ = term.recv() => tracing::info!("terminated"),
    }
    broker.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

async fn report_conns(
    config: PathBuf,
    server: Option<String>,
    account: String,
    json: bool,
    wait: Duration,
) -> anyhow::Result<ExitCode> {
    let cfg = load(&config)?;
    let key = "plugin.choria.network.system.";
    let (Some(user), Some(password)) = (
        cfg.get_string(&format!("{key}user"))
            .filter(|s| !s.is_empty()),
        cfg.get_string(&format!("{key}password"))
            .filter(|s| !s.is_empty()),
    ) else {
        return Err(crate::Failure::usage(format!(
            "{}: plugin.choria.network.system.user and .password are required for broker server commands",
            config.display()
        ))
        .into());
    };
    let url = match server {
        Some(url) => url,
        None => format!(
            "tls://127.0.0.1:{}",
            cfg.get_int_or("plugin.choria.network.client_port", 1..=65535u16, 4222)
                .map_err(|e| crate::Failure::usage(e.to_string()))?
        ),
    };
    let token = match cfg.get_path("plugin.security.choria.token_file")? {
        Some(path) => Some(
            std::fs::read_to_string(&path)
                .with_context(|| format!("reading the token {}", path.display()))?
                .trim()
                .to_string(),
        ),
        None => None,
    };
    let seed = match cfg.get_path("plugin.security.choria.seed_file")? {
        Some(path) => Some(
            choria_tokens::Ed25519Seed::from_file(&path)
                .with_context(|| format!("reading the seed {}", path.display()))?,
        ),
        None => None,
    };
    let certificate = match (
        cfg.get_path("plugin.security.file.certificate")?,
        cfg.get_path("plugin.security.file.key")?,
    ) {
        (Some(cert), Some(key)) if token.is_none() => Some((cert, key)),
        _ => None,
    };
    let client = report::connect_system(report::SystemLogin {
        url,
        ca: cfg.get_path("plugin.security.file.ca")?,
        user,
        password,
        token,
        seed,
        certificate,
    })
    .await?;
    let conns = report::connections(&client, &account, wait).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&conns)?);
    } else {
        print!("{}", report::table(&conns));
    }
    Ok(ExitCode::SUCCESS)
}
