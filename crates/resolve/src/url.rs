//! Broker addresses: `scheme://host:port` and the comma-separated lists tokens and
//! configuration files carry (spec §4.1, "each entry is normalised").

use crate::ResolveError;

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
}
