//! Logging set-up shared by the binaries: human-readable on a terminal, JSON lines when
//! asked or when writing to a file; `RUST_LOG` overrides the level.

use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::Arc;

use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::EnvFilter;

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Standard error: commands whose stdout is their result.
    Stderr,
    /// Standard output: services, whose supervisors collect stdout.
    Stdout,
    /// Appended to a file, as JSON lines (upstream's `logfile`).
    File(PathBuf),
    /// Nowhere.
    Discard,
}

/// Installs the global tracing subscriber at `debug` when asked, else at `level`.
///
/// Fails only when a log file cannot be opened.
pub fn init_with(json: bool, debug: bool, level: &str, output: Output) -> std::io::Result<()> {
    let default = if debug { "debug" } else { level };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Colour follows tracing's default (on unless NO_COLOR is set), never into a file.
    let (writer, json, plain) = match output {
        Output::Stderr => (BoxMakeWriter::new(std::io::stderr), json, false),
        Output::Stdout => (BoxMakeWriter::new(std::io::stdout), json, false),
        Output::Discard => (BoxMakeWriter::new(std::io::sink), json, true),
        Output::File(path) => {
            // Logs name nodes and callers but never secrets; still not world-readable.
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o640)
                .open(&path)?;
            (BoxMakeWriter::new(Arc::new(file)), true, true)
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let builder = if plain {
        builder.with_ansi(false)
    } else {
        builder
    };
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
    Ok(())
}

/// Installs the global tracing subscriber at `info` on stderr.
pub fn init(json: bool, debug: bool) {
    // Standard error cannot fail to open.
    let _ = init_with(json, debug, "info", Output::Stderr);
}
