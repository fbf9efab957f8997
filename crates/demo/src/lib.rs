//! `choria demo`: a whole Choria site on one machine — broker, provisioners and a
//! simulated fleet of real node agents — with every node provisioned end to end.
//!
//! # Layout
//! * [`site`]: generates keys, CAs, tokens and every configuration file of a site.
//! * [`connect`]: connects to the broker as a Choria client (JWT + nonce over TLS).
//! * [`process`]: runs the broker and provisioners as real child processes.
//! * [`fleet`]: the simulated nodes, real node agents sharing this process.
//! * [`helper`]: the site's provisioning helper (`choria-provisioner example-helper`).
//! * [`prove`]: watches the fleet through the broker and proves each node with a signed ping.
//! * [`progress`]: the terminal progress bar.
//! * [`report`]: the summary (counts, nodes/s, latency percentiles, peak memory).
#![deny(missing_docs)]

pub mod connect;
pub mod fleet;
pub mod helper;
pub mod process;
pub mod progress;
pub mod prove;
pub mod report;
mod run;
pub mod site;

pub use report::DemoReport;
pub use run::{run, run_until, Binaries, DemoOptions, Pacing};
pub use site::{Flow, HelperMode, Site, SiteOptions, SitePorts};

/// Everything that can stop the demo.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DemoError {
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// Writing a site file failed.
    #[error(transparent)]
    File(#[from] choria_config::files::FileError),
    /// Generating the site failed.
    #[error(transparent)]
    Site(#[from] choria_site::SiteError),
    /// Creating a token failed.
    #[error(transparent)]
    Token(#[from] choria_tokens::TokenError),
    /// A service of the site exited while the demo ran.
    #[error("{name} exited ({status}); the end of its log:\n{log}")]
    ServiceExited {
        /// Which service.
        name: String,
        /// Its exit status.
        status: String,
        /// The end of its log.
        log: String,
    },
    /// A service did not become ready in time.
    #[error("{name} was not ready after {waited:?}: {reason}")]
    NotReady {
        /// Which service.
        name: String,
        /// How long the demo waited.
        waited: std::time::Duration,
        /// The last thing that went wrong.
        reason: String,
    },
    /// Connecting to the broker failed.
    #[error(transparent)]
    Connect(choria_connect::ConnectError),
    /// A bug: a state the demo should never reach.
    #[error("internal error: {0}")]
    Internal(String),
}
