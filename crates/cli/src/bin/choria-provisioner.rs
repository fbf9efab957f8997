//! The `choria-provisioner` command: the provisioning service.
//!
//! Exit codes: 0 clean shutdown; 1 the service failed; 2 bad usage or configuration.

use std::process::ExitCode;

use clap::Parser;

use choria_cli::{logging, provisioner};

fn main() -> ExitCode {
    let args = provisioner::ProvisionerCli::parse();
    logging::init(args.log_json, args.debug());
    choria_cli::exit_code(provisioner::run(args))
}
