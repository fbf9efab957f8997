//! The `rpcutil` agent (the actions the provisioner and operators use: `ping`,
//! `inventory`, `get_fact`, `collective_info`, `agent_inventory`) and `discovery`.

use serde::Deserialize;
use serde_json::{json, Value};

use choria_protocol::filter::lookup_fact;
use choria_protocol::{RpcReply, StatusCode};

use crate::agents::ActionError;

/// The version reported by agents and lifecycle events.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `rpcutil` reports about its node.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    /// Agents hosted, by name.
    pub agents: Vec<String>,
    /// Facts (a JSON object).
    pub facts: Value,
    /// Collectives the node belongs to.
    pub collectives: Vec<String>,
    /// The main collective.
    pub main_collective: String,
    /// Whether `release_update` may be used.
    pub upgradable: bool,
}

#[derive(Debug, Deserialize, Default)]
#[serde(default)]
struct FactInput {
    fact: String,
}

/// The agent's name on the wire.
pub const AGENT: &str = "rpcutil";

/// Runs an `rpcutil` action.
pub fn handle(node: &NodeFacts, action: &str, data: &Value, now_unix: i64) -> RpcReply {
    match run(node, action, data, now_unix) {
        Ok(outputs) => RpcReply::success(action, outputs),
        Err(failure) => failure.into_reply(action),
    }
}

fn run(node: &NodeFacts, action: &str, data: &Value, now_unix: i64) -> Result<Value, ActionError> {
    Ok(match action {
        "ping" => json!({"pong": now_unix}),
        "inventory" => json!({
            "agents": node.agents,
            "facts": facts_object(node),
            "classes": [],
            "version": VERSION,
            "main_collective": node.main_collective,
            "collectives": node.collectives,
            "data_plugins": [],
            "machines": {},
            "upgradable": node.upgradable,
        }),
        "collective_info" => json!({
            "main_collective": node.main_collective,
            "collectives": node.collectives,
        }),
        "agent_inventory" => {
            let agents: Vec<Value> = node
                .agents
                .iter()
                .map(|name| {
                    json!({
                        "agent": name,
                        "name": name,
                        "version": VERSION,
                        "license": "Apache-2.0",
                        "timeout": if name == "choria_provision" { 20 } else { 2 },
                        "url": "https://choria.io",
                        "author": "R.I.Pienaar <rip@devco.net>",
                        "description": description(name),
                    })
                })
                .collect();
            json!({ "agents": agents })
        }
        "get_fact" => {
            let input = FactInput::deserialize(data).map_err(|err| {
                ActionError::new(
                    StatusCode::InvalidData,
                    format!("Could not parse request data for rpcutil#get_fact: {err}"),
                )
            })?;
            if input.fact.is_empty() {
                return Err(ActionError::new(
                    StatusCode::MissingData,
                    "fact is required",
                ));
            }
            let value = lookup_fact(&node.facts, &input.fact)
                .cloned()
                .unwrap_or(Value::Null);
            json!({"fact": input.fact, "value": value})
        }
        other => {
            return Err(ActionError::new(
                StatusCode::UnknownAction,
                format!("Unknown action {other} for agent {AGENT}"),
            ))
        }
    })
}

fn facts_object(node: &NodeFacts) -> Value {
    if node.facts.is_object() {
        node.facts.clone()
    } else {
        json!({})
    }
}

fn description(agent: &str) -> &'static str {
    match agent {
        "choria_provision" => "Choria Provisioner",
        "rpcutil" => {
            "Utility actions that expose information about the state of the running Server"
        }
        "choria_util" => "Choria Utilities",
        "discovery" => "Discovery Agent",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node() -> NodeFacts {
        NodeFacts {
            agents: vec!["rpcutil".into(), "choria_provision".into()],
            facts: json!({"os": {"family": "linux"}, "role": "web"}),
            collectives: vec!["provisioning".into()],
            main_collective: "provisioning".into(),
            upgradable: false,
        }
    }

    #[test]
    fn inventory_has_every_key_the_provisioner_reads() {
        let reply = handle(&node(), "inventory", &json!({}), 1);
        for key in [
            "agents",
            "classes",
            "collectives",
            "data_plugins",
            "facts",
            "machines",
            "main_collective",
            "version",
            "upgradable",
        ] {
            assert!(reply.data.get(key).is_some(), "{key}");
        }
    }

    #[test]
    fn get_fact_reads_dotted_paths_and_rejects_wrong_types() {
        let reply = handle(&node(), "get_fact", &json!({"fact": "os.family"}), 1);
        assert_eq!(reply.data["value"], "linux");
        let reply = handle(&node(), "get_fact", &json!({"fact": 5}), 1);
        assert_eq!(reply.statuscode, StatusCode::InvalidData);
        let reply = handle(&node(), "nope", &json!({}), 1);
        assert_eq!(reply.statuscode, StatusCode::UnknownAction);
        assert_eq!(reply.action, "nope");
    }
}
