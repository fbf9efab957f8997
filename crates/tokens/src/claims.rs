//! The claims of the three Choria token types, serialised exactly like upstream's Go structs:
//! custom claims first, then the standard ones, in declaration order, with Go's omitempty rules.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, SystemTime};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

use crate::clock::unix_seconds;
use crate::error::TokenError;
use crate::ksuid::Ksuid;

/// `iss` of tokens created without an explicit issuer (what the CLI produces).
pub const DEFAULT_ISSUER: &str = "Choria Tokens Package";
/// Organisation used when none is given or the claim is absent.
pub const DEFAULT_ORG: &str = "choria";
/// Validity used when a constructor is given zero (except server tokens, which require one).
pub const DEFAULT_VALIDITY: Duration = Duration::from_secs(3600);

/// What a token is for, from its `purpose` claim (or `sub` for legacy provisioning tokens).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Purpose {
    /// Empty or unrecognised purpose.
    Unknown,
    /// `choria_client_id`.
    ClientId,
    /// `choria_provisioning`.
    Provisioning,
    /// `choria_server`.
    Server,
}

impl Purpose {
    /// The claim value.
    pub fn as_str(&self) -> &'static str {
        match self {
            Purpose::Unknown => "",
            Purpose::ClientId => "choria_client_id",
            Purpose::Provisioning => "choria_provisioning",
            Purpose::Server => "choria_server",
        }
    }

    /// The purpose named by a claim value.
    pub fn from_claim(value: &str) -> Purpose {
        match value {
            "choria_client_id" => Purpose::ClientId,
            "choria_provisioning" => Purpose::Provisioning,
            "choria_server" => Purpose::Server,
            _ => Purpose::Unknown,
        }
    }

    /// How errors name a token of this purpose (`not a server token`).
    pub fn noun(&self) -> &'static str {
        match self {
            Purpose::Unknown => "known",
            Purpose::ClientId => "client",
            Purpose::Provisioning => "provisioning",
            Purpose::Server => "server",
        }
    }
}

impl fmt::Display for Purpose {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Claims shared by every token type, in upstream serialisation order.
///
/// Time claims are whole Unix seconds; fractional input is truncated when parsing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StandardClaims {
    /// `purpose`: the raw claim (always emitted, even empty); see [`StandardClaims::purpose`].
    pub purpose: String,
    /// `tcs`: trust chain signature (spec §1.9).
    #[serde(skip_serializing_if = "omitempty")]
    pub tcs: String,
    /// `public_key`: hex ed25519 public key of the holder.
    #[serde(skip_serializing_if = "omitempty")]
    pub public_key: String,
    /// `issexp`: expiry of the chain issuer.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "numeric_date")]
    pub issexp: Option<i64>,
    /// `iss`: free text, `I-<org key>` or `C-<issuer jti>.<issuer key>`.
    #[serde(skip_serializing_if = "omitempty")]
    pub iss: String,
    /// `sub`: only provisioning tokens set it.
    #[serde(skip_serializing_if = "omitempty")]
    pub sub: String,
    /// `aud`: unused by Choria; a single string is accepted when parsing.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "string_or_list")]
    pub aud: Vec<String>,
    /// `exp`: expiry.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "numeric_date")]
    pub exp: Option<i64>,
    /// `nbf`: not before.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "numeric_date")]
    pub nbf: Option<i64>,
    /// `iat`: issued at.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "numeric_date")]
    pub iat: Option<i64>,
    /// `jti`: token id, a KSUID whose time equals `iat` when made by this crate.
    #[serde(skip_serializing_if = "omitempty")]
    pub jti: String,
}

impl StandardClaims {
    /// Upstream's `newStandardClaims`: `iat` = `nbf` = now, `exp` = now + validity (zero
    /// means one hour), `jti` = a KSUID of `iat`, `iss` = issuer or [`DEFAULT_ISSUER`].
    pub fn new(
        purpose: Purpose,
        issuer: &str,
        validity: Duration,
        now: SystemTime,
    ) -> Result<StandardClaims, TokenError> {
        let validity = if validity.is_zero() {
            DEFAULT_VALIDITY
        } else {
            validity
        };
        let iat = unix_seconds(now);
        let validity = i64::try_from(validity.as_secs())
            .map_err(|_| TokenError::InvalidClaims("validity is too long".into()))?;
        let exp = iat
            .checked_add(validity)
            .ok_or_else(|| TokenError::InvalidClaims("validity is too long".into()))?;
        Ok(StandardClaims {
            purpose: purpose.as_str().to_string(),
            iss: if issuer.is_empty() {
                DEFAULT_ISSUER.to_string()
            } else {
                issuer.to_string()
            },
            sub: if purpose == Purpose::Provisioning {
                purpose.as_str().to_string()
            } else {
                String::new()
            },
            exp: Some(exp),
            nbf: Some(iat),
            iat: Some(iat),
            jti: Ksuid::generate(iat)?.to_string(),
            ..StandardClaims::default()
        })
    }

