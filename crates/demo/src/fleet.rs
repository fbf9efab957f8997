//! The simulated fleet: N real node agents in this process, each with its own state
//! directory, keys and NATS connection, booting from nothing but the provisioning token.
//!
//! Nodes boot all at once, or at a steady rate like machines coming up across a site.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use choria_server::node::{Node, NodeOptions, RestartPolicy};

use crate::prove::BootRecorder;
use crate::site::{node_identity, Site};
use crate::DemoError;

/// Nodes started before yielding, so early nodes connect while later ones are created.
const START_BATCH: usize = 100;

/// How long stopping waits for nodes to close their connections.
const STOP_PATIENCE: Duration = Duration::from_secs(10);

/// Running simulated nodes.
pub struct Fleet {
    cancel: CancellationToken,
    launcher: JoinHandle<()>,
}

impl Fleet {
    /// Creates every node's state directory, then boots `count` nodes in the background:
    /// all at once, or `boot_rate` a second. Each boot is recorded in `boots`.
    pub fn start(
        site: &Site,
        count: usize,
        boot_rate: Option<u32>,
        boots: BootRecorder,
        cancel: CancellationToken,
    ) -> Result<Fleet, DemoError> {
        let mut nodes = Vec::with_capacity(count);
        for index in 1..=count {
            let identity = node_identity(index);
            let dir = site.node_dir(index);
            std::fs::create_dir_all(&dir).map_err(|source| DemoError::Io {
                what: format!("creating {}", dir.display()),
                source,
            })?;
            let node = Arc::new(Node::new(NodeOptions {
                config_file: dir.join("server.conf"),
                provisioning_jwt: Some(site.provisioning_token.clone()),
                identity: Some(identity.clone()),
                restart: RestartPolicy::InPlace,
            }));
            nodes.push((identity, node));
        }
        let launcher = tokio::spawn(boot(nodes, boot_rate, boots, cancel.clone()));
        Ok(Fleet { cancel, launcher })
    }

    /// Stops every node and waits (briefly) for them to close their connections.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = self.launcher.await;
    }
}

/// Boots the nodes, then keeps them running until `cancel` fires.
async fn boot(
    nodes: Vec<(String, Arc<Node>)>,
    boot_rate: Option<u32>,
    boots: BootRecorder,
    cancel: CancellationToken,
) {
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for (index, (identity, node)) in nodes.into_iter().enumerate() {
        if let Some(rate) = boot_rate.filter(|rate| *rate > 0) {
            // Node i boots at i/rate seconds, so a slow loop catches up instead of drifting.
            let due = started + Duration::from_secs_f64(index as f64 / f64::from(rate));
            tokio::select! {
                () = tokio::time::sleep_until(due.into()) => {}
                () = cancel.cancelled() => break,
            }
        } else if index % START_BATCH == 0 {
            tokio::task::yield_now().await;
        }
        boots.record(identity.clone(), Instant::now(), node.collectives());
        let node_cancel = cancel.clone();
        tasks.spawn(async move {
            if let Err(err) = node.run(node_cancel).await {
                tracing::warn!(%identity, "node stopped: {err}");
            }
        });
    }
    cancel.cancelled().await;
    let drain = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(STOP_PATIENCE, drain).await.is_err() {
        tasks.abort_all();
    }
}
