//! The DDLs of the two agents the provisioner calls, embedded as upstream's generated client
//! embeds them and parsed once at start-up: they check requests, default replies and time RPCs.

use std::time::Duration;

use choria_protocol::ddl::{Ddl, DdlError};

/// `ddl/choria_provision.ddl.json`, a copy of upstream's DDL.
const CHORIA_PROVISION_JSON: &[u8] = include_bytes!("../ddl/choria_provision.ddl.json");
/// `ddl/rpcutil.ddl.json`, a copy of upstream's DDL.
const RPCUTIL_JSON: &[u8] = include_bytes!("../ddl/rpcutil.ddl.json");

/// An agent the provisioner calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Agent {
    /// `choria_provision`, the node's provisioning agent.
    ChoriaProvision,
    /// `rpcutil`, for the inventory.
    Rpcutil,
}

impl Agent {
    /// The agent's name on the wire.
    pub fn name(self) -> &'static str {
        match self {
            Agent::ChoriaProvision => "choria_provision",
            Agent::Rpcutil => "rpcutil",
        }
    }
}

/// The parsed DDLs of every [`Agent`].
#[derive(Debug, Clone)]
pub struct Ddls {
    choria_provision: Ddl,
    rpcutil: Ddl,
}

impl Ddls {
    /// Parses the embedded DDLs.
    pub fn embedded() -> Result<Ddls, DdlError> {
        Ok(Ddls {
            choria_provision: parse(Agent::ChoriaProvision, CHORIA_PROVISION_JSON)?,
            rpcutil: parse(Agent::Rpcutil, RPCUTIL_JSON)?,
        })
    }

    /// The DDL of `agent`.
    pub fn agent(&self, agent: Agent) -> &Ddl {
        match agent {
            Agent::ChoriaProvision => &self.choria_provision,
            Agent::Rpcutil => &self.rpcutil,
        }
    }

    /// The DDL timeout of `agent` (20 s for `choria_provision`, 2 s for `rpcutil`).
    pub fn timeout(&self, agent: Agent) -> Duration {
        Duration::from_secs(self.agent(agent).metadata.timeout)
    }
}

/// Parses one embedded DDL and checks that it describes `agent`.
fn parse(agent: Agent, json: &[u8]) -> Result<Ddl, DdlError> {
    let ddl = Ddl::parse(json)?;
    if ddl.name() != agent.name() {
        return Err(DdlError::Json(format!(
            "the embedded DDL for {} describes the agent {:?}",
            agent.name(),
            ddl.name()
        )));
    }
    Ok(ddl)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_ddls_are_the_shared_vectors() {
        for (file, embedded) in [
            ("choria_provision.ddl.json", CHORIA_PROVISION_JSON),
            ("rpcutil.ddl.json", RPCUTIL_JSON),
        ] {
            let vector = std::fs::read(format!(
                "{}/../../../shared/vectors/agent/{file}",
                env!("CARGO_MANIFEST_DIR")
            ))
            .expect("vector");
            assert!(
                vector == embedded,
                "ddl/{file} differs from the shared vector"
            );
        }
    }

    #[test]
    fn they_parse_and_give_the_upstream_timeouts() {
        let ddls = Ddls::embedded().expect("parse");
        assert_eq!(
            ddls.agent(Agent::ChoriaProvision).name(),
            "choria_provision"
        );
        assert_eq!(ddls.agent(Agent::Rpcutil).name(), "rpcutil");
        assert_eq!(
            ddls.timeout(Agent::ChoriaProvision),
            Duration::from_secs(20)
        );
        assert_eq!(ddls.timeout(Agent::Rpcutil), Duration::from_secs(2));
        assert!(matches!(
            parse(Agent::Rpcutil, CHORIA_PROVISION_JSON),
            Err(DdlError::Json(_))
        ));
    }
}
