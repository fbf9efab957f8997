//! A provisioning node's brokers (spec §4.1 `Targets`): the token's URL list, or the SRV
//! records `_choria-provisioner._tcp.<domain>`, asked again with [`backoff`] until some
//! appear or shutdown is requested.

use tokio_util::sync::CancellationToken;

use crate::backoff::backoff;
use crate::{parse_urls, BrokerUrl, ResolveError, Resolver};

/// The SRV service a provisioning node looks up under its token's `chsrv` domain.
pub const SRV_SERVICE: &str = "_choria-provisioner._tcp";

/// The SRV name for `domain`: `_choria-provisioner._tcp.<domain>`.
pub fn srv_name(domain: &str) -> String {
    format!("{SRV_SERVICE}.{}", domain.trim().trim_end_matches('.'))
}

/// The brokers: `urls` when set, else SRV records for `srv_domain` (scheme `nats`, in the
/// order the server sent them), retried until records appear or `cancel` fires.
/// `resolver` defaults to the system configuration.
pub async fn targets(
    urls: &str,
    srv_domain: &str,
    resolver: Option<&Resolver>,
    cancel: &CancellationToken,
) -> Result<Vec<BrokerUrl>, ResolveError> {
    if !urls.trim().is_empty() {
        return parse_urls(urls);
    }
    if srv_domain.trim().is_empty() {
        tracing::warn!(
            "Neither provisioning broker url or provisioning SRV domain is set, cannot continue"
        );
        return Err(ResolveError::NoServers);
    }
    let resolver = Resolver::given_or_system(resolver)?;
    let name = srv_name(srv_domain);
    let mut attempt = 0u32;
    loop {
        match resolver.srv(&name).await {
            Ok(records) if !records.is_empty() => {
                return Ok(records.iter().map(|r| r.broker_url("nats")).collect());
            }
            Ok(_) => tracing::warn!("SRV lookup of {name} returned no records, retrying"),
            Err(err @ ResolveError::BadName { .. }) => return Err(err),
            Err(err) => tracing::warn!("{err}, retrying"),
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(ResolveError::Cancelled),
            () = tokio::time::sleep(backoff(attempt)) => {}
        }
        attempt = attempt.saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn urls_win_and_nothing_configured_is_an_error() {
        let cancel = CancellationToken::new();
        assert_eq!(
            targets("", " ", None, &cancel).await,
            Err(ResolveError::NoServers)
        );
        let urls = targets("tls://b:4443", "example.net", None, &cancel)
            .await
            .unwrap();
        assert_eq!(urls[0].to_string(), "tls://b:4443");
    }

    #[test]
    fn the_srv_name_ignores_a_trailing_dot() {
        assert_eq!(
            srv_name(" example.net. "),
            "_choria-provisioner._tcp.example.net"
        );
    }
}
