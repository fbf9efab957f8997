//! Normal-mode request verification: given the node's [`Trust`], may this signed request be
//! acted on (spec §6.2, §6.3)?
//!
//! * **Protocol v1 (x509).** The request carries the caller's PEM certificate and an RSA
//!   PKCS#1 v1.5 SHA-256 signature over the exact request text. The certificate must be
//!   issued directly by a certificate in the node's CA file (`plugin.security.file.ca` or
//!   `plugin.security.choria.ca`, read on every request) and, like that CA, be valid now.
//!   A certificate whose common name ends in `.privileged.mcollective` or
//!   `.privileged.choria` may call as anyone; any other must have a common name ending in
//!   `.mcollective` or `.choria`, and the certname in the request's `callerid`
//!   (`^[a-z]+=([\w\.\-]+)`) must be its common name or one of its DNS names. The signature
//!   must verify with the certificate's RSA key.
//! * **Protocol v2 (ed25519 + JWT), one JWT.** The caller JWT must verify with one of the
//!   organisation issuers (`plugin.security.issuer.<name>.public`) or trusted signers
//!   (`plugin.security.choria.trusted_signers`). A client token needs `fleet_management`
//!   and not `signed_fleet_management`, and its `callerid` must be the request's caller; a
//!   server token's caller must be `choria=<identity>`. The signature must verify with the
//!   token's `public_key`.
//! * **Protocol v2, delegated.** With a signer JWT (an AAA service), the signer must be a
//!   client token with `authentication_delegator` and the caller JWT a client token with
//!   `fleet_management` or `signed_fleet_management`, both verified by the same key; the
//!   signature must verify with the signer's `public_key`. The delegator vouches for the
//!   request's caller, so it need not equal the caller JWT's `callerid`.
//!
//! Unsigned requests are always refused.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use choria_protocol::message::DecodedRequest;
use choria_protocol::{ProtocolError, Version};
use choria_tokens::{ClientIdClaims, PublicKey, Purpose, TokenError};
use rsa::pkcs8::DecodePublicKey as _;

/// Who a normal-mode node trusts to sign requests, with its keys parsed once.
#[derive(Debug, Clone, Default)]
pub struct Trust {
    /// Keys that verify v2 caller and signer JWTs: organisation issuers
    /// (`plugin.security.issuer.<name>.public`, also through their trust chains), then
    /// trusted signers (`plugin.security.choria.trusted_signers`). A configured key that
    /// does not parse is kept as its error and reported when nothing verifies a token.
    verifiers: Arc<[Result<PublicKey, KeyError>]>,
    /// CA file for v1 x509 callers, read on every v1 request.
    pub ca: Option<PathBuf>,
}

impl Trust {
    /// Trust in the hex ed25519 keys `org_issuers` and `trusted_signers`, and in the CA
    /// file `ca` for v1 callers.
    pub fn new(org_issuers: &[String], trusted_signers: &[String], ca: Option<PathBuf>) -> Trust {
        let verifiers = org_issuers
            .iter()
            .map(|hex| (hex, "issuer"))
            .chain(trusted_signers.iter().map(|hex| (hex, "trusted signer")))
            .map(|(hex, role)| {
                PublicKey::ed25519_from_hex(hex).map_err(|source| KeyError {
                    role,
                    hex: hex.clone(),
                    source,
                })
            })
            .collect();
        Trust { verifiers, ca }
    }
}

/// How strictly requests are checked.
#[derive(Debug, Clone)]
pub enum Verification {
    /// Provisioning mode: security checks are skipped, as upstream (spec §4.3).
    Skip,
    /// Normal mode: only signed requests from trusted callers are accepted.
    Required(Trust),
}

/// Largest CA file read (a bundle of a few certificates).
pub const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

/// Common-name suffixes of certificates allowed to call as anyone.
pub const PRIVILEGED_SUFFIXES: [&str; 2] = [".privileged.mcollective", ".privileged.choria"];

/// Common-name suffixes of certificates allowed to call at all.
pub const ALLOWED_SUFFIXES: [&str; 2] = [".mcollective", ".choria"];

