//! The command line front ends: each module parses one subcommand's arguments, calls
//! the library crates and prints. No protocol or policy logic lives here.

pub mod broker;
pub mod buildinfo;
pub mod demo;
pub mod generate;
pub mod jwt;
pub mod logging;
pub mod provisioner;
pub mod server;

use std::process::ExitCode;

/// `--version` of both binaries: the crate version, the commit and the build date.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (commit ",
    env!("CHORIA_BUILD_COMMIT"),
    ", built ",
    env!("CHORIA_BUILD_DATE"),
    ")"
);

/// A failure that carries the exit code it should produce.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Failure {
    /// The exit code (1 = ran and failed, 2 = usage or configuration).
    pub code: u8,
    /// What went wrong, for the operator.
    pub message: String,
}

impl Failure {
    /// A usage or configuration error (exit 2).
    pub fn usage(message: impl Into<String>) -> Failure {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
    /// The command ran and failed (exit 1).
    pub fn failed(message: impl Into<String>) -> Failure {
        Failure {
            code: 1,
            message: message.into(),
        }
    }
}

/// Maps a command's result to the process exit code, printing the error chain.
pub fn exit_code(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(err) => {
            if is_broken_pipe(&err) {
                return ExitCode::SUCCESS;
            }
            eprintln!("error: {err:#}");
            let code = err
                .downcast_ref::<Failure>()
                .map(|failure| failure.code)
                .unwrap_or(1);
            ExitCode::from(code)
        }
    }
}

fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}
