//! Conversions between `SystemTime` and the whole Unix seconds JWTs carry, and the
//! human form of a JWT time (`2032-06-21 11:42:57 +0000 UTC`, Go's default layout in UTC).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Whole Unix seconds of `t`, truncated; times before 1970 are negative.
pub fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(before) => {
            let d = before.duration();
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            // Truncating towards the past keeps `now >= nbf` checks conservative.
            if d.subsec_nanos() > 0 {
                -secs - 1
            } else {
                -secs
            }
        }
    }
}

/// The `SystemTime` of whole Unix seconds `secs`.
pub fn from_unix(secs: i64) -> SystemTime {
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs.unsigned_abs())
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

/// Formats Unix seconds like Go's default `time.Time` layout in UTC,
/// e.g. `2032-06-21 11:42:57 +0000 UTC`.
pub fn format_unix(secs: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02} +0000 UTC",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => format!("unix {secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        assert_eq!(format_unix(1971430977), "2032-06-21 11:42:57 +0000 UTC");
        assert_eq!(format_unix(0), "1970-01-01 00:00:00 +0000 UTC");
    }

    #[test]
    fn round_trips_seconds() {
        assert_eq!(unix_seconds(from_unix(1700000000)), 1700000000);
        assert_eq!(unix_seconds(from_unix(-5)), -5);
        assert_eq!(unix_seconds(UNIX_EPOCH - Duration::from_millis(1500)), -2);
    }
}
