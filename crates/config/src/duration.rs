//! Duration strings as Choria writes them: Go durations (`1h30m`, `1.5h`, `250ms`) plus the
//! calendar-ish units `d`, `w`, `M` and `y` used by token validity and provisioner settings.
//!
//! Units: `ns`, `us`/`µs`/`μs`, `ms`, `s`, `m`, `h`, `d`/`D` (24h), `w`/`W` (7d), `M` (30d),
//! `y`/`Y` (365d). Any number of `<number><unit>` pairs may follow each other (`1y2d`), each
//! number may carry a fraction (`1.5h`). A lone `0` is zero, as in Go. Negative values are
//! refused: nothing in Choria has a use for them. Upstream only allows one calendar unit as the
//! final letter (`5d`); accepting combinations is a superset that keeps every upstream value
//! valid. Upstream also accepts `S`/`H` as unit letters and then fails, we simply refuse them.

use std::fmt;
use std::time::Duration;

use thiserror::Error;

/// Largest duration accepted: Go's `time.Duration` is an `int64` of nanoseconds (about 292
/// years), so anything larger could never round-trip to an upstream component.
pub const MAX_DURATION: Duration = Duration::from_nanos(i64::MAX as u64);

/// Longest duration string we look at; longer input is refused before parsing.
pub const MAX_DURATION_TEXT: usize = 128;

const NANOS_PER_SECOND: u128 = 1_000_000_000;
const HOUR: u128 = 3600 * NANOS_PER_SECOND;
const DAY: u128 = 24 * HOUR;

/// Why a duration string was refused. Every variant carries the offending input.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DurationError {
    /// The string was empty or only whitespace.
    #[error("empty duration: expected a value such as 90s, 10m, 1h30m, 5d or 1y")]
    Empty,
    /// The string started with `-`.
    #[error("negative duration {input:?} is not allowed")]
    Negative {
        /// The whole input.
        input: String,
    },
    /// A number was expected at a position but something else was found.
    #[error("invalid duration {input:?}: expected a number at byte {position}")]
    ExpectedNumber {
        /// The whole input.
        input: String,
        /// Byte offset of the problem.
        position: usize,
    },
    /// A number had no unit after it.
    #[error("invalid duration {input:?}: missing unit after the number at byte {position} (use ns, us, ms, s, m, h, d, w, M or y)")]
    MissingUnit {
        /// The whole input.
        input: String,
        /// Byte offset where the unit should start.
        position: usize,
    },
    /// A unit was not one of the known ones.
    #[error(
        "invalid duration {input:?}: unknown unit {unit:?} (use ns, us, ms, s, m, h, d, w, M or y)"
    )]
    UnknownUnit {
        /// The whole input.
        input: String,
        /// The unit text found.
        unit: String,
    },
    /// The value is larger than [`MAX_DURATION`].
    #[error("duration {input:?} is too large: the maximum is about 292 years")]
    Overflow {
        /// The whole input.
        input: String,
    },
    /// The string is longer than [`MAX_DURATION_TEXT`].
    #[error("duration text is {len} bytes long, the maximum is {max}")]
    TooLong {
        /// Length of the input in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// Parses a Choria duration string (see the module docs for the syntax).
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.len() > MAX_DURATION_TEXT {
        return Err(DurationError::TooLong {
            len: text.len(),
            max: MAX_DURATION_TEXT,
        });
    }
    let input = text.trim();
    if input.is_empty() {
        return Err(DurationError::Empty);
    }
    let owned = || input.to_string();
    let body = match input.as_bytes()[0] {
        b'-' => return Err(DurationError::Negative { input: owned() }),
        b'+' => &input[1..],
        _ => input,
    };
    let offset = input.len() - body.len();
    if body == "0" {
        return Ok(Duration::ZERO);
    }
    if body.is_empty() {
        return Err(DurationError::ExpectedNumber {
            input: owned(),
            position: offset,
        });
    }

    let bytes = body.as_bytes();
    let mut pos = 0;
    let mut total: u128 = 0;
    while pos < bytes.len() {
        // number: digits, optionally '.', optionally digits; at least one digit overall
        let int_start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
        }
        let int_digits = &body[int_start..pos];
        let mut frac_digits = "";
        if pos < bytes.len() && bytes[pos] == b'.' {
            pos += 1;
            let frac_start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
            }
            frac_digits = &body[frac_start..pos];
        }
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(DurationError::ExpectedNumber {
                input: owned(),
                position: offset + int_start,
            });
        }

        let unit_start = pos;
        while pos < bytes.len() && !bytes[pos].is_ascii_digit() && bytes[pos] != b'.' {
            pos += 1;
        }
        let unit = &body[unit_start..pos];
        if unit.is_empty() {
            return Err(DurationError::MissingUnit {
                input: owned(),
                position: offset + unit_start,
            });
        }
        let scale = unit_nanos(unit).ok_or_else(|| DurationError::UnknownUnit {
            input: owned(),
            unit: unit.to_string(),
        })?;

        let overflow = || DurationError::Overflow { input: owned() };
        let whole = int_digits
            .bytes()
            .try_fold(0u128, |acc, d| {
                acc.checked_mul(10)?.checked_add(u128::from(d - b'0'))
            })
            .ok_or_else(overflow)?;
        let mut value = whole.checked_mul(scale).ok_or_else(overflow)?;
        // The largest unit is under 10^17 ns, so digits past the 18th cannot change the
        // nanosecond count; dropping them also keeps the product below 10^35 < u128::MAX.
        let frac = &frac_digits[..frac_digits.len().min(18)];
        if !frac.is_empty() {
            let numerator = frac
                .bytes()
                .fold(0u128, |acc, d| acc * 10 + u128::from(d - b'0'));
            let denominator = 10u128.pow(frac.len() as u32);
            value = value
                .checked_add(numerator * scale / denominator)
                .ok_or_else(overflow)?;
        }
        total = total.checked_add(value).ok_or_else(overflow)?;
        if total > MAX_DURATION.as_nanos() {
            return Err(overflow());
        }
    }
    // total <= MAX_DURATION (checked in the loop), which fits in u64.
    let nanos = u64::try_from(total).map_err(|_| DurationError::Overflow { input: owned() })?;
    Ok(Duration::from_nanos(nanos))
}

