//! The Choria authorization decision (spec §2.5–2.7) as a pure function from a typed
//! connection to a grant or a rejection; the callout service is only the shell around it.

use choria_tokens::{claimed_purpose, ClaimedPurpose, NonceError, Purpose, SignatureEncoding};
use secrecy::{ExposeSecret, SecretString};

use crate::natsjwt::{AuthorizationRequest, Grant};
use crate::permissions::{self, Account, ClientGrant, Permissions, ServerGrant};
use crate::verify::VerifyError;

/// Tokens larger than this are rejected before any parsing (real Choria JWTs are ~1–3 KiB).
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The user name of the broker's own readiness probe (random password per process).
pub const PROBE_USER: &str = "_choria_broker_probe";

/// How the client port authenticates (spec DESIGN "TLS modes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// TLS without client certificates; identities are JWTs plus nonce signatures.
    #[default]
    Jwt,
    /// Client port requires verified client certificates; the enrolment listener admits
    /// provisioning-mode servers and the provisioner only.
    Mtls,
}

/// The TLS state nats-server reports for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsState {
    /// No TLS handshake.
    None,
    /// TLS without a verified client certificate.
    Unverified,
    /// TLS with a client certificate that chains to the CA.
    Verified,
}

/// The listener a connection came through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The client port (`nats` transport).
    Client,
    /// The enrolment listener (nats-server websocket).
    Enrolment,
    /// Anything else nats-server may report (mqtt, leafnode ...): always rejected.
    Other,
}

/// One connection as the decision sees it. Holds secrets: not `Debug`.
pub struct Connection<'a> {
    /// Remote IP (for logs).
    pub remote: &'a str,
    /// Where it came in.
    pub listener: Listener,
    /// TLS state.
    pub tls: TlsState,
    /// The nonce the client signed (empty when it sent no signature).
    pub nonce: &'a str,
    /// CONNECT `user`.
    pub user: &'a str,
    /// CONNECT `pass`.
    pub pass: &'a str,
    /// CONNECT `auth_token`.
    pub token: &'a str,
    /// CONNECT `sig`.
    pub sig: &'a str,
    /// CONNECT `name`.
    pub name: &'a str,
}

impl<'a> Connection<'a> {
    /// Reads the facts out of a decoded authorization request.
    pub fn from_request(request: &'a AuthorizationRequest) -> Connection<'a> {
        let listener = match (
            request.client_info.kind.as_str(),
            request.client_info.transport.as_str(),
        ) {
            ("Client", "nats") | ("Client", "") => Listener::Client,
            ("Client", "websocket") => Listener::Enrolment,
            _ => Listener::Other,
        };
        let tls = match &request.client_tls {
            None => TlsState::None,
            Some(tls) if tls.verified_chains.as_ref().is_some_and(|c| !c.is_empty()) => {
                TlsState::Verified
            }
            Some(_) => TlsState::Unverified,
        };
        let opts = &request.connect_opts;
        Connection {
            remote: &request.client_info.host,
            listener,
            tls,
            nonce: &request.client_info.nonce,
            user: &opts.user,
            pass: opts.pass.expose_secret(),
            token: opts.auth_token.expose_secret().trim(),
            sig: &opts.sig,
            name: &opts.name,
        }
    }
}

/// The verified facts of a provisioning token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisioningFacts {
    /// Claim `ou` (defaulted to `choria`).
    pub ou: String,
    /// Which trust anchor verified it: `signer` or `issuer '<ou>'`.
    pub via: String,
}

/// Verifies Choria tokens against the configured signers and issuers (spec §2.3).
/// Errors never contain the token.
pub trait TokenVerifier: Send + Sync {
    /// A provisioning token (`choria_provisioning`).
    fn provisioning(&self, token: &str) -> Result<ProvisioningFacts, VerifyError>;
    /// A server token; returns the grant and the holder's hex ed25519 public key.
    fn server(&self, token: &str) -> Result<(ServerGrant, String), VerifyError>;
    /// A client token; returns the grant, the permission flags and the holder's public key.
    fn client(&self, token: &str) -> Result<(ClientGrant, String), VerifyError>;
}

