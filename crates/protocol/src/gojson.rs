//! JSON encoding byte-compatible with Go's `encoding/json`, which upstream uses everywhere.
//! Hashes and signatures cover exact bytes, so we escape `<`, `>`, `&`, U+2028 and U+2029 as Go does.

use std::io;

use serde::Serialize;
use serde_json::ser::{CharEscape, Formatter};

/// Serialises `value` compactly with Go's string escaping rules. Struct fields come out in
/// declaration order and map keys sorted, exactly like `json.Marshal` on the upstream types.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut out = Vec::with_capacity(256);
    let mut ser = serde_json::Serializer::with_formatter(&mut out, GoFormatter);
    value.serialize(&mut ser)?;
    Ok(out)
}

/// [`to_vec`] as a `String`.
pub fn to_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let bytes = to_vec(value)?;
    // serde_json only writes valid UTF-8 and our escapes are ASCII.
    String::from_utf8(bytes).map_err(|e| serde_json::Error::io(io::Error::other(e)))
}

struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        // Most fragments need no escaping; 0xE2 is the first byte of U+2028 and U+2029.
        if !fragment
            .bytes()
            .any(|b| matches!(b, b'<' | b'>' | b'&' | 0xE2))
        {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            let escape = match c {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..i])?;
            writer.write_all(escape.as_bytes())?;
            start = i + c.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn write_char_escape<W: ?Sized + io::Write>(
        &mut self,
        writer: &mut W,
        char_escape: CharEscape,
    ) -> io::Result<()> {
        // Go writes \n, \r, \t, \b, \f, \" and \\ short, other control characters as \u00XX:
        // the same as serde_json's default.
        serde_json::ser::CompactFormatter.write_char_escape(writer, char_escape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_like_go() {
        let v = serde_json::json!({"b": "<a&b>\u{2028}\n\"", "a": 1});
        assert_eq!(
            to_string(&v).unwrap(),
            r#"{"a":1,"b":"\u003ca\u0026b\u003e\u2028\n\""}"#
        );
    }
}
