//! Token verification for the broker (spec §2.3): trusted signers or organisation issuers,
//! loaded once at start-up, applied by the authorization decision through [`TokenVerifier`].

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use choria_protocol::subjects::{validate_identity, validate_token, SubjectError};
use choria_tokens::{
    beyond_chain_issuer, chain_issuer_of, is_chained_issuer, parse_client_token,
    parse_provisioning_token, parse_server_token, parse_token_unverified, read_public_key_file,
    token_algorithm, ClientIdClaims, KnownChainIssuer, PublicKey, Purpose, ServerClaims,
    TokenClaims, TokenError,
};

use crate::decision::{ProvisioningFacts, TokenVerifier};
use crate::permissions::{ClientGrant, ServerGrant};
use crate::settings::{BrokerSettings, SettingsError};

/// Why a token did not verify against the broker's trust anchors (spec §2.3). Messages are
/// upstream's, so operators can search for them; none contains the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The token is empty.
    #[error("no JWT received")]
    NoToken,
    /// The token could not be read to find its issuer.
    #[error(transparent)]
    Unreadable(TokenError),
    /// No `ou` claim: in issuer mode it names the issuer, so it is required (as upstream).
    #[error("no ou claim in token")]
    NoOu,
    /// `ou` is not a string.
    #[error("invalid ou in token")]
    InvalidOu,
    /// No organisation issuer is configured for the token's `ou`.
    #[error("no issuer found for ou {0}")]
    NoIssuer(String),
    /// The organisation issuer of the token's `ou` did not accept it.
    #[error("failed to parse {} token issued by the {ou} chain: {source}", .purpose.noun())]
    Chain {
        /// Server or client.
        purpose: Purpose,
        /// The issuer's name.
        ou: String,
        /// Why it was refused.
        source: TokenError,
    },
    /// Neither signers nor issuers are configured for this kind of token.
    #[error("no {noun} JWT signer or Organization Issuer set, denying all {noun}s", noun = .0.noun())]
    NoTrust(Purpose),
    /// The one signer (or, with several, a time or purpose check) refused the token.
    #[error("could not parse {} token: {source}", .purpose.noun())]
    Signer {
        /// Server or client.
        purpose: Purpose,
        /// Why it was refused.
        source: TokenError,
    },
    /// None of several signers verified the token.
    #[error("could not parse {} token with any of {count} signer identities", .purpose.noun())]
    NoSignerMatched {
        /// Server or client.
        purpose: Purpose,
        /// How many signers were tried.
        count: usize,
    },
    /// A server token without `identity`.
    #[error("identity not in claims")]
    NoIdentity,
    /// A client token without `callerid`.
    #[error("no callerid in claims")]
    NoCallerId,
    /// An identity, collective or caller id that is not a literal subject token (it would
    /// become a wildcard grant such as `choria.node.>`).
    #[error("invalid {claim} in token: {source}")]
    NotLiteral {
        /// Which claim.
        claim: SubjectClaim,
        /// Why it is not literal.
        source: SubjectError,
    },
    /// A chain-issued token grants more than its chain issuer holds.
    #[error(
        "token issued by chain issuer {issuer} grants {excess}, which the issuer does not hold"
    )]
    BeyondIssuer {
        /// The chain issuer's token id.
        issuer: String,
        /// What it grants beyond the issuer.
        excess: String,
    },
    /// A server or client token without `public_key` (needed for the nonce).
    #[error("no public key in claims")]
    NoPublicKey,
    /// The header `alg` of a provisioning token could not be read.
    #[error("could not determine token algorithm: {0}")]
    Algorithm(#[source] TokenError),
    /// The provisioning signer (or, without one, the issuer) refused a provisioning token.
    #[error("could not parse provisioner token: {0}")]
    Provisioning(#[source] TokenError),
    /// Neither a provisioning signer nor (for EdDSA tokens) an issuer is configured.
    #[error("provisioning is not enabled")]
    ProvisioningDisabled,
    /// The provisioning signer refused the token and no issuer could be chosen.
    #[error("could not parse provisioner token: {signer}; issuer: {issuer}")]
    SignerThenNoIssuer {
        /// Why the signer refused it.
        signer: TokenError,
        /// Why no issuer applies.
        issuer: Box<VerifyError>,
    },
    /// Both the provisioning signer and the issuer refused the token.
    #[error("could not parse provisioner token: {signer}; with issuer '{ou}': {issuer}")]
    SignerThenIssuer {
        /// Why the signer refused it.
        signer: TokenError,
        /// The issuer's name.
        ou: String,
        /// Why the issuer refused it.
        issuer: TokenError,
    },
}

impl VerifyError {
    /// Short name of the rule that refused the token (the `rule` label of refusals).
    pub fn as_str(&self) -> &'static str {
        match self {
            VerifyError::NoToken => "no_token",
            VerifyError::Unreadable(_) => "unreadable",
            VerifyError::NoOu => "no_ou",
            VerifyError::InvalidOu => "invalid_ou",
            VerifyError::NoIssuer(_) => "no_issuer",
            VerifyError::Chain { .. } => "issuer_refused",
            VerifyError::NoTrust(_) => "no_trust",
            VerifyError::Signer { .. } => "signer_refused",
            VerifyError::NoSignerMatched { .. } => "no_signer_matched",
            VerifyError::NoIdentity => "no_identity",
            VerifyError::NoCallerId => "no_callerid",
            VerifyError::NotLiteral { claim, .. } => claim.rule(),
            VerifyError::BeyondIssuer { .. } => "beyond_issuer",
            VerifyError::NoPublicKey => "no_public_key",
            VerifyError::Algorithm(_) => "algorithm",
            VerifyError::Provisioning(_)
            | VerifyError::SignerThenNoIssuer { .. }
            | VerifyError::SignerThenIssuer { .. } => "provisioning_refused",
            VerifyError::ProvisioningDisabled => "provisioning_disabled",
        }
    }
}

