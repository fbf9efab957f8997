//! Provisioning settings (spec §4.1): the build defaults, overridden by the claims of
//! the provisioning JWT found at start-up (the "Choria JWT Resolver" configure step).

use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};

/// Upstream FOSS default path of the provisioning JWT.
pub const DEFAULT_PROVISION_JWT_FILE: &str = "/etc/choria/provisioning.jwt";
/// Name of the provisioning target resolver, as buildinfo prints it.
pub const RESOLVER_NAME: &str = "Choria JWT Resolver";
/// Largest provisioning JWT accepted.
pub const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// The build-level provisioning settings after the JWT (if any) was applied.
#[derive(Debug, Clone)]
pub struct ProvisionSettings {
    /// `ProvisionJWTFile`.
    pub jwt_file: Option<PathBuf>,
    /// `ProvisionBrokerURLs` (comma list).
    pub broker_urls: String,
    /// `ProvisionBrokerSRVDomain`.
    pub srv_domain: String,
    /// `ProvisionModeDefault`.
    pub mode_default: bool,
    /// `ProvisionSecure`.
    pub secure: bool,
    /// `ProvisionAgent` (only displayed).
    pub agent: bool,
    /// `ProvisionRegistrationData`.
    pub registration_data: String,
    /// `ProvisionFacts`.
    pub facts: String,
    /// `ProvisionToken`.
    pub token: SecretString,
    /// `ProvisioningBrokerUsername`.
    pub username: String,
    /// `ProvisioningBrokerPassword`.
    pub password: SecretString,
    /// `ProvisioningUsesProtocolV2`.
    pub protocol_v2: bool,
    /// `ProvisionAllowServerUpdate`.
    pub allow_update: bool,
    /// The raw provisioning JWT, sent verbatim as `auth_token`.
    pub jwt: Option<SecretString>,
}

impl Default for ProvisionSettings {
    fn default() -> Self {
        ProvisionSettings {
            jwt_file: Some(PathBuf::from(DEFAULT_PROVISION_JWT_FILE)),
            broker_urls: String::new(),
            srv_domain: String::new(),
            mode_default: false,
            secure: true,
            agent: true,
            registration_data: String::new(),
            facts: String::new(),
            token: SecretString::default(),
            username: String::new(),
            password: SecretString::default(),
            protocol_v2: false,
            allow_update: false,
            jwt: None,
        }
    }
}

/// The provisioning-token claims the server acts on.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TokenOverrides {
    /// `cht`.
    pub cht: String,
    /// `chs`.
    pub chs: bool,
    /// `chu`.
    pub chu: String,
    /// `chsrv`.
    pub chsrv: String,
    /// `chpd`.
    pub chpd: bool,
    /// `chrd`.
    pub chrd: String,
    /// `chf`.
    pub chf: String,
    /// `chusr`.
    pub chusr: String,
    /// `chpwd`.
    pub chpwd: String,
    /// `v2`.
    pub v2: bool,
    /// `update`.
    pub update: bool,
}

/// Why the provisioning JWT could not be applied (logged; settings stay unchanged).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResolverError {
    /// `cht` is empty.
    #[error("no auth token")]
    NoAuthToken,
    /// Neither `chu` nor `chsrv` is set.
    #[error("no srv domain or urls")]
    NoTargets,
    /// Both are set.
    #[error("both srv domain and URLs supplied")]
    BothTargets,
    /// The file could not be read or parsed.
    #[error("could not load provisioning token {path}: {reason}")]
    Load {
        /// The JWT file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl ProvisionSettings {
    /// Applies token claims as the resolver's `Configure` step does.
    pub fn apply(&mut self, claims: &TokenOverrides, raw_jwt: String) -> Result<(), ResolverError> {
        if claims.cht.is_empty() {
            return Err(ResolverError::NoAuthToken);
        }
        match (claims.chu.is_empty(), claims.chsrv.is_empty()) {
            (true, true) => return Err(ResolverError::NoTargets),
            (false, false) => return Err(ResolverError::BothTargets),
            _ => {}
        }
        self.broker_urls = claims.chu.clone();
        self.token = claims.cht.as_str().into();
        self.srv_domain = claims.chsrv.clone();
        self.protocol_v2 = claims.v2;
        self.allow_update = claims.update;
        self.mode_default = claims.chpd;
        self.secure = claims.chs;
        for (target, value) in [
            (&mut self.facts, &claims.chf),
            (&mut self.registration_data, &claims.chrd),
            (&mut self.username, &claims.chusr),
        ] {
            if !value.is_empty() {
                *target = value.clone();
            }
        }
        if !claims.chpwd.is_empty() {
            self.password = claims.chpwd.as_str().into();
        }
        self.jwt = Some(raw_jwt.into());
        Ok(())
    }

    /// "Supports provisioning" at build level: a provisioning token is known.
    pub fn supports_provisioning(&self) -> bool {
        !self.token.expose_secret().is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> TokenOverrides {
        TokenOverrides {
            cht: "s3cret".into(),
            chu: "nats://example:4222".into(),
            chpd: true,
            ..TokenOverrides::default()
        }
    }

    #[test]
    fn applies_claims_and_keeps_unset_optional_ones() {
        let mut settings = ProvisionSettings {
            facts: "/etc/facts.json".into(),
            ..ProvisionSettings::default()
        };
        settings.apply(&claims(), "jwt".into()).unwrap();
        assert!(settings.supports_provisioning());
        assert!(settings.mode_default);
        assert!(!settings.secure);
        assert_eq!(settings.facts, "/etc/facts.json");
        assert_eq!(settings.broker_urls, "nats://example:4222");
    }

    #[test]
    fn refuses_tokens_without_targets_or_secret() {
        let mut settings = ProvisionSettings::default();
        let mut c = claims();
        c.chu.clear();
        assert_eq!(
            settings.apply(&c, String::new()),
            Err(ResolverError::NoTargets)
        );
        c.chu = "a:1".into();
        c.chsrv = "example.net".into();
        assert_eq!(
            settings.apply(&c, String::new()),
            Err(ResolverError::BothTargets)
        );
        c.cht.clear();
        assert_eq!(
            settings.apply(&c, String::new()),
            Err(ResolverError::NoAuthToken)
        );
        // Nothing was applied: the whole Debug (secrets aside) and the secrets as before.
        assert_eq!(
            format!("{settings:?}"),
            format!("{:?}", ProvisionSettings::default())
        );
        assert!(settings.token.expose_secret().is_empty());
        assert!(settings.password.expose_secret().is_empty());
        assert!(settings.jwt.is_none());
    }

    #[test]
    fn debug_hides_secrets() {
        let mut settings = ProvisionSettings::default();
        let mut c = claims();
        c.chpwd = "hunter2".into();
        settings.apply(&c, "header.payload.sig".into()).unwrap();
        let text = format!("{settings:?}");
        assert!(!text.contains("s3cret") && !text.contains("hunter2") && !text.contains("payload"));
    }
}
