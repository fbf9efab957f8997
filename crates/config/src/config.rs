//! The Choria `key = value` configuration file: parsing, typed getters, building and rendering.
//! Every key is kept with where it came from, so errors and unknown-key reports name `path:line`.

use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use thiserror::Error;

use crate::duration::{parse_duration, DurationError};
use crate::files::{self, FileError};

/// Largest configuration file accepted (1 MiB); real ones are a few kilobytes.
pub const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// Words upstream accepts as true (compared case-insensitively).
pub const TRUE_WORDS: &[&str] = &["true", "yes", "y", "t", "on", "1"];
/// Words upstream accepts as false (compared case-insensitively).
pub const FALSE_WORDS: &[&str] = &["false", "no", "n", "f", "off", "0"];

/// Where a setting came from: a file (or other named origin) and a 1-based line, or code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// The origin given to the parser, usually the file path.
    pub origin: String,
    /// 1-based line number; `None` for values set with [`Config::set`].
    pub line: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{}", self.origin, line),
            None => write!(f, "{} (set in code)", self.origin),
        }
    }
}

/// Why a configuration could not be read, or a value could not be used.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// Reading the file failed (missing, unreadable, larger than [`MAX_CONFIG_BYTES`], ...).
    #[error(transparent)]
    File(#[from] FileError),
    /// Reading from a reader failed.
    #[error("could not read configuration {origin}: {source}")]
    Read {
        /// The origin named by the caller.
        origin: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The input was larger than [`MAX_CONFIG_BYTES`].
    #[error("configuration {origin} is larger than {max} bytes")]
    TooLarge {
        /// The origin named by the caller.
        origin: String,
        /// The limit.
        max: u64,
    },
    /// A line was not valid UTF-8.
    #[error("{location}: line is not valid UTF-8 text")]
    NotUtf8 {
        /// Where.
        location: Location,
    },
    /// A non-comment line had no `=`.
    #[error("{location}: expected `key = value`, found no `=` (comments start with # or ;)")]
    MissingEquals {
        /// Where.
        location: Location,
    },
    /// A line had nothing before the `=`, or a key given to [`Config::set`] was unusable.
    #[error("{location}: invalid key {key:?}: {reason}")]
    InvalidKey {
        /// The key text.
        key: String,
        /// Where.
        location: Location,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A value given to [`Config::set`] cannot be written as one line.
    #[error("value for {key} contains a line break or NUL and cannot be written to a config file")]
    UnwritableValue {
        /// The key.
        key: String,
    },
    /// A value could not be interpreted as the type the key needs.
    #[error("{location}: invalid value {value:?} for {key}: {reason}")]
    InvalidValue {
        /// The key.
        key: String,
        /// The value as written.
        value: String,
        /// Where.
        location: Location,
        /// What was expected.
        reason: String,
    },
    /// A duration value was malformed.
    #[error("{location}: invalid duration for {key}: {source}")]
    InvalidDuration {
        /// The key.
        key: String,
        /// Where.
        location: Location,
        /// The duration parser's verdict (it names the value).
        source: DurationError,
    },
}

/// One key as found: its value and location.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    key: String,
    value: String,
    line: Option<usize>,
}

/// A key reported by [`Config::unknown_keys`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownKey {
    /// The key as written.
    pub key: String,
    /// Where it was (last) set.
    pub location: Location,
}

impl fmt::Display for UnknownKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: unknown key {}", self.location, self.key)
    }
}

/// A parsed Choria configuration. Keys keep their first-seen order; the last value wins.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Config {
    origin: String,
    entries: Vec<Entry>,
    index: HashMap<String, usize>,
}