/// Broker-wide authorization settings (derived from [`crate::BrokerSettings`]).
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Client port TLS mode.
    pub tls_mode: TlsMode,
    /// `provisioning.client_password`; `Some` creates the provisioning account.
    pub provisioning_password: Option<SecretString>,
    /// `provisioning.provisioner_without_token`.
    pub provisioner_without_token: bool,
    /// `system.user` and `system.password` when both are set.
    pub system: Option<(String, SecretString)>,
    /// `deny_server_connections`.
    pub deny_server_connections: bool,
    /// Issuer mode: verified mTLS connections without a JWT get P_PUBSUB when this is set
    /// (`plugin.security.choria.ca`), are rejected in issuer mode otherwise.
    pub issuer_mode: bool,
    /// `plugin.security.choria.ca` is set (P_PUBSUB for verified mTLS in issuer mode).
    pub pubsub_for_mtls: bool,
    /// `plugin.choria.network.client_hosts` is non-empty: verified mTLS connections without
    /// a JWT are servers (P_SERVER_DEFAULT), whatever their address (spec §2.8).
    pub client_hosts_set: bool,
    /// Reply-subject hashes without md5.
    pub fips: bool,
    /// Password of [`PROBE_USER`], random per process.
    pub probe_password: SecretString,
}

/// Why a connection was refused; `Display` is the logged reason (never a secret),
/// [`Rejection::label`] the metric label and [`Rejection::rule`] the exact rule.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// Plain TCP on a TLS broker.
    #[error("TLS is required")]
    TlsRequired,
    /// Not a client connection on a listener we know.
    #[error("connections of this kind or transport are not accepted")]
    UnsupportedConnection,
    /// An unverified connection on the client port in mTLS mode.
    #[error("the client port requires a verified client certificate in mtls mode")]
    CertificateRequired,
    /// Token over [`MAX_TOKEN_BYTES`].
    #[error("token of {0} bytes exceeds the {MAX_TOKEN_BYTES} byte limit")]
    TokenTooLarge(usize),
    /// The provisioner user was refused (§2.6.A).
    #[error("provisioning user connection denied: {0}")]
    Provisioner(#[source] ProvisionerDenied),
    /// The system user was refused (§2.6.B/C).
    #[error("system user denied: {0}")]
    System(#[source] SystemDenied),
    /// A client or server JWT failed (§2.6.D).
    #[error("invalid nonce signature or jwt token: {0}")]
    Jwt(#[from] JwtDenied),
    /// A token purpose we do not handle here (the claim as sent).
    #[error("do not know how to handle {0:?} purpose token")]
    UnknownPurpose(String),
    /// No token and no verified certificate.
    #[error("unverified connection without JWT token")]
    NoToken,
    /// A provisioning-mode server was refused (§2.6.E).
    #[error("provisioning server denied: {0}")]
    Provisioning(#[source] ProvisioningDenied),
    /// Verified mTLS without a JWT in issuer mode.
    #[error("unknown connection received in issuer mode")]
    IssuerModeUnknown,
    /// The readiness probe with a wrong password.
    #[error("invalid probe credentials")]
    Probe,
    /// Fleet credentials on the enrolment listener, which is for provisioning-mode servers
    /// and the provisioner only (the rule names what was presented).
    #[error("the enrolment listener admits provisioning-mode servers and the provisioner only, not a {}", .0.replace('_', " "))]
    Enrolment(&'static str),
}

impl Rejection {
    /// Short label for metrics.
    pub fn label(&self) -> &'static str {
        match self {
            Rejection::TlsRequired => "tls_required",
            Rejection::UnsupportedConnection => "unsupported",
            Rejection::CertificateRequired => "certificate_required",
            Rejection::TokenTooLarge(_) => "token_too_large",
            Rejection::Provisioner(_) => "provisioner",
            Rejection::System(_) => "system",
            Rejection::Jwt(_) => "jwt",
            Rejection::UnknownPurpose(_) => "unknown_purpose",
            Rejection::NoToken => "no_token",
            Rejection::Provisioning(_) => "provisioning",
            Rejection::IssuerModeUnknown => "issuer_mode",
            Rejection::Probe => "probe",
            Rejection::Enrolment(_) => "enrolment",
        }
    }

    /// The rule within [`Rejection::label`] that refused the connection (the `rule` label of
    /// `choria_broker_auth_refusals`); the label itself when there is only one.
    pub fn rule(&self) -> &'static str {
        match self {
            Rejection::Provisioner(denied) => denied.as_str(),
            Rejection::System(denied) => denied.as_str(),
            Rejection::Jwt(JwtDenied::Token(e))
            | Rejection::Provisioning(ProvisioningDenied::Token(e)) => e.as_str(),
            Rejection::Jwt(JwtDenied::Nonce(e)) => nonce_rule(e),
            Rejection::Provisioning(ProvisioningDenied::NoAccount) => "no_account",
            Rejection::Enrolment(what) => what,
            other => other.label(),
        }
    }
}

/// Why the provisioner user was refused (§2.6.A).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisionerDenied {
    /// `provisioning.client_password` is not set.
    #[error("provisioning user password not enabled")]
    NotEnabled,
    /// No password in CONNECT.
    #[error("password required")]
    NoPassword,
    /// The password does not match.
    #[error("invalid provisioner password supplied")]
    WrongPassword,
    /// No token, and connections without one are not allowed.
    #[error("no token provided in connection")]
    NoToken,
    /// The token is not a client token.
    #[error("client token required")]
    NotAClientToken,
    /// The client token did not verify.
    #[error(transparent)]
    Token(VerifyError),
    /// The client token lacks the `provisioner` permission.
    #[error("provisioner claim is false in token with caller id '{caller}'")]
    NoProvisionerClaim {
        /// The token's caller id.
        caller: String,
    },
    /// The nonce signature failed.
    #[error("invalid nonce signature: {}", nonce_text(.0))]
    Nonce(#[source] NonceError),
}

impl ProvisionerDenied {
    fn as_str(&self) -> &'static str {
        match self {
            ProvisionerDenied::NotEnabled => "not_enabled",
            ProvisionerDenied::NoPassword => "no_password",
            ProvisionerDenied::WrongPassword => "wrong_password",
            ProvisionerDenied::NoToken => "no_token",
            ProvisionerDenied::NotAClientToken => "not_a_client_token",
            ProvisionerDenied::Token(e) => e.as_str(),
            ProvisionerDenied::NoProvisionerClaim { .. } => "no_provisioner_claim",
            ProvisionerDenied::Nonce(e) => nonce_rule(e),
        }
    }
}

/// Why the system user was refused (§2.6.B/C).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SystemDenied {
    /// No system user is configured.
    #[error("system user is required")]
    NotConfigured,
    /// No token over an unverified connection.
    #[error("no JWT token received")]
    NoToken,
    /// The token is not a client token.
    #[error("client token required")]
    NotAClientToken,
    /// The client token did not verify.
    #[error("invalid JWT token: {0}")]
    Token(#[source] VerifyError),
    /// The client token has neither `system_user` nor `org_admin`.
    #[error("no system_user or org_admin claim")]
    NoSystemClaim,
    /// The nonce signature failed.
    #[error("invalid nonce signature: {}", nonce_text(.0))]
    Nonce(#[source] NonceError),
    /// User or password do not match.
    #[error("invalid system credentials")]
    WrongCredentials,
}

impl SystemDenied {
    fn as_str(&self) -> &'static str {
        match self {
            SystemDenied::NotConfigured => "not_configured",
            SystemDenied::NoToken => "no_token",
            SystemDenied::NotAClientToken => "not_a_client_token",
            SystemDenied::Token(e) => e.as_str(),
            SystemDenied::NoSystemClaim => "no_system_claim",
            SystemDenied::Nonce(e) => nonce_rule(e),
            SystemDenied::WrongCredentials => "wrong_credentials",
        }
    }
}

/// Why a client or server JWT connection was refused (§2.6.D).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtDenied {
    /// The token did not verify.
    #[error(transparent)]
    Token(VerifyError),
    /// The nonce signature failed.
    #[error("{}", nonce_text(.0))]
    Nonce(#[source] NonceError),
}

/// Why a provisioning-mode server was refused (§2.6.E).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ProvisioningDenied {
    /// The provisioning account is not configured.
    #[error("provisioning account is not set")]
    NoAccount,
    /// The provisioning token did not verify.
    #[error(transparent)]
    Token(VerifyError),
}

