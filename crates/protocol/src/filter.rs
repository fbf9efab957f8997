//! Evaluating a request [`Filter`] against one node (spec §6.6 step 4), as upstream's
//! `filter/{identity,agents,classes,facts}` packages do; compound expressions are refused.
//!
//! * **identity**: any entry matches (a node has one identity); `/re/` is a regular
//!   expression, anything else must be equal.
//! * **agent**, **cf_class**: every entry must match one of the node's agents / classes,
//!   `/re/` or equal.
//! * **fact**: every entry must hold. The fact is found by its dotted path; the
//!   comparison follows the fact's JSON type: strings compare as strings (`<` is
//!   lexicographic), numbers as integers, or as floats when the value has a `.`, booleans
//!   with Go's `strconv.ParseBool` spellings; `=~` is a regular expression (surrounding
//!   `/` removed). A missing fact, null, array or object never matches.
//! * **compound**: we do not evaluate upstream's expression language, so a filter with a
//!   compound expression matches no node ([`Verdict::Unsupported`]). Matching every node,
//!   as ignoring it would, could run an action on machines the caller meant to exclude.
//!
//! Deviations from upstream, both upstream bugs: `>` with a float value is strict (upstream
//! uses `>=`), and `!=` on a `false` fact is the negation of `==` (upstream answers like
//! `==`). Regular expressions that do not compile match nothing, as upstream.

use regex::RegexBuilder;
use serde_json::Value;

use crate::envelope::{FactFilter, Filter};

/// Largest compiled regular expression accepted from a filter; patterns come from
/// requests, and a bigger one is treated like one that does not compile.
pub const MAX_REGEX_BYTES: usize = 256 * 1024;

/// What a node looks like to a filter.
#[derive(Debug, Clone, Copy)]
pub struct NodeView<'a> {
    /// The node's identity.
    pub identity: &'a str,
    /// The agents it hosts.
    pub agents: &'a [String],
    /// Its facts (a JSON object; anything else has no facts).
    pub facts: &'a Value,
    /// Its configuration-management classes (upstream: the `classesfile`).
    pub classes: &'a [String],
}

/// The outcome of evaluating a filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every clause matched: the node handles the request.
    Match,
    /// A clause did not match.
    NoMatch,
    /// The filter has a compound expression, which we do not evaluate: no node matches.
    Unsupported,
}

impl Filter {
    /// Evaluates this filter against `node`.
    pub fn check(&self, node: &NodeView<'_>) -> Verdict {
        if !self.compound.is_empty() {
            return Verdict::Unsupported;
        }
        let identity = self.identity.is_empty()
            || self
                .identity
                .iter()
                .any(|needle| matches_one(needle, node.identity));
        let agents = self
            .agent
            .iter()
            .all(|needle| node.agents.iter().any(|agent| matches_one(needle, agent)));
        let classes = self
            .cf_class
            .iter()
            .all(|needle| node.classes.iter().any(|class| matches_one(needle, class)));
        let facts = self.fact.iter().all(|fact| fact.matches(node.facts));
        if identity && agents && classes && facts {
            Verdict::Match
        } else {
            Verdict::NoMatch
        }
    }

    /// Whether `node` handles a request with this filter.
    pub fn matches(&self, node: &NodeView<'_>) -> bool {
        self.check(node) == Verdict::Match
    }
}

impl FactFilter {
    /// Whether `facts` satisfy this fact filter.
    pub fn matches(&self, facts: &Value) -> bool {
        let value = self.value.as_str();
        match lookup_fact(facts, &self.fact) {
            Some(Value::String(have)) => match self.operator.as_str() {
                "==" => have == value,
                "!=" => have != value,
                "<" => have.as_str() < value,
                ">" => have.as_str() > value,
                "<=" => have.as_str() <= value,
                ">=" => have.as_str() >= value,
                "=~" => regex_matches(value.trim_matches('/'), have),
                _ => false,
            },
            Some(Value::Number(have)) => number_matches(have, &self.operator, value),
            Some(Value::Bool(have)) => {
                let truthy = |v: &str| parse_go_bool(v) == Some(true);
                let equal = if *have { truthy(value) } else { !truthy(value) };
                match self.operator.as_str() {
                    "==" => equal,
                    "!=" => !equal,
                    "=~" => {
                        let lower = value.to_lowercase();
                        truthy(&lower) == *have
                    }
                    _ => false,
                }
            }
            _ => false,
        }
    }
}

