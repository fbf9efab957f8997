//! A provisioner service running in a task, and a bounded wait for a condition.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use choria_provisioner::metrics::Metrics;
use choria_provisioner::{Provisioner, Status};
use tokio_util::sync::CancellationToken;

/// A running provisioner: its live status and metrics, and how to stop it.
pub struct Running {
    /// Live status.
    pub status: Arc<Status>,
    /// Its metrics.
    pub metrics: Arc<Metrics>,
    /// Stops it.
    pub cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Runs `provisioner` in a task until [`Running::stop`].
    pub fn spawn(provisioner: Provisioner) -> Running {
        let (status, metrics) = (provisioner.status(), provisioner.metrics());
        let cancel = CancellationToken::new();
        let c = cancel.clone();
        let task = tokio::spawn(async move {
            provisioner.run(c).await.expect("run");
        });
        Running {
            status,
            metrics,
            cancel,
            task,
        }
    }

    /// Stops it and waits (bounded) for the drain.
    pub async fn stop(self) {
        self.cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(15), self.task).await;
    }
}

/// Waits up to `limit` for `check`, failing the test with `what` otherwise.
pub async fn until(what: &str, limit: Duration, mut check: impl FnMut() -> bool) {
    let result = tokio::time::timeout(limit, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    assert!(result.is_ok(), "timed out waiting for {what}");
}
