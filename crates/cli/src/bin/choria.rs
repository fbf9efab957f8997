//! The `choria` command: tokens, broker, node agent and the whole-site demo.
//!
//! Exit codes: 0 success; 1 the command ran and failed (a token did not validate, a
//! node did not come back); 2 bad usage or configuration.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser, Subcommand};

use choria_cli::generate::{self, Generate};
use choria_cli::{broker, buildinfo, demo, jwt, logging, server};

#[derive(Debug, Parser)]
#[command(
    name = "choria",
    version = choria_cli::VERSION,
    about = "Choria provisioning in Rust",
    after_help = "Example:\n  choria demo --nodes 100        a whole site on this machine, provisioned end to end"
)]
struct Cli {
    /// Log as JSON lines instead of human-readable text.
    #[arg(long, global = true)]
    log_json: bool,
    /// Log at debug level.
    #[arg(long, global = true)]
    debug: bool,
    /// Print a man page or shell completions made from these definitions, then exit.
    #[arg(long, value_enum, value_name = "KIND")]
    generate: Option<Generate>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create, view and check Choria JWTs and ed25519 keys.
    Jwt(Box<jwt::JwtArgs>),
    /// Run the Choria broker (nats-server plus the authorization service).
    Broker(broker::BrokerArgs),
    /// Run a Choria server (node agent).
    Server(server::ServerArgs),
    /// Show how this build of the node agent is configured.
    Buildinfo(buildinfo::BuildinfoArgs),
    /// Run a whole site on this machine and provision a simulated fleet end to end.
    Demo(demo::DemoArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(kind) = cli.generate {
        return choria_cli::exit_code(generate::run(kind, Cli::command()));
    }
    let Some(command) = cli.command else {
        Cli::command()
            .error(
                clap::error::ErrorKind::MissingSubcommand,
                "a subcommand is required (see --help)",
            )
            .exit()
    };
    // The demo runs thousands of nodes in this process: only their problems are news. The
    // NATS client's own reports of refused or dropped connections are expected while the
    // broker starts and nodes restart; the demo reports each node that does not come back.
    let quiet_level = match &command {
        Command::Demo(_) => "warn,async_nats=off",
        // One-shot commands print their answer; the NATS client's connection chatter is
        // not part of it.
        Command::Broker(b) if b.is_one_shot() => "info,async_nats=warn",
        _ => "info",
    };
    // Standard error cannot fail to open.
    let _ = logging::init_with(
        cli.log_json,
        cli.debug,
        quiet_level,
        logging::Output::Stderr,
    );
    if matches!(command, Command::Server(_) | Command::Demo(_)) {
        // Nodes and the demo's fleet client bring their own trust roots. Still
        // single-threaded here, as setting the environment requires.
        choria_server::connection::skip_unused_system_roots();
    }
    let result = match command {
        Command::Jwt(args) => jwt::run(*args),
        Command::Broker(args) => broker::run(args),
        Command::Server(args) => server::run(args),
        Command::Buildinfo(args) => buildinfo::run(args),
        Command::Demo(args) => demo::run(args),
    };
    choria_cli::exit_code(result)
}
