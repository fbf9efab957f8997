//! The key files of the settings (`jwt_verify_cert`, `jwt_signing_key`, `jwt_signing_token`),
//! read and checked once at start-up so node passes never touch the disk for them.

use std::path::{Path, PathBuf};

use choria_tokens::{
    parse_client_token_unverified, read_public_key_file, ClientIdClaims, Ed25519Seed, PublicKey,
    SigningKey, TokenError,
};

use crate::settings::Settings;

/// Why a key file could not be used; each variant names the setting or file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// `jwt_verify_cert` is neither a usable key file nor a hex ed25519 key.
    #[error("jwt_verify_cert: {0}")]
    VerifyKey(#[source] TokenError),
    /// `jwt_signing_key` is not a usable key.
    #[error("jwt_signing_key {}: {source}", path.display())]
    SigningKey {
        /// The file.
        path: PathBuf,
        /// Why.
        source: TokenError,
    },
    /// `jwt_signing_token` could not be read.
    #[error("cannot read jwt_signing_token {}: {source}", path.display())]
    ReadToken {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `jwt_signing_token` is not a client token.
    #[error("jwt_signing_token {}: {source}", path.display())]
    SigningToken {
        /// The file.
        path: PathBuf,
        /// Why.
        source: TokenError,
    },
    /// `jwt_signing_token` cannot issue chained tokens.
    #[error("no Trust Chain Signature claim in JWT Signing Token")]
    NoTrustChain,
    /// S3: the seed does not belong to the chain token, so leaves would not verify.
    #[error("jwt_signing_key does not match the public key of jwt_signing_token")]
    SeedMismatch,
}

/// What signs server JWTs (spec §4.3).
#[derive(Debug, Clone)]
pub enum ServerJwtSigner {
    /// `jwt_signing_key` alone: the provisioner signs as issuer `Choria Provisioner`.
    Provisioner(SigningKey),
    /// `jwt_signing_key` with `jwt_signing_token`: a chained token under the org issuer.
    Chained {
        /// The chain issuer's client token.
        issuer: Box<ClientIdClaims>,
        /// Its private key.
        seed: Ed25519Seed,
    },
}

/// The keys a node pass uses, loaded once; each is present exactly when its feature is on.
#[derive(Debug, Clone)]
pub struct Keys {
    /// Verifies provisioning JWTs (`features.jwt`).
    pub jwt_verify: Option<PublicKey>,
    /// Signs server JWTs (`features.ed25519`).
    pub server_jwt: Option<ServerJwtSigner>,
}

impl Keys {
    /// Reads the key files the enabled features need.
    pub fn load(settings: &Settings) -> Result<Keys, KeyError> {
        let jwt_verify = if settings.features.jwt {
            Some(verify_key(&settings.jwt_verify_cert)?)
        } else {
            None
        };
        let server_jwt = match (&settings.jwt_signing_key, settings.features.ed25519) {
            (Some(key), true) => Some(ServerJwtSigner::load(
                key,
                settings.jwt_signing_token.as_deref(),
            )?),
            _ => None,
        };
        Ok(Keys {
            jwt_verify,
            server_jwt,
        })
    }
}

impl ServerJwtSigner {
    /// Reads the signing key and, when given, the chain token it belongs to.
    pub fn load(key: &Path, token: Option<&Path>) -> Result<ServerJwtSigner, KeyError> {
        let signing_key_error = |source| KeyError::SigningKey {
            path: key.to_path_buf(),
            source,
        };
        let Some(token) = token else {
            let key = SigningKey::from_file(key).map_err(signing_key_error)?;
            return Ok(ServerJwtSigner::Provisioner(key));
        };
        let text = std::fs::read_to_string(token).map_err(|source| KeyError::ReadToken {
            path: token.to_path_buf(),
            source,
        })?;
        let issuer = parse_client_token_unverified(text.trim()).map_err(|source| {
            KeyError::SigningToken {
                path: token.to_path_buf(),
                source,
            }
        })?;
        if issuer.standard.tcs.is_empty() {
            return Err(KeyError::NoTrustChain);
        }
        let seed = Ed25519Seed::from_file(key).map_err(signing_key_error)?;
        if !issuer
            .standard
            .public_key
            .eq_ignore_ascii_case(&seed.public_key_hex())
        {
            return Err(KeyError::SeedMismatch);
        }
        Ok(ServerJwtSigner::Chained {
            issuer: Box::new(issuer),
            seed,
        })
    }
}

/// `jwt_verify_cert` is a key file when one exists at that path, else a hex ed25519 key.
fn verify_key(setting: &str) -> Result<PublicKey, KeyError> {
    let setting = setting.trim();
    let path = Path::new(setting);
    if path.is_file() {
        read_public_key_file(path)
    } else {
        PublicKey::ed25519_from_hex(setting)
    }
    .map_err(KeyError::VerifyKey)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signer_is_the_plain_key_without_a_token_and_refuses_bad_files() {
        let dir = tempfile::tempdir().expect("dir");
        let seed = dir.path().join("signer.seed");
        std::fs::write(&seed, Ed25519Seed::generate().to_hex()).expect("write");
        assert!(matches!(
            ServerJwtSigner::load(&seed, None),
            Ok(ServerJwtSigner::Provisioner(_))
        ));
        let missing = dir.path().join("missing.seed");
        assert!(matches!(
            ServerJwtSigner::load(&missing, None),
            Err(KeyError::SigningKey { .. })
        ));
        let token = dir.path().join("missing.jwt");
        assert!(matches!(
            ServerJwtSigner::load(&seed, Some(&token)),
            Err(KeyError::ReadToken { .. })
        ));
        assert!(matches!(verify_key("abcd"), Err(KeyError::VerifyKey(_))));
        assert!(verify_key(&Ed25519Seed::generate().public_key_hex()).is_ok());
    }
}