/// Decides one connection.
pub fn decide(
    policy: &Policy,
    verifier: &dyn TokenVerifier,
    conn: &Connection<'_>,
) -> Result<Grant, Rejection> {
    if conn.token.len() > MAX_TOKEN_BYTES {
        return Err(Rejection::TokenTooLarge(conn.token.len()));
    }
    if conn.listener == Listener::Other {
        return Err(Rejection::UnsupportedConnection);
    }
    if conn.tls == TlsState::None {
        return Err(Rejection::TlsRequired);
    }
    if policy.tls_mode == TlsMode::Mtls
        && conn.listener == Listener::Client
        && conn.tls != TlsState::Verified
    {
        return Err(Rejection::CertificateRequired);
    }
    if conn.user == PROBE_USER {
        return probe(policy, conn);
    }
    if conn.user == "provisioner" {
        return provisioner(policy, verifier, conn).map_err(Rejection::Provisioner);
    }
    if let Some((system_user, _)) = &policy.system {
        if conn.user == system_user {
            if conn.listener == Listener::Enrolment {
                return Err(Rejection::Enrolment("system_user"));
            }
            return system(policy, verifier, conn).map_err(Rejection::System);
        }
    }
    default_handler(policy, verifier, conn)
}

fn probe(policy: &Policy, conn: &Connection<'_>) -> Result<Grant, Rejection> {
    let probe_password = policy.probe_password.expose_secret();
    if probe_password.is_empty() || !constant_eq(conn.pass, probe_password) {
        return Err(Rejection::Probe);
    }
    Ok(Grant {
        account: Account::Choria,
        name: PROBE_USER.into(),
        permissions: permissions::deny_all(),
    })
}

