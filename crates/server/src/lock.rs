//! The per-caller provisioning lock of spec §4.8: one provisioner at a time may drive a
//! node through `jwt`, `gen25519`, `gencsr`, `configure` and `release_update`.

use std::time::{Duration, Instant};

/// How long a lock lasts after the holder's last locked call (upstream: 2 minutes).
pub const LOCK_WINDOW: Duration = Duration::from_secs(120);

/// Who holds the provisioning lock and until when. The clock is passed in, so tests
/// control time.
#[derive(Debug, Default)]
pub struct ProvisionLock {
    holder: Option<(String, Instant)>,
}

impl ProvisionLock {
    /// Takes or extends the lock for `caller` (`<senderid>.<callerid>`); false when
    /// another caller holds an unexpired lock.
    pub fn try_acquire(&mut self, caller: &str, now: Instant) -> bool {
        if let Some((holder, until)) = &self.holder {
            if holder != caller && now < *until {
                return false;
            }
        }
        self.holder = Some((caller.to_string(), now + LOCK_WINDOW));
        true
    }

    /// The current holder, if its lock has not expired at `now`.
    pub fn holder(&self, now: Instant) -> Option<&str> {
        self.holder
            .as_ref()
            .filter(|(_, until)| now < *until)
            .map(|(holder, _)| holder.as_str())
    }
}

/// The lock key of a request: `<senderid>.<callerid>`.
pub fn holder_key(sender: &str, caller: &str) -> String {
    format!("{sender}.{caller}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_caller_wins_and_others_wait_for_expiry() {
        let start = Instant::now();
        let mut lock = ProvisionLock::default();
        assert!(lock.try_acquire("p1.choria=a", start));
        assert!(!lock.try_acquire("p2.choria=b", start + Duration::from_secs(60)));
        // The holder extends its lock on every call.
        assert!(lock.try_acquire("p1.choria=a", start + Duration::from_secs(100)));
        assert!(!lock.try_acquire("p2.choria=b", start + Duration::from_secs(200)));
        assert!(lock.try_acquire("p2.choria=b", start + Duration::from_secs(221)));
        assert_eq!(
            lock.holder(start + Duration::from_secs(221)),
            Some("p2.choria=b")
        );
        assert_eq!(lock.holder(start + Duration::from_secs(400)), None);
    }
}
