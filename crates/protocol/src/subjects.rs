//! NATS subject names used by Choria servers, clients, the broker and the provisioner, and the
//! checks that keep untrusted identities from smuggling wildcards or extra tokens into them.
//!
//! Layout (spec broker §7): `<collective>.broadcast.agent.<agent>`, `<collective>.node.<identity>`,
//! `<collective>.reply.<hash(callerid)>.<requestid>`, `choria.lifecycle.event.<type>.<component>`.
//! The hash is hex md5 of the caller id, or hex sha256 in FIPS mode.

use md5::{Digest as _, Md5};
use sha2::Sha256;
use thiserror::Error;

/// The collective used by servers in provisioning mode.
pub const PROVISIONING_COLLECTIVE: &str = "provisioning";
/// Where provisioning-mode servers publish registration data.
pub const PROVISIONING_REGISTRATION_SUBJECT: &str = "provisioning.registration.data";
/// Lifecycle component of a server in provisioning mode.
pub const PROVISION_MODE_COMPONENT: &str = "provision_mode_server";
/// Agents a provisioning-mode server answers broadcasts for (spec broker §7).
pub const PROVISIONING_AGENTS: [&str; 4] =
    ["discovery", "rpcutil", "choria_util", "choria_provision"];
/// Lifecycle component of the provisioner's own startup event.
pub const PROVISIONER_COMPONENT: &str = "provisioner";
/// JetStream KV subject of the provisioner's leader election key.
pub const LEADER_ELECTION_KEY_SUBJECT: &str = "$KV.CHORIA_LEADER_ELECTION.provisioner";
/// Stream info subject of the leader election bucket, as imported into `provisioning`.
pub const LEADER_ELECTION_STREAM_INFO_SUBJECT: &str =
    "choria.streams.STREAM.INFO.KV_CHORIA_LEADER_ELECTION";
/// What the provisioner subscribes to for registration data of any kind.
pub const PROVISIONING_REGISTRATION_WILDCARD: &str = "provisioning.registration.>";
/// Reply-to used by messages that expect no answer (registration).
pub const DEV_NULL: &str = "dev.null";
/// Longest subject token we build from untrusted input.
pub const MAX_TOKEN_LEN: usize = 256;

/// Why a value cannot be used in a subject.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SubjectError {
    /// The value was empty.
    #[error("{what} is empty")]
    Empty {
        /// Which value (`identity`, `collective`, ...).
        what: &'static str,
    },
    /// The value contains a character that is not allowed.
    #[error("{what} {value:?} contains {found:?}, which is not allowed in a subject")]
    BadCharacter {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
        /// The offending character.
        found: char,
    },
    /// A dotted value has an empty token (leading, trailing or doubled `.`).
    #[error("{what} {value:?} has an empty token (leading, trailing or doubled '.')")]
    EmptyToken {
        /// Which value.
        what: &'static str,
        /// The value.
        value: String,
    },
    /// The value is longer than [`MAX_TOKEN_LEN`].
    #[error("{what} is {len} bytes long, the maximum is {MAX_TOKEN_LEN}")]
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its length.
        len: usize,
    },
}

/// Lowercase hex md5 of `text`: upstream `UniqueID` of a server identity or client caller id
/// (reply subjects, inbox prefixes, the private network id `choria jwt view` prints).
pub fn md5_hex(text: &str) -> String {
    hex::encode(Md5::digest(text.as_bytes()))
}

/// Hex sha256 of `text` (reply subjects in FIPS mode).
pub fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// The hash of a caller id used in reply subjects and inbox prefixes.
pub fn caller_hash(caller_id: &str, fips: bool) -> String {
    if fips {
        sha256_hex(caller_id)
    } else {
        md5_hex(caller_id)
    }
}

/// Checks a single subject token (collective, agent, component, request id): no `.`,
/// whitespace, control characters, `*` or `>`.
pub fn validate_token(what: &'static str, value: &str) -> Result<(), SubjectError> {
    check_common(what, value)?;
    if value.contains('.') {
        return Err(SubjectError::BadCharacter {
            what,
            value: value.to_string(),
            found: '.',
        });
    }
    Ok(())
}

