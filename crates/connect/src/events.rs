//! Connection events for callers that act after each (re)connect: a node announces itself
//! again, the provisioner rediscovers. [`Connects`] counts the library's connect events.

use std::sync::Arc;

use tokio::sync::watch;

/// Counts one connection's successful (re)connects; put it in [`crate::Login::connects`]
/// and watch it with [`Connects::subscribe`]. Clones share the count.
#[derive(Debug, Clone)]
pub struct Connects {
    count: Arc<watch::Sender<u64>>,
}

impl Default for Connects {
    fn default() -> Connects {
        Connects::new()
    }
}

impl Connects {
    /// A count at zero.
    pub fn new() -> Connects {
        Connects {
            count: Arc::new(watch::Sender::new(0)),
        }
    }

    /// A receiver that sees the count change after every connect, the first one included
    /// when it subscribed before connecting.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.count.subscribe()
    }

    /// Connects so far.
    pub fn count(&self) -> u64 {
        *self.count.borrow()
    }

    /// Records one connect (async-nats' `Event::Connected`).
    pub(crate) fn connected(&self) {
        self.count.send_modify(|n| *n = n.saturating_add(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_connect_is_seen_by_a_subscriber() {
        let connects = Connects::new();
        let mut seen = connects.subscribe();
        connects.clone().connected();
        seen.changed().await.unwrap();
        assert_eq!(*seen.borrow_and_update(), 1);
        connects.connected();
        seen.changed().await.unwrap();
        assert_eq!(connects.count(), 2);
    }
}