    /// The purpose; legacy provisioning tokens only carry `sub` = `choria_provisioning`.
    pub fn purpose(&self) -> Purpose {
        if self.purpose.is_empty() && self.sub == Purpose::Provisioning.as_str() {
            Purpose::Provisioning
        } else {
            Purpose::from_claim(&self.purpose)
        }
    }

    /// Effective expiry: the earlier of `exp` and `issexp` when both are set.
    pub fn expire_time(&self) -> Option<i64> {
        match (self.exp, self.issexp) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// True when the effective expiry is before `now`. A token without any expiry counts
    /// as expired here, like upstream's `IsExpired` (spec §1.3 quirk).
    pub fn is_expired(&self, now: SystemTime) -> bool {
        match self.expire_time() {
            Some(exp) => unix_seconds(now) > exp,
            None => true,
        }
    }

    /// Upstream `verifyIssuerExpiry(required)`: for chain-issued tokens, the effective
    /// expiry must be in the future; tokens that are not chain-issued pass unless required.
    pub(crate) fn check_issuer_expiry(
        &self,
        required: bool,
        now: SystemTime,
    ) -> Result<(), TokenError> {
        if !self.iss.starts_with("C-") || self.tcs.is_empty() || self.issexp.is_none() {
            return if required {
                Err(TokenError::IssuerExpired {
                    reason: "a trust chain signature needs a C- issuer and an issexp claim",
                })
            } else {
                Ok(())
            };
        }
        match self.expire_time() {
            Some(exp) if unix_seconds(now) <= exp => Ok(()),
            _ => Err(TokenError::IssuerExpired {
                reason: "the chain issuer has expired",
            }),
        }
    }

    /// The raw `public_key` bytes, when it is a hex ed25519 key.
    pub fn public_key_bytes(&self) -> Option<[u8; 32]> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(&self.public_key, &mut out)
            .ok()
            .map(|()| out)
    }
}

/// The [`TokenClaims`] accessors of a claims type that flattens its standard claims into a
/// `standard` field (all of ours do).
macro_rules! standard_field {
    () => {
        fn standard(&self) -> &StandardClaims {
            &self.standard
        }
        fn standard_mut(&mut self) -> &mut StandardClaims {
            &mut self.standard
        }
    };
}

/// A claims type that can be signed and parsed: it knows its purpose and its standard part.
pub trait TokenClaims: Serialize + DeserializeOwned {
    /// The purpose every token of this type carries.
    const PURPOSE: Purpose;
    /// Whether verification follows `C-` issuer chains (server and client tokens).
    const CHAIN_AWARE: bool;
    /// The standard claims.
    fn standard(&self) -> &StandardClaims;
    /// The standard claims, mutable.
    fn standard_mut(&mut self) -> &mut StandardClaims;
    /// What this token grants beyond what a chain issuer holding `issuer` may delegate
    /// (grants no wider than the credential); `None` when it stays within.
    fn beyond_issuer(&self, issuer: &IssuerGrant) -> Option<String> {
        let _ = issuer;
        None
    }
}

/// What a chain issuer holds, and so may delegate: its client permissions and the extra
/// subjects of its own token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IssuerGrant {
    /// The chain issuer's `permissions` (absent = none).
    pub permissions: ClientPermissions,
    /// Its `pub_subjects`.
    pub pub_subjects: Vec<String>,
    /// Its `sub_subjects`.
    pub sub_subjects: Vec<String>,
}

impl IssuerGrant {
    /// The grant of a chain issuer's client token.
    pub fn of(issuer: &ClientIdClaims) -> IssuerGrant {
        IssuerGrant {
            permissions: issuer.permissions.unwrap_or_default(),
            pub_subjects: issuer.pub_subjects.clone(),
            sub_subjects: issuer.sub_subjects.clone(),
        }
    }