/// The trust anchors of one broker.
#[derive(Debug, Clone, Default)]
pub struct ChoriaVerifier {
    provisioning_signer: Option<PublicKey>,
    server_signers: Vec<PublicKey>,
    client_signers: Vec<PublicKey>,
    issuers: Vec<(String, PublicKey)>,
    chain_issuers: Vec<KnownChainIssuer>,
    recent_provisioning: RecentTokens,
}

/// How many distinct provisioning tokens [`RecentTokens`] remembers.
const RECENT_TOKENS: usize = 8;

/// Provisioning tokens verified lately, with what they proved.
///
/// A whole fleet boots with the same provisioning token, so in a provisioning storm the broker
/// would verify the same signature (RS256: about half a millisecond) for every node. A token
/// that verified once is the same bytes with the same signature; only its time limits can
/// change the answer, and they are checked on every use.
#[derive(Clone, Default)]
struct RecentTokens {
    entries: Arc<Mutex<VecDeque<RecentToken>>>,
}

struct RecentToken {
    token: String,
    facts: ProvisioningFacts,
    expires: Option<i64>,
}

impl std::fmt::Debug for RecentTokens {
    // Hand-written: the tokens are bearer credentials and never reach a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecentTokens")
    }
}

impl RecentTokens {
    fn lookup(&self, token: &str, now: SystemTime) -> Option<ProvisioningFacts> {
        let now = choria_tokens::clock::unix_seconds(now);
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        let index = entries.iter().position(|e| e.token == token)?;
        if entries[index].expires.is_some_and(|exp| now >= exp) {
            // Expired since: forget it, and let full verification say why it is refused.
            entries.remove(index);
            return None;
        }
        Some(entries[index].facts.clone())
    }

    fn remember(&self, token: &str, facts: &ProvisioningFacts, expires: Option<i64>) {
        let mut entries = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        if entries.iter().any(|e| e.token == token) {
            return;
        }
        if entries.len() >= RECENT_TOKENS {
            entries.pop_front();
        }
        entries.push_back(RecentToken {
            token: token.to_string(),
            facts: facts.clone(),
            expires,
        });
    }
}

impl ChoriaVerifier {
    /// A verifier from keys already loaded (tests and embedders).
    pub fn new(
        provisioning_signer: Option<PublicKey>,
        server_signers: Vec<PublicKey>,
        client_signers: Vec<PublicKey>,
        issuers: Vec<(String, PublicKey)>,
    ) -> ChoriaVerifier {
        ChoriaVerifier {
            provisioning_signer,
            server_signers,
            client_signers,
            issuers,
            chain_issuers: Vec::new(),
            recent_provisioning: RecentTokens::default(),
        }
    }

