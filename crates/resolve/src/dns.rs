//! One SRV lookup through hickory-resolver, against the system's nameservers or explicit
//! ones (tests point it at `choria_testkit::dns::TestDns`).

use std::borrow::Cow;
use std::net::SocketAddr;
use std::str::FromStr;

use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData};
use hickory_resolver::TokioResolver;

use crate::{BrokerUrl, ResolveError};

/// One SRV answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvRecord {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, heavier is preferred.
    pub weight: u16,
    /// The broker port.
    pub port: u16,
    /// The broker host, without the trailing dot.
    pub target: String,
}

impl SrvRecord {
    /// The broker address with `scheme` (`nats` for Choria SRV records).
    pub fn broker_url(&self, scheme: &str) -> BrokerUrl {
        BrokerUrl {
            scheme: scheme.to_string(),
            host: self.target.clone(),
            port: self.port,
        }
    }
}

/// Where SRV questions go; cheap to clone.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    nameservers: Option<Vec<SocketAddr>>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.nameservers {
            None => f.write_str("Resolver(system configuration)"),
            Some(servers) => write!(f, "Resolver({servers:?})"),
        }
    }
}

impl Resolver {
    /// A resolver using the system configuration (`/etc/resolv.conf` on Unix).
    pub fn system() -> Result<Resolver, ResolveError> {
        let inner = TokioResolver::builder_tokio()
            .and_then(|builder| builder.build())
            .map_err(|err| ResolveError::Resolver(err.to_string()))?;
        Ok(Resolver {
            inner,
            nameservers: None,
        })
    }

    /// `resolver` when one is given, else [`Resolver::system`]: what callers that let
    /// tests inject nameservers do.
    pub fn given_or_system(resolver: Option<&Resolver>) -> Result<Cow<'_, Resolver>, ResolveError> {
        match resolver {
            Some(resolver) => Ok(Cow::Borrowed(resolver)),
            None => Resolver::system().map(Cow::Owned),
        }
    }

    /// A resolver asking exactly `nameservers` (UDP, TCP when an answer is truncated),
    /// with no search domains and no hosts file.
    pub fn with_nameservers(nameservers: &[SocketAddr]) -> Result<Resolver, ResolveError> {
        let servers = nameservers
            .iter()
            .map(|addr| {
                let connections = [ConnectionConfig::udp(), ConnectionConfig::tcp()]
                    .into_iter()
                    .map(|mut connection| {
                        connection.port = addr.port();
                        connection
                    })
                    .collect();
                NameServerConfig::new(addr.ip(), true, connections)
            })
            .collect();
        let mut builder = TokioResolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            TokioRuntimeProvider::default(),
        );
        builder.options_mut().use_hosts_file = hickory_resolver::config::ResolveHosts::Never;
        let inner = builder
            .build()
            .map_err(|err| ResolveError::Resolver(err.to_string()))?;
        Ok(Resolver {
            inner,
            nameservers: Some(nameservers.to_vec()),
        })
    }

    /// The SRV records of `name` in the order the server sent them. A name that does not
    /// exist or has no SRV records gives an empty list; only failures to get an answer at
    /// all are errors.
    pub async fn srv(&self, name: &str) -> Result<Vec<SrvRecord>, ResolveError> {
        let fqdn = absolute(name)?;
        match self.inner.srv_lookup(fqdn).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::SRV(srv) => Some(SrvRecord {
                        priority: srv.priority,
                        weight: srv.weight,
                        port: srv.port,
                        target: srv.target.to_string().trim_end_matches('.').to_string(),
                    }),
                    _ => None,
                })
                .collect()),
            Err(err) if err.is_no_records_found() => Ok(Vec::new()),
            Err(err) => Err(ResolveError::Lookup {
                name: name.to_string(),
                reason: err.to_string(),
            }),
        }
    }
}

/// `name` as an absolute DNS name, so no search domain is appended.
fn absolute(name: &str) -> Result<Name, ResolveError> {
    let trimmed = name.trim().trim_end_matches('.');
    let bad = |reason: String| ResolveError::BadName {
        name: name.to_string(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(bad("the name is empty".into()));
    }
    Name::from_str(&format!("{trimmed}.")).map_err(|err| bad(err.to_string()))
}

/// Sorts records the way a Choria client tries them: lowest priority first, and within a
/// priority the heaviest weight first (the most likely pick of RFC 2782's weighted
/// choice). Equal records keep the server's order.
pub fn sort_by_priority(records: &mut [SrvRecord]) {
    records.sort_by(|a, b| {
        a.priority
            .cmp(&b.priority)
            .then_with(|| b.weight.cmp(&a.weight))
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(priority: u16, weight: u16, target: &str) -> SrvRecord {
        SrvRecord {
            priority,
            weight,
            port: 4222,
            target: target.into(),
        }
    }

    #[test]
    fn sorts_by_priority_then_heavier_weight() {
        let mut records = vec![
            record(20, 0, "d"),
            record(10, 5, "b"),
            record(10, 50, "a"),
            record(10, 5, "c"),
        ];
        sort_by_priority(&mut records);
        let order: Vec<_> = records.iter().map(|r| r.target.as_str()).collect();
        assert_eq!(order, ["a", "b", "c", "d"]);
    }

    #[test]
    fn names_are_made_absolute_and_checked() {
        assert_eq!(
            absolute("_x._tcp.example.net").unwrap().to_string(),
            "_x._tcp.example.net."
        );
        assert_eq!(
            absolute("example.net.").unwrap().to_string(),
            "example.net."
        );
        assert!(matches!(absolute("  "), Err(ResolveError::BadName { .. })));
        let long = format!("{}.example.net", "a".repeat(70));
        assert!(matches!(absolute(&long), Err(ResolveError::BadName { .. })));
    }
}
