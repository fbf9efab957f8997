//! RPC and discovery timeouts derived from the Choria client config's `discovery_timeout`
//! (spec §1.7 and §1.8): every RPC attempt waits `discovery_timeout` plus the agent DDL
//! timeout (from [`crate::ddls`]), and the discovery window's overall timer is
//! `discovery_timeout` capped by the 2 s discovery option.

use std::time::Duration;

use choria_config::Config;

/// The Choria client config key.
pub const DISCOVERY_TIMEOUT_KEY: &str = "discovery_timeout";
/// `discovery_timeout` when the key is absent (seconds).
pub const DEFAULT_DISCOVERY_TIMEOUT_SECS: u64 = 2;
/// Largest accepted `discovery_timeout` (seconds); beyond it a node pass would wait
/// more than a day per attempt, which is a typo rather than a choice.
pub const MAX_DISCOVERY_TIMEOUT_SECS: u64 = 86_400;
/// The discovery option's timeout, the hard cap of the discovery window.
pub const DISCOVERY_OPTION_TIMEOUT: Duration = Duration::from_secs(2);
/// The sliding window: discovery stops this long after the latest reply.
pub const DISCOVERY_IDLE: Duration = Duration::from_millis(300);

/// Why `discovery_timeout` was refused.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("discovery_timeout = {value:?} is not valid: expected a whole number of seconds from 1 to {MAX_DISCOVERY_TIMEOUT_SECS} (default {DEFAULT_DISCOVERY_TIMEOUT_SECS}); fix or remove the key")]
pub struct DiscoveryTimeoutError {
    /// The configured value.
    pub value: String,
}

/// The timeouts of one provisioner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    discovery: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            discovery: Duration::from_secs(DEFAULT_DISCOVERY_TIMEOUT_SECS),
        }
    }
}

impl Timeouts {
    /// Timeouts for a `discovery_timeout` of `discovery`.
    pub fn new(discovery: Duration) -> Timeouts {
        Timeouts { discovery }
    }

    /// Reads `discovery_timeout` from the Choria client config (absent or empty: 2 s).
    pub fn from_config(config: &Config) -> Result<Timeouts, DiscoveryTimeoutError> {
        match config.get(DISCOVERY_TIMEOUT_KEY).map(str::trim) {
            None | Some("") => Ok(Timeouts::default()),
            Some(value) => {
                parse_seconds(value).map(|secs| Timeouts::new(Duration::from_secs(secs)))
            }
        }
    }

    /// Per-attempt timeout of an RPC to an agent whose DDL timeout is `ddl_timeout`:
    /// `discovery_timeout` longer (22 s for `choria_provision` and 4 s for `rpcutil` by
    /// default).
    pub fn attempt(&self, ddl_timeout: Duration) -> Duration {
        self.discovery + ddl_timeout
    }

    /// Overall timer of one broadcast discovery: `discovery_timeout`, at most 2 s.
    pub fn discovery_window(&self) -> Duration {
        self.discovery.min(DISCOVERY_OPTION_TIMEOUT)
    }
}

fn parse_seconds(value: &str) -> Result<u64, DiscoveryTimeoutError> {
    match value.parse::<u64>() {
        Ok(secs) if (1..=MAX_DISCOVERY_TIMEOUT_SECS).contains(&secs) => Ok(secs),
        _ => Err(DiscoveryTimeoutError {
            value: value.to_string(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::ddls::{Agent, Ddls};

    /// The embedded DDLs' timeouts of `choria_provision` and `rpcutil`.
    fn ddl_timeouts() -> (Duration, Duration) {
        let ddls = Ddls::embedded().expect("ddls");
        (
            ddls.timeout(Agent::ChoriaProvision),
            ddls.timeout(Agent::Rpcutil),
        )
    }

    fn from(text: &str) -> Result<Timeouts, DiscoveryTimeoutError> {
        Timeouts::from_config(&Config::parse_str(text, "client.conf").expect("valid"))
    }

    #[test]
    fn the_default_gives_the_upstream_numbers() {
        let (provision, rpcutil) = ddl_timeouts();
        let t = from("identity = p\n").expect("valid");
        assert_eq!(t, Timeouts::default());
        assert_eq!(t.attempt(provision), Duration::from_secs(22));
        assert_eq!(t.attempt(rpcutil), Duration::from_secs(4));
        assert_eq!(t.discovery_window(), Duration::from_secs(2));
        assert_eq!(
            from("discovery_timeout =\n").expect("valid"),
            Timeouts::default()
        );
    }

    #[test]
    fn rpc_timeouts_add_the_ddl_timeout_and_the_window_is_capped() {
        let (provision, rpcutil) = ddl_timeouts();
        let t = from("discovery_timeout = 5\n").expect("valid");
        assert_eq!(t.attempt(provision), Duration::from_secs(25));
        assert_eq!(t.attempt(rpcutil), Duration::from_secs(7));
        assert_eq!(t.discovery_window(), Duration::from_secs(2));
        let t = from("discovery_timeout = 1\n").expect("valid");
        assert_eq!(t.attempt(provision), Duration::from_secs(21));
        assert_eq!(t.attempt(rpcutil), Duration::from_secs(3));
        assert_eq!(t.discovery_window(), Duration::from_secs(1));
    }

    #[test]
    fn bad_values_are_refused_naming_the_key() {
        for bad in ["0", "-2", "2s", "1.5", "abc", "86401"] {
            let err = from(&format!("discovery_timeout = {bad}\n")).expect_err("refused");
            assert_eq!(err.value, bad);
            let text = err.to_string();
            assert!(text.contains("discovery_timeout"), "{text}");
        }
    }
}