    /// Loads the keys named by the settings; a key that cannot be read is a configuration
    /// error naming its key, except signer lists, where upstream skips unusable entries.
    pub fn from_settings(settings: &BrokerSettings) -> Result<ChoriaVerifier, SettingsError> {
        let provisioning_signer = match &settings.provisioning_signer {
            None => None,
            Some(path) => Some(
                read_public_key_file(path).map_err(|e| SettingsError::Invalid {
                    key: "plugin.choria.network.provisioning.signer_cert".into(),
                    reason: e.to_string(),
                })?,
            ),
        };
        let mut issuers = Vec::new();
        for (name, hex) in &settings.issuers {
            let key = PublicKey::ed25519_from_hex(hex).map_err(|e| SettingsError::Invalid {
                key: format!("plugin.security.issuer.{name}.public"),
                reason: e.to_string(),
            })?;
            issuers.push((name.clone(), key));
        }
        Ok(ChoriaVerifier {
            provisioning_signer,
            server_signers: load_signers(
                "plugin.choria.network.server_signer_cert",
                &settings.server_signers,
            ),
            client_signers: load_signers(
                "plugin.choria.network.client_signer_cert",
                &settings.client_signers,
            ),
            chain_issuers: load_chain_issuers(settings, &issuers)?,
            issuers,
            recent_provisioning: RecentTokens::default(),
        })
    }

    /// Refuses a chain-issued token that grants more than its chain issuer holds (a known
    /// issuer's own grant, or nothing for an issuer the broker was not told about).
    fn within_chain_issuer<C: TokenClaims>(&self, claims: &C) -> Result<(), VerifyError> {
        match beyond_chain_issuer(claims, &self.chain_issuers) {
            None => Ok(()),
            Some(excess) => Err(VerifyError::BeyondIssuer {
                issuer: chain_issuer_of(claims.standard())
                    .map(|(jti, _)| jti.to_string())
                    .unwrap_or_default(),
                excess,
            }),
        }
    }

    fn issuer_for(&self, token: &str) -> Result<(&str, &PublicKey), VerifyError> {
        let claims = parse_token_unverified(token).map_err(VerifyError::Unreadable)?;
        let ou = match claims.get("ou") {
            None => return Err(VerifyError::NoOu),
            Some(serde_json::Value::String(ou)) => ou.as_str(),
            Some(_) => return Err(VerifyError::InvalidOu),
        };
        self.issuers
            .iter()
            .find(|(name, _)| name == ou)
            .map(|(name, key)| (name.as_str(), key))
            .ok_or_else(|| VerifyError::NoIssuer(ou.to_string()))
    }

    fn with_signers<T>(
        &self,
        purpose: Purpose,
        signers: &[PublicKey],
        token: &str,
        parse: impl Fn(&PublicKey) -> Result<T, TokenError>,
    ) -> Result<T, VerifyError> {
        if token.is_empty() {
            return Err(VerifyError::NoToken);
        }
        if !self.issuers.is_empty() {
            let (ou, key) = self.issuer_for(token)?;
            return parse(key).map_err(|source| VerifyError::Chain {
                purpose,
                ou: ou.to_string(),
                source,
            });
        }
        let signer = |source| VerifyError::Signer { purpose, source };
        match signers {
            [] => Err(VerifyError::NoTrust(purpose)),
            [one] => parse(one).map_err(signer),
            many => {
                for key in many {
                    match parse(key) {
                        Ok(claims) => return Ok(claims),
                        Err(e @ (TokenError::Expired { .. } | TokenError::WrongPurpose { .. })) => {
                            return Err(signer(e))
                        }
                        Err(_) => continue,
                    }
                }
                Err(VerifyError::NoSignerMatched {
                    purpose,
                    count: many.len(),
                })
            }
        }
    }