/// Checks an identity, which may contain dots (`ginkgo.example.net`) but no empty tokens,
/// whitespace, control characters, `*` or `>`.
pub fn validate_identity(identity: &str) -> Result<(), SubjectError> {
    check_common("identity", identity)?;
    if identity.split('.').any(str::is_empty) {
        return Err(SubjectError::EmptyToken {
            what: "identity",
            value: identity.to_string(),
        });
    }
    Ok(())
}

/// `<collective>.node.<identity>`: requests directed at one server.
pub fn node(collective: &str, identity: &str) -> Result<String, SubjectError> {
    validate_token("collective", collective)?;
    validate_identity(identity)?;
    Ok(format!("{collective}.node.{identity}"))
}

/// `<collective>.broadcast.agent.<agent>`: broadcast requests to an agent.
pub fn broadcast_agent(collective: &str, agent: &str) -> Result<String, SubjectError> {
    validate_token("collective", collective)?;
    validate_token("agent", agent)?;
    Ok(format!("{collective}.broadcast.agent.{agent}"))
}

/// `<collective>.broadcast.service.<agent>`: service agents (queue group = agent name).
pub fn broadcast_service(collective: &str, agent: &str) -> Result<String, SubjectError> {
    validate_token("collective", collective)?;
    validate_token("agent", agent)?;
    Ok(format!("{collective}.broadcast.service.{agent}"))
}

/// `<collective>.reply.<hash(caller_id)>`: inbox prefix for a JWT-authenticated connection.
pub fn reply_prefix(collective: &str, caller_id: &str, fips: bool) -> Result<String, SubjectError> {
    validate_token("collective", collective)?;
    Ok(format!(
        "{collective}.reply.{}",
        caller_hash(caller_id, fips)
    ))
}

/// `provisioning.reply.<md5(caller_id)>`: the provisioner's inbox prefix. Infallible because
/// the collective is the constant [`PROVISIONING_COLLECTIVE`] and the hash is plain hex.
pub fn provisioning_reply_prefix(caller_id: &str) -> String {
    format!("{PROVISIONING_COLLECTIVE}.reply.{}", md5_hex(caller_id))
}

/// `<collective>.reply`: inbox prefix of a connection without a caller id to hash
/// (servers in provisioning mode).
pub fn unhashed_reply_prefix(collective: &str) -> Result<String, SubjectError> {
    validate_token("collective", collective)?;
    Ok(format!("{collective}.reply"))
}

/// `<collective>.reply.<hash(caller_id)>.<request_id>`: where replies to a request go.
pub fn reply(
    collective: &str,
    caller_id: &str,
    request_id: &str,
    fips: bool,
) -> Result<String, SubjectError> {
    validate_token("request id", request_id)?;
    Ok(format!(
        "{}.{request_id}",
        reply_prefix(collective, caller_id, fips)?
    ))
}

/// `<collective>.broadcast.agent.registration`: default registration target.
pub fn registration(collective: &str) -> Result<String, SubjectError> {
    broadcast_agent(collective, "registration")
}

/// `choria.lifecycle.event.<type>.<component>`.
pub fn lifecycle_event(event_type: &str, component: &str) -> Result<String, SubjectError> {
    validate_token("event type", event_type)?;
    validate_token("component", component)?;
    Ok(format!("choria.lifecycle.event.{event_type}.{component}"))
}

/// `choria.federation.<federation>.federation`: client side of a federation.
pub fn federation(federation: &str) -> Result<String, SubjectError> {
    validate_token("federation", federation)?;
    Ok(format!("choria.federation.{federation}.federation"))
}

