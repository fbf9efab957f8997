//! The `choria-provisioner` command: the provisioning service.
//!
//! Exit codes: 0 clean shutdown; 1 the service failed or its configuration is invalid
//! (as upstream); 2 bad usage.

use std::process::ExitCode;

use clap::{CommandFactory as _, Parser};

use choria_cli::{logging, provisioner};

fn main() -> ExitCode {
    let args = provisioner::ProvisionerCli::parse();
    if let Some(kind) = args.generate {
        let cmd = provisioner::ProvisionerCli::command();
        return choria_cli::exit_code(choria_cli::generate::run(kind, cmd));
    }
    // The service logs where its configuration's `logfile` says, standard output by default
    // (upstream wrote to a file named "info" by accident, spec B4). The example helper
    // logs to standard error: its standard output is the helper protocol.
    let (output, level) = match args.command {
        Some(provisioner::Command::ExampleHelper(_)) => (logging::Output::Stderr, "info".into()),
        _ => provisioner::log_settings(&args),
    };
    if let Err(err) = logging::init_with(args.log_json, args.debug(), &level, output.clone()) {
        eprintln!("error: Provisioning could not be configured: logfile {output:?}: {err}");
        return ExitCode::from(1);
    }
    choria_cli::exit_code(provisioner::run(args))
}