    /// Verifies a provisioning token from scratch; also returns its expiry.
    fn verify_provisioning(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<(ProvisioningFacts, Option<i64>), VerifyError> {
        let alg = token_algorithm(token).map_err(VerifyError::Algorithm)?;
        // Upstream uses only the issuer for EdDSA tokens in issuer mode. We also accept the
        // configured provisioning signer, so a site can keep a separate, low-value key for
        // provisioning tokens while its organisation issuer signs fleet credentials. The
        // signer is tried first: in a provisioning storm that saves a failed verification.
        let issuer_allowed = alg == "EdDSA" && !self.issuers.is_empty();
        let signer_error = match &self.provisioning_signer {
            Some(key) => match parse_provisioning_token(token, key, now) {
                Ok(claims) => {
                    let expires = claims.standard.exp;
                    return Ok((
                        ProvisioningFacts {
                            ou: claims.ou,
                            via: "signer".into(),
                        },
                        expires,
                    ));
                }
                Err(e) => Some(e),
            },
            None => None,
        };
        if !issuer_allowed {
            return Err(
                signer_error.map_or(VerifyError::ProvisioningDisabled, VerifyError::Provisioning)
            );
        }
        let (ou, key) = self.issuer_for(token).map_err(|e| match &signer_error {
            Some(signer) => VerifyError::SignerThenNoIssuer {
                signer: signer.clone(),
                issuer: Box::new(e),
            },
            None => e,
        })?;
        let claims = parse_provisioning_token(token, key, now).map_err(|e| match signer_error {
            Some(signer) => VerifyError::SignerThenIssuer {
                signer,
                ou: ou.to_string(),
                issuer: e,
            },
            None => VerifyError::Provisioning(e),
        })?;
        let expires = claims.standard.exp;
        Ok((
            ProvisioningFacts {
                ou: claims.ou,
                via: format!("issuer '{ou}'"),
            },
            expires,
        ))
    }
}

impl TokenVerifier for ChoriaVerifier {
    fn provisioning(&self, token: &str) -> Result<ProvisioningFacts, VerifyError> {
        let now = SystemTime::now();
        if let Some(facts) = self.recent_provisioning.lookup(token, now) {
            return Ok(facts);
        }
        let (facts, expires) = self.verify_provisioning(token, now)?;
        self.recent_provisioning.remember(token, &facts, expires);
        Ok(facts)
    }

    fn server(&self, token: &str) -> Result<(ServerGrant, String), VerifyError> {
        let now = SystemTime::now();
        let claims = self.with_signers(Purpose::Server, &self.server_signers, token, |key| {
            parse_server_token(token, key, now)
        })?;
        self.within_chain_issuer(&claims)?;
        server_grant(claims)
    }

    fn client(&self, token: &str) -> Result<(ClientGrant, String), VerifyError> {
        let now = SystemTime::now();
        let claims = self.with_signers(Purpose::ClientId, &self.client_signers, token, |key| {
            parse_client_token(token, key, now)
        })?;
        self.within_chain_issuer(&claims)?;
        client_grant(claims)
    }
}

/// A claim that becomes part of a subject, so it must be a literal subject token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectClaim {
    /// A server's `identity`.
    Identity,
    /// One of a server's `collectives`.
    Collective,
    /// A client's `callerid`.
    CallerId,
}

impl SubjectClaim {
    /// How the claim is named in refusals, and the refusal rule its check reports.
    fn names(self) -> (&'static str, &'static str) {
        match self {
            SubjectClaim::Identity => ("identity", "invalid_identity"),
            SubjectClaim::Collective => ("collective", "invalid_collective"),
            SubjectClaim::CallerId => ("caller id", "invalid_callerid"),
        }
    }

    fn rule(self) -> &'static str {
        self.names().1
    }

    fn refusal(self) -> impl FnOnce(SubjectError) -> VerifyError {
        move |source| VerifyError::NotLiteral {
            claim: self,
            source,
        }
    }
}

impl std::fmt::Display for SubjectClaim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.names().0)
    }
}

fn server_grant(claims: ServerClaims) -> Result<(ServerGrant, String), VerifyError> {
    if claims.identity.is_empty() {
        return Err(VerifyError::NoIdentity);
    }
    validate_identity(&claims.identity).map_err(SubjectClaim::Identity.refusal())?;
    for collective in &claims.collectives {
        validate_token("collective", collective).map_err(SubjectClaim::Collective.refusal())?;
    }
    let grant = ServerGrant {
        identity: claims.identity,
        collectives: claims.collectives,
        ou: ou_or_default(claims.ou),
        pub_subjects: claims.pub_subjects,
        permissions: claims.permissions,
    };
    with_public_key(grant, claims.standard.public_key)
}