    /// The first of `subjects` this grant's `held` subjects do not cover (`org_admin`
    /// covers every subject).
    fn uncovered<'a>(&self, subjects: &'a [String], held: &[String]) -> Option<&'a String> {
        if self.permissions.org_admin {
            return None;
        }
        subjects
            .iter()
            .find(|wanted| !held.iter().any(|pattern| subject_covers(pattern, wanted)))
    }
}

/// Whether the NATS subject pattern `pattern` matches every subject `wanted` matches:
/// `>` covers one or more remaining tokens, `*` one token (also a `*` in `wanted`), any other
/// token only itself.
pub fn subject_covers(pattern: &str, wanted: &str) -> bool {
    let mut held = pattern.split('.');
    let mut asked = wanted.split('.');
    loop {
        match (held.next(), asked.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => continue,
            (Some(h), Some(a)) if h == a && a != ">" && a != "*" => continue,
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Claims of a provisioning token (spec §1.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ProvisioningClaims {
    /// `cht`: provisioning access token (secret).
    pub cht: String,
    /// `chs`: whether protocol security stays on while provisioning.
    pub chs: bool,
    /// `chu`: comma-separated broker URLs.
    #[serde(skip_serializing_if = "omitempty")]
    pub chu: String,
    /// `chsrv`: SRV domain for `_choria-provisioner._tcp`.
    #[serde(skip_serializing_if = "omitempty")]
    pub chsrv: String,
    /// `chpd`: provision by default.
    pub chpd: bool,
    /// `chrd`: registration data file.
    #[serde(skip_serializing_if = "omitempty")]
    pub chrd: String,
    /// `chf`: facts file.
    #[serde(skip_serializing_if = "omitempty")]
    pub chf: String,
    /// `chusr`: broker username.
    #[serde(skip_serializing_if = "omitempty")]
    pub chusr: String,
    /// `chpwd`: broker password (secret).
    #[serde(skip_serializing_if = "omitempty")]
    pub chpwd: String,
    /// `extensions`: free JSON object for the provisioner's helper; emitted as `null` when unset.
    pub extensions: Option<BTreeMap<String, serde_json::Value>>,
    /// `ou`: organisation; parsing defaults it to `choria`.
    #[serde(skip_serializing_if = "omitempty")]
    pub ou: String,
    /// `v2`: use protocol v2 while provisioning.
    #[serde(skip_serializing_if = "omitempty")]
    pub v2: bool,
    /// `update`: allow in-place version upgrades.
    #[serde(skip_serializing_if = "omitempty")]
    pub update: bool,
    /// The standard claims.
    #[serde(flatten)]
    pub standard: StandardClaims,
}

/// What [`ProvisioningClaims::new`] needs (upstream `NewProvisioningClaims` arguments).
#[derive(Debug, Clone, Default)]
pub struct NewProvisioning {
    /// `chs`.
    pub secure: bool,
    /// `chpd`.
    pub by_default: bool,
    /// `cht`.
    pub token: String,
    /// `chusr`.
    pub username: String,
    /// `chpwd`.
    pub password: String,
    /// Broker URLs, joined into `chu`.
    pub urls: Vec<String>,
    /// `chsrv`.
    pub srv_domain: String,
    /// `chrd`.
    pub registration_data: String,
    /// `chf`.
    pub facts: String,
    /// `ou`; empty means `choria`.
    pub org: String,
    /// `iss`; empty means [`DEFAULT_ISSUER`].
    pub issuer: String,
    /// Lifetime; zero means one hour.
    pub validity: Duration,
    /// `extensions`.
    pub extensions: Option<BTreeMap<String, serde_json::Value>>,
    /// `v2`.
    pub protocol_v2: bool,
    /// `update`.
    pub allow_update: bool,
}

impl ProvisioningClaims {
    /// New provisioning claims; fails with `srv domain or urls required` when both are empty.
    pub fn new(spec: NewProvisioning, now: SystemTime) -> Result<ProvisioningClaims, TokenError> {
        if spec.srv_domain.is_empty() && spec.urls.is_empty() {
            return Err(TokenError::InvalidClaims(
                "srv domain or urls required".into(),
            ));
        }
        Ok(ProvisioningClaims {
            cht: spec.token,
            chs: spec.secure,
            chu: spec.urls.join(","),
            chsrv: spec.srv_domain,
            chpd: spec.by_default,
            chrd: spec.registration_data,
            chf: spec.facts,
            chusr: spec.username,
            chpwd: spec.password,
            extensions: spec.extensions,
            ou: org_or_default(spec.org),
            v2: spec.protocol_v2,
            update: spec.allow_update,
            standard: StandardClaims::new(Purpose::Provisioning, &spec.issuer, spec.validity, now)?,
        })
    }
}

impl TokenClaims for ProvisioningClaims {
    const PURPOSE: Purpose = Purpose::Provisioning;
    const CHAIN_AWARE: bool = false;
    standard_field!();
}

/// Broker permissions of a server token (spec §1.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerPermissions {
    /// `submission`: may publish Choria Submission messages.
    #[serde(skip_serializing_if = "omitempty")]
    pub submission: bool,
    /// `streams`: may use Choria Streams.
    #[serde(skip_serializing_if = "omitempty")]
    pub streams: bool,
    /// `governor`: may use Choria Governors (with `streams`).
    #[serde(skip_serializing_if = "omitempty")]
    pub governor: bool,
    /// `service_host`: may host services.
    #[serde(skip_serializing_if = "omitempty")]
    pub service_host: bool,
}

/// Claims of a server token (spec §1.5).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ServerClaims {
    /// `identity`: the server's identity.
    pub identity: String,
    /// `collectives` the server may use.
    #[serde(deserialize_with = "null_as_empty")]
    pub collectives: Vec<String>,
    /// `permissions`.
    #[serde(skip_serializing_if = "omitempty")]
    pub permissions: Option<ServerPermissions>,
    /// `ou`: organisation.
    #[serde(skip_serializing_if = "omitempty")]
    pub ou: String,
    /// `pub_subjects`: extra subjects the server may publish to.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "null_as_empty")]
    pub pub_subjects: Vec<String>,
    /// The standard claims.
    #[serde(flatten)]
    pub standard: StandardClaims,
}

/// What [`ServerClaims::new`] needs (upstream `NewServerClaims` arguments).
#[derive(Debug, Clone, Default)]
pub struct NewServer {
    /// `identity` (required).
    pub identity: String,
    /// `collectives` (at least one).
    pub collectives: Vec<String>,
    /// `ou`; empty means `choria`.
    pub org: String,
    /// `permissions`; `None` omits the claim.
    pub permissions: Option<ServerPermissions>,
    /// `pub_subjects`.
    pub pub_subjects: Vec<String>,
    /// The server's ed25519 public key (required).
    pub public_key: Option<[u8; 32]>,
    /// `iss`; empty means [`DEFAULT_ISSUER`].
    pub issuer: String,
    /// Lifetime (required, not zero).
    pub validity: Duration,
}

impl ServerClaims {
    /// New server claims; errors in upstream order: identity, collectives, public key, validity.
    pub fn new(spec: NewServer, now: SystemTime) -> Result<ServerClaims, TokenError> {
        if spec.identity.is_empty() {
            return Err(TokenError::InvalidClaims("identity is required".into()));
        }
        if spec.collectives.is_empty() {
            return Err(TokenError::InvalidClaims(
                "at least one collective is required".into(),
            ));
        }
        let Some(pk) = spec.public_key else {
            return Err(TokenError::InvalidClaims("public key is required".into()));
        };
        if spec.validity.is_zero() {
            return Err(TokenError::InvalidClaims("validity is required".into()));
        }
        let mut standard = StandardClaims::new(Purpose::Server, &spec.issuer, spec.validity, now)?;
        standard.public_key = hex::encode(pk);
        Ok(ServerClaims {
            identity: spec.identity,
            collectives: spec.collectives,
            permissions: spec.permissions,
            ou: org_or_default(spec.org),
            pub_subjects: spec.pub_subjects,
            standard,
        })
    }

    /// Upstream `IsMatchingPublicKey`: whether `public_key` equals `pk`.
    pub fn is_matching_public_key(&self, pk: &[u8]) -> Result<bool, TokenError> {
        if self.standard.public_key.is_empty() {
            return Err(TokenError::InvalidClaims(
                "no public key stored in the JWT".into(),
            ));
        }
        if pk.len() != 32 {
            return Err(TokenError::InvalidKey("invalid size for public key".into()));
        }
        let stored = self.standard.public_key_bytes().ok_or_else(|| {
            TokenError::InvalidClaims("invalid size for token stored public key".into())
        })?;
        Ok(stored[..] == pk[..])
    }
}

impl ServerClaims {
    /// Upstream `IsMatchingSeedFile` on a loaded seed: whether it is the holder's key.
    pub fn is_matching_seed(&self, seed: &crate::keys::Ed25519Seed) -> bool {
        self.is_matching_public_key(&seed.public_key_bytes())
            .unwrap_or(false)
    }
}

impl TokenClaims for ServerClaims {
    const PURPOSE: Purpose = Purpose::Server;
    const CHAIN_AWARE: bool = true;
    standard_field!();
    // A chain issuer may make servers (that is what provisioners do); the extra subjects a
    // server may publish to must be ones the issuer holds.
    fn beyond_issuer(&self, issuer: &IssuerGrant) -> Option<String> {
        issuer
            .uncovered(&self.pub_subjects, &issuer.pub_subjects)
            .map(|s| format!("pub_subjects {s}"))
    }
}

/// Broker permissions of a client token (spec §1.6).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientPermissions {
    /// `streams_admin`.
    #[serde(skip_serializing_if = "omitempty")]
    pub streams_admin: bool,
    /// `streams_user`.
    #[serde(skip_serializing_if = "omitempty")]
    pub streams_user: bool,
    /// `events_viewer`.
    #[serde(skip_serializing_if = "omitempty")]
    pub events_viewer: bool,
    /// `election_user`.
    #[serde(skip_serializing_if = "omitempty")]
    pub election_user: bool,
    /// `system_user`.
    #[serde(skip_serializing_if = "omitempty")]
    pub system_user: bool,
    /// `governor`.
    #[serde(skip_serializing_if = "omitempty")]
    pub governor: bool,
    /// `org_admin`.
    #[serde(skip_serializing_if = "omitempty")]
    pub org_admin: bool,
    /// `fleet_management`.
    #[serde(skip_serializing_if = "omitempty")]
    pub fleet_management: bool,
    /// `signed_fleet_management`.
    #[serde(skip_serializing_if = "omitempty")]
    pub signed_fleet_management: bool,
    /// `service`: extended token lifetime.
    #[serde(skip_serializing_if = "omitempty")]
    pub service: bool,
    /// `authentication_delegator`.
    #[serde(skip_serializing_if = "omitempty")]
    pub authentication_delegator: bool,
    /// `provisioner`: may connect to the provisioning account.
    #[serde(skip_serializing_if = "omitempty")]
    pub provisioner: bool,
}

impl ClientPermissions {
    /// The permissions a client token is minted with, from the ones asked for (spec tokens
    /// `jwt client`, in upstream's order): a chain issuer does not manage the fleet or
    /// delegate authentication itself; signed fleet management and provisioning both need
    /// fleet management.
    pub fn as_minted(mut self, chain_issuer: bool) -> ClientPermissions {
        if chain_issuer {
            self.fleet_management = false;
            self.signed_fleet_management = false;
            self.authentication_delegator = false;
        }
        if self.signed_fleet_management || self.provisioner {
            self.fleet_management = true;
        }
        self
    }

    /// Whether a token with these permissions may be issued by a chain issuer holding
    /// `signer` (grants no wider than the credential): every flag set here must be held by
    /// the signer; `org_admin` holds them all, `fleet_management` covers the narrower
    /// `signed_fleet_management`.
    pub fn within(&self, signer: &ClientPermissions) -> bool {
        self.beyond(signer).is_none()
    }

    /// The first permission set here that `signer` does not hold (see [`Self::within`]).
    pub fn beyond(&self, signer: &ClientPermissions) -> Option<&'static str> {
        if signer.org_admin {
            return None;
        }
        let signed_fleet = signer.signed_fleet_management || signer.fleet_management;
        [
            ("org_admin", self.org_admin, signer.org_admin),
            ("system_user", self.system_user, signer.system_user),
            ("streams_admin", self.streams_admin, signer.streams_admin),
            ("streams_user", self.streams_user, signer.streams_user),
            ("events_viewer", self.events_viewer, signer.events_viewer),
            ("election_user", self.election_user, signer.election_user),
            ("governor", self.governor, signer.governor),
            (
                "fleet_management",
                self.fleet_management,
                signer.fleet_management,
            ),
            (
                "signed_fleet_management",
                self.signed_fleet_management,
                signed_fleet,
            ),
            ("service", self.service, signer.service),
            (
                "authentication_delegator",
                self.authentication_delegator,
                signer.authentication_delegator,
            ),
            ("provisioner", self.provisioner, signer.provisioner),
        ]
        .into_iter()
        .find(|(_, wanted, held)| *wanted && !*held)
        .map(|(name, _, _)| name)
    }
}

