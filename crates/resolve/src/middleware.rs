//! A Choria client's brokers from DNS when `plugin.choria.middleware_hosts` is empty:
//! `_mcollective-server._tcp.<domain>`, then `_x-puppet-mcollective._tcp.<domain>`; the
//! first name with records wins, sorted by priority then weight.

use crate::dns::sort_by_priority;
use crate::{BrokerUrl, ResolveError, Resolver};

/// The SRV services a Choria client asks, in order.
pub const SRV_SERVICES: [&str; 2] = ["_mcollective-server._tcp", "_x-puppet-mcollective._tcp"];

/// The SRV names for `domain`, in the order they are asked.
pub fn srv_names(domain: &str) -> Vec<String> {
    let domain = domain.trim().trim_end_matches('.');
    SRV_SERVICES
        .iter()
        .map(|service| format!("{service}.{domain}"))
        .collect()
}

/// Asks each of [`srv_names`] once and returns the first non-empty answer as `nats://`
/// brokers sorted by priority then weight, or [`ResolveError::NoRecords`] naming every
/// name asked and every failure seen.
pub async fn brokers(resolver: &Resolver, domain: &str) -> Result<Vec<BrokerUrl>, ResolveError> {
    let names = srv_names(domain);
    let mut failures = Vec::new();
    for name in &names {
        match resolver.srv(name).await {
            Ok(mut records) if !records.is_empty() => {
                sort_by_priority(&mut records);
                return Ok(records.iter().map(|r| r.broker_url("nats")).collect());
            }
            Ok(_) => tracing::debug!("SRV lookup of {name} returned no records"),
            Err(err @ ResolveError::BadName { .. }) => return Err(err),
            Err(err) => failures.push(err.to_string()),
        }
    }
    Err(ResolveError::NoRecords {
        names: names.join(", "),
        detail: failures.join("; "),
    })
}

/// The domain of this host's name (`h1.example.net` → `example.net`), the SRV domain a
/// Choria client uses when `plugin.choria.srv_domain` is not set; `None` when the host
/// name has no domain part.
pub fn host_domain() -> Option<String> {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())?;
    domain_of(&hostname)
}

/// The part of a host name after its first dot, if any.
pub fn domain_of(hostname: &str) -> Option<String> {
    let (_, domain) = hostname.trim().trim_end_matches('.').split_once('.')?;
    (!domain.is_empty()).then(|| domain.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_upstream_order() {
        assert_eq!(
            srv_names("example.net."),
            [
                "_mcollective-server._tcp.example.net",
                "_x-puppet-mcollective._tcp.example.net"
            ]
        );
    }

    #[test]
    fn the_host_domain_is_after_the_first_dot() {
        assert_eq!(
            domain_of("h1.dc1.example.net\n").as_deref(),
            Some("dc1.example.net")
        );
        assert_eq!(domain_of("localhost"), None);
        assert_eq!(domain_of("h1."), None);
    }
}
