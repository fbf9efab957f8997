//! The node runtime as a state machine: [`Node::run`] drives `Starting` (decide the mode
//! and compute the [`Plan`]) → `Connecting` → `Serving` → `Leaving`, each state consuming
//! itself; `restart` comes back up in place by planning again from what `configure` wrote.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
pub use tokio_util::sync::CancellationToken;

use choria_protocol::subjects::SubjectError;

use crate::connection::ConnectError;
use crate::resolve;
use crate::startup::StartupError;

mod admission;
mod state;

/// Interval between registration publishes while provisioning.
pub const REGISTRATION_INTERVAL: Duration = Duration::from_secs(120);
/// Interval between `alive` events.
pub const ALIVE_INTERVAL: Duration = Duration::from_secs(30 * 60);

/// Where a node is in its life; observed through [`Node::phase`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Deciding the mode or connecting.
    Starting,
    /// Connected to `provisioning`, waiting for the provisioner.
    Provisioning,
    /// `configure` succeeded; waiting for `restart`.
    Configured,
    /// Connected as a fleet member in `choria`.
    InFleet,
    /// Stopped on request.
    Stopped,
    /// Start-up or the connection failed for good.
    Failed(String),
}

/// What the node does when `restart` is called.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartPolicy {
    /// Come back up in this task (simulated fleets).
    InPlace,
    /// Return [`NodeExit::Restart`] so the caller re-executes the process.
    Exit,
}

/// Why [`Node::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeExit {
    /// The cancellation token fired.
    Cancelled,
    /// The `shutdown` action was called.
    Shutdown,
    /// The `restart` action was called and the policy is [`RestartPolicy::Exit`].
    Restart,
}

/// Errors that stop a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// Start-up could not decide what to run, or the configuration does not describe a
    /// runnable node.
    #[error(transparent)]
    Startup(#[from] StartupError),
    /// No broker could be resolved.
    #[error(transparent)]
    Resolve(#[from] resolve::ResolveError),
    /// Connecting failed.
    #[error(transparent)]
    Connect(#[from] ConnectError),
    /// The identity cannot be used in NATS subjects.
    #[error("invalid node identity: {0}")]
    Identity(#[source] SubjectError),
    /// Subscribing failed.
    #[error(transparent)]
    Subscribe(#[from] choria_connect::SubscribeError),
    /// The client closed the subscriptions (the connection is gone for good).
    #[error("NATS subscription closed by the client")]
    SubscriptionClosed,
}

/// How to run one node.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The configuration file (`--config`), also where `configure` writes.
    pub config_file: PathBuf,
    /// The provisioning JWT (`--provisioning-jwt`).
    pub provisioning_jwt: Option<PathBuf>,
    /// Identity when the configuration names none.
    pub identity: Option<String>,
    /// What `restart` does.
    pub restart: RestartPolicy,
}

/// One node.
pub struct Node {
    options: NodeOptions,
    phase: watch::Sender<Phase>,
    collectives: watch::Sender<Vec<String>>,
    resolver: Option<resolve::Resolver>,
}

impl Node {
    /// A node that has not started yet.
    pub fn new(options: NodeOptions) -> Node {
        let phase = watch::Sender::new(Phase::Starting);
        Node {
            options,
            phase,
            collectives: watch::Sender::new(Vec::new()),
            resolver: None,
        }
    }

    /// Looks up SRV records through `resolver` instead of the system configuration.
    pub fn with_resolver(mut self, resolver: resolve::Resolver) -> Node {
        self.resolver = Some(resolver);
        self
    }

    /// A receiver that sees every phase change.
    pub fn phase(&self) -> watch::Receiver<Phase> {
        self.phase.subscribe()
    }

    /// A receiver of the collectives the node serves in on its current connection (empty
    /// until it first connects; `provisioning` while provisioning), set before its
    /// `startup` event is published.
    pub fn collectives(&self) -> watch::Receiver<Vec<String>> {
        self.collectives.subscribe()
    }

    /// Runs until cancelled, shut down, or (with [`RestartPolicy::Exit`]) restarted.
    pub async fn run(&self, cancel: CancellationToken) -> Result<NodeExit, NodeError> {
        loop {
            self.phase.send_replace(Phase::Starting);
            match self.run_once(&cancel).await {
                Ok(outcome) => match exit_for(outcome, self.options.restart) {
                    None => continue,
                    Some(NodeExit::Restart) => return Ok(NodeExit::Restart),
                    Some(exit) => {
                        self.phase.send_replace(Phase::Stopped);
                        return Ok(exit);
                    }
                },
                Err(err) => {
                    self.phase.send_replace(Phase::Failed(err.to_string()));
                    return Err(err);
                }
            }
        }
    }

    async fn run_once(&self, cancel: &CancellationToken) -> Result<Outcome, NodeError> {
        let connecting = state::Starting(&self.options).plan(SystemTime::now())?;
        let serving = connecting.connect(self.resolver.as_ref(), cancel).await?;
        let leaving = serving
            .serve(&self.phase, &self.collectives, cancel)
            .await?;
        Ok(leaving.leave(cancel).await)
    }
}

/// How one connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Cancelled,
    Shutdown,
    Restart,
}

/// What [`Node::run`] returns for `outcome`; `None` means start again in place.
fn exit_for(outcome: Outcome, policy: RestartPolicy) -> Option<NodeExit> {
    match (outcome, policy) {
        (Outcome::Restart, RestartPolicy::InPlace) => None,
        (Outcome::Restart, RestartPolicy::Exit) => Some(NodeExit::Restart),
        (Outcome::Shutdown, _) => Some(NodeExit::Shutdown),
        (Outcome::Cancelled, _) => Some(NodeExit::Cancelled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_comes_back_in_place_or_exits_per_policy() {
        assert_eq!(exit_for(Outcome::Restart, RestartPolicy::InPlace), None);
        assert_eq!(
            exit_for(Outcome::Restart, RestartPolicy::Exit),
            Some(NodeExit::Restart)
        );
        for policy in [RestartPolicy::InPlace, RestartPolicy::Exit] {
            assert_eq!(
                exit_for(Outcome::Shutdown, policy),
                Some(NodeExit::Shutdown)
            );
            assert_eq!(
                exit_for(Outcome::Cancelled, policy),
                Some(NodeExit::Cancelled)
            );
        }
    }
}