/// Claims of a client id token (spec §1.6).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClientIdClaims {
    /// `callerid`, e.g. `choria=bob`.
    pub callerid: String,
    /// `agents`: allowed `agent` or `agent.action` names.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "null_as_empty")]
    pub agents: Vec<String>,
    /// `ou`: organisation.
    #[serde(skip_serializing_if = "omitempty")]
    pub ou: String,
    /// `user_properties`.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "null_as_empty")]
    pub user_properties: BTreeMap<String, String>,
    /// `opa_policy`: Rego text.
    #[serde(skip_serializing_if = "omitempty")]
    pub opa_policy: String,
    /// `permissions`.
    #[serde(skip_serializing_if = "omitempty")]
    pub permissions: Option<ClientPermissions>,
    /// `pub_subjects`.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "null_as_empty")]
    pub pub_subjects: Vec<String>,
    /// `sub_subjects`.
    #[serde(skip_serializing_if = "omitempty", deserialize_with = "null_as_empty")]
    pub sub_subjects: Vec<String>,
    /// The standard claims.
    #[serde(flatten)]
    pub standard: StandardClaims,
}

/// What [`ClientIdClaims::new`] needs (upstream `NewClientIDClaims` arguments).
#[derive(Debug, Clone, Default)]
pub struct NewClient {
    /// `callerid` (required).
    pub callerid: String,
    /// `agents`.
    pub agents: Vec<String>,
    /// `ou`; empty means `choria`.
    pub org: String,
    /// `user_properties`.
    pub user_properties: BTreeMap<String, String>,
    /// `opa_policy`.
    pub opa_policy: String,
    /// `iss`; empty means [`DEFAULT_ISSUER`].
    pub issuer: String,
    /// Lifetime; zero means one hour.
    pub validity: Duration,
    /// `pub_subjects`.
    pub pub_subjects: Vec<String>,
    /// `sub_subjects`.
    pub sub_subjects: Vec<String>,
    /// `permissions`.
    pub permissions: Option<ClientPermissions>,
    /// The client's ed25519 public key (optional).
    pub public_key: Option<[u8; 32]>,
}

