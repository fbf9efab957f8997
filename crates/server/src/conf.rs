//! The node's view of its Choria configuration file: loading the keys it acts on, and
//! writing the file `configure`/`reprovision` produce (spec §4.11).

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use choria_config::{Config, ConfigError};

use crate::agents::provision::RequestInfo;

/// Errors loading or writing a configuration file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfError {
    /// Reading or parsing failed.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A key or value cannot be written as one `key=value` line.
    #[error("invalid configuration entry {key:?}: {reason}")]
    BadEntry {
        /// The key.
        key: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// Writing the file failed.
    #[error("could not write {path}: {reason}")]
    Write {
        /// The target.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

/// Loads and parses the configuration at `path`.
pub fn load(path: &Path) -> Result<Config, ConfError> {
    Ok(Config::load(path)?)
}

/// `plugin.choria.server.provision` of `config`, when set to a valid boolean.
pub fn provision_enabled(config: &Config) -> Option<bool> {
    config
        .get_bool("plugin.choria.server.provision")
        .ok()
        .flatten()
}

/// Renders the file `configure` writes: a header naming the request, then one
/// `key=value` line per entry. Entries that would break the line format are refused.
pub fn render(
    settings: &BTreeMap<String, String>,
    request: &RequestInfo,
) -> Result<String, ConfError> {
    let now = time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let mut text = format!(
        "# configuration file written in request {} from {} ({}) at {now}\n",
        one_line(&request.request_id),
        one_line(&request.caller),
        one_line(&request.sender)
    );
    for (key, value) in settings {
        let bad = |reason| ConfError::BadEntry {
            key: key.clone(),
            reason,
        };
        if key.trim().is_empty() {
            return Err(bad("empty key"));
        }
        if key.contains(['=', '\n', '\r', '\0']) || key.trim() != key || key.starts_with(['#', ';'])
        {
            return Err(bad(
                "keys must be one word without '=', comments or line breaks",
            ));
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(bad("values must not contain line breaks"));
        }
        text.push_str(key);
        text.push('=');
        text.push_str(value);
        text.push('\n');
    }
    Ok(text)
}

/// Writes configuration text over `path` (following a symlink at `path` to its target),
/// atomically with mode 0600, after checking it parses.
pub fn write_config(path: &Path, text: &str) -> Result<(), ConfError> {
    Config::parse_str(text, &path.display().to_string()).map_err(|err| ConfError::Write {
        path: path.to_path_buf(),
        reason: format!("generated configuration could not be parsed: {err}"),
    })?;
    let target = match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            fs::canonicalize(path).map_err(|err| ConfError::Write {
                path: path.to_path_buf(),
                reason: format!("could not resolve symlink: {err}"),
            })?
        }
        _ => path.to_path_buf(),
    };
    choria_config::files::write_atomic(&target, text.as_bytes(), choria_config::files::SECRET_MODE)
        .map_err(|err| ConfError::Write {
            path: target.clone(),
            reason: err.to_string(),
        })
}

fn one_line(text: &str) -> String {
    text.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> RequestInfo {
        RequestInfo {
            request_id: "r1".into(),
            sender: "prov".into(),
            caller: "choria=prov".into(),
        }
    }

    #[test]
    fn round_trips_what_it_renders() {
        let mut settings = BTreeMap::new();
        settings.insert("identity".to_string(), "n1.example.net".to_string());
        settings.insert(
            "plugin.choria.server.provision".to_string(),
            "false".to_string(),
        );
        let text = render(&settings, &request()).unwrap();
        assert!(text
            .starts_with("# configuration file written in request r1 from choria=prov (prov) at "));
        let conf = Config::parse_str(&text, "x").unwrap();
        assert_eq!(conf.get("identity"), Some("n1.example.net"));
        assert_eq!(provision_enabled(&conf), Some(false));
    }

    #[test]
    fn refuses_entries_that_would_inject_lines() {
        let mut settings = BTreeMap::new();
        settings.insert(
            "identity".to_string(),
            "x\nplugin.choria.server.provision=1".to_string(),
        );
        assert!(matches!(
            render(&settings, &request()),
            Err(ConfError::BadEntry { .. })
        ));
        let mut settings = BTreeMap::new();
        settings.insert("a=b".to_string(), "1".to_string());
        assert!(matches!(
            render(&settings, &request()),
            Err(ConfError::BadEntry { .. })
        ));
    }

    #[test]
    fn writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.conf");
        let link = dir.path().join("server.conf");
        fs::write(&real, "old=1\n").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_config(&link, "new=2\n").unwrap();
        assert_eq!(fs::read_to_string(&real).unwrap(), "new=2\n");
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
    }
}