/// Looks up a fact by its dotted path (`os.family`), trying the whole path as one key first.
pub fn lookup_fact<'a>(facts: &'a Value, path: &str) -> Option<&'a Value> {
    if let Some(value) = facts.get(path) {
        return Some(value);
    }
    path.split('.')
        .try_fold(facts, |value, part| value.get(part))
}

/// The classes in the text of a classes file: one per line.
pub fn parse_classes(text: &str) -> Vec<String> {
    text.lines().map(str::to_string).collect()
}

/// `/re/` is a regular expression, anything else must be equal.
fn matches_one(needle: &str, have: &str) -> bool {
    match needle
        .strip_prefix('/')
        .and_then(|rest| rest.strip_suffix('/'))
    {
        Some(pattern) => regex_matches(pattern, have),
        None => needle == have,
    }
}

fn regex_matches(pattern: &str, have: &str) -> bool {
    RegexBuilder::new(pattern)
        .size_limit(MAX_REGEX_BYTES)
        .build()
        .is_ok_and(|re| re.is_match(have))
}

/// Numbers compare as floats when the filter value has a `.`, else as integers (a float
/// fact is truncated, as upstream's `gjson.Int`).
fn number_matches(have: &serde_json::Number, operator: &str, value: &str) -> bool {
    let float = have.as_f64().unwrap_or(f64::NAN);
    if value.contains('.') {
        if operator == "=~" {
            return regex_matches(value.trim_matches('/'), &format!("{float:.4}"));
        }
        let Ok(want) = value.parse::<f64>() else {
            return false;
        };
        return compare(operator, float.partial_cmp(&want));
    }
    let int = have.as_i64().unwrap_or(float as i64);
    match operator {
        "==" => int.to_string() == value,
        "!=" => int.to_string() != value,
        "=~" => regex_matches(value.trim_matches('/'), &int.to_string()),
        _ => compare(
            operator,
            value.parse::<i64>().ok().map(|want| int.cmp(&want)),
        ),
    }
}