impl ClientIdClaims {
    /// New client id claims; fails with `caller id is required` when `callerid` is empty.
    pub fn new(spec: NewClient, now: SystemTime) -> Result<ClientIdClaims, TokenError> {
        if spec.callerid.is_empty() {
            return Err(TokenError::InvalidClaims("caller id is required".into()));
        }
        let mut standard =
            StandardClaims::new(Purpose::ClientId, &spec.issuer, spec.validity, now)?;
        standard.public_key = spec.public_key.map(hex::encode).unwrap_or_default();
        Ok(ClientIdClaims {
            callerid: spec.callerid,
            agents: spec.agents,
            ou: org_or_default(spec.org),
            user_properties: spec.user_properties,
            opa_policy: spec.opa_policy,
            permissions: spec.permissions,
            pub_subjects: spec.pub_subjects,
            sub_subjects: spec.sub_subjects,
            standard,
        })
    }
}

impl TokenClaims for ClientIdClaims {
    const PURPOSE: Purpose = Purpose::ClientId;
    const CHAIN_AWARE: bool = true;
    standard_field!();
    fn beyond_issuer(&self, issuer: &IssuerGrant) -> Option<String> {
        if let Some(flag) = self.permissions.and_then(|p| p.beyond(&issuer.permissions)) {
            return Some(format!("permission {flag}"));
        }
        if let Some(s) = issuer.uncovered(&self.pub_subjects, &issuer.pub_subjects) {
            return Some(format!("pub_subjects {s}"));
        }
        issuer
            .uncovered(&self.sub_subjects, &issuer.sub_subjects)
            .map(|s| format!("sub_subjects {s}"))
    }
}

