//! The `data` of the node replies the pipeline reads (spec §1.7), as typed values decoded
//! once (B2): a missing or `null` text field is empty, any other wrong type refuses the reply.

use serde::{Deserialize, Deserializer};

/// `choria_provision#jwt`: the node's provisioning JWT and its ECDH public key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct JwtReply {
    /// The provisioning JWT the node was given.
    #[serde(deserialize_with = "text")]
    pub jwt: String,
    /// Hex X25519 public key for key delivery (spec §4.4).
    #[serde(deserialize_with = "text")]
    pub ecdh_public: String,
}

/// `choria_provision#gen25519`: the node's new ed25519 key and its signature of our nonce.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct Gen25519Reply {
    /// Hex public key.
    #[serde(deserialize_with = "text")]
    pub public_key: String,
    /// Hex signature of the nonce.
    #[serde(deserialize_with = "text")]
    pub signature: String,
    /// Where the node keeps `server.seed` / `server.jwt`.
    #[serde(deserialize_with = "text")]
    pub directory: String,
}

/// `rpcutil#inventory`: the two fields the pipeline acts on (the helper gets the whole data).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct InventoryReply {
    /// Running Choria version.
    #[serde(deserialize_with = "text")]
    pub version: String,
    /// Whether the node supports `release_update`.
    #[serde(deserialize_with = "flag")]
    pub upgradable: bool,
}

/// `choria_provision#gencsr`: the node's certificate request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct CsrReply {
    /// PEM `CERTIFICATE REQUEST`.
    #[serde(deserialize_with = "text")]
    pub csr: String,
    /// PEM public key.
    #[serde(deserialize_with = "text")]
    pub public_key: String,
    /// The node's TLS directory.
    #[serde(deserialize_with = "text")]
    pub ssldir: String,
}

/// `configure`, `restart`, `shutdown`, `release_update`: a message for the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub struct MessageReply {
    /// What the node did.
    #[serde(deserialize_with = "text")]
    pub message: String,
}

fn text<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn b2_missing_and_null_are_empty_wrong_types_are_refused() {
        let r: JwtReply =
            serde_json::from_value(json!({"jwt": "t", "ecdh_public": null})).expect("jwt");
        assert_eq!(r.jwt, "t");
        assert_eq!(r.ecdh_public, "");
        let r: InventoryReply =
            serde_json::from_value(json!({"version": "1.0", "agents": []})).expect("inventory");
        assert!(!r.upgradable);
        assert!(serde_json::from_value::<InventoryReply>(json!({"upgradable": "yes"})).is_err());
        assert!(serde_json::from_value::<Gen25519Reply>(json!({"public_key": 5})).is_err());
    }
}