/// Why a request was refused; each names what was wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The request carries no signature.
    #[error("request from {caller} is not signed")]
    Unsigned {
        /// The request's caller.
        caller: String,
    },
    /// A v1 request arrived but no CA is configured.
    #[error("no CA is configured (plugin.security.file.ca or plugin.security.choria.ca) to verify x509 callers")]
    NoCa,
    /// The CA file could not be read.
    #[error("could not read the CA file {}: {source}", .path.display())]
    CaUnreadable {
        /// The CA file.
        path: PathBuf,
        /// Why.
        #[source]
        source: choria_config::files::FileError,
    },
    /// The request's caller has no certname.
    #[error("caller {caller:?} does not name a certificate (expected kind=certname)")]
    NoCertname {
        /// The request's caller.
        caller: String,
    },
    /// The caller's certificate does not verify against the CA.
    #[error("caller certificate refused: {0}")]
    Certificate(#[from] choria_pki::PkiError),
    /// The certificate's common name is neither privileged nor allowed.
    #[error("certificate {common_name:?} is not allowed to call: its name must end in .mcollective or .choria")]
    CertificateNotAllowed {
        /// The certificate's common name.
        common_name: String,
    },
    /// The request's certname is not a name of the (unprivileged) certificate.
    #[error("caller certname {certname:?} does not match the certificate {common_name:?}")]
    CertnameMismatch {
        /// The certname from the request's caller.
        certname: String,
        /// The certificate's common name.
        common_name: String,
    },
    /// The certificate's key cannot check a v1 signature.
    #[error("certificate {common_name:?} does not hold an RSA key: {source}")]
    NotRsa {
        /// The certificate's common name.
        common_name: String,
        /// Why the key did not parse as RSA.
        #[source]
        source: rsa::pkcs8::spki::Error,
    },
    /// The signature does not verify with the key that should have made it.
    #[error("signature by {signer} does not verify: {source}")]
    BadSignature {
        /// Whose key was used.
        signer: String,
        /// Why.
        source: ProtocolError,
    },
    /// A v2 request arrived but no JWT issuer or trusted signer is configured.
    #[error("no organisation issuer (plugin.security.issuer.names) or trusted signer (plugin.security.choria.trusted_signers) is configured")]
    NoJwtVerifier,
    /// A signed v2 request without a caller JWT.
    #[error("request carries no caller JWT")]
    NoCallerJwt,
    /// The caller JWT is neither a client nor a server token.
    #[error("caller JWT has purpose {:?}; only client and server tokens may call", .0.as_str())]
    UnsupportedCaller(Purpose),
    /// No configured key verifies a JWT.
    #[error("{which} JWT is not verified by any issuer or trusted signer: {last}")]
    Unverified {
        /// `caller` or `signer`.
        which: &'static str,
        /// The failure with the last key tried.
        last: String,
    },
    /// A client caller without fleet management.
    #[error("caller {callerid} does not have fleet_management")]
    NotFleetManager {
        /// The token's callerid.
        callerid: String,
    },
    /// A client caller that may only manage the fleet through a delegated signer.
    #[error("caller {callerid} has signed_fleet_management: its requests must be signed by a delegated signer")]
    RequiresDelegation {
        /// The token's callerid.
        callerid: String,
    },
    /// The request's caller is not the one the JWT names.
    #[error("request caller {caller} does not match the JWT caller {token_caller}")]
    CallerMismatch {
        /// The request's caller.
        caller: String,
        /// Who the caller JWT names.
        token_caller: String,
    },
    /// A verified JWT holds no usable `public_key`.
    #[error("{which} JWT has no ed25519 public key")]
    NoPublicKey {
        /// `caller` or `signer`.
        which: &'static str,
    },
    /// The delegated signer JWT is not a client token.
    #[error("signer JWT has purpose {:?}; delegated signers must be client tokens", .0.as_str())]
    SignerNotClient(Purpose),
    /// The delegated signer lacks `authentication_delegator`.
    #[error("signer {callerid} does not have authentication_delegator")]
    NotDelegator {
        /// The signer's callerid.
        callerid: String,
    },
    /// The delegated caller JWT is not verified by the key that verified the signer.
    #[error("caller JWT is not verified by the signer's issuer: {0}")]
    DelegatedCallerUnverified(TokenError),
}