/// Parses a duration as upstream's `util.ParseDuration` reads the provisioner's settings and
/// helper validities (spec provisioner §3.3): blank text is zero, and a value whose last unit
/// is a calendar unit (`d`, `w`, `M`, `y`) is truncated to whole hours (`0.3d` is 7h). Other
/// input is read as [`parse_duration`] reads it.
pub fn parse_duration_upstream(text: &str) -> Result<Duration, DurationError> {
    let input = text.trim();
    if input.is_empty() && text.len() <= MAX_DURATION_TEXT {
        return Ok(Duration::ZERO);
    }
    let duration = parse_duration(input)?;
    let calendar = input
        .chars()
        .last()
        .is_some_and(|c| matches!(c, 'd' | 'D' | 'w' | 'W' | 'M' | 'y' | 'Y'));
    if calendar {
        let hour = HOUR as u64 / NANOS_PER_SECOND as u64;
        return Ok(Duration::from_secs(duration.as_secs() / hour * hour));
    }
    Ok(duration)
}

/// Renders a duration compactly with the largest units first (`1y2d3h`, `90s` → `1m30s`,
/// `1.5s` → `1s500ms`); the output always parses back to the same value.
pub fn format_duration(duration: Duration) -> String {
    let mut rest = duration.as_nanos();
    if rest == 0 {
        return "0s".to_string();
    }
    let units: [(&str, u128); 9] = [
        ("y", 365 * DAY),
        ("d", DAY),
        ("h", HOUR),
        ("m", 60 * NANOS_PER_SECOND),
        ("s", NANOS_PER_SECOND),
        ("ms", 1_000_000),
        ("us", 1_000),
        ("ns", 1),
        ("", 0),
    ];
    let mut out = String::new();
    for (name, scale) in units {
        if scale == 0 {
            break;
        }
        let count = rest / scale;
        if count > 0 {
            out.push_str(&count.to_string());
            out.push_str(name);
            rest %= scale;
        }
    }
    out
}

/// Display adaptor for a [`Duration`] using [`format_duration`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

