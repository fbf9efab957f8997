//! Finds brokers: URL lists and DNS SRV records.
//!
//! * [`url`]: `scheme://host:port` entries and the comma-separated lists tokens carry.
//! * [`dns`]: a [`Resolver`] over the system configuration or explicit nameservers, and
//!   one SRV lookup returning [`SrvRecord`]s.
//! * [`provisioning`]: a provisioning node's brokers (spec §4.1 `Targets`): the token's
//!   URLs, or `_choria-provisioner._tcp.<domain>` retried with [`backoff`] until records
//!   appear or shutdown.
//! * [`middleware`]: a Choria client's brokers from SRV (`_mcollective-server._tcp`, then
//!   `_x-puppet-mcollective._tcp`), sorted by priority then weight.
//!
//! # Example
//! ```no_run
//! use choria_resolve::{middleware, Resolver};
//!
//! # async fn demo() -> Result<(), choria_resolve::ResolveError> {
//! let resolver = Resolver::system()?;
//! let brokers = middleware::brokers(&resolver, "example.net").await?;
//! println!("{}", brokers[0]);
//! # Ok(()) }
//! ```
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod backoff;
pub mod dns;
pub mod middleware;
pub mod provisioning;
pub mod url;

pub use dns::{Resolver, SrvRecord};
pub use url::{parse_url, parse_urls, BrokerUrl};

/// Errors resolving brokers.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
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
    #[error(
        "could not set up the DNS resolver from the system configuration (/etc/resolv.conf): {0}"
    )]
    Resolver(String),
    /// A name to look up is not a valid DNS name.
    #[error("cannot look up {name:?}: {reason}")]
    BadName {
        /// The name.
        name: String,
        /// Why it is not valid.
        reason: String,
    },
    /// The DNS query failed (timeout, refused, server failure); "no such name" and empty
    /// answers are not errors but empty results.
    #[error("SRV lookup of {name} failed: {reason}")]
    Lookup {
        /// The name queried.
        name: String,
        /// Why it failed.
        reason: String,
    },
    /// None of the SRV names had records.
    #[error("no SRV records found for {names}{}", detail_suffix(.detail))]
    NoRecords {
        /// The names queried, comma separated.
        names: String,
        /// Lookup failures seen on the way, if any.
        detail: String,
    },
}

fn detail_suffix(detail: &str) -> String {
    if detail.is_empty() {
        String::new()
    } else {
        format!(" ({detail})")
    }
}