/// Verifies the signature and caller of a decoded request against `trust` at `now`.
pub fn verify_request(
    request: &DecodedRequest,
    trust: &Trust,
    now: SystemTime,
) -> Result<(), Refusal> {
    if request.security.is_insecure() {
        return Err(Refusal::Unsigned {
            caller: request.meta.caller.clone(),
        });
    }
    match request.version {
        Version::V1 => verify_x509(request, trust, now),
        Version::V2 => verify_jwt(request, trust, now),
    }
}

/// The certname in a caller id, as upstream's `^[a-z]+=([\w\.\-]+)` (ASCII `\w`) finds it.
pub fn certname_from_caller(caller: &str) -> Option<&str> {
    let (kind, rest) = caller.split_once('=')?;
    if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
        .unwrap_or(rest.len());
    (end > 0).then(|| &rest[..end])
}

fn verify_x509(request: &DecodedRequest, trust: &Trust, now: SystemTime) -> Result<(), Refusal> {
    let caller = &request.meta.caller;
    let ca_path = trust.ca.as_deref().ok_or(Refusal::NoCa)?;
    let ca_pem = read_ca(ca_path)?;
    let certname = certname_from_caller(caller).ok_or_else(|| Refusal::NoCertname {
        caller: caller.clone(),
    })?;
    let certificate_pem = request
        .security
        .certificate_pem()
        .ok_or_else(|| Refusal::Unsigned {
            caller: caller.clone(),
        })?;
    let certificate = choria_pki::verify_certificate(certificate_pem, &ca_pem, now)?;
    let common_name = &certificate.common_name;
    let privileged = PRIVILEGED_SUFFIXES
        .iter()
        .any(|suffix| common_name.ends_with(suffix));
    if !privileged {
        if !ALLOWED_SUFFIXES
            .iter()
            .any(|suffix| common_name.ends_with(suffix))
        {
            return Err(Refusal::CertificateNotAllowed {
                common_name: common_name.clone(),
            });
        }
        let names_caller =
            common_name == certname || certificate.dns_names.iter().any(|name| name == certname);
        if !names_caller {
            return Err(Refusal::CertnameMismatch {
                certname: certname.to_string(),
                common_name: common_name.clone(),
            });
        }
    }
    let key =
        rsa::RsaPublicKey::from_public_key_der(&certificate.public_key_der).map_err(|source| {
            Refusal::NotRsa {
                common_name: common_name.clone(),
                source,
            }
        })?;
    request
        .security
        .verify_rsa(&key)
        .map_err(|source| Refusal::BadSignature {
            signer: format!("certificate {common_name:?}"),
            source,
        })
}

