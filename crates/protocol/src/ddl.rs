//! Agent DDLs in upstream JSON form: find an action, validate request inputs (types, required,
//! defaults, `maxlength`, validators) and fill reply outputs with their defaults.
//!
//! Validators follow upstream: the names `shellsafe`, `ipv4address`, `ipv6address` and
//! `ipaddress`, otherwise a regular expression with RE2 semantics (ASCII `\w`, `\s`, `\d`; a `{`
//! that does not start a repetition is a literal, so upstream's `^{.+}$` works). The empty string
//! passes every validator: it is how clients leave a string input unset.

use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use thiserror::Error;

/// Largest DDL file accepted.
pub const MAX_DDL_BYTES: u64 = 1024 * 1024;

/// Why a DDL could not be loaded or a request did not satisfy it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DdlError {
    /// Reading the DDL file failed.
    #[error("could not read DDL {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// The DDL is not valid JSON of the expected shape.
    #[error("invalid DDL JSON: {0}")]
    Json(String),
    /// The agent has no such action.
    #[error("unknown action {action:?} for agent {agent}")]
    UnknownAction {
        /// Agent name.
        agent: String,
        /// The action asked for (truncated).
        action: String,
    },
    /// A required input is missing.
    #[error("missing required input {input} for action {action}")]
    MissingInput {
        /// Action.
        action: String,
        /// Input.
        input: String,
    },
    /// An input has the wrong JSON type.
    #[error("input {input} should be {expected} but is {found}")]
    WrongType {
        /// Input.
        input: String,
        /// DDL type.
        expected: String,
        /// JSON type found.
        found: &'static str,
    },
    /// A string input is longer than its `maxlength`.
    #[error("input {input} is {len} characters long, the maximum is {max}")]
    TooLong {
        /// Input.
        input: String,
        /// Its length.
        len: usize,
        /// The DDL maximum.
        max: u64,
    },
    /// A string input does not pass its validator.
    #[error("input {input} does not match the validation {validation:?}")]
    ValidationFailed {
        /// Input.
        input: String,
        /// The DDL validator.
        validation: String,
    },
    /// A `list` input is not one of the allowed values.
    #[error("input {input} is not one of the allowed values")]
    NotInList {
        /// Input.
        input: String,
    },
    /// The DDL's validator for an input is unusable.
    #[error("input {input} has an invalid validation {validation:?}: {reason}")]
    BadValidator {
        /// Input.
        input: String,
        /// The validator.
        validation: String,
        /// Why it cannot be compiled.
        reason: String,
    },
    /// The DDL gives an input a type we do not know.
    #[error("input {input} has unknown type {kind:?}")]
    UnknownType {
        /// Input.
        input: String,
        /// The type.
        kind: String,
    },
}

/// An agent DDL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ddl {
    /// JSON schema reference.
    #[serde(rename = "$schema", default, skip_serializing_if = "String::is_empty")]
    pub schema: String,
    /// Agent metadata.
    pub metadata: Metadata,
    /// The actions.
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// DDL metadata.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Metadata {
    /// Agent name.
    pub name: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Author.
    #[serde(default)]
    pub author: String,
    /// License.
    #[serde(default)]
    pub license: String,
    /// Version.
    #[serde(default)]
    pub version: String,
    /// Project URL.
    #[serde(default)]
    pub url: String,
    /// Default RPC timeout, seconds.
    #[serde(default)]
    pub timeout: u64,
}

/// One action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Action {
    /// Action name.
    pub action: String,
    /// Inputs by name.
    #[serde(default)]
    pub input: BTreeMap<String, Input>,
    /// Outputs by name.
    #[serde(default)]
    pub output: BTreeMap<String, Output>,
    /// When clients display results (`always`, `failed`, `ok`).
    #[serde(default)]
    pub display: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Aggregation specs (opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggregate: Option<Value>,
}

/// One input.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Input {
    /// Prompt.
    #[serde(default)]
    pub prompt: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// `string`, `integer`, `float`, `number`, `boolean`, `hash`, `array` or `list`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// Default value (null = none).
    #[serde(default)]
    pub default: Option<Value>,
    /// Whether the input may be omitted.
    #[serde(default)]
    pub optional: bool,
    /// Validator for strings.
    #[serde(default)]
    pub validation: Option<String>,
    /// Maximum string length in characters (0 = unlimited).
    #[serde(default)]
    pub maxlength: Option<u64>,
    /// Allowed values for `list` inputs.
    #[serde(default)]
    pub list: Option<Vec<Value>>,
}

