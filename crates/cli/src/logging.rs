//! Logging set-up shared by the binaries: human-readable on a terminal, JSON lines when
//! asked; `RUST_LOG` overrides the level.

use tracing_subscriber::EnvFilter;

/// Installs the global tracing subscriber (logs go to stderr) at `debug` when asked,
/// else at `quiet_level`.
pub fn init_with_default(json: bool, debug: bool, quiet_level: &str) {
    let default = if debug { "debug" } else { quiet_level };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

/// Installs the global tracing subscriber at `info` (or `debug` when asked).
pub fn init(json: bool, debug: bool) {
    init_with_default(json, debug, "info");
}
