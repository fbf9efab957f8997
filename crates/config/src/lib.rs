//! Choria `key = value` configuration files, Choria duration strings and crash-safe file writes.
//! Shared by the broker, the node agent, the provisioner and the CLI.
//!
//! # Layout
//! - [`config`]: [`Config`] parses `key = value` text (comments with `#` or `;`, last value
//!   wins, every key kept with its `path:line`), offers typed getters that return
//!   `Result<Option<T>, ConfigError>`, reports unknown keys and renders back to text.
//! - [`duration`]: [`parse_duration`] for Go durations plus `d`, `w`, `M`, `y`.
//! - [`files`]: [`files::write_atomic`], [`files::write_secret`], [`files::write_new_secret`]
//!   and [`files::read_capped`], used by every component for state and secrets.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use choria_config::Config;
//!
//! let text = "# broker\nplugin.choria.network.client_port = 4222\nplugin.choria.network.tls_timeout = 5s\n";
//! let cfg = Config::parse_str(text, "broker.conf")?;
//! assert_eq!(cfg.get_int::<u16>("plugin.choria.network.client_port", 1..=65535)?, Some(4222));
//! assert_eq!(
//!     cfg.get_duration_or("plugin.choria.network.tls_timeout", Duration::from_secs(2))?,
//!     Duration::from_secs(5)
//! );
//! assert!(cfg.unknown_keys(&["plugin.choria.network.*"]).is_empty());
//! # Ok::<(), choria_config::ConfigError>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod config;
pub mod duration;
pub mod files;

pub use config::{
    parse_bool, split_list, Config, ConfigError, Location, UnknownKey, MAX_CONFIG_BYTES,
};
pub use duration::{format_duration, parse_duration, parse_duration_upstream, DurationError};
pub use files::FileError;