fn read_ca(path: &Path) -> Result<String, Refusal> {
    choria_config::files::read_capped_string(path, MAX_CA_FILE_BYTES).map_err(|source| {
        Refusal::CaUnreadable {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// A configured issuer or trusted-signer key that does not parse.
#[derive(Debug, thiserror::Error)]
#[error("{role} key {hex:?}: {source}")]
struct KeyError {
    role: &'static str,
    hex: String,
    #[source]
    source: TokenError,
}

fn verify_jwt(request: &DecodedRequest, trust: &Trust, now: SystemTime) -> Result<(), Refusal> {
    let verifiers = &trust.verifiers;
    if verifiers.is_empty() {
        return Err(Refusal::NoJwtVerifier);
    }
    let caller_jwt = request.security.caller_jwt().ok_or(Refusal::NoCallerJwt)?;
    match request.security.signer_jwt() {
        Some(signer_jwt) => verify_delegated(request, verifiers, caller_jwt, signer_jwt, now),
        None => verify_caller(request, verifiers, caller_jwt, now),
    }
}

/// Verifies `token` with the first key that accepts it, returning its claims and that key.
fn first_verified<'k, C>(
    verifiers: &'k [Result<PublicKey, KeyError>],
    which: &'static str,
    parse: impl Fn(&PublicKey) -> Result<C, TokenError>,
) -> Result<(C, &'k PublicKey), Refusal> {
    let mut last = String::new();
    for verifier in verifiers {
        match verifier {
            Ok(key) => match parse(key) {
                Ok(claims) => return Ok((claims, key)),
                Err(e) => last = e.to_string(),
            },
            Err(e) => last = e.to_string(),
        }
    }
    Err(Refusal::Unverified { which, last })
}

fn verify_caller(
    request: &DecodedRequest,
    verifiers: &[Result<PublicKey, KeyError>],
    caller_jwt: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let caller = &request.meta.caller;
    let (token_caller, public_key) = match choria_tokens::token_purpose(caller_jwt) {
        Purpose::ClientId => {
            let (claims, _) = first_verified(verifiers, "caller", |key| {
                choria_tokens::parse_client_token(caller_jwt, key, now)
            })?;
            check_direct_fleet_manager(&claims)?;
            (claims.callerid, claims.standard.public_key_bytes())
        }
        Purpose::Server => {
            let (claims, _) = first_verified(verifiers, "caller", |key| {
                choria_tokens::parse_server_token(caller_jwt, key, now)
            })?;
            (
                format!("choria={}", claims.identity),
                claims.standard.public_key_bytes(),
            )
        }
        other => return Err(Refusal::UnsupportedCaller(other)),
    };
    let public_key = public_key.ok_or(Refusal::NoPublicKey { which: "caller" })?;
    if *caller != token_caller {
        return Err(Refusal::CallerMismatch {
            caller: caller.clone(),
            token_caller,
        });
    }
    request
        .security
        .verify_ed25519(&public_key)
        .map_err(|source| Refusal::BadSignature {
            signer: token_caller,
            source,
        })
}

fn check_direct_fleet_manager(claims: &ClientIdClaims) -> Result<(), Refusal> {
    let permissions = claims.permissions.unwrap_or_default();
    if permissions.signed_fleet_management {
        return Err(Refusal::RequiresDelegation {
            callerid: claims.callerid.clone(),
        });
    }
    if !permissions.fleet_management {
        return Err(Refusal::NotFleetManager {
            callerid: claims.callerid.clone(),
        });
    }
    Ok(())
}

fn verify_delegated(
    request: &DecodedRequest,
    verifiers: &[Result<PublicKey, KeyError>],
    caller_jwt: &str,
    signer_jwt: &str,
    now: SystemTime,
) -> Result<(), Refusal> {
    let purpose = choria_tokens::token_purpose(signer_jwt);
    if purpose != Purpose::ClientId {
        return Err(Refusal::SignerNotClient(purpose));
    }
    let (signer, key) = first_verified(verifiers, "signer", |key| {
        choria_tokens::parse_client_token(signer_jwt, key, now)
    })?;
    if !signer
        .permissions
        .unwrap_or_default()
        .authentication_delegator
    {
        return Err(Refusal::NotDelegator {
            callerid: signer.callerid,
        });
    }
    let caller = choria_tokens::parse_client_token(caller_jwt, key, now)
        .map_err(Refusal::DelegatedCallerUnverified)?;
    let permissions = caller.permissions.unwrap_or_default();
    if !(permissions.fleet_management || permissions.signed_fleet_management) {
        return Err(Refusal::NotFleetManager {
            callerid: caller.callerid,
        });
    }
    let public_key = signer
        .standard
        .public_key_bytes()
        .ok_or(Refusal::NoPublicKey { which: "signer" })?;
    request
        .security
        .verify_ed25519(&public_key)
        .map_err(|source| Refusal::BadSignature {
            signer: format!("delegated signer {}", signer.callerid),
            source,
        })
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;
    use std::time::Duration;

    use choria_pki::{CertificateAuthority, PkiError};
    use choria_protocol::message::{self, RequestMeta, RequestSecurity, RequestSigner, Routing};
    use choria_tokens::{
        ClientIdClaims, ClientPermissions, Ed25519Seed, NewClient, NewServer, ServerClaims,
        SigningKey,
    };
    use rsa::pkcs8::DecodePrivateKey as _;

    use super::*;

    /// Slow-to-make material shared by the tests: two CAs with the same name (so only the
    /// signature tells them apart) and one RSA key behind every caller certificate.
    struct X509 {
        ca: CertificateAuthority,
        other_ca: CertificateAuthority,
        key_pem: String,
        key: rsa::RsaPrivateKey,
    }

    fn x509() -> &'static X509 {
        static FIXTURE: OnceLock<X509> = OnceLock::new();
        FIXTURE.get_or_init(|| {
            let key_pem = choria_pki::generate_rsa_key_pem(2048).unwrap();
            X509 {
                ca: CertificateAuthority::generate("Choria CA").unwrap(),
                other_ca: CertificateAuthority::generate("Choria CA").unwrap(),
                key: rsa::RsaPrivateKey::from_pkcs8_pem(&key_pem).unwrap(),
                key_pem,
            }
        })
    }

    /// A certificate for `common_name` over the shared RSA key, issued by `ca`.
    fn certificate(ca: &CertificateAuthority, common_name: &str, validity: Duration) -> String {
        let csr = choria_pki::generate_csr(common_name, &x509().key_pem).unwrap();
        ca.sign_csr(&csr, validity).unwrap()
    }

    const DAY: Duration = Duration::from_secs(24 * 3600);

    /// A node trusting the fixture CA, whose file lives in the returned directory.
    fn ca_trust() -> (tempfile::TempDir, Trust) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ca.pem");
        std::fs::write(&path, x509().ca.certificate_pem()).unwrap();
        let trust = Trust {
            ca: Some(path),
            ..Trust::default()
        };
        (dir, trust)
    }

    fn meta(caller: &str) -> RequestMeta {
        RequestMeta::new(
            "client.example.net",
            caller,
            "mcollective",
            "rpcutil",
            Duration::from_secs(60),
            SystemTime::now(),
        )
    }

    fn encode(version: Version, caller: &str, signer: &RequestSigner<'_>) -> DecodedRequest {
        let routing = Routing {
            reply_to: "mcollective.reply.x".into(),
            sender: "client.example.net".into(),
            hops: Vec::new(),
        };
        let payload = br#"{"agent":"rpcutil","action":"ping","data":{}}"#;
        let bytes =
            message::encode_request(version, &meta(caller), payload, signer, &routing).unwrap();
        message::decode_request(&bytes).unwrap()
    }

    fn v1_request(caller: &str, certificate_pem: &str) -> DecodedRequest {
        encode(
            Version::V1,
            caller,
            &RequestSigner::Rsa {
                key: &x509().key,
                certificate_pem,
            },
        )
    }

    #[test]
    fn certnames_come_from_caller_ids_as_upstream_finds_them() {
        assert_eq!(
            certname_from_caller("choria=bob.mcollective"),
            Some("bob.mcollective")
        );
        assert_eq!(certname_from_caller("cert=a_b-c.d"), Some("a_b-c.d"));
        // The pattern is anchored at the start only.
        assert_eq!(
            certname_from_caller("choria=bob.choria extra"),
            Some("bob.choria")
        );
        assert_eq!(certname_from_caller("Choria=bob"), None);
        assert_eq!(certname_from_caller("=bob"), None);
        assert_eq!(certname_from_caller("choria="), None);
        assert_eq!(certname_from_caller("bob"), None);
    }

    #[test]
    fn v1_request_from_a_ca_signed_certificate_is_accepted() {
        let (_dir, trust) = ca_trust();
        let cert = certificate(&x509().ca, "bob.mcollective", DAY);
        let request = v1_request("choria=bob.mcollective", &cert);
        verify_request(&request, &trust, SystemTime::now()).unwrap();
    }

    #[test]
    fn v1_certificate_from_another_ca_is_refused() {
        let (_dir, trust) = ca_trust();
        let cert = certificate(&x509().other_ca, "bob.mcollective", DAY);
        let request = v1_request("choria=bob.mcollective", &cert);
        let refusal = verify_request(&request, &trust, SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                refusal,
                Refusal::Certificate(PkiError::UntrustedIssuer { .. })
            ),
            "{refusal}"
        );
    }

    #[test]
    fn v1_caller_that_is_not_the_certificate_is_refused() {
        let (_dir, trust) = ca_trust();
        let cert = certificate(&x509().ca, "bob.mcollective", DAY);
        let request = v1_request("choria=alice.mcollective", &cert);
        let refusal = verify_request(&request, &trust, SystemTime::now()).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::CertnameMismatch { certname, common_name }
                if certname == "alice.mcollective" && common_name == "bob.mcollective"),
            "{refusal}"
        );
    }

    #[test]
    fn v1_tampered_message_is_refused() {
        let (_dir, trust) = ca_trust();
        let cert = certificate(&x509().ca, "bob.mcollective", DAY);
        let mut request = v1_request("choria=bob.mcollective", &cert);
        let RequestSecurity::V1 { message, .. } = &mut request.security else {
            panic!("a v1 request has v1 security");
        };
        *message = message.replace("rpcutil", "rpcutiL");
        let refusal = verify_request(&request, &trust, SystemTime::now()).unwrap_err();
        assert!(matches!(refusal, Refusal::BadSignature { .. }), "{refusal}");
    }

    #[test]
    fn v1_expired_certificate_is_refused() {
        let (_dir, trust) = ca_trust();
        let cert = certificate(&x509().ca, "bob.mcollective", Duration::from_secs(3600));
        let request = v1_request("choria=bob.mcollective", &cert);
        let later = SystemTime::now() + Duration::from_secs(2 * 3600);
        let refusal = verify_request(&request, &trust, later).unwrap_err();
        assert!(
            matches!(
                refusal,
                Refusal::Certificate(PkiError::OutsideValidity { .. })
            ),
            "{refusal}"
        );
    }

    #[test]
    fn v1_privileged_certificate_may_call_as_another_caller() {
        let (_dir, trust) = ca_trust();
        for name in ["admin.privileged.mcollective", "admin.privileged.choria"] {
            let cert = certificate(&x509().ca, name, DAY);
            let request = v1_request("choria=bob.mcollective", &cert);
            verify_request(&request, &trust, SystemTime::now()).unwrap();
        }
    }

    #[test]
    fn v1_certificate_outside_the_allowed_names_is_refused() {
        let (_dir, trust) = ca_trust();
        let cert = certificate(&x509().ca, "bob.example.net", DAY);
        let request = v1_request("choria=bob.example.net", &cert);
        let refusal = verify_request(&request, &trust, SystemTime::now()).unwrap_err();
        assert!(
            matches!(refusal, Refusal::CertificateNotAllowed { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn v1_without_a_readable_ca_is_refused() {
        let cert = certificate(&x509().ca, "bob.mcollective", DAY);
        let request = v1_request("choria=bob.mcollective", &cert);
        let refusal = verify_request(&request, &Trust::default(), SystemTime::now()).unwrap_err();
        assert!(matches!(refusal, Refusal::NoCa), "{refusal}");

        let dir = tempfile::tempdir().unwrap();
        let missing = Trust {
            ca: Some(dir.path().join("missing.pem")),
            ..Trust::default()
        };
        let refusal = verify_request(&request, &missing, SystemTime::now()).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::CaUnreadable { path, .. } if path.ends_with("missing.pem")),
            "{refusal}"
        );

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        let garbage = Trust {
            ca: Some(garbage),
            ..Trust::default()
        };
        let refusal = verify_request(&request, &garbage, SystemTime::now()).unwrap_err();
        assert!(
            matches!(refusal, Refusal::Certificate(PkiError::EmptyCaBundle)),
            "{refusal}"
        );
    }

    // ---- protocol v2 ----

    struct Ed {
        key: ed25519_dalek::SigningKey,
    }

    impl Ed {
        fn new() -> Ed {
            Ed {
                key: ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng),
            }
        }

        fn public(&self) -> [u8; 32] {
            self.key.verifying_key().to_bytes()
        }

        fn public_hex(&self) -> String {
            hex::encode(self.public())
        }

        fn token_signer(&self) -> SigningKey {
            SigningKey::Ed25519(Ed25519Seed::from_bytes(self.key.to_bytes()))
        }

        /// A client token for `callerid` holding `holder`'s key, signed by this key.
        fn client_token(
            &self,
            callerid: &str,
            holder: &Ed,
            permissions: ClientPermissions,
        ) -> String {
            let claims = ClientIdClaims::new(
                NewClient {
                    callerid: callerid.into(),
                    permissions: Some(permissions),
                    public_key: Some(holder.public()),
                    validity: Duration::from_secs(3600),
                    ..NewClient::default()
                },
                SystemTime::now(),
            )
            .unwrap();
            choria_tokens::sign_token(&claims, &self.token_signer()).unwrap()
        }

        /// A server token for `identity` holding `holder`'s key, signed by this key.
        fn server_token(&self, identity: &str, holder: &Ed) -> String {
            let claims = ServerClaims::new(
                NewServer {
                    identity: identity.into(),
                    collectives: vec!["mcollective".into()],
                    public_key: Some(holder.public()),
                    validity: Duration::from_secs(3600),
                    ..NewServer::default()
                },
                SystemTime::now(),
            )
            .unwrap();
            choria_tokens::sign_token(&claims, &self.token_signer()).unwrap()
        }
    }

    fn fleet() -> ClientPermissions {
        ClientPermissions {
            fleet_management: true,
            ..ClientPermissions::default()
        }
    }

    fn delegator() -> ClientPermissions {
        ClientPermissions {
            authentication_delegator: true,
            ..ClientPermissions::default()
        }
    }

    fn v2_request(
        caller: &str,
        key: &Ed,
        caller_jwt: &str,
        signer_jwt: Option<&str>,
    ) -> DecodedRequest {
        encode(
            Version::V2,
            caller,
            &RequestSigner::Ed25519 {
                key: &key.key,
                caller_jwt,
                signer_jwt,
            },
        )
    }

    fn issuer_trust(issuer: &Ed) -> Trust {
        Trust::new(&[issuer.public_hex()], &[], None)
    }

    #[test]
    fn v2_client_verified_by_an_org_issuer_is_accepted() {
        let (issuer, bob) = (Ed::new(), Ed::new());
        let jwt = issuer.client_token("choria=bob", &bob, fleet());
        let request = v2_request("choria=bob", &bob, &jwt, None);
        verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap();
    }

    #[test]
    fn v2_client_verified_by_a_trusted_signer_is_accepted() {
        let (unrelated, signer, bob) = (Ed::new(), Ed::new(), Ed::new());
        let jwt = signer.client_token("choria=bob", &bob, fleet());
        let request = v2_request("choria=bob", &bob, &jwt, None);
        let trust = Trust::new(
            &[unrelated.public_hex()],
            &[unrelated.public_hex(), signer.public_hex()],
            None,
        );
        verify_request(&request, &trust, SystemTime::now()).unwrap();

        let untrusted = Trust::new(&[], &[unrelated.public_hex()], None);
        let refusal = verify_request(&request, &untrusted, SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                refusal,
                Refusal::Unverified {
                    which: "caller",
                    ..
                }
            ),
            "{refusal}"
        );
    }

    #[test]
    fn v2_server_token_caller_is_accepted_as_its_identity() {
        let (issuer, node) = (Ed::new(), Ed::new());
        let jwt = issuer.server_token("n1.example.net", &node);
        let request = v2_request("choria=n1.example.net", &node, &jwt, None);
        verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap();

        let request = v2_request("choria=bob", &node, &jwt, None);
        let refusal =
            verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::CallerMismatch { token_caller, .. } if token_caller == "choria=n1.example.net"),
            "{refusal}"
        );
    }

    #[test]
    fn v2_client_without_direct_fleet_management_is_refused() {
        let (issuer, bob) = (Ed::new(), Ed::new());
        let trust = issuer_trust(&issuer);
        let jwt = issuer.client_token("choria=bob", &bob, ClientPermissions::default());
        let refusal = verify_request(
            &v2_request("choria=bob", &bob, &jwt, None),
            &trust,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(refusal, Refusal::NotFleetManager { .. }),
            "{refusal}"
        );

        let signed_only = ClientPermissions {
            fleet_management: true,
            signed_fleet_management: true,
            ..ClientPermissions::default()
        };
        let jwt = issuer.client_token("choria=bob", &bob, signed_only);
        let refusal = verify_request(
            &v2_request("choria=bob", &bob, &jwt, None),
            &trust,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(refusal, Refusal::RequiresDelegation { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn v2_caller_other_than_the_token_or_signed_by_another_key_is_refused() {
        let (issuer, bob, mallory) = (Ed::new(), Ed::new(), Ed::new());
        let trust = issuer_trust(&issuer);
        let jwt = issuer.client_token("choria=bob", &bob, fleet());
        let refusal = verify_request(
            &v2_request("choria=alice", &bob, &jwt, None),
            &trust,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(
            matches!(refusal, Refusal::CallerMismatch { .. }),
            "{refusal}"
        );

        let refusal = verify_request(
            &v2_request("choria=bob", &mallory, &jwt, None),
            &trust,
            SystemTime::now(),
        )
        .unwrap_err();
        assert!(matches!(refusal, Refusal::BadSignature { .. }), "{refusal}");
    }

    #[test]
    fn v2_delegated_signer_with_authentication_delegator_is_accepted() {
        let (issuer, aaa, bob) = (Ed::new(), Ed::new(), Ed::new());
        let signer_jwt = issuer.client_token("choria=aaa", &aaa, delegator());
        let signed_only = ClientPermissions {
            signed_fleet_management: true,
            ..ClientPermissions::default()
        };
        // The delegator vouches for the request's caller: it need not be the token's callerid.
        let caller_jwt = issuer.client_token("up=bob", &bob, signed_only);
        let request = v2_request("choria=bob", &aaa, &caller_jwt, Some(&signer_jwt));
        verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap();

        // Signed with the caller's key instead of the signer's: refused.
        let request = v2_request("choria=bob", &bob, &caller_jwt, Some(&signer_jwt));
        let refusal =
            verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap_err();
        assert!(matches!(refusal, Refusal::BadSignature { .. }), "{refusal}");
    }

    #[test]
    fn v2_delegated_signer_without_authentication_delegator_is_refused() {
        let (issuer, aaa, bob) = (Ed::new(), Ed::new(), Ed::new());
        let signer_jwt = issuer.client_token("choria=aaa", &aaa, fleet());
        let caller_jwt = issuer.client_token("choria=bob", &bob, fleet());
        let request = v2_request("choria=bob", &aaa, &caller_jwt, Some(&signer_jwt));
        let refusal =
            verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap_err();
        assert!(
            matches!(&refusal, Refusal::NotDelegator { callerid } if callerid == "choria=aaa"),
            "{refusal}"
        );
    }

    #[test]
    fn v2_delegated_signer_from_another_issuer_is_refused() {
        let (issuer, other, aaa, bob) = (Ed::new(), Ed::new(), Ed::new(), Ed::new());
        let caller_jwt = issuer.client_token("choria=bob", &bob, fleet());

        let foreign_signer = other.client_token("choria=aaa", &aaa, delegator());
        let request = v2_request("choria=bob", &aaa, &caller_jwt, Some(&foreign_signer));
        let refusal =
            verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap_err();
        assert!(
            matches!(
                refusal,
                Refusal::Unverified {
                    which: "signer",
                    ..
                }
            ),
            "{refusal}"
        );

        // Both keys trusted, but signer and caller verified by different ones: refused.
        let trust = Trust::new(&[issuer.public_hex()], &[other.public_hex()], None);
        let refusal = verify_request(&request, &trust, SystemTime::now()).unwrap_err();
        assert!(
            matches!(refusal, Refusal::DelegatedCallerUnverified(_)),
            "{refusal}"
        );
    }

    #[test]
    fn v2_delegated_caller_without_fleet_management_is_refused() {
        let (issuer, aaa, bob) = (Ed::new(), Ed::new(), Ed::new());
        let signer_jwt = issuer.client_token("choria=aaa", &aaa, delegator());
        let caller_jwt = issuer.client_token("choria=bob", &bob, ClientPermissions::default());
        let request = v2_request("choria=bob", &aaa, &caller_jwt, Some(&signer_jwt));
        let refusal =
            verify_request(&request, &issuer_trust(&issuer), SystemTime::now()).unwrap_err();
        assert!(
            matches!(refusal, Refusal::NotFleetManager { .. }),
            "{refusal}"
        );
    }

    #[test]
    fn unsigned_requests_are_refused() {
        let (_dir, ca) = ca_trust();
        let trust = Trust::new(&[Ed::new().public_hex()], &[], ca.ca);
        for version in [Version::V1, Version::V2] {
            let request = encode(version, "choria=bob.mcollective", &RequestSigner::Insecure);
            let refusal = verify_request(&request, &trust, SystemTime::now()).unwrap_err();
            assert!(
                matches!(refusal, Refusal::Unsigned { .. }),
                "{version:?}: {refusal}"
            );
        }
    }

    #[test]
    fn v2_without_issuers_or_trusted_signers_is_refused() {
        let (issuer, bob) = (Ed::new(), Ed::new());
        let jwt = issuer.client_token("choria=bob", &bob, fleet());
        let request = v2_request("choria=bob", &bob, &jwt, None);
        let refusal = verify_request(&request, &Trust::default(), SystemTime::now()).unwrap_err();
        assert!(matches!(refusal, Refusal::NoJwtVerifier), "{refusal}");
    }
}
