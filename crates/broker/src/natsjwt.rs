//! The NATS auth-callout wire format: decoding the server's signed authorization request
//! and encoding our signed authorization response carrying a user JWT (spec §8.1).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use nkeys::KeyPair;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha512_256};

use crate::permissions::{Account, Permissions, SubjectRules};

/// The largest authorization request we decode; nats-server's control line limit keeps real
/// requests far below this.
pub const MAX_REQUEST_BYTES: usize = 256 * 1024;

const HEADER: &str = r#"{"typ":"JWT","alg":"ed25519-nkey"}"#;

/// Why an authorization request could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum RequestError {
    /// Larger than [`MAX_REQUEST_BYTES`].
    #[error("authorization request of {0} bytes exceeds the {MAX_REQUEST_BYTES} byte limit")]
    TooLarge(usize),
    /// Not three base64url segments.
    #[error("authorization request is not a compact JWT")]
    Malformed,
    /// Header is not a NATS ed25519-nkey JWT header.
    #[error("authorization request header is not an ed25519-nkey JWT header")]
    BadHeader,
    /// Payload JSON did not match the authorization request schema.
    #[error("authorization request claims are invalid: {0}")]
    Claims(String),
    /// Issuer is not a server nkey or the signature does not verify.
    #[error("authorization request signature does not verify with issuer {0}")]
    Signature(String),
}

/// The nats-server that asks (claim `nats.server_id`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ServerId {
    /// Server name.
    pub name: String,
    /// Server public nkey; the response audience.
    pub id: String,
}

/// Facts about the connecting client (claim `nats.client_info`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientInfo {
    /// Remote IP address.
    pub host: String,
    /// Connection id.
    pub id: u64,
    /// Connection kind: `Client` or `Leafnode`.
    pub kind: String,
    /// Transport: `nats`, `websocket`, `mqtt`.
    #[serde(rename = "type")]
    pub transport: String,
    /// The nonce the client signed (present only when it sent `sig`).
    pub nonce: String,
}

/// The client's CONNECT options (claim `nats.connect_opts`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ConnectOpts {
    /// CONNECT `auth_token`: where Choria JWTs arrive.
    pub auth_token: SecretString,
    /// CONNECT `sig`: b64url ed25519 signature of the nonce.
    pub sig: String,
    /// CONNECT `user`.
    pub user: String,
    /// CONNECT `pass`.
    pub pass: SecretString,
    /// CONNECT `name`: the connection name (a node's identity).
    pub name: String,
}

/// The TLS state of the connection (claim `nats.client_tls`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct ClientTls {
    /// Negotiated TLS version.
    pub version: String,
    /// Chains verified against the CA (client certificate accepted).
    pub verified_chains: Option<Vec<Vec<String>>>,
}

/// The `nats` object of an authorization request.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default)]
pub struct AuthorizationRequest {
    /// The asking server.
    pub server_id: ServerId,
    /// The per-connection user nkey; the response and user JWT subject.
    pub user_nkey: String,
    /// Client facts.
    pub client_info: ClientInfo,
    /// CONNECT options.
    pub connect_opts: ConnectOpts,
    /// TLS state, once a handshake completed.
    pub client_tls: Option<ClientTls>,
    /// Claim type, must be `authorization_request`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When nats-server issued the request (the JWT `iat`, whole seconds; 0 if absent).
    #[serde(skip)]
    pub issued_at: i64,
}

#[derive(Deserialize)]
struct RequestClaims {
    iss: String,
    #[serde(default)]
    iat: i64,
    nats: AuthorizationRequest,
}

