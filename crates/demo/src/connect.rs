//! The demo's Choria client identity (client JWT, seed, caller id) and its connections to
//! the site's broker, made by `choria-connect` (plus a client certificate in mtls mode).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use choria_connect::{parse_servers, ClientCertificate, Login, Tls, Token};
use choria_protocol::subjects::md5_hex;
use choria_tokens::{parse_client_token_unverified, Ed25519Seed};
use secrecy::{ExposeSecret, SecretString};

use crate::DemoError;

/// A client identity: its JWT and the seed that signs nonces.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    token: SecretString,
    seed: Ed25519Seed,
    callerid: String,
    certificate: Option<(PathBuf, PathBuf)>,
}

impl ClientCredentials {
    /// Loads a client token and seed from files.
    pub fn load(token_file: &Path, seed_file: &Path) -> Result<ClientCredentials, DemoError> {
        let token = std::fs::read_to_string(token_file)
            .map_err(|source| DemoError::Io {
                what: format!("reading {}", token_file.display()),
                source,
            })?
            .trim()
            .to_string();
        let claims = parse_client_token_unverified(&token)?;
        let seed = Ed25519Seed::from_file(seed_file)?;
        Ok(ClientCredentials {
            token: token.into(),
            seed,
            callerid: claims.callerid,
            certificate: None,
        })
    }

    /// Also presents this client certificate and key (brokers in mtls mode demand one).
    pub fn with_certificate(mut self, certificate: Option<(PathBuf, PathBuf)>) -> Self {
        self.certificate = certificate;
        self
    }

    /// The caller id (`choria=demo`).
    pub fn callerid(&self) -> &str {
        &self.callerid
    }

    /// The client JWT.
    pub fn token(&self) -> &str {
        self.token.expose_secret()
    }

    /// The seed that signs nonces and requests.
    pub fn seed(&self) -> &Ed25519Seed {
        &self.seed
    }

    /// The reply subject prefix the broker lets this client subscribe to.
    pub fn inbox_prefix(&self, collective: &str) -> String {
        format!("{collective}.reply.{}", md5_hex(&self.callerid))
    }

    /// Connects once to `url`, trusting the CA at `ca`.
    pub async fn connect(
        &self,
        url: &str,
        ca: &Path,
        name: &str,
    ) -> Result<async_nats::Client, DemoError> {
        let client = self
            .certificate
            .clone()
            .map(|(cert, key)| ClientCertificate { cert, key });
        let tls = Tls::Verified {
            ca: ca.to_path_buf(),
            client,
        };
        let servers = parse_servers([url]).map_err(DemoError::Connect)?;
        Login {
            token: Some(Token::signed(self.token.expose_secret(), self.seed.clone())),
            inbox_prefix: Some(self.inbox_prefix("choria")),
            connect_timeout: Duration::from_secs(5),
            ..Login::new(servers, name, tls)
        }
        .connect()
        .await
        .map_err(DemoError::Connect)
    }

    /// Connects, retrying until `deadline`: the broker refuses clients until its
    /// authorization service has subscribed.
    pub async fn connect_until(
        &self,
        url: &str,
        ca: &Path,
        name: &str,
        patience: Duration,
    ) -> Result<async_nats::Client, DemoError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.connect(url, ca, name).await {
                Ok(client) => return Ok(client),
                Err(err) if started.elapsed() >= patience => {
                    return Err(DemoError::NotReady {
                        name: "broker".into(),
                        waited: patience,
                        reason: err.to_string(),
                    })
                }
                Err(_) => {
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(1));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token_or_the_seed() {
        let seed = Ed25519Seed::generate();
        let credentials = ClientCredentials {
            token: "header.secret-claims.signature".into(),
            seed: seed.clone(),
            callerid: "choria=demo".into(),
            certificate: None,
        };
        let text = format!("{credentials:?}");
        assert!(!text.contains("secret-claims"), "{text}");
        assert!(!text.contains(&seed.to_hex()), "{text}");
        assert!(text.contains("choria=demo"), "{text}");
    }
}
