//! Logging set-up shared by the binaries: human-readable on a terminal, JSON lines when
//! asked; `RUST_LOG` overrides the level.

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Standard error: commands whose stdout is their result.
    Stderr,
    /// Standard output: services, whose supervisors collect stdout.
    Stdout,
}

/// Installs the global tracing subscriber at `debug` when asked, else at `level`.
pub fn init_with(json: bool, debug: bool, level: &str, output: Output) {
    let default = if debug { "debug" } else { level };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let writer = match output {
        Output::Stderr => BoxMakeWriter::new(std::io::stderr),
        Output::Stdout => BoxMakeWriter::new(std::io::stdout),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the global tracing subscriber at `info` on stderr.
pub fn init(json: bool, debug: bool) {
    init_with(json, debug, "info", Output::Stderr);
}
