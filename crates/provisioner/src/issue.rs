//! Server JWT issuing (spec §4.3): the claims a node gets from the helper's reply, signed by
//! the provisioner's key or, chained, by its issuer token; pure apart from the clock passed in.

use std::time::{Duration, SystemTime};

use choria_config::duration::DurationError;
use choria_tokens::claims::NewServer;
use choria_tokens::{sign_chained_token, sign_token, ServerClaims, ServerPermissions, TokenError};

use crate::helper::{Ed25519Input, HelperReply};
use crate::keys::ServerJwtSigner;
use choria_config::duration::parse_duration_upstream as parse_duration;

/// Upstream issuer of non-chained server tokens.
pub const PROVISIONER_ISSUER: &str = "Choria Provisioner";
/// Validities up to this are replaced by the default (spec §4.3 step 5).
pub const MIN_VALIDITY: Duration = Duration::from_secs(3600);

/// Why a server JWT could not be issued.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IssueError {
    /// `features.ed25519` without a signing key.
    #[error("no jwt signing key configured using jwt_signing_key")]
    NoSigningKey,
    /// The node's ed25519 public key is not 32 bytes of hex.
    #[error("no ed25519 public key set")]
    NoPublicKey,
    /// The helper's `server_claims.validity` is not a duration.
    #[error("server_claims.validity: {0}")]
    Validity(#[source] DurationError),
    /// The chain issuer token has expired.
    #[error("jwt_signing_token has expired")]
    IssuerExpired,
    /// The claims could not be built or signed.
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Signs the server JWT for `identity` with `signer`; `default_validity` is
/// `server_jwt_validity`.
pub fn server_jwt(
    signer: Option<&ServerJwtSigner>,
    identity: &str,
    ed: &Ed25519Input,
    reply: &HelperReply,
    default_validity: Duration,
    now: SystemTime,
) -> Result<String, IssueError> {
    let unix_now = choria_tokens::clock::unix_seconds(now);
    let spec = server_claims_spec(identity, ed, reply, default_validity, unix_now)?;
    let mut claims = ServerClaims::new(spec, now)?;
    match signer.ok_or(IssueError::NoSigningKey)? {
        ServerJwtSigner::Chained { issuer, seed } => {
            if issuer.standard.exp.is_some_and(|exp| exp <= unix_now) {
                return Err(IssueError::IssuerExpired);
            }
            Ok(sign_chained_token(&mut claims, issuer, seed)?)
        }
        ServerJwtSigner::Provisioner(key) => {
            claims.standard.iss = PROVISIONER_ISSUER.to_string();
            Ok(sign_token(&claims, key)?)
        }
    }
}

/// Builds the server token spec of spec §4.3 from the helper reply; `now` is Unix seconds.
pub fn server_claims_spec(
    identity: &str,
    ed: &Ed25519Input,
    reply: &HelperReply,
    default_validity: Duration,
    now: i64,
) -> Result<NewServer, IssueError> {
    let mut org = "choria".to_string();
    let mut validity = default_validity;
    let mut collectives = vec!["mcollective".to_string()];
    if reply
        .configuration
        .get("plugin.security.provider")
        .map(String::as_str)
        == Some("choria")
    {
        collectives = vec!["choria".to_string()];
    }
    if let Some(list) = reply.configuration.get("collectives") {
        // B9: trim around commas.
        let parsed: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(String::from)
            .collect();
        if !parsed.is_empty() {
            collectives = parsed;
        }
    }
    let mut pub_subjects = Vec::new();
    let mut permissions = None;
    if let Some(c) = &reply.server_claims {
        if !c.ou.is_empty() {
            org = c.ou.clone();
        }
        if let Some(text) = &c.validity {
            validity = parse_duration(text).map_err(IssueError::Validity)?;
        } else if let Some(exp) = c.exp {
            if exp > now {
                validity = Duration::from_secs(exp.abs_diff(now));
            } else if exp > 0 {
                // B3: upstream's sample helper sends relative seconds here.
                tracing::warn!("server_claims.exp {exp} is in the past; treating it as a validity of {exp} seconds");
                validity = Duration::from_secs(exp.unsigned_abs());
            }
        }
        if !c.collectives.is_empty() {
            collectives = c.collectives.clone();
        }
        pub_subjects = c.pub_subjects.clone();
        permissions = c.permissions.map(|p| ServerPermissions {
            submission: p.submission,
            streams: p.streams,
            governor: p.governor,
            service_host: p.service_host,
        });
    }
    if validity <= MIN_VALIDITY {
        tracing::warn!("server JWT validity {validity:?} is 1 hour or less, using the default {default_validity:?}");
        validity = default_validity;
    }
    let public_key = hex::decode(&ed.public_key)
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or(IssueError::NoPublicKey)?;
    Ok(NewServer {
        identity: identity.to_string(),
        collectives,
        org,
        permissions,
        pub_subjects,
        public_key: Some(public_key),
        issuer: PROVISIONER_ISSUER.to_string(),
        validity,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::helper::ServerClaimsInput;

    fn ed() -> Ed25519Input {
        Ed25519Input {
            public_key: "11".repeat(32),
            directory: "/etc/choria".into(),
            signature: String::new(),
        }
    }

    #[test]
    fn server_claims_follow_spec_4_3() {
        let day = Duration::from_secs(86400);
        let mut reply = HelperReply::default();
        reply
            .configuration
            .insert("collectives".into(), "one, two".into());
        let spec = server_claims_spec("n1", &ed(), &reply, day * 365, 1_000_000).expect("spec");
        assert_eq!(spec.collectives, vec!["one", "two"], "B9 trims");
        assert_eq!(spec.org, "choria");
        assert_eq!(spec.validity, day * 365);

        let mut reply = HelperReply::default();
        reply
            .configuration
            .insert("plugin.security.provider".into(), "choria".into());
        reply.server_claims = Some(ServerClaimsInput {
            exp: Some(5 * 365 * 86400),
            ..Default::default()
        });
        let spec = server_claims_spec("n1", &ed(), &reply, day, 2_000_000_000).expect("spec");
        assert_eq!(spec.collectives, vec!["choria"]);
        assert_eq!(spec.validity, day * 365 * 5, "B3: relative exp honoured");

        reply.server_claims = Some(ServerClaimsInput {
            exp: Some(2_000_000_000 + 7200),
            ..Default::default()
        });
        let spec = server_claims_spec("n1", &ed(), &reply, day, 2_000_000_000).expect("spec");
        assert_eq!(spec.validity, Duration::from_secs(7200), "absolute exp");

        reply.server_claims = Some(ServerClaimsInput {
            validity: Some("30m".into()),
            ..Default::default()
        });
        let spec = server_claims_spec("n1", &ed(), &reply, day, 0).expect("spec");
        assert_eq!(spec.validity, day, "≤ 1h falls back to the default");
    }

    #[test]
    fn issuing_needs_a_signer_and_a_node_key() {
        let mut reply = HelperReply::default();
        reply.configuration.insert("a".into(), "b".into());
        let now = SystemTime::now();
        let day = Duration::from_secs(86400);
        assert!(matches!(
            server_jwt(None, "n1", &ed(), &reply, day, now),
            Err(IssueError::NoSigningKey)
        ));
        let signer = ServerJwtSigner::Provisioner(choria_tokens::Ed25519Seed::generate().into());
        let short = Ed25519Input {
            public_key: "11".into(),
            ..ed()
        };
        assert!(matches!(
            server_jwt(Some(&signer), "n1", &short, &reply, day, now),
            Err(IssueError::NoPublicKey)
        ));
        let token = server_jwt(Some(&signer), "n1", &ed(), &reply, day, now).expect("jwt");
        assert_eq!(token.split('.').count(), 3);
    }
}