impl fmt::Debug for Config {
    // Values may be passwords or tokens, so Debug shows only the keys.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("origin", &self.origin)
            .field(
                "keys",
                &self.entries.iter().map(|e| &e.key).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Config {
    /// An empty configuration for building in code; its origin reads `<memory>`.
    pub fn new() -> Self {
        Self::with_origin("<memory>")
    }

    /// An empty configuration whose errors will name `origin`.
    pub fn with_origin(origin: &str) -> Self {
        Config {
            origin: origin.to_string(),
            entries: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// Reads and parses the file at `path` (at most [`MAX_CONFIG_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let bytes = files::read_capped(path, MAX_CONFIG_BYTES)?;
        Self::parse_bytes(&bytes, &path.display().to_string())
    }

    /// Parses configuration text from a reader; `origin` names it in errors (usually a path).
    pub fn parse_reader(reader: impl Read, origin: &str) -> Result<Self, ConfigError> {
        let mut bytes = Vec::new();
        reader
            .take(MAX_CONFIG_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|source| ConfigError::Read {
                origin: origin.to_string(),
                source,
            })?;
        if bytes.len() as u64 > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge {
                origin: origin.to_string(),
                max: MAX_CONFIG_BYTES,
            });
        }
        Self::parse_bytes(&bytes, origin)
    }

    /// Parses configuration text held in a string.
    pub fn parse_str(text: &str, origin: &str) -> Result<Self, ConfigError> {
        Self::parse_reader(text.as_bytes(), origin)
    }

    fn parse_bytes(bytes: &[u8], origin: &str) -> Result<Self, ConfigError> {
        let mut config = Self::with_origin(origin);
        let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
        for (n, raw) in bytes.split(|b| *b == b'\n').enumerate() {
            let line_no = n + 1;
            let location = || Location {
                origin: origin.to_string(),
                line: Some(line_no),
            };
            let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
            let line = std::str::from_utf8(raw).map_err(|_| ConfigError::NotUtf8 {
                location: location(),
            })?;
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            let Some((key, value)) = line.split_once('=') else {
                return Err(ConfigError::MissingEquals {
                    location: location(),
                });
            };
            let key = key.trim();
            check_key(key).map_err(|reason| ConfigError::InvalidKey {
                key: key.to_string(),
                location: location(),
                reason,
            })?;
            if value.contains('\0') {
                return Err(ConfigError::InvalidValue {
                    key: key.to_string(),
                    value: value.replace('\0', "\\0"),
                    location: location(),
                    reason: "values may not contain NUL bytes".to_string(),
                });
            }
            config.insert(key, value.trim(), Some(line_no));
        }
        Ok(config)
    }

    /// Sets `key` to `value` (replacing any earlier value). Refuses keys and values that could
    /// not be written back as a single `key = value` line, so untrusted input cannot inject
    /// extra settings into a rendered file.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        check_key(key).map_err(|reason| ConfigError::InvalidKey {
            key: key.to_string(),
            location: self.code_location(),
            reason,
        })?;
        if value.contains(['\n', '\r', '\0']) {
            return Err(ConfigError::UnwritableValue {
                key: key.to_string(),
            });
        }
        self.insert(key, value.trim(), None);
        Ok(())
    }

    /// Removes `key`, returning its value if it was set.
    pub fn remove(&mut self, key: &str) -> Option<String> {
        let idx = self.index.remove(key)?;
        let entry = self.entries.remove(idx);
        for slot in self.index.values_mut() {
            if *slot > idx {
                *slot -= 1;
            }
        }
        Some(entry.value)
    }

    /// The origin given when parsing (usually the file path).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no key is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `key` is present (even with an empty value).
    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// All `(key, value)` pairs in first-seen order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|e| (e.key.as_str(), e.value.as_str()))
    }

    /// Keys starting with `prefix`, in first-seen order (for dynamic keys such as
    /// `plugin.choria.network.gateway_remote.<R>.urls`).
    pub fn keys_with_prefix<'a>(&'a self, prefix: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .map(|e| e.key.as_str())
            .filter(move |k| k.starts_with(prefix))
    }

    /// Where `key` was (last) set, if it is present.
    pub fn location(&self, key: &str) -> Option<Location> {
        self.entry(key).map(|e| self.location_of(e))
    }

    /// Keys matching none of `known`, with their locations, in first-seen order.
    ///
    /// A pattern is matched segment by segment (segments are separated by `.`): a `*` segment
    /// matches exactly one segment, and a trailing `*` segment matches one or more, so
    /// `plugin.security.issuer.*.public` and `plugin.choria.network.gateway_remote.*` work.
    pub fn unknown_keys(&self, known: &[&str]) -> Vec<UnknownKey> {
        self.entries
            .iter()
            .filter(|e| !known.iter().any(|p| key_matches(p, &e.key)))
            .map(|e| UnknownKey {
                key: e.key.clone(),
                location: self.location_of(e),
            })
            .collect()
    }

    /// The raw value of `key`, trimmed; `None` when absent.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.entry(key).map(|e| e.value.as_str())
    }

    /// The value of `key` as a string; an empty value counts as set.
    pub fn get_string(&self, key: &str) -> Option<String> {
        self.get(key).map(str::to_string)
    }

    /// The value of `key`, or `default` when absent or empty.
    pub fn get_string_or(&self, key: &str, default: &str) -> String {
        match self.get(key) {
            Some(v) if !v.is_empty() => v.to_string(),
            _ => default.to_string(),
        }
    }

    /// A boolean: see [`TRUE_WORDS`] and [`FALSE_WORDS`]. Absent or empty gives `None`.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        let Some(entry) = self.non_empty(key) else {
            return Ok(None);
        };
        parse_bool(&entry.value).map(Some).ok_or_else(|| {
            self.invalid(
                entry,
                "expected a boolean: true/false, yes/no, on/off, 1/0".into(),
            )
        })
    }

    /// [`Config::get_bool`] with a default.
    pub fn get_bool_or(&self, key: &str, default: bool) -> Result<bool, ConfigError> {
        Ok(self.get_bool(key)?.unwrap_or(default))
    }

    /// An integer (any primitive integer type) that must lie in `range`. Absent or empty
    /// gives `None`.
    pub fn get_int<T>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<Option<T>, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        let Some(entry) = self.non_empty(key) else {
            return Ok(None);
        };
        let expected = || {
            format!(
                "expected a whole number from {} to {}",
                range.start(),
                range.end()
            )
        };
        match entry.value.parse::<T>() {
            Ok(v) if range.contains(&v) => Ok(Some(v)),
            _ => Err(self.invalid(entry, expected())),
        }
    }

    /// [`Config::get_int`] with a default (which is not range-checked).
    pub fn get_int_or<T>(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<T>,
        default: T,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
    {
        Ok(self.get_int(key, range)?.unwrap_or(default))
    }

    /// A comma-separated list: entries trimmed, empty entries dropped. Absent gives `None`;
    /// present but empty gives an empty list.
    pub fn get_list(&self, key: &str) -> Option<Vec<String>> {
        self.get(key).map(split_list)
    }

    /// [`Config::get_list`], absent giving an empty list.
    pub fn get_list_or_empty(&self, key: &str) -> Vec<String> {
        self.get_list(key).unwrap_or_default()
    }

    /// A duration (see [`crate::duration`]). Absent or empty gives `None`.
    pub fn get_duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let Some(entry) = self.non_empty(key) else {
            return Ok(None);
        };
        parse_duration(&entry.value)
            .map(Some)
            .map_err(|source| ConfigError::InvalidDuration {
                key: entry.key.clone(),
                location: self.location_of(entry),
                source,
            })
    }

    /// [`Config::get_duration`] with a default.
    pub fn get_duration_or(&self, key: &str, default: Duration) -> Result<Duration, ConfigError> {
        Ok(self.get_duration(key)?.unwrap_or(default))
    }

    /// A duration that must lie in `range` (for example a timeout of at most 60s).
    pub fn get_duration_in(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<Duration>,
    ) -> Result<Option<Duration>, ConfigError> {
        let value = self.get_duration(key)?;
        match (value, self.entry(key)) {
            (Some(d), Some(entry)) if !range.contains(&d) => Err(self.invalid(
                entry,
                format!(
                    "must be from {} to {}",
                    crate::duration::format_duration(*range.start()),
                    crate::duration::format_duration(*range.end())
                ),
            )),
            _ => Ok(value),
        }
    }

    /// A filesystem path. `~/` is not expanded (upstream does not either). Absent or empty
    /// gives `None`.
    pub fn get_path(&self, key: &str) -> Result<Option<PathBuf>, ConfigError> {
        Ok(self.non_empty(key).map(|e| PathBuf::from(&e.value)))
    }

    /// [`Config::get_path`] with a default.
    pub fn get_path_or(&self, key: &str, default: &Path) -> Result<PathBuf, ConfigError> {
        Ok(self.get_path(key)?.unwrap_or_else(|| default.to_path_buf()))
    }

    /// Renders the configuration as `key = value` lines in first-seen order, preceded by
    /// `header` lines as `#` comments. The output parses back to an equal configuration.
    pub fn render(&self, header: Option<&str>) -> String {
        let mut out = String::new();
        if let Some(header) = header {
            for line in header.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        for e in &self.entries {
            out.push_str(&e.key);
            out.push_str(" = ");
            out.push_str(&e.value);
            out.push('\n');
        }
        out
    }

    /// Writes [`Config::render`] to `path` atomically with mode 0600 (configs may hold
    /// passwords and token paths).
    pub fn write_secret(&self, path: &Path, header: Option<&str>) -> Result<(), ConfigError> {
        files::write_secret(path, self.render(header).as_bytes())?;
        Ok(())
    }

    fn insert(&mut self, key: &str, value: &str, line: Option<usize>) {
        match self.index.get(key) {
            Some(&idx) => {
                let entry = &mut self.entries[idx];
                entry.value = value.to_string();
                entry.line = line;
            }
            None => {
                self.index.insert(key.to_string(), self.entries.len());
                self.entries.push(Entry {
                    key: key.to_string(),
                    value: value.to_string(),
                    line,
                });
            }
        }
    }

    fn entry(&self, key: &str) -> Option<&Entry> {
        self.index.get(key).and_then(|&i| self.entries.get(i))
    }

    fn non_empty(&self, key: &str) -> Option<&Entry> {
        self.entry(key).filter(|e| !e.value.is_empty())
    }

    fn location_of(&self, entry: &Entry) -> Location {
        Location {
            origin: self.origin.clone(),
            line: entry.line,
        }
    }

    fn code_location(&self) -> Location {
        Location {
            origin: self.origin.clone(),
            line: None,
        }
    }

    fn invalid(&self, entry: &Entry, reason: String) -> ConfigError {
        ConfigError::InvalidValue {
            key: entry.key.clone(),
            value: entry.value.clone(),
            location: self.location_of(entry),
            reason,
        }
    }
}

