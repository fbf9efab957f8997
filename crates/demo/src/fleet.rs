//! The simulated fleet: N real node agents in this process, each with its own state
//! directory, keys and NATS connection, booting from nothing but the provisioning token.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use choria_server::node::{Node, NodeOptions, RestartPolicy};

use crate::site::{node_identity, Site};
use crate::DemoError;

/// Nodes started before yielding, so early nodes connect while later ones are created.
const START_BATCH: usize = 100;

/// Running simulated nodes.
pub struct Fleet {
    start_times: HashMap<String, Instant>,
    cancel: CancellationToken,
    tasks: JoinSet<()>,
}

impl Fleet {
    /// Creates each node's state directory and starts `count` nodes.
    pub async fn start(
        site: &Site,
        count: usize,
        cancel: CancellationToken,
    ) -> Result<Fleet, DemoError> {
        let codec = choria_server::wire::default_codec();
        let mut start_times = HashMap::with_capacity(count);
        let mut tasks = JoinSet::new();
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
                codec: codec.clone(),
            }));
            let node_cancel = cancel.clone();
            let name = identity.clone();
            tasks.spawn(async move {
                if let Err(err) = node.run(node_cancel).await {
                    tracing::warn!(identity = %name, "node stopped: {err}");
                }
            });
            start_times.insert(identity, Instant::now());
            if index % START_BATCH == 0 {
                tokio::task::yield_now().await;
            }
        }
        Ok(Fleet {
            start_times,
            cancel,
            tasks,
        })
    }

    /// When each node was started.
    pub fn start_times(&self) -> HashMap<String, Instant> {
        self.start_times.clone()
    }

    /// Stops every node and waits (briefly) for them to close their connections.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        let drain = async { while self.tasks.join_next().await.is_some() {} };
        if tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .is_err()
        {
            self.tasks.abort_all();
        }
    }
}