fn provisioner(
    policy: &Policy,
    verifier: &dyn TokenVerifier,
    conn: &Connection<'_>,
) -> Result<Grant, ProvisionerDenied> {
    let Some(password) = &policy.provisioning_password else {
        return Err(ProvisionerDenied::NotEnabled);
    };
    if conn.pass.is_empty() {
        return Err(ProvisionerDenied::NoPassword);
    }
    if !constant_eq(conn.pass, password.expose_secret()) {
        return Err(ProvisionerDenied::WrongPassword);
    }
    let grant = Grant {
        account: Account::Provisioning,
        name: "provisioner".into(),
        permissions: Permissions::Unrestricted,
    };
    if conn.tls == TlsState::Verified && conn.listener == Listener::Client {
        return Ok(grant);
    }
    if conn.token.is_empty() {
        if policy.provisioner_without_token {
            return Ok(grant);
        }
        return Err(ProvisionerDenied::NoToken);
    }
    if claimed_purpose(conn.token) != ClaimedPurpose::Known(Purpose::ClientId) {
        return Err(ProvisionerDenied::NotAClientToken);
    }
    let (client, public_key) = verifier
        .client(conn.token)
        .map_err(ProvisionerDenied::Token)?;
    if !client.permissions.as_ref().is_some_and(|p| p.provisioner) {
        return Err(ProvisionerDenied::NoProvisionerClaim {
            caller: client.caller,
        });
    }
    verify_nonce(conn, &public_key).map_err(ProvisionerDenied::Nonce)?;
    Ok(grant)
}

fn system(
    policy: &Policy,
    verifier: &dyn TokenVerifier,
    conn: &Connection<'_>,
) -> Result<Grant, SystemDenied> {
    let Some((user, password)) = &policy.system else {
        return Err(SystemDenied::NotConfigured);
    };
    if conn.tls != TlsState::Verified || conn.listener != Listener::Client {
        if conn.token.is_empty() {
            return Err(SystemDenied::NoToken);
        }
        if claimed_purpose(conn.token) != ClaimedPurpose::Known(Purpose::ClientId) {
            return Err(SystemDenied::NotAClientToken);
        }
        let (client, public_key) = verifier.client(conn.token).map_err(SystemDenied::Token)?;
        let flags = client.permissions.unwrap_or_default();
        if !(flags.system_user || flags.org_admin) {
            return Err(SystemDenied::NoSystemClaim);
        }
        verify_nonce(conn, &public_key).map_err(SystemDenied::Nonce)?;
    }
    if !(constant_eq(conn.user, user) && constant_eq(conn.pass, password.expose_secret())) {
        return Err(SystemDenied::WrongCredentials);
    }
    Ok(Grant {
        account: Account::System,
        name: user.clone(),
        permissions: Permissions::Unrestricted,
    })
}