/// Interprets an upstream boolean word; `None` when it is neither true nor false.
pub fn parse_bool(value: &str) -> Option<bool> {
    let v = value.trim();
    if TRUE_WORDS.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(true)
    } else if FALSE_WORDS.iter().any(|w| w.eq_ignore_ascii_case(v)) {
        Some(false)
    } else {
        None
    }
}

/// Splits a comma-separated list, trimming entries and dropping empty ones.
pub fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn check_key(key: &str) -> Result<(), &'static str> {
    if key.is_empty() {
        return Err("a key is required before `=`");
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("keys may not contain spaces or control characters");
    }
    if key.contains('=') {
        return Err("keys may not contain `=`");
    }
    if key.starts_with('#') || key.starts_with(';') {
        return Err("keys may not start with a comment character");
    }
    Ok(())
}

fn key_matches(pattern: &str, key: &str) -> bool {
    if !pattern.contains('*') {
        return pattern == key;
    }
    let pat: Vec<&str> = pattern.split('.').collect();
    let parts: Vec<&str> = key.split('.').collect();
    for (i, p) in pat.iter().enumerate() {
        let last = i + 1 == pat.len();
        if *p == "*" && last {
            return parts.len() > i && parts[i..].iter().all(|s| !s.is_empty());
        }
        match parts.get(i) {
            Some(s) if *p == "*" && !s.is_empty() => {}
            Some(s) if s == p => {}
            _ => return false,
        }
    }
    parts.len() == pat.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Config {
        Config::parse_str(text, "test.cfg").unwrap()
    }

    #[test]
    fn parses_comments_blank_lines_and_spacing() {
        let c = parse(
            "# comment\n; other comment\n\n  identity   =  n1.example.net  \nloglevel=debug\r\n  # indented\nempty =\nurl = nats://a:4222?x=y\n",
        );
        assert_eq!(c.get("identity"), Some("n1.example.net"));
        assert_eq!(c.get("loglevel"), Some("debug"));
        assert_eq!(c.get("empty"), Some(""));
        assert_eq!(c.get("url"), Some("nats://a:4222?x=y"));
        assert_eq!(c.get("missing"), None);
        assert_eq!(c.len(), 4);
        assert_eq!(c.location("loglevel").unwrap().to_string(), "test.cfg:5");
    }

    #[test]
    fn last_value_wins_and_keeps_first_position() {
        let c = parse("a = 1\nb = 2\na = 3\n");
        assert_eq!(c.get("a"), Some("3"));
        assert_eq!(c.location("a").unwrap().line, Some(3));
        assert_eq!(c.iter().collect::<Vec<_>>(), vec![("a", "3"), ("b", "2")]);
    }

    #[test]
    fn line_without_equals_names_path_and_line() {
        let err =
            Config::parse_str("a = 1\n\njust words\n", "/etc/choria/server.conf").unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingEquals { location } if location.line == Some(3))
        );
        assert!(
            err.to_string().starts_with("/etc/choria/server.conf:3:"),
            "{err}"
        );
    }

    #[test]
    fn empty_key_is_an_error() {
        let err = Config::parse_str(" = value\n", "f").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidKey { .. }), "{err}");
        let err = Config::parse_str("two words = value\n", "f").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidKey { .. }), "{err}");
    }

    #[test]
    fn invalid_utf8_names_line() {
        let err = Config::parse_reader(&b"a = 1\nb = \xff\n"[..], "f").unwrap_err();
        assert!(matches!(err, ConfigError::NotUtf8 { location } if location.line == Some(2)));
    }

    #[test]
    fn size_is_capped() {
        let big = vec![b'#'; MAX_CONFIG_BYTES as usize + 1];
        let err = Config::parse_reader(&big[..], "big").unwrap_err();
        assert!(matches!(err, ConfigError::TooLarge { .. }));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.conf");
        std::fs::write(&path, &big).unwrap();
        let err = Config::load(&path).unwrap_err();
        assert!(
            matches!(err, ConfigError::File(FileError::TooLarge { .. })),
            "{err}"
        );
    }

    #[test]
    fn load_reads_a_file_and_names_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        std::fs::write(&path, "identity = x\nport = nope\n").unwrap();
        let c = Config::load(&path).unwrap();
        assert_eq!(c.get("identity"), Some("x"));
        let err = c.get_int::<u16>("port", 1..=65535).unwrap_err();
        assert!(
            err.to_string().contains(&format!("{}:2", path.display())),
            "{err}"
        );
        let err = Config::load(&dir.path().join("missing.conf")).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::File(FileError::Io { op: "open", .. })
        ));
    }

    #[test]
    fn booleans_accept_upstream_words() {
        let c = parse("a = yes\nb = OFF\nc = True\nd = 0\ne = maybe\nf =\ng = Y\nh = f\n");
        assert_eq!(c.get_bool("a").unwrap(), Some(true));
        assert_eq!(c.get_bool("b").unwrap(), Some(false));
        assert_eq!(c.get_bool("c").unwrap(), Some(true));
        assert_eq!(c.get_bool("d").unwrap(), Some(false));
        assert_eq!(c.get_bool("f").unwrap(), None);
        assert_eq!(c.get_bool("g").unwrap(), Some(true));
        assert_eq!(c.get_bool("h").unwrap(), Some(false));
        assert_eq!(c.get_bool("zz").unwrap(), None);
        assert!(c.get_bool_or("zz", true).unwrap());
        let err = c.get_bool("e").unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, ConfigError::InvalidValue { ref key, ref value, .. } if key == "e" && value == "maybe")
        );
        assert!(
            text.contains("test.cfg:5") && text.contains("\"maybe\""),
            "{text}"
        );
    }

    #[test]
    fn integers_are_range_checked() {
        let c = parse("port = 4222\nbig = 70000\nneg = -1\nword = x\n");
        assert_eq!(c.get_int::<u16>("port", 1..=65535).unwrap(), Some(4222));
        assert!(c.get_int::<u16>("big", 1..=65535).is_err());
        assert!(c.get_int::<i64>("big", 0..=1000).is_err());
        assert_eq!(c.get_int::<i64>("neg", -1..=10).unwrap(), Some(-1));
        assert!(c.get_int::<u32>("neg", 0..=10).is_err());
        let err = c.get_int::<u32>("word", 0..=10).unwrap_err();
        assert!(err.to_string().contains("from 0 to 10"), "{err}");
        assert_eq!(c.get_int_or::<u16>("none", 1..=65535, 4222).unwrap(), 4222);
    }

    #[test]
    fn lists_are_trimmed_and_drop_empty_entries() {
        let c = parse("l = a, b ,,c ,\nempty =\n");
        assert_eq!(c.get_list("l").unwrap(), vec!["a", "b", "c"]);
        assert_eq!(c.get_list("empty").unwrap(), Vec::<String>::new());
        assert_eq!(c.get_list("none"), None);
        assert!(c.get_list_or_empty("none").is_empty());
    }

    #[test]
    fn durations_and_paths() {
        let c = parse("t = 2s\nv = 1y\nbad = 5x\np = /etc/choria/x\ntoo_long = 2m\n");
        assert_eq!(c.get_duration("t").unwrap(), Some(Duration::from_secs(2)));
        assert_eq!(
            c.get_duration("v").unwrap(),
            Some(Duration::from_secs(365 * 86400))
        );
        let err = c.get_duration("bad").unwrap_err();
        assert!(matches!(err, ConfigError::InvalidDuration { .. }));
        let text = err.to_string();
        assert!(
            text.contains("test.cfg:3") && text.contains("bad") && text.contains("5x"),
            "{text}"
        );
        assert_eq!(
            c.get_duration_or("none", Duration::from_secs(9)).unwrap(),
            Duration::from_secs(9)
        );
        let max = Duration::from_secs(0)..=Duration::from_secs(60);
        assert!(c.get_duration_in("t", max.clone()).is_ok());
        assert!(c.get_duration_in("too_long", max).is_err());
        assert_eq!(
            c.get_path("p").unwrap(),
            Some(PathBuf::from("/etc/choria/x"))
        );
        assert_eq!(
            c.get_path_or("none", Path::new("/d")).unwrap(),
            PathBuf::from("/d")
        );
    }

    #[test]
    fn unknown_keys_support_patterns() {
        let c = parse(
            "identity = x\nplugin.security.issuer.names = o\nplugin.security.issuer.o.public = ab\nplugin.security.issuer.o.extra = 1\ntypo = 1\nplugin.choria.network.gateway_remote.r1.tls.ca = f\n",
        );
        let unknown = c.unknown_keys(&[
            "identity",
            "plugin.security.issuer.names",
            "plugin.security.issuer.*.public",
            "plugin.choria.network.gateway_remote.*",
        ]);
        let keys: Vec<_> = unknown
            .iter()
            .map(|u| (u.key.as_str(), u.location.line))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("plugin.security.issuer.o.extra", Some(4)),
                ("typo", Some(5))
            ]
        );
        assert_eq!(unknown[1].to_string(), "test.cfg:5: unknown key typo");
        assert!(key_matches("a.*", "a.b.c"));
        assert!(!key_matches("a.*", "a"));
        assert!(!key_matches("a.*.c", "a.b.d"));
        assert!(!key_matches("a.*.c", "a..c"));
    }

    #[test]
    fn set_render_and_reparse() {
        let mut c = Config::new();
        c.set("identity", "n1").unwrap();
        c.set(
            "plugin.choria.middleware_hosts",
            "nats://b:4222, nats://c:4222",
        )
        .unwrap();
        c.set("identity", "n2").unwrap();
        assert!(matches!(
            c.set("x", "a\nevil = 1"),
            Err(ConfigError::UnwritableValue { .. })
        ));
        assert!(matches!(
            c.set("bad key", "v"),
            Err(ConfigError::InvalidKey { .. })
        ));
        assert!(matches!(
            c.set("", "v"),
            Err(ConfigError::InvalidKey { .. })
        ));
        let text = c.render(Some("written by test\nsecond line"));
        assert_eq!(
            text,
            "# written by test\n# second line\nidentity = n2\nplugin.choria.middleware_hosts = nats://b:4222, nats://c:4222\n"
        );
        let back = Config::parse_str(&text, "x").unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            c.iter().collect::<Vec<_>>()
        );
        assert_eq!(c.remove("identity"), Some("n2".into()));
        assert_eq!(
            c.get_list("plugin.choria.middleware_hosts"),
            Some(vec![
                "nats://b:4222".to_string(),
                "nats://c:4222".to_string()
            ])
        );
        assert!(!c.contains("identity"));
        assert_eq!(c.keys_with_prefix("plugin.").count(), 1);
        let loc = c.location("plugin.choria.middleware_hosts").unwrap();
        assert_eq!(loc.to_string(), "<memory> (set in code)");
    }

    #[test]
    fn write_secret_writes_0600_and_reparses() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.conf");
        let mut c = Config::new();
        c.set(
            "plugin.choria.network.provisioning.client_password",
            "s3cret",
        )
        .unwrap();
        c.write_secret(&path, Some("configuration written in request 1"))
            .unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let back = Config::load(&path).unwrap();
        assert_eq!(
            back.get("plugin.choria.network.provisioning.client_password"),
            Some("s3cret")
        );
    }

    #[test]
    fn debug_does_not_print_values() {
        let c = parse("password = hunter2\n");
        let shown = format!("{c:?}");
        assert!(
            shown.contains("password") && !shown.contains("hunter2"),
            "{shown}"
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for _ in 0..2_000 {
            let mut bytes = Vec::with_capacity(256);
            for _ in 0..256 {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                bytes.push((seed >> 24) as u8);
            }
            let _ = Config::parse_reader(&bytes[..], "fuzz");
        }
    }

    #[test]
    fn random_bytes_never_panic_and_rendered_output_reparses() {
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let alphabet = b"ab.=# ;\n\r\t\xff\xc3\xa9*0";
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 64) as usize;
            let mut s = seed;
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    alphabet[(s >> 33) as usize % alphabet.len()]
                })
                .collect();
            if let Ok(c) = Config::parse_reader(&bytes[..], "fuzz") {
                let again = Config::parse_str(&c.render(None), "fuzz").unwrap();
                assert_eq!(
                    again.iter().collect::<Vec<_>>(),
                    c.iter().collect::<Vec<_>>()
                );
                for (k, _) in c.iter() {
                    let _ = c.get_bool(k);
                    let _ = c.get_int::<i64>(k, 0..=10);
                    let _ = c.get_duration(k);
                    let _ = c.get_list(k);
                }
            }
        }
    }
}
