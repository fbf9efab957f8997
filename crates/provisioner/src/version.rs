//! RPM-style version comparison (spec appendix B), used to decide whether a node needs
//! `release_update` before it is configured.

use std::cmp::Ordering;

/// Compares two `[epoch:]version[-release]` strings the way RPM does.
pub fn compare(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let (ea, va, ra) = split(a);
    let (eb, vb, rb) = split(b);
    ea.cmp(&eb)
        .then_with(|| rpmvercmp(va, vb))
        .then_with(|| rpmvercmp(ra, rb))
}

/// Whether two versions are the same release (the only question the pipeline asks).
pub fn same(a: &str, b: &str) -> bool {
    compare(a, b) == Ordering::Equal
}

fn split(text: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match text.split_once(':') {
        Some((e, rest)) => (e.trim().parse().unwrap_or(0), rest),
        None => (0, text),
    };
    match rest.split_once('-') {
        Some((v, r)) => (epoch, v, r),
        None => (epoch, rest, ""),
    }
}

#[derive(Debug, PartialEq, Eq)]
enum Run<'a> {
    Tilde,
    Digits(&'a str),
    Alpha(&'a str),
}

fn runs(text: &str) -> Vec<Run<'_>> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        if c == b'~' {
            out.push(Run::Tilde);
            i += 1;
        } else if c.is_ascii_digit() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
            out.push(Run::Digits(&text[start..i]));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while i < bytes.len() && bytes[i].is_ascii_alphabetic() {
                i += 1;
            }
            out.push(Run::Alpha(&text[start..i]));
        } else {
            // Separators only delimit runs.
            i += 1;
        }
    }
    out
}

fn rpmvercmp(a: &str, b: &str) -> Ordering {
    if a == b {
        return Ordering::Equal;
    }
    let ra = runs(a);
    let rb = runs(b);
    for (x, y) in ra.iter().zip(rb.iter()) {
        let ord = match (x, y) {
            (Run::Tilde, Run::Tilde) => Ordering::Equal,
            (Run::Tilde, _) => Ordering::Less,
            (_, Run::Tilde) => Ordering::Greater,
            (Run::Digits(_), Run::Alpha(_)) => Ordering::Greater,
            (Run::Alpha(_), Run::Digits(_)) => Ordering::Less,
            (Run::Digits(p), Run::Digits(q)) => {
                let p = p.trim_start_matches('0');
                let q = q.trim_start_matches('0');
                p.len().cmp(&q.len()).then_with(|| p.cmp(q))
            }
            (Run::Alpha(p), Run::Alpha(q)) => p.cmp(q),
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    let common = ra.len().min(rb.len());
    match (ra.get(common), rb.get(common)) {
        (None, None) => Ordering::Equal,
        (Some(Run::Tilde), _) => Ordering::Less,
        (_, Some(Run::Tilde)) => Ordering::Greater,
        (Some(_), None) => Ordering::Greater,
        (None, Some(_)) => Ordering::Less,
        (Some(_), Some(_)) => Ordering::Equal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Ordering::*;

    #[test]
    fn rpm_semantics() {
        let cases = [
            ("1.0", "1.0", Equal),
            ("1.0", "1_0", Equal),
            ("1.0", "1.1", Less),
            ("1.10", "1.9", Greater),
            ("1.01", "1.1", Equal),
            ("1.0a", "1.0", Greater),
            ("1.0~rc1", "1.0", Less),
            ("1.0~rc1", "1.0~rc2", Less),
            ("2.0", "1:1.0", Less),
            ("1:1.0", "1.0", Greater),
            ("0.28.0-1", "0.28.0", Greater),
            ("0.28.0-1", "0.28.0-2", Less),
            ("1.a", "1.1", Less),
            ("x:1.0", "1.0", Equal),
            ("0.99.0.20221129", "0.99.0.20221130", Less),
        ];
        for (a, b, want) in cases {
            assert_eq!(compare(a, b), want, "{a} vs {b}");
            assert_eq!(compare(b, a), want.reverse(), "{b} vs {a}");
        }
        assert!(same("1.0", "1_0"));
        assert!(!same("0.28.0", "0.28.0-1"));
    }
}