fn org_or_default(org: String) -> String {
    if org.is_empty() {
        DEFAULT_ORG.to_string()
    } else {
        org
    }
}

/// Go's `omitempty`: whether a claim holds the zero value upstream leaves out of a token.
fn omitempty<T: GoZero>(value: &T) -> bool {
    value.is_go_zero()
}

/// The claim types that have a Go zero value (`""`, `false`, a nil slice, map or pointer).
trait GoZero {
    fn is_go_zero(&self) -> bool;
}

impl GoZero for bool {
    fn is_go_zero(&self) -> bool {
        !*self
    }
}

impl GoZero for String {
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<T> GoZero for Vec<T> {
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<K, V> GoZero for BTreeMap<K, V> {
    fn is_go_zero(&self) -> bool {
        self.is_empty()
    }
}

impl<T> GoZero for Option<T> {
    fn is_go_zero(&self) -> bool {
        self.is_none()
    }
}

/// JWT NumericDate: integer or fractional seconds (truncated), or null.
fn numeric_date<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    let Some(n) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    if let Some(i) = n.as_i64() {
        return Ok(Some(i));
    }
    match n.as_f64() {
        Some(f) if f.is_finite() && f.abs() < 1e15 => Ok(Some(f.trunc() as i64)),
        _ => Err(serde::de::Error::custom(format!(
            "time {n} is out of range"
        ))),
    }
}

fn null_as_empty<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

fn string_or_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None => Vec::new(),
        Some(OneOrMany::One(s)) => vec![s],
        Some(OneOrMany::Many(v)) => v,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn minted_client_permissions_follow_the_cli_rules() {
        use super::ClientPermissions;
        let asked = ClientPermissions {
            fleet_management: true,
            signed_fleet_management: true,
            authentication_delegator: true,
            ..Default::default()
        };
        assert_eq!(asked.as_minted(false), asked);
        assert_eq!(
            asked.as_minted(true),
            ClientPermissions::default(),
            "an issuer loses fleet management and delegation"
        );
        let provisioner = ClientPermissions {
            provisioner: true,
            ..Default::default()
        };
        for issuer in [false, true] {
            assert!(
                provisioner.as_minted(issuer).fleet_management,
                "provisioning implies fleet management, also for an issuer"
            );
        }
        let signed = ClientPermissions {
            signed_fleet_management: true,
            ..Default::default()
        };
        assert!(signed.as_minted(false).fleet_management);
    }