fn check_common(what: &'static str, value: &str) -> Result<(), SubjectError> {
    if value.is_empty() {
        return Err(SubjectError::Empty { what });
    }
    if value.len() > MAX_TOKEN_LEN {
        return Err(SubjectError::TooLong {
            what,
            len: value.len(),
        });
    }
    if let Some(found) = value
        .chars()
        .find(|c| c.is_whitespace() || c.is_control() || *c == '*' || *c == '>')
    {
        return Err(SubjectError::BadCharacter {
            what,
            value: value.to_string(),
            found,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_vectors() {
        assert_eq!(md5_hex("up=ginkgo"), "e33bf0376d4accbb4a8fd24b2f840b2e");
        assert_eq!(
            md5_hex("ginkgo.example.net"),
            "3f7c3a791b0eb10da51dca4cdedb9418"
        );
        assert_eq!(
            md5_hex("choria=provisioner"),
            "14e7121541a0184fb18445801baaaf31"
        );
        assert_eq!(
            caller_hash("up=ginkgo", false),
            "e33bf0376d4accbb4a8fd24b2f840b2e"
        );
        assert_eq!(caller_hash("x", true).len(), 64);
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn builders() {
        assert_eq!(
            node("provisioning", "ginkgo.example.net").unwrap(),
            "provisioning.node.ginkgo.example.net"
        );
        assert_eq!(
            broadcast_agent("choria", "discovery").unwrap(),
            "choria.broadcast.agent.discovery"
        );
        assert_eq!(
            broadcast_service("choria", "x").unwrap(),
            "choria.broadcast.service.x"
        );
        assert_eq!(
            reply(
                "provisioning",
                "choria=provisioner",
                "0123456789abcdef0123456789abcdef",
                false
            )
            .unwrap(),
            "provisioning.reply.14e7121541a0184fb18445801baaaf31.0123456789abcdef0123456789abcdef"
        );
        assert_eq!(
            reply_prefix("provisioning", "up=ginkgo", false).unwrap(),
            "provisioning.reply.e33bf0376d4accbb4a8fd24b2f840b2e"
        );
        assert_eq!(
            provisioning_reply_prefix("up=ginkgo"),
            reply_prefix(PROVISIONING_COLLECTIVE, "up=ginkgo", false).unwrap()
        );
        assert_eq!(
            unhashed_reply_prefix("provisioning").unwrap(),
            "provisioning.reply"
        );
        assert_eq!(
            registration("choria").unwrap(),
            "choria.broadcast.agent.registration"
        );
        assert_eq!(
            lifecycle_event("startup", PROVISION_MODE_COMPONENT).unwrap(),
            "choria.lifecycle.event.startup.provision_mode_server"
        );
        assert_eq!(federation("x").unwrap(), "choria.federation.x.federation");
    }

    #[test]
    fn refuses_wildcards_and_spaces() {
        assert!(matches!(
            node("c", "a.*"),
            Err(SubjectError::BadCharacter { found: '*', .. })
        ));
        assert!(matches!(
            node("c", ">"),
            Err(SubjectError::BadCharacter { found: '>', .. })
        ));
        assert!(matches!(
            node("c", "a b"),
            Err(SubjectError::BadCharacter { found: ' ', .. })
        ));
        assert!(matches!(
            node("c", "a..b"),
            Err(SubjectError::EmptyToken { .. })
        ));
        assert!(matches!(
            node("c", ".a"),
            Err(SubjectError::EmptyToken { .. })
        ));
        assert!(matches!(
            node("c", ""),
            Err(SubjectError::Empty { what: "identity" })
        ));
        assert!(matches!(
            node("a.b", "x"),
            Err(SubjectError::BadCharacter { found: '.', .. })
        ));
        assert!(matches!(
            broadcast_agent("c", "a\n"),
            Err(SubjectError::BadCharacter { .. })
        ));
        assert!(matches!(
            reply("c", "x", "a.b", false),
            Err(SubjectError::BadCharacter { .. })
        ));
        assert!(matches!(
            lifecycle_event("startup", "a.>"),
            Err(SubjectError::BadCharacter { .. })
        ));
        assert!(matches!(
            node("c", &"a".repeat(300)),
            Err(SubjectError::TooLong { .. })
        ));
    }
}