fn client_grant(claims: ClientIdClaims) -> Result<(ClientGrant, String), VerifyError> {
    if claims.callerid.is_empty() {
        return Err(VerifyError::NoCallerId);
    }
    validate_identity(&claims.callerid).map_err(SubjectClaim::CallerId.refusal())?;
    let grant = ClientGrant {
        caller: claims.callerid,
        ou: ou_or_default(claims.ou),
        pub_subjects: claims.pub_subjects,
        sub_subjects: claims.sub_subjects,
        permissions: claims.permissions,
    };
    with_public_key(grant, claims.standard.public_key)
}

/// The holder's key is what the nonce is checked against: a token without one is refused.
fn with_public_key<G>(grant: G, public_key: String) -> Result<(G, String), VerifyError> {
    if public_key.is_empty() {
        return Err(VerifyError::NoPublicKey);
    }
    Ok((grant, public_key))
}

fn ou_or_default(ou: String) -> String {
    if ou.is_empty() {
        choria_tokens::DEFAULT_ORG.into()
    } else {
        ou
    }
}

/// Reads `plugin.security.issuer.<name>.chain_issuers`: each file is a chain issuer's client
/// token, which must verify with that issuer's key now and carry a valid `I-` chain.
fn load_chain_issuers(
    settings: &BrokerSettings,
    issuers: &[(String, PublicKey)],
) -> Result<Vec<KnownChainIssuer>, SettingsError> {
    let mut known = Vec::new();
    for (name, path) in &settings.chain_issuers {
        let invalid = |reason: String| SettingsError::Invalid {
            key: format!("plugin.security.issuer.{name}.chain_issuers"),
            reason: format!("{}: {reason}", path.display()),
        };
        let Some((_, key)) = issuers.iter().find(|(n, _)| n == name) else {
            return Err(invalid(format!("no issuer {name} is configured")));
        };
        let text = std::fs::read_to_string(path).map_err(|e| invalid(e.to_string()))?;
        let claims = parse_client_token(text.trim(), key, SystemTime::now())
            .map_err(|e| invalid(e.to_string()))?;
        if !is_chained_issuer(&claims.standard, true) {
            return Err(invalid("not a chain issuer token of this issuer".into()));
        }
        known.push(KnownChainIssuer::of(&claims));
    }
    Ok(known)
}

