//! The `choria:registration:filecontent:1` payload servers publish with the content of a file,
//! plain (`content`) or gzip-compressed (`zcontent`), both base64 (spec §4.7).

use std::io::{Read as _, Write as _};

use serde::{Deserialize, Serialize};

use crate::envelope::{b64_decode, b64_encode, check_size, encode_json, MAX_MESSAGE_BYTES};
use crate::error::{Layer, ProtocolError};

/// Protocol string of file-content registration data.
pub const FILE_CONTENT_PROTOCOL: &str = "choria:registration:filecontent:1";
/// Agent name registration requests are addressed to.
pub const REGISTRATION_AGENT: &str = "registration";
/// Largest decompressed content accepted (guards against gzip bombs).
pub const MAX_CONTENT_BYTES: usize = 4 * 1024 * 1024;

/// A file-content registration payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileContent {
    /// File modification time, Unix seconds.
    pub mtime: i64,
    /// Path of the file on the server.
    pub file: String,
    /// True when the mtime increased since the previous publish.
    pub updated: bool,
    /// [`FILE_CONTENT_PROTOCOL`].
    pub protocol: String,
    /// Base64 of the file bytes (when not compressed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub content: String,
    /// Base64 of the gzip of the file bytes (when compressed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub zcontent: String,
}

impl FileContent {
    /// Builds a payload for `bytes`, gzip-compressed when `compress` (the upstream default).
    pub fn new(
        file: &str,
        mtime: i64,
        updated: bool,
        bytes: &[u8],
        compress: bool,
    ) -> Result<Self, ProtocolError> {
        let (content, zcontent) = if compress {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            gz.write_all(bytes)
                .and_then(|_| gz.finish())
                .map(|z| (String::new(), b64_encode(&z)))
                .map_err(|e| {
                    ProtocolError::schema(Layer::Rpc, "zcontent", format!("gzip failed: {e}"))
                })?
        } else {
            (b64_encode(bytes), String::new())
        };
        Ok(FileContent {
            mtime,
            file: file.to_string(),
            updated,
            protocol: FILE_CONTENT_PROTOCOL.to_string(),
            content,
            zcontent,
        })
    }

    /// Go-compatible JSON bytes.
    pub fn encode(&self) -> Result<Vec<u8>, ProtocolError> {
        encode_json(Layer::Rpc, self)
    }

    /// Decodes an untrusted payload and checks its protocol.
    pub fn decode(bytes: &[u8]) -> Result<Self, ProtocolError> {
        check_size(Layer::Rpc, bytes.len(), MAX_MESSAGE_BYTES)?;
        let fc: FileContent =
            serde_json::from_slice(bytes).map_err(|e| ProtocolError::json(Layer::Rpc, e))?;
        if fc.protocol != FILE_CONTENT_PROTOCOL {
            return Err(ProtocolError::UnknownProtocol {
                layer: Layer::Rpc,
                found: crate::error::truncate(&fc.protocol),
            });
        }
        Ok(fc)
    }

    /// The file bytes, decompressing `zcontent` with a cap of [`MAX_CONTENT_BYTES`].
    pub fn file_bytes(&self) -> Result<Vec<u8>, ProtocolError> {
        if !self.zcontent.is_empty() {
            let z = b64_decode(Layer::Rpc, "zcontent", &self.zcontent)?;
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(z.as_slice())
                .take(MAX_CONTENT_BYTES as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|_| {
                    ProtocolError::schema(Layer::Rpc, "zcontent", "is not valid gzip data")
                })?;
            check_size(Layer::Rpc, out.len(), MAX_CONTENT_BYTES)?;
            return Ok(out);
        }
        let out = b64_decode(Layer::Rpc, "content", &self.content)?;
        check_size(Layer::Rpc, out.len(), MAX_CONTENT_BYTES)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_compressed_round_trip() {
        let data = br#"{"identity":"n1"}"#;
        let plain = FileContent::new("/etc/choria/reg.json", 100, false, data, false).unwrap();
        let text = String::from_utf8(plain.encode().unwrap()).unwrap();
        assert_eq!(
            text,
            r#"{"mtime":100,"file":"/etc/choria/reg.json","updated":false,"protocol":"choria:registration:filecontent:1","content":"eyJpZGVudGl0eSI6Im4xIn0="}"#
        );
        assert_eq!(
            FileContent::decode(text.as_bytes())
                .unwrap()
                .file_bytes()
                .unwrap(),
            data
        );

        let z = FileContent::new("/f", 1, true, data, true).unwrap();
        assert!(z.content.is_empty() && !z.zcontent.is_empty());
        let back = FileContent::decode(&z.encode().unwrap()).unwrap();
        assert_eq!(back.file_bytes().unwrap(), data);
    }

    #[test]
    fn refusals() {
        assert!(matches!(
            FileContent::decode(br#"{"mtime":1,"file":"f","updated":false,"protocol":"x"}"#),
            Err(ProtocolError::UnknownProtocol { .. })
        ));
        let bad = FileContent {
            zcontent: b64_encode(b"not gzip"),
            ..FileContent::new("f", 1, false, b"", false).unwrap()
        };
        assert!(matches!(
            bad.file_bytes(),
            Err(ProtocolError::Schema {
                field: "zcontent",
                ..
            })
        ));
        // A gzip bomb stops at the cap.
        let bomb =
            FileContent::new("f", 1, false, &vec![0u8; MAX_CONTENT_BYTES + 10], true).unwrap();
        assert!(matches!(
            bomb.file_bytes(),
            Err(ProtocolError::TooLarge { .. })
        ));
    }
}