/// Decodes and verifies an authorization request published by nats-server.
pub fn decode_request(payload: &[u8]) -> Result<AuthorizationRequest, RequestError> {
    if payload.len() > MAX_REQUEST_BYTES {
        return Err(RequestError::TooLarge(payload.len()));
    }
    let text = std::str::from_utf8(payload).map_err(|_| RequestError::Malformed)?;
    let mut parts = text.trim().split('.');
    let (Some(header), Some(body), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RequestError::Malformed);
    };
    let header_json = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| RequestError::Malformed)?;
    let header_value: serde_json::Value =
        serde_json::from_slice(&header_json).map_err(|_| RequestError::BadHeader)?;
    if header_value.get("alg").and_then(|v| v.as_str()) != Some("ed25519-nkey") {
        return Err(RequestError::BadHeader);
    }
    let body_json = URL_SAFE_NO_PAD
        .decode(body)
        .map_err(|_| RequestError::Malformed)?;
    let signature = URL_SAFE_NO_PAD
        .decode(signature)
        .map_err(|_| RequestError::Malformed)?;
    let claims: RequestClaims =
        serde_json::from_slice(&body_json).map_err(|e| RequestError::Claims(e.to_string()))?;
    if !claims.iss.starts_with('N') {
        return Err(RequestError::Signature(claims.iss));
    }
    let issuer = KeyPair::from_public_key(&claims.iss)
        .map_err(|_| RequestError::Signature(claims.iss.clone()))?;
    let signed = &text.trim().as_bytes()[..header.len() + 1 + body.len()];
    issuer
        .verify(signed, &signature)
        .map_err(|_| RequestError::Signature(claims.iss.clone()))?;
    if claims.nats.kind != "authorization_request" {
        return Err(RequestError::Claims(format!(
            "type is {:?}, expected \"authorization_request\"",
            claims.nats.kind
        )));
    }
    if claims.nats.user_nkey.is_empty() || claims.nats.server_id.id.is_empty() {
        return Err(RequestError::Claims(
            "user_nkey and server_id.id are required".into(),
        ));
    }
    let mut request = claims.nats;
    request.issued_at = claims.iat;
    Ok(request)
}

/// What the service grants one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Target account (the user JWT `aud`).
    pub account: Account,
    /// Display user name (the user JWT `name`; shown in connection reports).
    pub name: String,
    /// Publish/subscribe rules.
    pub permissions: Permissions,
}

#[derive(Serialize)]
struct Claims<'a, T: Serialize> {
    jti: String,
    iat: i64,
    iss: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    name: &'a str,
    sub: &'a str,
    aud: &'a str,
    nats: T,
}

#[derive(Serialize)]
struct UserNats<'a> {
    #[serde(rename = "pub", skip_serializing_if = "Option::is_none")]
    publish: Option<&'a SubjectRules>,
    #[serde(rename = "sub", skip_serializing_if = "Option::is_none")]
    subscribe: Option<&'a SubjectRules>,
    subs: i64,
    data: i64,
    payload: i64,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

#[derive(Serialize)]
struct ResponseNats<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    jwt: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
    #[serde(rename = "type")]
    kind: &'static str,
    version: u8,
}

/// Errors while signing a response (only a broken signing key can cause them).
#[derive(Debug, thiserror::Error)]
#[error("could not sign the authorization response: {0}")]
pub struct SignError(String);

/// Encodes the response to `request`: a user JWT for `grant`, or the rejection `error`.
pub fn encode_response(
    issuer: &KeyPair,
    request: &AuthorizationRequest,
    outcome: Result<&Grant, &str>,
) -> Result<String, SignError> {
    let issuer_public = issuer.public_key();
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let user_jwt = match outcome {
        Ok(grant) => {
            let (publish, subscribe) = match &grant.permissions {
                Permissions::Unrestricted => (None, None),
                Permissions::Limited { publish, subscribe } => (Some(publish), Some(subscribe)),
            };
            Some(sign(
                issuer,
                Claims {
                    jti: String::new(),
                    iat: now,
                    iss: &issuer_public,
                    name: &grant.name,
                    sub: &request.user_nkey,
                    aud: grant.account.name(),
                    nats: UserNats {
                        publish,
                        subscribe,
                        subs: -1,
                        data: -1,
                        payload: -1,
                        kind: "user",
                        version: 2,
                    },
                },
            )?)
        }
        Err(_) => None,
    };
    sign(
        issuer,
        Claims {
            jti: String::new(),
            iat: now,
            iss: &issuer_public,
            name: "",
            sub: &request.user_nkey,
            aud: &request.server_id.id,
            nats: ResponseNats {
                jwt: user_jwt.as_deref(),
                error: outcome.err(),
                kind: "authorization_response",
                version: 2,
            },
        },
    )
}

