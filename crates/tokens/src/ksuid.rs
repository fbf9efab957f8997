//! KSUIDs, the `jti` of every token this crate creates: 4 bytes of timestamp (seconds since
//! 2014-05-13T16:53:20Z) and 16 random bytes, written as 27 base62 characters.

use std::fmt;
use std::str::FromStr;

use rand::RngCore;

use crate::error::TokenError;

/// Unix time of KSUID timestamp zero.
pub const KSUID_EPOCH: i64 = 1_400_000_000;

const RAW_LEN: usize = 20;
const TEXT_LEN: usize = 27;
const ALPHABET: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// A K-Sortable Unique IDentifier.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ksuid([u8; RAW_LEN]);

impl Ksuid {
    /// A new KSUID for `unix_secs` with 16 random bytes from the OS generator.
    pub fn generate(unix_secs: i64) -> Result<Ksuid, TokenError> {
        let mut payload = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut payload);
        Ksuid::from_parts(unix_secs, payload)
    }

    /// The KSUID for `unix_secs` with a given payload (deterministic, for tests and vectors).
    pub fn from_parts(unix_secs: i64, payload: [u8; 16]) -> Result<Ksuid, TokenError> {
        let stamp = u32::try_from(unix_secs - KSUID_EPOCH).map_err(|_| {
            TokenError::Ksuid(format!(
                "time {unix_secs} is outside the KSUID range (2014-05-13 to 2150)"
            ))
        })?;
        let mut raw = [0u8; RAW_LEN];
        raw[..4].copy_from_slice(&stamp.to_be_bytes());
        raw[4..].copy_from_slice(&payload);
        Ok(Ksuid(raw))
    }

    /// Parses the 27-character base62 form.
    pub fn parse(text: &str) -> Result<Ksuid, TokenError> {
        if text.len() != TEXT_LEN {
            return Err(TokenError::Ksuid(format!(
                "expected {TEXT_LEN} characters, got {}",
                text.len()
            )));
        }
        let mut raw = [0u8; RAW_LEN];
        for (pos, ch) in text.bytes().enumerate() {
            let digit = base62_value(ch)
                .ok_or_else(|| TokenError::Ksuid(format!("character {pos} is not base62")))?;
            // raw = raw * 62 + digit, most significant byte first.
            let mut carry = u32::from(digit);
            for byte in raw.iter_mut().rev() {
                let v = u32::from(*byte) * 62 + carry;
                *byte = (v & 0xff) as u8;
                carry = v >> 8;
            }
            if carry != 0 {
                return Err(TokenError::Ksuid("value is larger than 20 bytes".into()));
            }
        }
        Ok(Ksuid(raw))
    }

    /// Unix seconds of the timestamp part.
    pub fn unix_seconds(&self) -> i64 {
        let stamp = u32::from_be_bytes([self.0[0], self.0[1], self.0[2], self.0[3]]);
        KSUID_EPOCH + i64::from(stamp)
    }

    /// The 16 random bytes.
    pub fn payload(&self) -> [u8; 16] {
        let mut out = [0u8; 16];
        out.copy_from_slice(&self.0[4..]);
        out
    }

    /// The 20 raw bytes.
    pub fn as_bytes(&self) -> &[u8; RAW_LEN] {
        &self.0
    }
}

impl fmt::Display for Ksuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut number = self.0;
        let mut out = [b'0'; TEXT_LEN];
        for slot in out.iter_mut().rev() {
            // number, remainder = number / 62, number % 62 (long division, base 256).
            let mut rem = 0u32;
            for byte in number.iter_mut() {
                let v = (rem << 8) | u32::from(*byte);
                *byte = (v / 62) as u8;
                rem = v % 62;
            }
            *slot = ALPHABET[rem as usize];
        }
        // The alphabet is ASCII, so this is valid UTF-8.
        f.write_str(std::str::from_utf8(&out).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Ksuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ksuid({self})")
    }
}

impl FromStr for Ksuid {
    type Err = TokenError;
    fn from_str(s: &str) -> Result<Ksuid, TokenError> {
        Ksuid::parse(s)
    }
}

fn base62_value(ch: u8) -> Option<u8> {
    match ch {
        b'0'..=b'9' => Some(ch - b'0'),
        b'A'..=b'Z' => Some(ch - b'A' + 10),
        b'a'..=b'z' => Some(ch - b'a' + 36),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Spec §2.3: KSUIDs with timestamp 1700000000.
    #[test]
    fn spec_vectors() {
        for (fill, text) in [
            (0u8, "2YBXZHqCHEdmhp5sdLmoTEW73NQ"),
            (1, "2YBXZHs5jCkPh7Cbnk8e3AMAlJR"),
            (2, "2YBXZHtzBAr2gPJKy8UTd6CETFS"),
        ] {
            let k = Ksuid::from_parts(1_700_000_000, [fill; 16]).unwrap();
            assert_eq!(k.to_string(), text);
            let back = Ksuid::parse(text).unwrap();
            assert_eq!(back, k);
            assert_eq!(back.unix_seconds(), 1_700_000_000);
            assert_eq!(back.payload(), [fill; 16]);
        }
    }

    #[test]
    fn extremes() {
        let zero = Ksuid([0; RAW_LEN]);
        assert_eq!(zero.to_string(), "000000000000000000000000000");
        let max = Ksuid([0xff; RAW_LEN]);
        assert_eq!(max.to_string(), "aWgEPTl1tmebfsQzFP4bxwgy80V");
        assert_eq!(Ksuid::parse("aWgEPTl1tmebfsQzFP4bxwgy80V").unwrap(), max);
        assert!(matches!(
            Ksuid::parse("aWgEPTl1tmebfsQzFP4bxwgy80W"),
            Err(TokenError::Ksuid(_))
        ));
        assert!(matches!(
            Ksuid::parse("zzzzzzzzzzzzzzzzzzzzzzzzzzz"),
            Err(TokenError::Ksuid(_))
        ));
    }

    #[test]
    fn rejects_bad_text() {
        assert!(Ksuid::parse("").is_err());
        assert!(Ksuid::parse("2YBXZHqCHEdmhp5sdLmoTEW73N").is_err());
        assert!(Ksuid::parse("2YBXZHqCHEdmhp5sdLmoTEW73NQQ").is_err());
        assert!(Ksuid::parse("2YBXZHqCHEdmhp5sdLmoTEW73N-").is_err());
        assert!(Ksuid::parse("2YBXZHqCHEdmhp5sdLmoTEW73Né").is_err());
    }

    #[test]
    fn generated_ids_carry_the_time() {
        let a = Ksuid::generate(1_800_000_000).unwrap();
        let b = Ksuid::generate(1_800_000_000).unwrap();
        assert_ne!(a, b);
        assert_eq!(
            Ksuid::parse(&a.to_string()).unwrap().unix_seconds(),
            1_800_000_000
        );
        assert!(Ksuid::generate(1_000).is_err());
    }
}
