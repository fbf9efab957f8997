//! `choria demo`: parses the demo's flags, runs a whole site through `choria-demo`, and
//! prints progress, a one-line summary, and (with `--json`) the report as the last line.

use std::path::PathBuf;
use std::process::ExitCode;

use choria_demo::{Binaries, DemoOptions, Flow, HelperMode, Pacing, SiteOptions};

/// Arguments of `choria demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How many simulated nodes to provision.
    #[arg(long, default_value_t = 100)]
    pub nodes: usize,
    /// Keep the site in this directory (default: a temporary directory, removed afterwards).
    #[arg(long)]
    pub workdir: Option<PathBuf>,
    /// Helper command line the provisioners run (default: the built-in example helper).
    #[arg(long)]
    pub helper: Option<String>,
    /// How the helper is run: one process per node, or one long-running process (default:
    /// `exec` for a `--helper`, as upstream runs helpers; `persistent` for the built-in one).
    #[arg(long, value_enum)]
    pub helper_mode: Option<HelperModeArg>,
    /// Provisioning flow: ed25519 server JWTs, or X.509 certificates.
    #[arg(long, value_enum, default_value_t = FlowArg::Jwt)]
    pub flow: FlowArg,
    /// How many provisioners to run (more than one uses leader election).
    #[arg(long, default_value_t = 1)]
    pub provisioners: usize,
    /// Provisioning workers per provisioner.
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// Give up on nodes not in the fleet after this many seconds (default scales with --nodes).
    #[arg(long)]
    pub timeout: Option<u64>,
    /// Boot this many nodes a second, like machines coming up across a site (default: all
    /// at once, a power-on storm). Latency is measured from each node's own boot.
    #[arg(long, value_name = "NODES_PER_SECOND")]
    pub boot_rate: Option<u32>,
    /// Print the report as one JSON object on the last line.
    #[arg(long)]
    pub json: bool,
}

/// `--helper-mode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HelperModeArg {
    /// One helper process per node (upstream behaviour).
    Exec,
    /// One long-running helper speaking JSON lines.
    Persistent,
}

/// `--flow` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlowArg {
    /// ed25519 keys and server JWTs chained to the organisation issuer.
    Jwt,
    /// X.509 certificates signed by the site's node CA.
    Pki,
}

/// The helper mode to run: as asked, else `exec` for an external helper (upstream's helper
/// contract: one request on stdin, read to end of file) and `persistent` for the built-in one.
fn helper_mode(external: bool, asked: Option<HelperModeArg>) -> HelperMode {
    match asked {
        Some(HelperModeArg::Exec) => HelperMode::Exec,
        Some(HelperModeArg::Persistent) => HelperMode::Persistent,
        None if external => HelperMode::Exec,
        None => HelperMode::Persistent,
    }
}

/// Runs `choria demo`.
pub fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    if args.nodes == 0 {
        return Err(crate::Failure::usage("--nodes must be at least 1").into());
    }
    if args.provisioners == 0 {
        return Err(crate::Failure::usage("--provisioners must be at least 1").into());
    }
    if args.workers == 0 {
        return Err(crate::Failure::usage("--workers must be at least 1").into());
    }
    let choria = std::env::current_exe()?;
    let provisioner_binary = choria.with_file_name("choria-provisioner");
    let options = DemoOptions {
        nodes: args.nodes,
        workdir: args.workdir,
        site: SiteOptions {
            flow: match args.flow {
                FlowArg::Jwt => Flow::Jwt,
                FlowArg::Pki => Flow::Pki,
            },
            provisioners: args.provisioners,
            helper_mode: helper_mode(args.helper.is_some(), args.helper_mode),
            helper: args
                .helper
                .unwrap_or_else(|| choria_demo::helper::command_line(&provisioner_binary)),
            workers: args.workers,
        },
        pacing: Pacing {
            timeout: args.timeout.map(std::time::Duration::from_secs),
            boot_rate: args.boot_rate,
        },
        progress: !args.json,
        binaries: Binaries {
            choria,
            provisioner: provisioner_binary,
        },
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(choria_demo::run(options))?;
    eprintln!("{}", report.summary());
    if args.json {
        println!("{}", serde_json::to_string(&report)?);
    }
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_external_helper_runs_in_exec_mode_unless_asked_otherwise() {
        assert_eq!(helper_mode(true, None), HelperMode::Exec);
        assert_eq!(helper_mode(false, None), HelperMode::Persistent);
        assert_eq!(
            helper_mode(true, Some(HelperModeArg::Persistent)),
            HelperMode::Persistent
        );
        assert_eq!(
            helper_mode(false, Some(HelperModeArg::Exec)),
            HelperMode::Exec
        );
    }
}