/// Signs claims the way NATS JWTs are signed: `jti` is the base32 SHA-512/256 of the claims
/// with an empty `jti`, the signature is ed25519 over `header.payload`.
fn sign<T: Serialize>(issuer: &KeyPair, mut claims: Claims<'_, T>) -> Result<String, SignError> {
    let unsigned = serde_json::to_vec(&claims).map_err(|e| SignError(e.to_string()))?;
    claims.jti = data_encoding::BASE32_NOPAD.encode(&Sha512_256::digest(&unsigned));
    let body = serde_json::to_vec(&claims).map_err(|e| SignError(e.to_string()))?;
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(body)
    );
    let signature = issuer
        .sign(signing_input.as_bytes())
        .map_err(|e| SignError(e.to_string()))?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_request(server: &KeyPair, nats: serde_json::Value) -> String {
        let body = serde_json::json!({"iss": server.public_key(), "sub": "x", "nats": nats});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(HEADER),
            URL_SAFE_NO_PAD.encode(body.to_string())
        );
        let sig = server.sign(input.as_bytes()).expect("sign");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    fn good_nats(server: &KeyPair) -> serde_json::Value {
        serde_json::json!({
            "server_id": {"id": server.public_key(), "name": "n"},
            "user_nkey": "UABC",
            "client_info": {"host": "127.0.0.1", "id": 7, "kind": "Client", "type": "nats", "nonce": "abc"},
            "connect_opts": {"auth_token": "t", "sig": "s", "user": "u", "pass": "p", "name": "node1"},
            "client_tls": {"version": "1.3"},
            "type": "authorization_request",
            "version": 2
        })
    }

    #[test]
    fn decodes_a_signed_request() {
        let server = KeyPair::new_server();
        let req =
            decode_request(fake_request(&server, good_nats(&server)).as_bytes()).expect("decode");
        assert_eq!(req.client_info.nonce, "abc");
        assert_eq!(req.connect_opts.name, "node1");
        assert!(req.client_tls.is_some());
        let dbg = format!("{:?}", req.connect_opts);
        assert!(!dbg.contains("\"p\"") && !dbg.contains("\"t\""), "{dbg}");
    }

    #[test]
    fn rejects_tampered_wrong_typed_and_oversized_requests() {
        let server = KeyPair::new_server();
        let other = KeyPair::new_server();
        let mut nats = good_nats(&server);
        let token = fake_request(&server, nats.clone());
        let (head, _) = token.rsplit_once('.').expect("dot");
        let forged = format!("{head}.{}", URL_SAFE_NO_PAD.encode([0u8; 64]));
        assert!(matches!(
            decode_request(forged.as_bytes()),
            Err(RequestError::Signature(_))
        ));
        // signed by a different server than `iss` claims is caught by the signature
        let body = fake_request(&other, nats.clone());
        assert!(decode_request(body.as_bytes()).is_ok());
        nats["client_info"]["id"] = serde_json::json!("seven");
        assert!(matches!(
            decode_request(fake_request(&server, nats).as_bytes()),
            Err(RequestError::Claims(_))
        ));
        assert_eq!(
            decode_request(&vec![b'a'; MAX_REQUEST_BYTES + 1]).err(),
            Some(RequestError::TooLarge(MAX_REQUEST_BYTES + 1))
        );
        assert_eq!(
            decode_request(b"garbage").err(),
            Some(RequestError::Malformed)
        );
        assert_eq!(
            decode_request(&[0xff, 0xfe]).err(),
            Some(RequestError::Malformed)
        );
    }

    #[test]
    fn response_carries_a_user_jwt_for_the_account() {
        let server = KeyPair::new_server();
        let issuer = KeyPair::new_account();
        let req =
            decode_request(fake_request(&server, good_nats(&server)).as_bytes()).expect("decode");
        let grant = Grant {
            account: Account::Provisioning,
            name: "provisioner".into(),
            permissions: Permissions::Unrestricted,
        };
        let response = encode_response(&issuer, &req, Ok(&grant)).expect("encode");
        let body = response.split('.').nth(1).expect("payload");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).expect("b64")).expect("json");
        assert_eq!(claims["aud"], server.public_key());
        assert_eq!(claims["sub"], "UABC");
        let user = claims["nats"]["jwt"].as_str().expect("user jwt");
        let user_body = user.split('.').nth(1).expect("payload");
        let user_claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(user_body).expect("b64")).expect("json");
        assert_eq!(user_claims["aud"], "provisioning");
        assert_eq!(user_claims["name"], "provisioner");
        let rejected = encode_response(&issuer, &req, Err("nope")).expect("encode");
        let body = rejected.split('.').nth(1).expect("payload");
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).expect("b64")).expect("json");
        assert_eq!(claims["nats"]["error"], "nope");
        assert!(claims["nats"].get("jwt").is_none());
    }
}