    use std::time::UNIX_EPOCH;

    use super::*;

    #[test]
    fn chain_issued_grants_stay_within_the_issuer() {
        let provisioner = ClientPermissions {
            provisioner: true,
            election_user: true,
            events_viewer: true,
            ..Default::default()
        };
        let admin = ClientPermissions {
            org_admin: true,
            ..Default::default()
        };
        let fleet = ClientPermissions {
            fleet_management: true,
            ..Default::default()
        };
        assert_eq!(admin.beyond(&provisioner), Some("org_admin"));
        assert_eq!(fleet.beyond(&provisioner), Some("fleet_management"));
        assert!(ClientPermissions::default().within(&provisioner));
        assert!(provisioner.within(&provisioner));
        assert!(fleet.within(&admin), "org_admin holds everything");
        let signed = ClientPermissions {
            signed_fleet_management: true,
            ..Default::default()
        };
        assert!(
            signed.within(&fleet),
            "signed is narrower than fleet management"
        );
        assert!(!fleet.within(&signed));

        let issuer = IssuerGrant {
            permissions: provisioner,
            pub_subjects: vec!["site.events.>".into()],
            ..Default::default()
        };
        let mut leaf = ServerClaims {
            pub_subjects: vec!["site.events.node1".into()],
            ..Default::default()
        };
        assert_eq!(leaf.beyond_issuer(&issuer), None);
        leaf.pub_subjects.push(">".into());
        assert_eq!(leaf.beyond_issuer(&issuer), Some("pub_subjects >".into()));
        let client = ClientIdClaims {
            sub_subjects: vec!["choria.node.>".into()],
            ..Default::default()
        };
        assert_eq!(
            client.beyond_issuer(&issuer),
            Some("sub_subjects choria.node.>".into())
        );
    }

    #[test]
    fn subject_coverage_follows_nats_wildcards() {
        assert!(subject_covers(">", "a.b"));
        assert!(subject_covers("a.>", "a.b.c"));
        assert!(!subject_covers("a.>", "a"));
        assert!(subject_covers("a.*", "a.b"));
        assert!(subject_covers("a.*", "a.*"));
        assert!(!subject_covers("a.*", "a.>"));
        assert!(!subject_covers("a.b", "a.*"));
        assert!(!subject_covers("a.b", ">"));
        assert!(subject_covers("a.b", "a.b"));
        assert!(!subject_covers("a.b", "a.b.c"));
    }