/// One output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Display label.
    #[serde(default)]
    pub display_as: String,
    /// Type, when given.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Default value (null = none).
    #[serde(default)]
    pub default: Option<Value>,
}

impl Ddl {
    /// Parses DDL JSON.
    pub fn parse(bytes: &[u8]) -> Result<Self, DdlError> {
        if bytes.len() as u64 > MAX_DDL_BYTES {
            return Err(DdlError::Json(format!(
                "DDL is {} bytes, the limit is {MAX_DDL_BYTES}",
                bytes.len()
            )));
        }
        serde_json::from_slice(bytes).map_err(|e| DdlError::Json(e.to_string()))
    }

    /// Reads and parses a DDL file (at most [`MAX_DDL_BYTES`]).
    pub fn load(path: &Path) -> Result<Self, DdlError> {
        let read_err = |reason: String| DdlError::Read {
            path: path.display().to_string(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| read_err(e.to_string()))?;
        let mut bytes = Vec::new();
        file.take(MAX_DDL_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| read_err(e.to_string()))?;
        Self::parse(&bytes)
    }

    /// The agent name.
    pub fn name(&self) -> &str {
        &self.metadata.name
    }

    /// The action called `name`.
    pub fn action(&self, name: &str) -> Result<&Action, DdlError> {
        self.actions
            .iter()
            .find(|a| a.action == name)
            .ok_or_else(|| DdlError::UnknownAction {
                agent: self.metadata.name.clone(),
                action: crate::error::truncate(name),
            })
    }

    /// Names of all actions, in DDL order.
    pub fn action_names(&self) -> Vec<&str> {
        self.actions.iter().map(|a| a.action.as_str()).collect()
    }
}

impl Action {
    /// Validates request `data` and returns it with defaults of omitted optional inputs added.
    /// Explicit `null` counts as omitted. Inputs the DDL does not list are kept unchecked, as
    /// upstream does.
    pub fn validate_request(
        &self,
        data: &Map<String, Value>,
    ) -> Result<Map<String, Value>, DdlError> {
        let mut out = data.clone();
        for (name, input) in &self.input {
            match data.get(name).filter(|v| !v.is_null()) {
                None if !input.optional => {
                    return Err(DdlError::MissingInput {
                        action: self.action.clone(),
                        input: name.clone(),
                    })
                }
                None => {
                    out.remove(name);
                    if let Some(default) = input.default.as_ref().filter(|d| !d.is_null()) {
                        out.insert(name.clone(), default.clone());
                    }
                }
                Some(value) => input.validate(name, value)?,
            }
        }
        Ok(out)
    }

    /// Adds the DDL default of every output missing from `data` (outputs with no default are
    /// left out).
    pub fn apply_output_defaults(&self, data: &mut Map<String, Value>) {
        for (name, output) in &self.output {
            if let Some(default) = output.default.as_ref().filter(|d| !d.is_null()) {
                data.entry(name.clone()).or_insert_with(|| default.clone());
            }
        }
    }

    /// The outputs' defaults as an object.
    pub fn output_defaults(&self) -> Map<String, Value> {
        let mut m = Map::new();
        self.apply_output_defaults(&mut m);
        m
    }
}

impl Input {
    /// Checks one provided value against this input's type, length and validator.
    pub fn validate(&self, name: &str, value: &Value) -> Result<(), DdlError> {
        let wrong = |expected: &str| DdlError::WrongType {
            input: name.to_string(),
            expected: expected.to_string(),
            found: json_type(value),
        };
        match self.kind.as_str() {
            "string" => {
                let s = value.as_str().ok_or_else(|| wrong("a string"))?;
                self.check_string(name, s)
            }
            "integer" => match value {
                Value::Number(n) if n.is_i64() || n.is_u64() => Ok(()),
                // Go decodes JSON numbers as float64: a whole float is an integer there.
                Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => Ok(()),
                _ => Err(wrong("an integer")),
            },
            "float" | "number" => value
                .is_number()
                .then_some(())
                .ok_or_else(|| wrong("a number")),
            "boolean" => value
                .is_boolean()
                .then_some(())
                .ok_or_else(|| wrong("a boolean")),
            "hash" => value
                .is_object()
                .then_some(())
                .ok_or_else(|| wrong("a hash")),
            "array" => value
                .is_array()
                .then_some(())
                .ok_or_else(|| wrong("an array")),
            "list" => match &self.list {
                Some(allowed) if allowed.contains(value) => Ok(()),
                _ => Err(DdlError::NotInList {
                    input: name.to_string(),
                }),
            },
            "any" | "" => Ok(()),
            other => Err(DdlError::UnknownType {
                input: name.to_string(),
                kind: other.to_string(),
            }),
        }
    }

