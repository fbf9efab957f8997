//! Request ids, message times and the TTL age check servers apply before running a request.
//! The clock is always passed in so tests (and replays) control "now".

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use thiserror::Error;

/// Length of a request id: a UUIDv4 without dashes, 32 lowercase hex characters.
pub const REQUEST_ID_LEN: usize = 32;

/// A fresh random request id (UUIDv4 bits, no dashes, lowercase hex) as upstream v1 uses.
pub fn new_request_id() -> String {
    let mut bytes = [0u8; 16];
    // OsRng only fails when the kernel has no entropy source at all, which no input can cause;
    // rand then panics, as every other key generator in the process would.
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // RFC 4122 version 4, variant 1.
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    hex::encode(bytes)
}

/// A fresh UUIDv4 in the dashed form (lifecycle event ids).
pub fn new_uuid() -> String {
    let id = new_request_id();
    format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

/// True when `id` is 32 lowercase hex characters.
pub fn is_request_id(id: &str) -> bool {
    id.len() == REQUEST_ID_LEN && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Unix seconds of `t` (negative before 1970).
pub fn unix_seconds(t: SystemTime) -> i64 {
    since_epoch(t, |d| u128::from(d.as_secs()))
}

/// Unix nanoseconds of `t`, saturating at the `i64` range (year 1678 to 2262).
pub fn unix_nanos(t: SystemTime) -> i64 {
    since_epoch(t, |d| d.as_nanos())
}

/// The time `secs` after the epoch (negative is before).
pub fn from_unix_seconds(secs: i64) -> SystemTime {
    from_epoch(secs >= 0, Duration::from_secs(secs.unsigned_abs()))
}

/// The time `nanos` after the epoch (negative is before).
pub fn from_unix_nanos(nanos: i64) -> SystemTime {
    from_epoch(nanos >= 0, Duration::from_nanos(nanos.unsigned_abs()))
}

/// `t` relative to the epoch in the units `count` gives, signed and saturating.
fn since_epoch(t: SystemTime, count: fn(Duration) -> u128) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(count(d)).unwrap_or(i64::MAX),
        Err(e) => i64::try_from(count(e.duration())).map_or(i64::MIN, |n| -n),
    }
}

/// The time `d` after (or, not `forward`, before) the epoch; the epoch when out of range.
fn from_epoch(forward: bool, d: Duration) -> SystemTime {
    if forward {
        UNIX_EPOCH.checked_add(d)
    } else {
        UNIX_EPOCH.checked_sub(d)
    }
    .unwrap_or(UNIX_EPOCH)
}

/// Why a request is too old or from the future.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AgeError {
    /// The request was created `age` ago, at or beyond its TTL.
    #[error("request is {}s old, its ttl is {}s", age.as_secs(), ttl.as_secs())]
    Expired {
        /// How old it is.
        age: Duration,
        /// Its TTL.
        ttl: Duration,
    },
    /// The request's time is `ahead` in the future, at or beyond its TTL (clock skew or forgery).
    #[error("request time is {}s in the future, its ttl is {}s", ahead.as_secs(), ttl.as_secs())]
    FromTheFuture {
        /// How far ahead.
        ahead: Duration,
        /// Its TTL.
        ttl: Duration,
    },
}

/// The server age check (spec §6.6 step 5): `time` must lie strictly within
/// `(now − ttl, now + ttl)`.
pub fn check_age(time: SystemTime, ttl: Duration, now: SystemTime) -> Result<(), AgeError> {
    match now.duration_since(time) {
        Ok(age) if age >= ttl => Err(AgeError::Expired { age, ttl }),
        Ok(_) => Ok(()),
        Err(e) if e.duration() >= ttl => Err(AgeError::FromTheFuture {
            ahead: e.duration(),
            ttl,
        }),
        Err(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_32_lower_hex_and_unique() {
        let a = new_request_id();
        let b = new_request_id();
        assert!(is_request_id(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(&a[12..13], "4");
        assert!(!is_request_id("0123456789ABCDEF0123456789abcdef"));
        assert!(!is_request_id("0123"));
        let u = new_uuid();
        assert_eq!(u.len(), 36);
        assert_eq!(u.matches('-').count(), 4);
    }

    #[test]
    fn time_conversions_round_trip() {
        let t = from_unix_seconds(1_700_000_000);
        assert_eq!(unix_seconds(t), 1_700_000_000);
        assert_eq!(unix_nanos(t), 1_700_000_000_000_000_000);
        assert_eq!(
            unix_nanos(from_unix_nanos(1_700_000_000_123_456_789)),
            1_700_000_000_123_456_789
        );
        assert_eq!(unix_seconds(from_unix_seconds(-5)), -5);
    }

    #[test]
    fn age_check_is_strict_on_both_sides() {
        let now = from_unix_seconds(1_000_000);
        let ttl = Duration::from_secs(60);
        assert_eq!(check_age(from_unix_seconds(1_000_000), ttl, now), Ok(()));
        assert_eq!(check_age(from_unix_seconds(999_941), ttl, now), Ok(()));
        assert!(matches!(
            check_age(from_unix_seconds(999_940), ttl, now),
            Err(AgeError::Expired { .. })
        ));
        assert_eq!(check_age(from_unix_seconds(1_000_059), ttl, now), Ok(()));
        assert!(matches!(
            check_age(from_unix_seconds(1_000_060), ttl, now),
            Err(AgeError::FromTheFuture { .. })
        ));
    }
}
