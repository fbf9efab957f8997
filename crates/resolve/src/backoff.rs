//! The jittered, capped backoff between SRV lookups (spec §4.1: steps 0.5 s … 20 s).

use std::time::Duration;

use rand::Rng;

/// Longest wait between SRV lookups.
pub const MAX_SRV_BACKOFF: Duration = Duration::from_secs(20);

/// Jittered backoff after `attempt` failures: 0.5 s doubling up to [`MAX_SRV_BACKOFF`],
/// each step scaled by a random factor in [0.5, 1), never below 100 ms.
pub fn backoff(attempt: u32) -> Duration {
    let base = Duration::from_millis(500)
        .saturating_mul(1u32 << attempt.min(6))
        .min(MAX_SRV_BACKOFF);
    let factor = rand::thread_rng().gen_range(0.5..1.0);
    base.mul_f64(factor).max(Duration::from_millis(100))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 0..40 {
            assert!(backoff(attempt) <= MAX_SRV_BACKOFF);
            assert!(backoff(attempt) >= Duration::from_millis(100));
        }
        assert!(backoff(0) < Duration::from_millis(500));
        assert!(backoff(10) >= MAX_SRV_BACKOFF / 2);
    }
}