fn default_handler(
    policy: &Policy,
    verifier: &dyn TokenVerifier,
    conn: &Connection<'_>,
) -> Result<Grant, Rejection> {
    if conn.token.is_empty() {
        if conn.tls == TlsState::Verified && conn.listener == Listener::Client {
            let permissions = if policy.client_hosts_set {
                if policy.deny_server_connections {
                    permissions::deny_all()
                } else {
                    permissions::server_default()
                }
            } else if policy.issuer_mode && policy.pubsub_for_mtls {
                permissions::pubsub()
            } else if policy.issuer_mode {
                return Err(Rejection::IssuerModeUnknown);
            } else {
                Permissions::Unrestricted
            };
            return Ok(Grant {
                account: Account::Choria,
                name: conn.user.to_string(),
                permissions,
            });
        }
        return Err(Rejection::NoToken);
    }
    match claimed_purpose(conn.token) {
        ClaimedPurpose::Known(Purpose::ClientId) if conn.listener == Listener::Enrolment => {
            Err(Rejection::Enrolment("client_token"))
        }
        ClaimedPurpose::Known(Purpose::Server) if conn.listener == Listener::Enrolment => {
            Err(Rejection::Enrolment("server_token"))
        }
        ClaimedPurpose::Known(Purpose::ClientId) => {
            let (client, public_key) = verifier.client(conn.token).map_err(JwtDenied::Token)?;
            verify_nonce(conn, &public_key).map_err(JwtDenied::Nonce)?;
            Ok(Grant {
                account: Account::Choria,
                name: client.caller.clone(),
                permissions: permissions::client_claims(&client, Account::Choria, policy.fips),
            })
        }
        ClaimedPurpose::Known(Purpose::Server) => {
            let (server, public_key) = verifier.server(conn.token).map_err(JwtDenied::Token)?;
            verify_nonce(conn, &public_key).map_err(JwtDenied::Nonce)?;
            let permissions = if policy.deny_server_connections {
                permissions::deny_all()
            } else {
                permissions::server_claims(&server, policy.fips)
            };
            Ok(Grant {
                account: Account::Choria,
                name: server.identity,
                permissions,
            })
        }
        ClaimedPurpose::Known(Purpose::Provisioning) => provisioning_server(policy, verifier, conn),
        ClaimedPurpose::Known(Purpose::Unknown) => Err(Rejection::UnknownPurpose(String::new())),
        ClaimedPurpose::Other(other) => Err(Rejection::UnknownPurpose(other)),
    }
}

fn provisioning_server(
    policy: &Policy,
    verifier: &dyn TokenVerifier,
    conn: &Connection<'_>,
) -> Result<Grant, Rejection> {
    if conn.tls == TlsState::Verified && conn.listener == Listener::Client {
        return Err(Rejection::UnknownPurpose(
            Purpose::Provisioning.as_str().into(),
        ));
    }
    if policy.provisioning_password.is_none() {
        return Err(Rejection::Provisioning(ProvisioningDenied::NoAccount));
    }
    verifier
        .provisioning(conn.token)
        .map_err(|e| Rejection::Provisioning(ProvisioningDenied::Token(e)))?;
    let identity = Some(conn.name).filter(|n| permissions::is_literal_subject_suffix(n));
    let permissions = match identity {
        Some(id) => permissions::provisioning_server(Some(id)),
        // Without a usable connection name the node may only hear the broadcasts: it can be
        // discovered but cannot watch other nodes' RPCs.
        None => permissions::Permissions::Limited {
            publish: match permissions::provisioning_server(None) {
                Permissions::Limited { publish, .. } => publish,
                Permissions::Unrestricted => permissions::SubjectRules::default(),
            },
            subscribe: permissions::SubjectRules {
                allow: Some(
                    permissions::PROVISIONING_BROADCASTS
                        .iter()
                        .map(|s| s.to_string())
                        .collect(),
                ),
                deny: Vec::new(),
            },
        },
    };
    Ok(Grant {
        account: Account::Provisioning,
        name: conn.user.to_string(),
        permissions,
    })
}

