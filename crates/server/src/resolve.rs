//! Provisioning broker resolution (spec §4.1 `Targets`): the token's URL list, or SRV
//! records `_choria-provisioner._tcp.<domain>` retried with capped backoff.

use std::time::Duration;

use rand::Rng;
use tokio_util::sync::CancellationToken;

/// Longest wait between SRV lookups.
pub const MAX_SRV_BACKOFF: Duration = Duration::from_secs(20);

/// A broker address: `scheme://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// `nats`, `tls`, `wss`...
    pub scheme: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
}

impl std::fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme, self.host, self.port)
        } else {
            write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
        }
    }
}

/// Errors resolving brokers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolveError {
    /// An entry is not `scheme://host:port` or `host:port`.
    #[error("invalid broker address {entry:?}: {reason}")]
    BadEntry {
        /// The entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
    /// Nothing to connect to.
    #[error("provisioning target plugin Choria JWT Resolver returned no servers: neither provisioning broker url or provisioning SRV domain is set")]
    NoServers,
    /// Shutdown was requested while waiting for SRV records.
    #[error("cancelled while resolving brokers")]
    Cancelled,
    /// The system resolver could not be set up.
    #[error("could not set up the DNS resolver: {0}")]
    Resolver(String),
}

/// Parses a comma-separated broker list (`nats://h:4222`, `tls://h:4222`, `h:4222`).
pub fn parse_urls(list: &str) -> Result<Vec<BrokerUrl>, ResolveError> {
    let urls = list
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .map(parse_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(ResolveError::NoServers);
    }
    Ok(urls)
}

/// Parses one broker address.
pub fn parse_url(entry: &str) -> Result<BrokerUrl, ResolveError> {
    let bad = |reason: &str| ResolveError::BadEntry {
        entry: entry.to_string(),
        reason: reason.to_string(),
    };
    let (scheme, rest) = match entry.split_once("://") {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => ("nats".to_string(), entry),
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-')
    {
        return Err(bad("the scheme is not valid"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let authority = authority.rsplit('@').next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or_else(|| bad("unterminated IPv6 address"))?;
        (host, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    let port = port
        .ok_or_else(|| bad("no port (expected host:port)"))?
        .parse::<u16>()
        .map_err(|_| bad("the port must be a number from 0 to 65535"))?;
    Ok(BrokerUrl {
        scheme,
        host: host.to_string(),
        port,
    })
}

/// Resolves brokers: the URL list when set, else SRV for `srv_domain`, retried until
/// records appear or `cancel` fires.
pub async fn resolve(
    urls: &str,
    srv_domain: &str,
    cancel: &CancellationToken,
) -> Result<Vec<BrokerUrl>, ResolveError> {
    if !urls.trim().is_empty() {
        return parse_urls(urls);
    }
    if srv_domain.trim().is_empty() {
        return Err(ResolveError::NoServers);
    }
    let resolver = hickory_resolver::TokioResolver::builder_tokio()
        .and_then(|builder| builder.build())
        .map_err(|err| ResolveError::Resolver(err.to_string()))?;
    let name = format!(
        "_choria-provisioner._tcp.{}",
        srv_domain.trim().trim_end_matches('.')
    );
    let mut attempt = 0u32;
    loop {
        match resolver.srv_lookup(name.as_str()).await {
            Ok(lookup) => {
                let found: Vec<BrokerUrl> = lookup
                    .answers()
                    .iter()
                    .filter_map(|record| match &record.data {
                        hickory_resolver::proto::rr::RData::SRV(srv) => Some(BrokerUrl {
                            scheme: "nats".into(),
                            host: srv.target.to_string().trim_end_matches('.').to_string(),
                            port: srv.port,
                        }),
                        _ => None,
                    })
                    .collect();
                if !found.is_empty() {
                    return Ok(found);
                }
                tracing::warn!(%name, "SRV lookup returned no records, retrying");
            }
            Err(err) => tracing::warn!(%name, error = %err, "SRV lookup failed, retrying"),
        }
        attempt = attempt.saturating_add(1);
        tokio::select! {
            () = cancel.cancelled() => return Err(ResolveError::Cancelled),
            () = tokio::time::sleep(backoff(attempt)) => {}
        }
    }
}

/// Jittered backoff: 0.5 s doubling up to [`MAX_SRV_BACKOFF`], each step ±50 %.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.min(6))
        .min(MAX_SRV_BACKOFF);
    let factor = rand::thread_rng().gen_range(0.5..1.0);
    base.mul_f64(factor).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_forms_tokens_carry() {
        let urls = parse_urls(" nats://a.example:4222, tls://b:4443 ,c:4222").unwrap();
        assert_eq!(
            urls.iter().map(ToString::to_string).collect::<Vec<_>>(),
            ["nats://a.example:4222", "tls://b:4443", "nats://c:4222"]
        );
        assert_eq!(parse_url("nats://[::1]:4222").unwrap().host, "::1");
    }

    #[test]
    fn rejects_bad_entries() {
        assert!(matches!(
            parse_url("nats://host"),
            Err(ResolveError::BadEntry { .. })
        ));
        assert!(matches!(
            parse_url("host:99999"),
            Err(ResolveError::BadEntry { .. })
        ));
        assert!(matches!(
            parse_url(":4222"),
            Err(ResolveError::BadEntry { .. })
        ));
        assert_eq!(parse_urls(" , "), Err(ResolveError::NoServers));
    }

    #[tokio::test]
    async fn nothing_configured_is_an_error() {
        let cancel = CancellationToken::new();
        assert_eq!(resolve("", "", &cancel).await, Err(ResolveError::NoServers));
    }

    #[test]
    fn backoff_is_capped() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= MAX_SRV_BACKOFF);
        }
    }
}