    fn t0() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_700_000_000)
    }

    #[test]
    fn provisioning_serialises_in_go_order_with_null_extensions() {
        let mut c = ProvisioningClaims::new(
            NewProvisioning {
                token: "s3cret".into(),
                urls: vec!["nats://b:4222".into()],
                by_default: true,
                ..Default::default()
            },
            t0(),
        )
        .unwrap();
        c.standard.jti = "J".into();
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"cht":"s3cret","chs":false,"chu":"nats://b:4222","chpd":true,"extensions":null,"ou":"choria","purpose":"choria_provisioning","iss":"Choria Tokens Package","sub":"choria_provisioning","exp":1700003600,"nbf":1700000000,"iat":1700000000,"jti":"J"}"#
        );
        let err = ProvisioningClaims::new(NewProvisioning::default(), t0()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid claims: srv domain or urls required"
        );
    }

    #[test]
    fn constructors_apply_upstream_defaults_and_checks() {
        let pk = [7u8; 32];
        let ok = NewServer {
            identity: "n1".into(),
            collectives: vec!["choria".into()],
            public_key: Some(pk),
            validity: Duration::from_secs(60),
            ..Default::default()
        };
        let c = ServerClaims::new(ok.clone(), t0()).unwrap();
        assert_eq!(c.ou, "choria");
        assert_eq!(c.standard.iss, DEFAULT_ISSUER);
        assert!(c.standard.sub.is_empty());
        assert_eq!(c.standard.exp, Some(1_700_000_060));
        let id = Ksuid::parse(&c.standard.jti).unwrap();
        assert_eq!(id.unix_seconds(), 1_700_000_000);
        assert!(c.is_matching_public_key(&pk).unwrap());
        assert!(!c.is_matching_public_key(&[8u8; 32]).unwrap());
        assert!(c.is_matching_public_key(&[7u8; 31]).is_err());

        for (spec, message) in [
            (
                NewServer {
                    identity: String::new(),
                    ..ok.clone()
                },
                "identity is required",
            ),
            (
                NewServer {
                    collectives: vec![],
                    ..ok.clone()
                },
                "at least one collective is required",
            ),
            (
                NewServer {
                    public_key: None,
                    ..ok.clone()
                },
                "public key is required",
            ),
            (
                NewServer {
                    validity: Duration::ZERO,
                    ..ok.clone()
                },
                "validity is required",
            ),
        ] {
            let err = ServerClaims::new(spec, t0()).unwrap_err();
            assert_eq!(err.to_string(), format!("invalid claims: {message}"));
        }

        let client = ClientIdClaims::new(
            NewClient {
                callerid: "up=bob".into(),
                ..Default::default()
            },
            t0(),
        )
        .unwrap();
        assert_eq!(
            client.standard.exp,
            Some(1_700_003_600),
            "zero validity is one hour"
        );
        assert!(client.standard.public_key.is_empty());
        assert!(ClientIdClaims::new(NewClient::default(), t0()).is_err());
    }

    #[test]
    fn effective_expiry() {
        let mut s = StandardClaims::default();
        assert_eq!(s.expire_time(), None);
        assert!(
            s.is_expired(t0()),
            "no expiry counts as expired (upstream quirk)"
        );
        s.exp = Some(1_700_000_010);
        assert!(!s.is_expired(t0()));
        s.issexp = Some(1_600_000_000);
        assert_eq!(s.expire_time(), Some(1_600_000_000));
        assert!(s.is_expired(t0()));
        s.exp = None;
        assert_eq!(s.expire_time(), Some(1_600_000_000));
    }

    #[test]
    fn purpose_names() {
        for p in [Purpose::ClientId, Purpose::Provisioning, Purpose::Server] {
            assert_eq!(Purpose::from_claim(p.as_str()), p);
        }
        assert_eq!(Purpose::from_claim("x"), Purpose::Unknown);
        let legacy = StandardClaims {
            sub: "choria_provisioning".into(),
            ..Default::default()
        };
        assert_eq!(legacy.purpose(), Purpose::Provisioning);
    }
}
