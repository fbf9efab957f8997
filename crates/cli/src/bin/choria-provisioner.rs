//! The `choria-provisioner` command: the provisioning service.
//!
//! Exit codes: 0 clean shutdown; 1 the service failed or its configuration is invalid
//! (as upstream); 2 bad usage.

use std::process::ExitCode;

use clap::Parser;

use choria_cli::{logging, provisioner};

fn main() -> ExitCode {
    let args = provisioner::ProvisionerCli::parse();
    // The service logs to stdout, where supervisors collect it (upstream wrote to a
    // file named "info" by accident, spec B4); the helper's stdout is its protocol.
    let output = match args.command {
        Some(provisioner::Command::ExampleHelper(_)) => logging::Output::Stderr,
        _ => logging::Output::Stdout,
    };
    logging::init_with(args.log_json, args.debug(), "info", output);
    choria_cli::exit_code(provisioner::run(args))
}