    fn check_string(&self, name: &str, s: &str) -> Result<(), DdlError> {
        if let Some(max) = self.maxlength.filter(|m| *m > 0) {
            let len = s.chars().count();
            if len as u64 > max {
                return Err(DdlError::TooLong {
                    input: name.to_string(),
                    len,
                    max,
                });
            }
        }
        // Clients send "" for an input they leave unset (upstream's generated clients and the
        // provisioner do) and agents read it as unset, so there is nothing to match.
        let Some(validation) = self.validation.as_deref().filter(|v| !v.is_empty()) else {
            return Ok(());
        };
        if s.is_empty() {
            return Ok(());
        }
        let failed = || DdlError::ValidationFailed {
            input: name.to_string(),
            validation: validation.to_string(),
        };
        let ok = match validation {
            "shellsafe" => !s.contains(['`', '$', ';', '|', '&', '>', '<', '\n', '\r']),
            "ipv4address" => s.parse::<std::net::Ipv4Addr>().is_ok(),
            "ipv6address" => s.parse::<std::net::Ipv6Addr>().is_ok(),
            "ipaddress" => s.parse::<std::net::IpAddr>().is_ok(),
            pattern => regex::bytes::RegexBuilder::new(&re2_compat(pattern))
                .unicode(false)
                .size_limit(1 << 20)
                .build()
                .map_err(|e| DdlError::BadValidator {
                    input: name.to_string(),
                    validation: validation.to_string(),
                    reason: e.to_string(),
                })?
                .is_match(s.as_bytes()),
        };
        if ok {
            Ok(())
        } else {
            Err(failed())
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "a hash",
    }
}

/// Rewrites an RE2 pattern so the Rust engine reads it the same way: braces that do not form a
/// counted repetition are literals in RE2 but errors in Rust.
fn re2_compat(pattern: &str) -> String {
    let chars: Vec<char> = pattern.chars().collect();
    let mut out = String::with_capacity(pattern.len() + 8);
    let mut i = 0;
    let mut in_class = false;
    while i < chars.len() {
        let c = chars[i];
        if c == '\\' {
            out.push(c);
            if let Some(&next) = chars.get(i + 1) {
                out.push(next);
            }
            i += 2;
            continue;
        }
        if in_class {
            if c == ']' {
                in_class = false;
            }
            out.push(c);
            i += 1;
            continue;
        }
        match c {
            '[' => {
                in_class = true;
                out.push(c);
                i += 1;
                // `[]...]` and `[^]...]` start with a literal `]`.
                if chars.get(i) == Some(&'^') {
                    out.push('^');
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    out.push(']');
                    i += 1;
                }
            }
            '{' => match repetition_len(&chars[i..]) {
                Some(len) => {
                    out.extend(&chars[i..i + len]);
                    i += len;
                }
                None => {
                    out.push_str("\\{");
                    i += 1;
                }
            },
            '}' => {
                out.push_str("\\}");
                i += 1;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// Length of a `{n}`, `{n,}` or `{n,m}` at the start of `chars`.
fn repetition_len(chars: &[char]) -> Option<usize> {
    let mut i = 1;
    let digits = |i: &mut usize| {
        let start = *i;
        while chars.get(*i).is_some_and(|c| c.is_ascii_digit()) {
            *i += 1;
        }
        *i > start
    };
    if !digits(&mut i) {
        return None;
    }
    if chars.get(i) == Some(&',') {
        i += 1;
        digits(&mut i);
    }
    (chars.get(i) == Some(&'}')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vector(name: &str) -> Ddl {
        Ddl::load(Path::new(&format!(
            "{}/../../../shared/vectors/agent/{name}",
            env!("CARGO_MANIFEST_DIR")
        )))
        .unwrap()
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn loads_upstream_ddls() {
        let p = vector("choria_provision.ddl.json");
        assert_eq!(p.name(), "choria_provision");
        assert_eq!(p.metadata.timeout, 20);
        for a in [
            "configure",
            "gen25519",
            "gencsr",
            "jwt",
            "reprovision",
            "restart",
            "release_update",
            "shutdown",
        ] {
            assert!(p.action(a).is_ok(), "{a}");
        }
        assert!(matches!(
            p.action("nope"),
            Err(DdlError::UnknownAction { .. })
        ));
        let r = vector("rpcutil.ddl.json");
        assert_eq!(r.metadata.timeout, 2);
        assert!(r.action("inventory").is_ok());
    }

    #[test]
    fn every_upstream_validator_compiles() {
        for file in ["choria_provision.ddl.json", "rpcutil.ddl.json"] {
            let d = vector(file);
            for a in &d.actions {
                for (name, input) in &a.input {
                    if input.kind == "string" {
                        // A one-character probe: compile errors surface as BadValidator.
                        let r = input.validate(name, &json!("x"));
                        assert!(
                            !matches!(r, Err(DdlError::BadValidator { .. })),
                            "{file} {}#{name}: {r:?}",
                            a.action
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn configure_validation() {
        let d = vector("choria_provision.ddl.json");
        let a = d.action("configure").unwrap();
        let out = a
            .validate_request(&obj(json!({"config": "{\"identity\":\"n1\"}"})))
            .unwrap();
        // Defaults of omitted optional inputs are applied; null defaults are not.
        assert_eq!(out.get("token"), Some(&json!("")));
        assert_eq!(out.get("action_policies"), Some(&json!({})));
        assert!(!out.contains_key("certificate"));

        assert!(matches!(
            a.validate_request(&obj(json!({}))),
            Err(DdlError::MissingInput { ref input, .. }) if input == "config"
        ));
        assert!(matches!(
            a.validate_request(&obj(json!({"config": "not braces"}))),
            Err(DdlError::ValidationFailed { ref input, .. }) if input == "config"
        ));
        assert!(matches!(
            a.validate_request(&obj(json!({"config": 5}))),
            Err(DdlError::WrongType { ref input, found: "a number", .. }) if input == "config"
        ));
        let long = format!("{{{}}}", "a".repeat(2047));
        assert!(matches!(
            a.validate_request(&obj(json!({"config": long}))),
            Err(DdlError::TooLong {
                max: 2048,
                len: 2049,
                ..
            })
        ));
        assert!(matches!(
            a.validate_request(&obj(json!({"config": "{}x", "certificate": "nope"}))),
            Err(DdlError::ValidationFailed { .. })
        ));
        assert!(a
            .validate_request(&obj(json!({"config": "{a}", "certificate": "-----BEGIN CERTIFICATE-----\n", "action_policies": {"a": "b"}})))
            .is_ok());
        assert!(matches!(
            a.validate_request(&obj(json!({"config": "{a}", "action_policies": []}))),
            Err(DdlError::WrongType { .. })
        ));
        // The provisioner sends every configure input, "" for the unset ones.
        let blank = json!({"config": "{a}", "token": "", "ca": "", "certificate": "", "ssldir": "",
            "key": "", "ecdh_public": "", "action_policies": {}, "opa_policies": {}, "server_jwt": ""});
        assert_eq!(a.validate_request(&obj(blank.clone())).unwrap(), obj(blank));
        let err = a
            .validate_request(&obj(json!({"config": "x"})))
            .unwrap_err()
            .to_string();
        assert!(err.contains("config"), "{err}");
    }

    #[test]
    fn other_types_and_validators() {
        let d = vector("choria_provision.ddl.json");
        let restart = d.action("restart").unwrap();
        assert!(restart
            .validate_request(&obj(json!({"token": "t", "splay": 10})))
            .is_ok());
        assert!(restart
            .validate_request(&obj(json!({"token": "t", "splay": 1.5})))
            .is_ok());
        assert!(restart
            .validate_request(&obj(json!({"token": "t", "splay": "10"})))
            .is_err());
        let gencsr = d.action("gencsr").unwrap();
        assert!(gencsr
            .validate_request(&obj(
                json!({"token": "t", "cn": "n1.example.net", "C": "GB"})
            ))
            .is_ok());
        assert!(gencsr
            .validate_request(&obj(json!({"token": "t", "C": "gb"})))
            .is_err());
        assert!(gencsr
            .validate_request(&obj(json!({"token": "t", "O": "Ünicode"})))
            .is_err());
        let rel = d.action("release_update").unwrap();
        assert!(rel
            .validate_request(&obj(
                json!({"token": "t", "repository": "https://r", "version": "1"})
            ))
            .is_ok());
        assert!(rel
            .validate_request(&obj(
                json!({"token": "t", "repository": "ftp://r", "version": "1"})
            ))
            .is_err());

        let mk = |kind: &str, validation: Option<&str>, list: Option<Vec<Value>>| Input {
            prompt: String::new(),
            description: String::new(),
            kind: kind.into(),
            default: None,
            optional: true,
            validation: validation.map(str::to_string),
            maxlength: None,
            list,
        };
        assert!(mk("integer", None, None).validate("i", &json!(3)).is_ok());
        assert!(mk("integer", None, None)
            .validate("i", &json!(3.5))
            .is_err());
        assert!(mk("boolean", None, None)
            .validate("b", &json!("true"))
            .is_err());
        assert!(mk("list", None, Some(vec![json!("a")]))
            .validate("l", &json!("a"))
            .is_ok());
        assert!(matches!(
            mk("list", None, Some(vec![json!("a")])).validate("l", &json!("b")),
            Err(DdlError::NotInList { .. })
        ));
        assert!(matches!(
            mk("weird", None, None).validate("w", &json!(1)),
            Err(DdlError::UnknownType { .. })
        ));
        assert!(mk("string", Some("shellsafe"), None)
            .validate("s", &json!("ok"))
            .is_ok());
        assert!(mk("string", Some("shellsafe"), None)
            .validate("s", &json!("a;b"))
            .is_err());
        assert!(mk("string", Some("ipv4address"), None)
            .validate("s", &json!("10.0.0.1"))
            .is_ok());
        assert!(mk("string", Some("ipaddress"), None)
            .validate("s", &json!("::1"))
            .is_ok());
        assert!(mk("string", Some("ipv6address"), None)
            .validate("s", &json!("10.0.0.1"))
            .is_err());
        assert!(matches!(
            mk("string", Some("(("), None).validate("s", &json!("x")),
            Err(DdlError::BadValidator { .. })
        ));
    }

    #[test]
    fn output_defaults() {
        let d = vector("choria_provision.ddl.json");
        let jwt = d.action("jwt").unwrap();
        let mut data = obj(json!({"jwt": "abc"}));
        jwt.apply_output_defaults(&mut data);
        assert_eq!(data, obj(json!({"jwt": "abc", "ecdh_public": ""})));
        let r = vector("rpcutil.ddl.json");
        assert_eq!(
            r.action("inventory").unwrap().output_defaults(),
            obj(json!({"upgradable": false}))
        );
        assert!(d.action("configure").unwrap().output_defaults().is_empty());
    }

    #[test]
    fn re2_braces() {
        assert_eq!(re2_compat("^{.+}$"), "^\\{.+\\}$");
        assert_eq!(re2_compat("a{2,3}[{]"), "a{2,3}[{]");
        assert_eq!(re2_compat("\\{x"), "\\{x");
        assert_eq!(re2_compat("[]{]"), "[]{]");
    }

    #[test]
    fn bad_ddl_json() {
        assert!(matches!(Ddl::parse(b"{"), Err(DdlError::Json(_))));
        assert!(matches!(
            Ddl::parse(b"{\"actions\":[]}"),
            Err(DdlError::Json(_))
        ));
        assert!(matches!(
            Ddl::load(Path::new("/nonexistent/x.json")),
            Err(DdlError::Read { .. })
        ));
    }

    #[test]
    fn random_input_never_panics() {
        let base = std::fs::read(format!(
            "{}/../../../shared/vectors/agent/choria_provision.ddl.json",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let d = vector("choria_provision.ddl.json");
        let alphabet = b"{}[]()\\.*+?^$|,0123456789aw\"";
        let mut seed = 0xdead_beef_cafe_f00du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..2_000 {
            let mut m = base.clone();
            for _ in 0..3 {
                let i = (next() as usize) % m.len();
                m[i] = (next() >> 32) as u8;
            }
            let _ = Ddl::parse(&m);
            let len = (next() % 12) as usize;
            let pattern: String = (0..len)
                .map(|_| alphabet[(next() as usize) % alphabet.len()] as char)
                .collect();
            let _ = re2_compat(&pattern);
            let input = Input {
                prompt: String::new(),
                description: String::new(),
                kind: "string".into(),
                default: None,
                optional: true,
                validation: Some(pattern),
                maxlength: None,
                list: None,
            };
            let _ = input.validate("x", &json!("a1{}"));
            let data =
                json!({"config": format!("{{{}}}", next()), "token": next() % 7, "splay": "x"});
            for a in &d.actions {
                let _ = a.validate_request(data.as_object().unwrap());
            }
        }
    }
}