fn compare(operator: &str, ordering: Option<std::cmp::Ordering>) -> bool {
    use std::cmp::Ordering::{Equal, Greater, Less};
    let Some(ordering) = ordering else {
        return false;
    };
    match operator {
        "==" => ordering == Equal,
        "!=" => ordering != Equal,
        "<" => ordering == Less,
        ">" => ordering == Greater,
        "<=" => ordering != Greater,
        ">=" => ordering != Less,
        _ => false,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn fact(fact: &str, operator: &str, value: &str) -> FactFilter {
        FactFilter {
            fact: fact.into(),
            operator: operator.into(),
            value: value.into(),
        }
    }

    fn facts() -> Value {
        json!({
            "os": {"family": "linux", "release": "9"},
            "cpus": 4,
            "load": 1.25,
            "virtual": true,
            "physical": false,
            "nothing": null,
            "list": ["a"],
        })
    }

    fn holds(fact_name: &str, operator: &str, value: &str) -> bool {
        fact(fact_name, operator, value).matches(&facts())
    }

    #[test]
    fn string_facts_use_every_operator() {
        assert!(holds("os.family", "==", "linux"));
        assert!(!holds("os.family", "==", "Linux"));
        assert!(holds("os.family", "!=", "windows"));
        assert!(!holds("os.family", "!=", "linux"));
        assert!(holds("os.family", "=~", "/^lin/"));
        assert!(holds("os.family", "=~", "nu"));
        assert!(!holds("os.family", "=~", "^nu"));
        assert!(!holds("os.family", "=~", "(unclosed"));
        // Strings compare lexicographically, as upstream: "9" > "10".
        assert!(holds("os.release", ">", "10"));
        assert!(holds("os.release", ">=", "9"));
        assert!(holds("os.release", "<=", "9"));
        assert!(!holds("os.release", "<", "10"));
    }

    #[test]
    fn number_facts_compare_as_integers_or_floats() {
        assert!(holds("cpus", "==", "4"));
        assert!(!holds("cpus", "==", "4.5"));
        assert!(holds("cpus", "!=", "5"));
        assert!(holds("cpus", "<", "8"));
        assert!(holds("cpus", ">", "2"));
        assert!(!holds("cpus", ">", "4"));
        assert!(holds("cpus", "<=", "4"));
        assert!(holds("cpus", ">=", "4"));
        assert!(!holds("cpus", ">=", "eight"));
        assert!(holds("cpus", "=~", "^4$"));
        assert!(holds("load", ">", "1.0"));
        assert!(!holds("load", ">", "1.25"), "strict, unlike upstream's >=");
        assert!(holds("load", "==", "1.25"));
        assert!(holds("load", "=~", "^1.2500$"));
        // Without a '.', a float fact is truncated.
        assert!(holds("load", "==", "1"));
    }

    #[test]
    fn boolean_facts_use_go_spellings() {
        assert!(holds("virtual", "==", "true"));
        assert!(holds("virtual", "==", "1"));
        assert!(!holds("virtual", "==", "yes"));
        assert!(holds("virtual", "!=", "false"));
        assert!(holds("physical", "==", "false"));
        assert!(holds("physical", "==", "anything but true"));
        assert!(!holds("physical", "!=", "false"));
        assert!(holds("virtual", "=~", "TRUE"));
        assert!(!holds("virtual", "<", "true"));
    }

    #[test]
    fn missing_null_and_structured_facts_never_match() {
        for name in ["absent", "nothing", "list", "os"] {
            for op in ["==", "!=", "=~", "<", ">", "<=", ">="] {
                assert!(!holds(name, op, "x"), "{name} {op}");
            }
        }
        assert!(!holds("cpus", "~", "4"), "unknown operators never match");
    }

    fn view<'a>(agents: &'a [String], facts: &'a Value, classes: &'a [String]) -> NodeView<'a> {
        NodeView {
            identity: "n1.example.net",
            agents,
            facts,
            classes,
        }
    }

    #[test]
    fn identity_is_exact_or_a_regular_expression() {
        let (agents, facts) = (vec![], json!({}));
        let node = view(&agents, &facts, &[]);
        let by = |identity: &[&str]| Filter {
            identity: identity.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        };
        assert!(by(&["n1.example.net"]).matches(&node));
        assert!(!by(&["n1"]).matches(&node));
        assert!(by(&["n2", "n1.example.net"]).matches(&node), "any identity");
        assert!(by(&["/^n\\d\\.example/"]).matches(&node));
        assert!(!by(&["/^example/"]).matches(&node));
        assert!(!by(&["/n[/"]).matches(&node), "bad regex matches nothing");
        assert!(by(&[]).matches(&node));
    }

    #[test]
    fn agents_and_classes_must_all_be_present() {
        let agents = vec!["rpcutil".to_string(), "choria_provision".to_string()];
        let classes = parse_classes("role::web\nprofile::base\r\n");
        assert_eq!(classes, ["role::web", "profile::base"]);
        let facts = json!({});
        let node = view(&agents, &facts, &classes);
        let filter = |agent: &[&str], class: &[&str]| Filter {
            agent: agent.iter().map(|s| s.to_string()).collect(),
            cf_class: class.iter().map(|s| s.to_string()).collect(),
            ..Filter::default()
        };
        assert!(filter(&["rpcutil", "/^choria_/"], &[]).matches(&node));
        assert!(!filter(&["rpcutil", "puppet"], &[]).matches(&node));
        assert!(filter(&[], &["role::web"]).matches(&node));
        assert!(filter(&[], &["role::web", "/^profile::/"]).matches(&node));
        assert!(!filter(&[], &["role::web", "role::db"]).matches(&node));
        assert!(!filter(&[], &["role::web"]).matches(&view(&agents, &facts, &[])));
    }

    #[test]
    fn facts_must_all_hold() {
        let (agents, facts) = (vec![], facts());
        let node = view(&agents, &facts, &[]);
        let mut filter = Filter {
            fact: vec![fact("os.family", "==", "linux")],
            ..Filter::default()
        };
        assert!(filter.matches(&node));
        filter.fact.push(fact("cpus", ">=", "8"));
        assert!(!filter.matches(&node));
    }

    #[test]
    fn a_compound_filter_matches_no_node() {
        let (agents, facts) = (vec!["rpcutil".to_string()], json!({}));
        let node = view(&agents, &facts, &[]);
        let mut expression = serde_json::Map::new();
        expression.insert("expr".into(), json!("with('rpcutil')"));
        let filter = Filter {
            compound: vec![vec![expression]],
            ..Filter::default()
        };
        assert_eq!(filter.check(&node), Verdict::Unsupported);
        assert!(!filter.matches(&node));
        assert_eq!(Filter::default().check(&node), Verdict::Match);
    }
}
