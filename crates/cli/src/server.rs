//! `choria server run`: runs one node agent (provisioning or normal mode) until a signal,
//! the `shutdown` action, or the `restart` action (which re-executes this process).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use choria_server::node::CancellationToken;

use choria_server::node::{Node, NodeExit, NodeOptions, RestartPolicy};

/// Arguments of `choria server`.
#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[command(subcommand)]
    command: ServerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum ServerCommand {
    /// Run the node agent.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Configuration file; `configure` writes here while provisioning.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Provisioning JWT (default /etc/choria/provisioning.jwt or
    /// plugin.choria.server.provision.jwt_file).
    #[arg(long)]
    provisioning_jwt: Option<PathBuf>,
    /// Identity when the configuration sets none (default: the host name).
    #[arg(long)]
    identity: Option<String>,
}

/// Runs `choria server`.
pub fn run(args: ServerArgs) -> anyhow::Result<ExitCode> {
    let ServerCommand::Run(run) = args.command;
    let config = run.config.clone().ok_or_else(|| {
        crate::Failure::usage("server run requires a configuration file (--config FILE)")
    })?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("could not start the async runtime")?;
    let exit = runtime.block_on(async {
        let cancel = CancellationToken::new();
        let signal = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            signal.cancel();
        });
        let node = Node::new(NodeOptions {
            config_file: config,
            provisioning_jwt: run.provisioning_jwt.clone(),
            identity: run.identity.clone(),
            restart: RestartPolicy::Exit,
        });
        node.run(cancel).await
    });
    runtime.shutdown_background();
    match exit.context("the node agent failed")? {
        NodeExit::Restart => Err(reexec()).context("could not re-execute the server"),
        NodeExit::Shutdown | NodeExit::Cancelled => Ok(ExitCode::SUCCESS),
    }
}

async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// Replaces this process with a fresh copy (same binary, argv and environment); only
/// returns on failure.
fn reexec() -> std::io::Error {
    use std::os::unix::process::CommandExt as _;
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(err) => return err,
    };
    let args: Vec<_> = std::env::args_os().skip(1).collect();
    tracing::info!(exe = %exe.display(), "restarting");
    std::process::Command::new(exe).args(args).exec()
}