/// Verifies the ed25519 signature of the connection nonce (spec §2.4): `sig` is base64url
/// without padding, the key is the hex `public_key` of the verified JWT.
fn verify_nonce(conn: &Connection<'_>, public_key: &str) -> Result<(), NonceError> {
    choria_tokens::verify_nonce(
        public_key,
        conn.nonce.as_bytes(),
        conn.sig,
        SignatureEncoding::Base64Url,
    )
}

/// The broker's text for a nonce failure (spec §2.4), which operators search logs for.
fn nonce_text(error: &NonceError) -> String {
    match error {
        NonceError::MissingSignature => "connection nonce was not signed".into(),
        NonceError::MissingPublicKey => {
            "no public key found in the JWT to verify nonce signature".into()
        }
        NonceError::MissingNonce => "server did not generate a nonce to verify".into(),
        NonceError::PublicKeyNotHex(_) => "invalid nonce signature".into(),
        NonceError::SignatureEncoding { reason, .. } => {
            format!("invalid url encoded signature: {reason}")
        }
        NonceError::PublicKeyLength(n) => {
            format!("could not verify nonce signature: invalid public key length {n}")
        }
        _ => "nonce signature did not verify using pub key in the jwt".into(),
    }
}

fn nonce_rule(error: &NonceError) -> &'static str {
    match error {
        NonceError::MissingSignature => "nonce_not_signed",
        NonceError::MissingPublicKey => "nonce_no_public_key",
        NonceError::MissingNonce => "nonce_missing",
        NonceError::SignatureEncoding { .. } => "nonce_encoding",
        _ => "nonce_mismatch",
    }
}