fn load_signers(key: &str, entries: &[String]) -> Vec<PublicKey> {
    let mut keys = Vec::new();
    for entry in entries {
        let loaded = if choria_tokens::is_encoded_ed25519_key(entry.as_bytes()) {
            PublicKey::ed25519_from_hex(entry)
        } else {
            read_public_key_file(Path::new(entry))
        };
        match loaded {
            Ok(k) => keys.push(k),
            Err(e) => tracing::error!(key, entry = %entry, error = %e, "skipping unusable signer"),
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn vectors() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/vectors")
    }

    fn read(rel: &str) -> String {
        std::fs::read_to_string(vectors().join(rel))
            .expect("vector")
            .trim()
            .to_string()
    }

    fn verifier_with(signer: &str) -> ChoriaVerifier {
        ChoriaVerifier {
            provisioning_signer: Some(read_public_key_file(vectors().join(signer)).expect("key")),
            ..Default::default()
        }
    }

    #[test]
    fn broker_vectors_verify_with_the_certificate() {
        let v = verifier_with("broker/rip.mcollective.cert.pem");
        let facts = v
            .provisioning(&read("broker/secure.jwt"))
            .expect("secure.jwt verifies");
        assert_eq!(facts.ou, "choria");
        let err = v
            .provisioning(&read("broker/invalid.jwt"))
            .expect_err("invalid")
            .to_string();
        assert!(err.contains("crypto/rsa: verification error"), "{err}");
    }

    #[test]
    fn server_vector_verifies_with_signer_and_chain() {
        let signer = read("tokens/ed25519/signer.public");
        let v = ChoriaVerifier {
            server_signers: vec![PublicKey::ed25519_from_hex(&signer).expect("key")],
            ..Default::default()
        };
        let (grant, pk) = v.server(&read("tokens/derived/server.jwt")).expect("valid");
        assert_eq!(grant.identity, "ginkgo.example.net");
        assert_eq!(pk, read("tokens/ed25519/other.public"));
        assert!(v.client(&read("tokens/derived/server.jwt")).is_err());
        let issuers = ChoriaVerifier {
            issuers: vec![(
                "choria".into(),
                PublicKey::ed25519_from_hex(&signer).expect("key"),
            )],
            ..Default::default()
        };
        let (chained, _) = issuers
            .server(&read("tokens/derived/chained-server.jwt"))
            .expect("chain verifies");
        assert_eq!(chained.identity, "chained.example.net");
    }

    #[test]
    fn a_known_chain_issuer_may_delegate_what_it_holds() {
        use choria_tokens::{
            add_chain_issuer_data, add_org_issuer_data, sign_token, ClientPermissions, Ed25519Seed,
            NewClient, SigningKey,
        };
        let now = SystemTime::now();
        let (org, aaa, user) = (
            Ed25519Seed::generate(),
            Ed25519Seed::generate(),
            Ed25519Seed::generate(),
        );
        let fleet = ClientPermissions {
            fleet_management: true,
            ..Default::default()
        };
        let client = |callerid: &str, key: &Ed25519Seed, perms| {
            ClientIdClaims::new(
                NewClient {
                    callerid: callerid.into(),
                    public_key: Some(key.public_key_bytes()),
                    permissions: Some(perms),
                    validity: std::time::Duration::from_secs(600),
                    ..Default::default()
                },
                now,
            )
            .expect("claims")
        };
        let mut issuer = client("choria=aaa", &aaa, fleet);
        add_org_issuer_data(&mut issuer, &org).expect("issuer");
        let mut leaf = client("choria=bob", &user, fleet);
        add_chain_issuer_data(&mut leaf.standard, &issuer, &aaa).expect("chain");
        let token = sign_token(&leaf, &SigningKey::Ed25519(aaa.clone())).expect("sign");

        let mut v = ChoriaVerifier::new(
            None,
            vec![],
            vec![],
            vec![("choria".into(), org.public_key())],
        );
        let refused = v.client(&token).expect_err("unknown issuers hold nothing");
        assert_eq!(refused.as_str(), "beyond_issuer");
        assert!(
            refused.to_string().contains("permission fleet_management"),
            "{refused}"
        );
        v.chain_issuers = vec![KnownChainIssuer::of(&issuer)];
        let (grant, _) = v.client(&token).expect("within the known issuer's grant");
        assert_eq!(grant.caller, "choria=bob");
    }

    #[test]
    fn garbage_and_huge_tokens_are_reasons_not_panics() {
        let v = verifier_with("tokens/ed25519/signer.public");
        for token in ["", "x", "a.b.c", &"A".repeat(1 << 20), "e30.e30.e30"] {
            assert!(v.provisioning(token).is_err());
            assert!(v.server(token).is_err());
            assert!(v.client(token).is_err());
        }
    }

    #[test]
    fn a_remembered_token_still_expires() {
        let recent = RecentTokens::default();
        let facts = ProvisioningFacts {
            ou: "choria".into(),
            via: "signer".into(),
        };
        let at = |secs: u64| std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs);
        recent.remember("token-a", &facts, Some(1_000));
        assert_eq!(recent.lookup("token-a", at(999)), Some(facts.clone()));
        assert_eq!(
            recent.lookup("token-b", at(999)),
            None,
            "only the same bytes"
        );
        assert_eq!(recent.lookup("token-a", at(1_000)), None, "expired");
        assert_eq!(recent.lookup("token-a", at(999)), None, "and forgotten");
        for n in 0..=RECENT_TOKENS {
            recent.remember(&format!("t{n}"), &facts, None);
        }
        assert_eq!(recent.lookup("t0", at(0)), None, "the oldest makes room");
        assert!(recent.lookup(&format!("t{RECENT_TOKENS}"), at(0)).is_some());
        assert_eq!(format!("{recent:?}"), "RecentTokens", "no token in logs");
    }

    #[test]
    fn repeated_provisioning_tokens_give_the_same_answer() {
        let v = verifier_with("broker/rip.mcollective.cert.pem");
        let token = read("broker/secure.jwt");
        let first = v.provisioning(&token).expect("secure.jwt verifies");
        assert_eq!(v.provisioning(&token), Ok(first));
        let mut tampered = token.clone();
        tampered.pop();
        assert!(
            v.provisioning(&tampered).is_err(),
            "a changed token is verified afresh"
        );
    }
}