fn unit_nanos(unit: &str) -> Option<u128> {
    Some(match unit {
        "ns" => 1,
        "us" | "µs" | "μs" => 1_000,
        "ms" => 1_000_000,
        "s" => NANOS_PER_SECOND,
        "m" => 60 * NANOS_PER_SECOND,
        "h" => HOUR,
        "d" | "D" => DAY,
        "w" | "W" => 7 * DAY,
        "M" => 30 * DAY,
        "y" | "Y" => 365 * DAY,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn go_durations() {
        assert_eq!(parse_duration("90s"), Ok(secs(90)));
        assert_eq!(parse_duration("10m"), Ok(secs(600)));
        assert_eq!(parse_duration("1h30m"), Ok(secs(5400)));
        assert_eq!(parse_duration("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("3us"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3µs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("3μs"), Ok(Duration::from_micros(3)));
        assert_eq!(parse_duration("7ns"), Ok(Duration::from_nanos(7)));
        assert_eq!(
            parse_duration("1h2m3s4ms"),
            Ok(Duration::from_millis(3_723_004))
        );
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("+2s"), Ok(secs(2)));
        assert_eq!(parse_duration("  2s \t"), Ok(secs(2)));
    }

    #[test]
    fn calendar_units() {
        let day = 86_400;
        assert_eq!(parse_duration("5d"), Ok(secs(5 * day)));
        assert_eq!(parse_duration("5D"), Ok(secs(5 * day)));
        assert_eq!(parse_duration("2w"), Ok(secs(14 * day)));
        assert_eq!(parse_duration("2W"), Ok(secs(14 * day)));
        assert_eq!(parse_duration("1M"), Ok(secs(30 * day)));
        assert_eq!(parse_duration("1y"), Ok(secs(365 * day)));
        assert_eq!(parse_duration("1Y"), Ok(secs(365 * day)));
        assert_eq!(parse_duration("1y2d"), Ok(secs(367 * day)));
        assert_eq!(parse_duration("1.5d"), Ok(secs(36 * 3600)));
        assert_eq!(parse_duration("1d12h"), Ok(secs(36 * 3600)));
    }

    #[test]
    fn refusals_are_precise() {
        assert_eq!(parse_duration(""), Err(DurationError::Empty));
        assert_eq!(parse_duration("   "), Err(DurationError::Empty));
        assert!(matches!(
            parse_duration("-1s"),
            Err(DurationError::Negative { .. })
        ));
        assert!(matches!(
            parse_duration("10"),
            Err(DurationError::MissingUnit { position: 2, .. })
        ));
        assert!(matches!(
            parse_duration("1h30"),
            Err(DurationError::MissingUnit { position: 4, .. })
        ));
        assert!(
            matches!(parse_duration("5x"), Err(DurationError::UnknownUnit { ref unit, .. }) if unit == "x")
        );
        assert!(
            matches!(parse_duration("5S"), Err(DurationError::UnknownUnit { ref unit, .. }) if unit == "S")
        );
        assert!(
            matches!(parse_duration("5 s"), Err(DurationError::UnknownUnit { ref unit, .. }) if unit == " s")
        );
        assert!(matches!(
            parse_duration("s"),
            Err(DurationError::ExpectedNumber { position: 0, .. })
        ));
        assert!(matches!(
            parse_duration("."),
            Err(DurationError::ExpectedNumber { .. })
        ));
        assert!(matches!(
            parse_duration("+"),
            Err(DurationError::ExpectedNumber { .. })
        ));
        assert!(matches!(
            parse_duration("300y"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration("99999999999999999999999999999999999999999h"),
            Err(DurationError::Overflow { .. })
        ));
        assert!(matches!(
            parse_duration(&"1s".repeat(100)),
            Err(DurationError::TooLong { .. })
        ));
    }

    #[test]
    fn upstream_reading_is_blank_as_zero_and_whole_hours_for_calendar_units() {
        assert_eq!(parse_duration_upstream(" "), Ok(Duration::ZERO));
        assert_eq!(parse_duration_upstream("0.5d"), Ok(secs(12 * 3600)));
        assert_eq!(parse_duration_upstream("0.3d"), Ok(secs(7 * 3600)));
        assert_eq!(parse_duration_upstream("1.01w"), Ok(secs(169 * 3600)));
        assert_eq!(parse_duration_upstream("1.5h"), Ok(secs(5400)));
        assert_eq!(parse_duration_upstream("90s"), Ok(secs(90)));
        assert_eq!(
            parse_duration_upstream("250ms"),
            Ok(Duration::from_millis(250))
        );
        assert!(matches!(
            parse_duration_upstream("5x"),
            Err(DurationError::UnknownUnit { .. })
        ));
        assert!(matches!(
            parse_duration_upstream("-1d"),
            Err(DurationError::Negative { .. })
        ));
    }

    #[test]
    fn error_messages_name_the_input() {
        let err = parse_duration("5x").unwrap_err().to_string();
        assert!(
            err.contains("\"5x\"") && err.contains("unknown unit"),
            "{err}"
        );
    }

    #[test]
    fn format_round_trips() {
        for text in [
            "1y2d", "90s", "1h30m", "1.5s", "7ns", "2w", "0", "1M", "250ms", "3us",
        ] {
            let d = parse_duration(text).unwrap();
            let shown = format_duration(d);
            assert_eq!(parse_duration(&shown), Ok(d), "{text} -> {shown}");
        }
        assert_eq!(format_duration(secs(90)), "1m30s");
        assert_eq!(format_duration(secs(367 * 86_400)), "1y2d");
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(
            HumanDuration(Duration::from_millis(1500)).to_string(),
            "1s500ms"
        );
    }

    #[test]
    fn random_input_never_panics() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        let alphabet = b"0123456789.+-smhdwyMYDWnu \xc2\xb5";
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 24) as usize;
            let mut bytes = Vec::with_capacity(len);
            let mut s = seed;
            for _ in 0..len {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                bytes.push(alphabet[(s >> 33) as usize % alphabet.len()]);
            }
            let text = String::from_utf8_lossy(&bytes);
            let _ = parse_duration(&text);
        }
    }
}