fn constant_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        diff |= usize::from(a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE_SIG: &str =
        "JyrB4BDEPwNnBwB84dN9TFvzYAVNWPw3F2YXV2ui41dH48TGeYZS7Bs2_8qcIU-PNIkG6tp2GtZsjQJVzmNgBQ";

    fn other_public() -> String {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/vectors/tokens/ed25519/other.public");
        std::fs::read_to_string(path)
            .expect("vector")
            .trim()
            .to_string()
    }

    #[test]
    fn nonce_vector_verifies_and_failures_use_spec_texts() {
        let key = other_public();
        let check = |nonce: &'static str, sig: &'static str, key: &str| {
            let mut c = conn("", TlsState::Unverified);
            c.nonce = nonce;
            c.sig = sig;
            verify_nonce(&c, key).map_err(|e| nonce_text(&e))
        };
        assert_eq!(check("toomanysecrets", NONCE_SIG, &key), Ok(()));
        assert_eq!(
            check("toomanysecretz", NONCE_SIG, &key),
            Err("nonce signature did not verify using pub key in the jwt".into())
        );
        assert_eq!(
            check("n", "", &key),
            Err("connection nonce was not signed".into())
        );
        assert_eq!(
            check("n", "x", ""),
            Err("no public key found in the JWT to verify nonce signature".into())
        );
        assert_eq!(
            check("", "x", &key),
            Err("server did not generate a nonce to verify".into())
        );
        assert!(check("n", "x", &key)
            .expect_err("bad b64")
            .starts_with("invalid url encoded signature"));
        assert_eq!(
            check("n", NONCE_SIG, &"ab".repeat(64)),
            Err("could not verify nonce signature: invalid public key length 64".into())
        );
    }

    use crate::verify::ChoriaVerifier;
    use choria_tokens::{
        sign_token, ClientIdClaims, ClientPermissions, Ed25519Seed, NewClient, NewProvisioning,
        ProvisioningClaims, SigningKey,
    };
    use std::time::{Duration, SystemTime};

    struct Fixture {
        org: Ed25519Seed,
        signer: Ed25519Seed,
        verifier: ChoriaVerifier,
        policy: Policy,
    }

    fn fixture() -> Fixture {
        let org = Ed25519Seed::generate();
        let signer = Ed25519Seed::generate();
        let verifier = ChoriaVerifier::new(
            Some(signer.public_key()),
            Vec::new(),
            Vec::new(),
            vec![("choria".into(), org.public_key())],
        );
        let policy = Policy {
            provisioning_password: Some("s3cret".into()),
            system: Some(("system".into(), "sysS3cret".into())),
            issuer_mode: true,
            probe_password: "probe".into(),
            ..Default::default()
        };
        Fixture {
            org,
            signer,
            verifier,
            policy,
        }
    }

    fn provisioning_token(signer: &Ed25519Seed) -> String {
        let claims = ProvisioningClaims::new(
            NewProvisioning {
                token: "t".into(),
                urls: vec!["tls://127.0.0.1:4222".into()],
                validity: Duration::from_secs(3600),
                ..Default::default()
            },
            SystemTime::now(),
        )
        .expect("claims");
        sign_token(&claims, &SigningKey::Ed25519(signer.clone())).expect("sign")
    }

    fn client_token(org: &Ed25519Seed, holder: &Ed25519Seed, perms: ClientPermissions) -> String {
        let claims = ClientIdClaims::new(
            NewClient {
                callerid: "up=test".into(),
                public_key: Some(holder.public_key_bytes()),
                permissions: Some(perms),
                ..Default::default()
            },
            SystemTime::now(),
        )
        .expect("claims");
        sign_token(&claims, &SigningKey::Ed25519(org.clone())).expect("sign")
    }

    /// The refusal is `want`, and its logged text is still `text`.
    fn assert_refusal(got: Result<Grant, Rejection>, want: Rejection, text: &str) {
        let got = got.err();
        assert_eq!(got.as_ref(), Some(&want));
        assert_eq!(got.map(|r| r.to_string()).as_deref(), Some(text));
    }

    fn conn<'a>(token: &'a str, tls: TlsState) -> Connection<'a> {
        Connection {
            remote: "192.0.2.1",
            listener: Listener::Client,
            tls,
            nonce: "",
            user: "",
            pass: "",
            token,
            sig: "",
            name: "n1.example.net",
        }
    }

    #[test]
    fn provisioning_token_places_in_provisioning_only_over_unverified_tls() {
        let f = fixture();
        let token = provisioning_token(&f.signer);
        let grant =
            decide(&f.policy, &f.verifier, &conn(&token, TlsState::Unverified)).expect("grant");
        assert_eq!(grant.account, Account::Provisioning);
        assert_eq!(
            grant.permissions,
            permissions::provisioning_server(Some("n1.example.net"))
        );
        assert_eq!(
            decide(&f.policy, &f.verifier, &conn(&token, TlsState::Verified)).err(),
            Some(Rejection::UnknownPurpose("choria_provisioning".into()))
        );
        assert_eq!(
            decide(&f.policy, &f.verifier, &conn(&token, TlsState::None)).err(),
            Some(Rejection::TlsRequired)
        );
        let mut no_account = f.policy.clone();
        no_account.provisioning_password = None;
        assert!(matches!(
            decide(
                &no_account,
                &f.verifier,
                &conn(&token, TlsState::Unverified)
            ),
            Err(Rejection::Provisioning(_))
        ));
        let rogue = provisioning_token(&Ed25519Seed::generate());
        assert!(matches!(
            decide(&f.policy, &f.verifier, &conn(&rogue, TlsState::Unverified)),
            Err(Rejection::Provisioning(_))
        ));
    }

    #[test]
    fn unusable_connection_names_get_only_the_broadcasts() {
        let f = fixture();
        let token = provisioning_token(&f.signer);
        let mut c = conn(&token, TlsState::Unverified);
        c.name = "provisioning.>";
        let grant = decide(&f.policy, &f.verifier, &c).expect("grant");
        let Permissions::Limited { subscribe, .. } = grant.permissions else {
            panic!("limited expected");
        };
        assert_eq!(subscribe.allow.map(|a| a.len()), Some(4));
    }

    #[test]
    fn shape_checks_come_first() {
        let f = fixture();
        let big = "a".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(
            decide(&f.policy, &f.verifier, &conn(&big, TlsState::Unverified)).err(),
            Some(Rejection::TokenTooLarge(MAX_TOKEN_BYTES + 1))
        );
        let mut leaf = conn("", TlsState::Verified);
        leaf.listener = Listener::Other;
        assert_eq!(
            decide(&f.policy, &f.verifier, &leaf).err(),
            Some(Rejection::UnsupportedConnection)
        );
        let mut mtls = f.policy.clone();
        mtls.tls_mode = TlsMode::Mtls;
        assert_eq!(
            decide(&mtls, &f.verifier, &conn("", TlsState::Unverified)).err(),
            Some(Rejection::CertificateRequired)
        );
        let mut pubsub = mtls.clone();
        pubsub.pubsub_for_mtls = true;
        assert_eq!(
            decide(&pubsub, &f.verifier, &conn("", TlsState::Verified)).map(|g| g.permissions),
            Ok(permissions::pubsub())
        );
        let mut servers = pubsub.clone();
        servers.client_hosts_set = true;
        assert_eq!(
            decide(&servers, &f.verifier, &conn("", TlsState::Verified)).map(|g| g.permissions),
            Ok(permissions::server_default()),
            "an allow list makes certificate-only connections servers"
        );
        servers.deny_server_connections = true;
        assert_eq!(
            decide(&servers, &f.verifier, &conn("", TlsState::Verified)).map(|g| g.permissions),
            Ok(permissions::deny_all())
        );
        let mut probe = conn("", TlsState::Unverified);
        probe.user = PROBE_USER;
        probe.pass = "wrong";
        assert_eq!(
            decide(&f.policy, &f.verifier, &probe).err(),
            Some(Rejection::Probe)
        );
        probe.pass = "probe";
        assert_eq!(
            decide(&f.policy, &f.verifier, &probe).map(|g| g.permissions),
            Ok(permissions::deny_all())
        );
    }

    #[test]
    fn provisioner_and_system_rules() {
        let f = fixture();
        let holder = Ed25519Seed::generate();
        let token = client_token(
            &f.org,
            &holder,
            ClientPermissions {
                provisioner: true,
                system_user: true,
                ..Default::default()
            },
        );
        let sig = choria_tokens::sign_nonce(&holder, b"nonce123");
        let mut c = conn(&token, TlsState::Unverified);
        c.user = "provisioner";
        c.pass = "s3cret";
        c.nonce = "nonce123";
        c.sig = &sig;
        let grant = decide(&f.policy, &f.verifier, &c).expect("provisioner");
        assert_eq!(
            (grant.account, grant.permissions),
            (Account::Provisioning, Permissions::Unrestricted)
        );
        c.nonce = "other-nonce";
        assert!(matches!(
            decide(&f.policy, &f.verifier, &c),
            Err(Rejection::Provisioner(_))
        ));
        c.nonce = "nonce123";
        c.pass = "wrong";
        assert_refusal(
            decide(&f.policy, &f.verifier, &c),
            Rejection::Provisioner(ProvisionerDenied::WrongPassword),
            "provisioning user connection denied: invalid provisioner password supplied",
        );
        // system user over unverified TLS with a system_user JWT
        c.user = "system";
        c.pass = "sysS3cret";
        assert_eq!(
            decide(&f.policy, &f.verifier, &c).map(|g| g.account),
            Ok(Account::System)
        );
        // system user over verified TLS: password only
        let mut verified = conn("", TlsState::Verified);
        verified.user = "system";
        verified.pass = "sysS3cret";
        assert_eq!(
            decide(&f.policy, &f.verifier, &verified).map(|g| g.account),
            Ok(Account::System)
        );
        verified.pass = "nope";
        assert_refusal(
            decide(&f.policy, &f.verifier, &verified),
            Rejection::System(SystemDenied::WrongCredentials),
            "system user denied: invalid system credentials",
        );
    }

    #[test]
    fn issuer_mode_rejects_bare_mtls_and_unknown_purposes() {
        let f = fixture();
        assert_eq!(
            decide(&f.policy, &f.verifier, &conn("", TlsState::Verified)).err(),
            Some(Rejection::IssuerModeUnknown)
        );
        assert_eq!(
            decide(&f.policy, &f.verifier, &conn("", TlsState::Unverified)).err(),
            Some(Rejection::NoToken)
        );
        assert!(matches!(
            decide(
                &f.policy,
                &f.verifier,
                &conn("garbage", TlsState::Unverified)
            ),
            Err(Rejection::UnknownPurpose(_))
        ));
    }

    #[test]
    fn debug_never_shows_a_password() {
        let text = format!("{:?}", fixture().policy);
        for secret in ["s3cret", "sysS3cret", "\"probe\""] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert!(text.contains("system"), "{text}");
    }

    #[test]
    fn constant_eq_compares_whole_strings() {
        assert!(constant_eq("s3cret", "s3cret"));
        assert!(!constant_eq("s3cret", "s3cre"));
        assert!(!constant_eq("", "x"));
    }
}
