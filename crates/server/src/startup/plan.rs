//! The typed plan a node runs from: everything [`super::decide`]'s outcome and the
//! configuration imply (brokers, credentials, trust, subjects, agents), computed once.
//!
//! Nothing here touches the network; broker SRV lookups happen when the node connects.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use secrecy::ExposeSecret;
use serde_json::{json, Value};

use choria_config::Config;
use choria_protocol::subjects;

use crate::agents::provision::{self, KeptSettings, NodeFiles, ProvisionContext};
use crate::agents::rpcutil::{self, NodeFacts};
use crate::agents::{choria_util, discovery};
use crate::connection::{self, ConnectSpec, Credentials};
use crate::resolve::{self, BrokerUrl};
use crate::session::ReplyKey;
use crate::settings::{ProvisionSettings, MAX_TOKEN_BYTES};
use crate::startup::{Mode, Startup, StartupError, TokenSeedError};
use crate::verify::{Trust, Verification};

/// Largest facts file read.
pub const MAX_FACTS_BYTES: u64 = 1024 * 1024;
/// The classes file when the configuration names none (`classesfile`, upstream's default).
pub const DEFAULT_CLASSES_FILE: &str = "/opt/puppetlabs/puppet/cache/state/classes.txt";
/// Lifecycle component while provisioning.
pub const PROVISION_COMPONENT: &str = subjects::PROVISION_MODE_COMPONENT;
/// Lifecycle component in normal mode.
pub const SERVER_COMPONENT: &str = "server";

/// Keys upstream's example helper sets that this node does not implement, with what that
/// means; [`unsupported_keys`] reports the ones a configuration sets. Never fatal.
pub const UNSUPPORTED_KEYS: &[(&str, &str)] = &[
    (
        "plugin.choria.status_file_path",
        "the status file is not written",
    ),
    (
        "plugin.choria.submission.spool",
        "message submission is not implemented",
    ),
    (
        "plugin.choria.machine.store",
        "autonomous agents are not implemented",
    ),
    (
        "plugin.choria.registration.file_content.data",
        "registration data is only published while provisioning (the provisioning token's chrd)",
    ),
    (
        "rpcauthorization",
        "RPC authorization (action policies) is not implemented",
    ),
];

/// The [`UNSUPPORTED_KEYS`] `config` sets, in that order; `rpcauthorization` only when it
/// is not off, since off is what this node does anyway.
pub fn unsupported_keys(config: &Config) -> Vec<(&'static str, &'static str)> {
    UNSUPPORTED_KEYS
        .iter()
        .filter(|(key, _)| match config.get(key) {
            None => false,
            Some(value) if *key == "rpcauthorization" => {
                choria_config::parse_bool(value) != Some(false)
            }
            Some(_) => true,
        })
        .copied()
        .collect()
}

/// Where the brokers come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Brokers {
    /// The provisioning JWT's URLs, else its SRV domain (looked up when connecting).
    Provisioning {
        /// `chu`, comma separated.
        urls: String,
        /// `chsrv`.
        srv_domain: String,
    },
    /// `plugin.choria.middleware_hosts`.
    Fixed(Vec<BrokerUrl>),
}

/// Everything a node needs to connect and serve, in one mode.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The mode.
    pub mode: Mode,
    /// The node identity.
    pub identity: String,
    /// Where to connect.
    pub brokers: Brokers,
    /// How to log in.
    pub credentials: Credentials,
    /// CA that verifies the brokers (`None`: anonymous TLS while provisioning).
    pub ca: Option<PathBuf>,
    /// The connection's inbox prefix.
    pub inbox_prefix: String,
    /// `plugin.choria.network.connect_timeout`.
    pub connect_timeout: Duration,
    /// Subjects to subscribe to.
    pub subjects: Vec<String>,
    /// Who may sign requests.
    pub verification: Verification,
    /// Lifecycle component.
    pub component: &'static str,
    /// What `rpcutil` reports.
    pub node: NodeFacts,
    /// The classes file (`classesfile`), read when a filter asks for classes.
    pub classes_file: PathBuf,
    /// The `choria_provision` agent's context, when the node hosts it.
    pub provision: Option<ProvisionContext>,
    /// How replies are signed (v2, normal mode, `sign_replies`).
    pub reply_key: Option<ReplyKey>,
    /// Registration data published while provisioning.
    pub registration: Option<PathBuf>,
}

impl Plan {
    /// The connection settings for `servers` (the resolved [`Plan::brokers`]).
    pub fn connect_spec(&self, servers: Vec<BrokerUrl>) -> ConnectSpec {
        ConnectSpec {
            servers,
            name: self.identity.clone(),
            inbox_prefix: self.inbox_prefix.clone(),
            credentials: self.credentials.clone(),
            ca: self.ca.clone(),
            connect_timeout: self.connect_timeout,
        }
    }
}

/// The plan for `startup`, the node started with `config_file`, at `now`.
pub fn plan(startup: &Startup, config_file: &Path, now: SystemTime) -> Result<Plan, StartupError> {
    match startup.mode {
        Mode::Provisioning => provisioning(startup, config_file),
        Mode::Normal => normal(startup, config_file, now),
    }
}

fn provisioning(startup: &Startup, config_file: &Path) -> Result<Plan, StartupError> {
    let settings = &startup.settings;
    let config = &startup.config;
    let user = (!settings.username.is_empty() && !settings.password.expose_secret().is_empty())
        .then(|| (settings.username.clone(), settings.password.clone()));
    let collective = subjects::PROVISIONING_COLLECTIVE;
    let mut subscriptions = vec![subjects::node(collective, &startup.identity)?];
    for agent in subjects::PROVISIONING_AGENTS {
        subscriptions.push(subjects::broadcast_agent(collective, agent)?);
    }
    let agents = [
        provision::AGENT,
        choria_util::AGENT,
        discovery::AGENT,
        rpcutil::AGENT,
    ];
    Ok(Plan {
        mode: Mode::Provisioning,
        identity: startup.identity.clone(),
        brokers: Brokers::Provisioning {
            urls: settings.broker_urls.clone(),
            srv_domain: settings.srv_domain.clone(),
        },
        credentials: Credentials::Provisioning {
            jwt: settings.jwt.clone().unwrap_or_default(),
            user,
        },
        ca: None,
        inbox_prefix: subjects::unhashed_reply_prefix(collective)?,
        connect_timeout: connection::connect_timeout(config)?,
        subjects: subscriptions,
        verification: Verification::Skip,
        component: PROVISION_COMPONENT,
        node: NodeFacts {
            agents: agents.iter().map(|a| a.to_string()).collect(),
            facts: load_facts(&settings.facts),
            collectives: vec![collective.into()],
            main_collective: collective.into(),
            upgradable: settings.allow_update,
        },
        classes_file: classes_file(config),
        provision: Some(ProvisionContext {
            identity: startup.identity.clone(),
            files: node_files(config_file, settings),
            token: settings.token.clone(),
            provision_mode: true,
            allow_update: settings.allow_update,
            kept: kept_settings(config),
            provision_registration_data: !settings.registration_data.is_empty(),
        }),
        reply_key: None,
        registration: (!settings.registration_data.is_empty())
            .then(|| PathBuf::from(&settings.registration_data)),
    })
}

fn normal(startup: &Startup, config_file: &Path, now: SystemTime) -> Result<Plan, StartupError> {
    let config = &startup.config;
    let config_dir = super::config_dir(config_file);
    let hosts = config
        .get("plugin.choria.middleware_hosts")
        .ok_or(StartupError::NoBrokers)?;
    let servers = resolve::parse_urls(hosts)?;
    let ssldir = config
        .get("plugin.choria.ssldir")
        .map(PathBuf::from)
        .unwrap_or_else(|| config_dir.join("ssl"));
    let ca = config
        .get("plugin.security.choria.ca")
        .or_else(|| config.get("plugin.security.file.ca"))
        .map(PathBuf::from)
        .or_else(|| Some(ssldir.join("ca.pem")).filter(|p| p.exists()));
    let (credentials, collectives, reply_key) = match super::token_and_seed(config, &config_dir) {
        Some((token_file, seed_file)) => jwt_credentials(config, &token_file, &seed_file, now)?,
        None => {
            let cert = ssldir.join("certificate.pem");
            let key = ssldir.join("private.pem");
            if !cert.exists() || !key.exists() || ca.is_none() {
                return Err(StartupError::NoCredentials { ssldir });
            }
            let collectives = config
                .get_list("collectives")
                .unwrap_or_else(|| vec!["mcollective".into()]);
            (Credentials::Certificate { cert, key }, collectives, None)
        }
    };
    let first = collectives.first().ok_or(StartupError::NoCollectives)?;
    let main = config.get("main_collective").unwrap_or(first).to_string();
    let mut agents = vec![choria_util::AGENT, discovery::AGENT, rpcutil::AGENT];
    let mut subscriptions = Vec::new();
    for collective in &collectives {
        subscriptions.push(subjects::node(collective, &startup.identity)?);
        for agent in &agents {
            subscriptions.push(subjects::broadcast_agent(collective, agent)?);
        }
    }
    // A node that still has its provisioning token keeps the agent (spec §4.8).
    let provision = startup.settings.supports_provisioning().then(|| {
        agents.push(provision::AGENT);
        ProvisionContext {
            identity: startup.identity.clone(),
            files: node_files(config_file, &startup.settings),
            token: startup.settings.token.clone(),
            // Outside provisioning mode the agent may not update and has no `chrd` data.
            provision_mode: false,
            kept: kept_settings(config),
            ..ProvisionContext::default()
        }
    });
    if provision.is_some() {
        for collective in &collectives {
            subscriptions.push(subjects::broadcast_agent(collective, provision::AGENT)?);
        }
    }
    Ok(Plan {
        mode: Mode::Normal,
        identity: startup.identity.clone(),
        brokers: Brokers::Fixed(servers),
        credentials,
        inbox_prefix: subjects::reply_prefix(&main, &startup.identity, false)?,
        connect_timeout: connection::connect_timeout(config)?,
        subjects: subscriptions,
        verification: Verification::Required(trust_from(config, ca.clone())),
        ca,
        component: SERVER_COMPONENT,
        node: NodeFacts {
            agents: agents.iter().map(|a| a.to_string()).collect(),
            facts: load_facts(config.get("plugin.yaml").unwrap_or_default()),
            collectives,
            main_collective: main,
            upgradable: false,
        },
        classes_file: classes_file(config),
        provision,
        reply_key,
        registration: None,
    })
}

/// JWT security: the server token and seed log in, name the collectives and sign replies.
fn jwt_credentials(
    config: &Config,
    token_file: &Path,
    seed_file: &Path,
    now: SystemTime,
) -> Result<(Credentials, Vec<String>, Option<ReplyKey>), StartupError> {
    let claims = super::check_token_and_seed(token_file, seed_file, now)?;
    let jwt = choria_config::files::read_capped_string(token_file, MAX_TOKEN_BYTES)
        .map_err(|source| TokenSeedError::Unreadable {
            path: token_file.to_path_buf(),
            source,
        })?
        .trim()
        .to_string();
    let seed = choria_tokens::Ed25519Seed::from_file(seed_file).map_err(|source| {
        TokenSeedError::Seed {
            path: seed_file.to_path_buf(),
            source,
        }
    })?;
    // Replies are signed unless plugin.security.choria.sign_replies is false.
    let sign = config
        .get_bool("plugin.security.choria.sign_replies")
        .ok()
        .flatten()
        .unwrap_or(true);
    let reply_key = sign
        .then(|| ReplyKey::from_seed(&seed, jwt.clone()))
        .flatten();
    let certificate = match (
        config.get("plugin.security.choria.certificate"),
        config.get("plugin.security.choria.key"),
    ) {
        (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
        (None, None) => None,
        _ => return Err(StartupError::CertificateWithoutKey),
    };
    let credentials = Credentials::ServerJwt {
        jwt: jwt.into(),
        seed: Box::new(seed),
        certificate,
    };
    Ok((credentials, claims.collectives, reply_key))
}

/// The normal-mode trust policy from the configuration, its keys parsed once; `ca` is
/// the node's CA file.
fn trust_from(config: &Config, ca: Option<PathBuf>) -> Trust {
    let org_issuers: Vec<String> = config
        .get_list("plugin.security.issuer.names")
        .unwrap_or_default()
        .iter()
        .filter_map(|name| config.get(&format!("plugin.security.issuer.{name}.public")))
        .map(str::to_string)
        .collect();
    let trusted_signers = config.get_list_or_empty("plugin.security.choria.trusted_signers");
    Trust::new(&org_issuers, &trusted_signers, ca)
}

/// The files the provision agent manages; the SSL directory comes from `configure` requests.
fn node_files(config_file: &Path, settings: &ProvisionSettings) -> NodeFiles {
    NodeFiles {
        config_file: Some(config_file.to_path_buf()),
        jwt_file: settings.jwt_file.clone(),
        ssldir: None,
    }
}

fn kept_settings(config: &Config) -> KeptSettings {
    KeptSettings {
        logfile: config.get("logfile").map(str::to_string),
        registration_data_file: config
            .get("plugin.choria.registration.file_content.data")
            .map(str::to_string),
    }
}

/// The classes file the configuration names (`classesfile`), or upstream's default.
fn classes_file(config: &Config) -> PathBuf {
    PathBuf::from(config.get("classesfile").unwrap_or(DEFAULT_CLASSES_FILE))
}

fn load_facts(path: &str) -> Value {
    if path.is_empty() {
        return json!({});
    }
    match choria_config::files::read_capped(Path::new(path), MAX_FACTS_BYTES) {
        Ok(bytes) => serde_json::from_slice::<Value>(&bytes)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| {
                tracing::warn!(%path, "facts file is not a JSON object, using no facts");
                json!({})
            }),
        Err(err) => {
            tracing::warn!(%path, error = %err, "could not read facts");
            json!({})
        }
    }
}

#[cfg(test)]
mod tests {

    use super::*;

    #[test]
    fn upstream_helper_keys_we_do_not_implement_are_reported_not_refused() {
        let config = Config::parse_str(
            "plugin.choria.submission.spool=/tmp/submission\n\
             plugin.choria.machine.store=/etc/choria/machine\n\
             plugin.choria.registration.file_content.data=/no/such/file.json\n\
             rpcauthorization=0\n\
             identity=n1.example.net\n",
            "test",
        )
        .unwrap();
        let keys: Vec<&str> = unsupported_keys(&config).iter().map(|(k, _)| *k).collect();
        assert_eq!(
            keys,
            [
                "plugin.choria.submission.spool",
                "plugin.choria.machine.store",
                "plugin.choria.registration.file_content.data",
            ],
            "rpcauthorization=0 is what the node does anyway"
        );
        let enforcing = Config::parse_str("rpcauthorization=1\n", "test").unwrap();
        assert_eq!(unsupported_keys(&enforcing).len(), 1);
    }

    fn startup(mode: Mode, config: Config, settings: ProvisionSettings) -> Startup {
        Startup {
            mode,
            settings,
            config,
            identity: "n1.example.net".into(),
            replaced: false,
            reason: String::new(),
        }
    }

    #[test]
    fn provisioning_plan_listens_in_provisioning_with_the_jwt() {
        let settings = ProvisionSettings {
            broker_urls: "nats://prov.example.net:4222".into(),
            token: "secret".into(),
            jwt: Some("the.provisioning.jwt".into()),
            registration_data: "/tmp/reg.json".into(),
            ..ProvisionSettings::default()
        };
        let startup = startup(Mode::Provisioning, Config::new(), settings);
        let plan = plan(
            &startup,
            Path::new("/etc/choria/server.conf"),
            SystemTime::now(),
        )
        .unwrap();
        assert_eq!(plan.mode, Mode::Provisioning);
        assert_eq!(
            plan.subjects,
            [
                "provisioning.node.n1.example.net",
                "provisioning.broadcast.agent.discovery",
                "provisioning.broadcast.agent.rpcutil",
                "provisioning.broadcast.agent.choria_util",
                "provisioning.broadcast.agent.choria_provision",
            ]
        );
        assert_eq!(plan.inbox_prefix, "provisioning.reply");
        assert!(matches!(
            &plan.credentials,
            Credentials::Provisioning { jwt, user: None } if jwt.expose_secret() == "the.provisioning.jwt"
        ));
        assert!(matches!(plan.verification, Verification::Skip));
        assert_eq!(plan.component, PROVISION_COMPONENT);
        assert!(plan.ca.is_none() && plan.reply_key.is_none());
        assert_eq!(plan.registration, Some(PathBuf::from("/tmp/reg.json")));
        assert_eq!(plan.classes_file, PathBuf::from(DEFAULT_CLASSES_FILE));
        let context = plan.provision.expect("provisioning hosts choria_provision");
        assert!(context.provision_mode);
        assert_eq!(context.token.expose_secret(), "secret");
        assert_eq!(
            plan.brokers,
            Brokers::Provisioning {
                urls: "nats://prov.example.net:4222".into(),
                srv_domain: String::new()
            }
        );
    }

    fn certificate_site(dir: &Path, extra: &str) -> Config {
        let ssl = dir.join("ssl");
        std::fs::create_dir_all(&ssl).unwrap();
        for file in ["certificate.pem", "private.pem", "ca.pem"] {
            std::fs::write(ssl.join(file), "x").unwrap();
        }
        let text = format!(
            "plugin.choria.middleware_hosts = nats://b1.example.net:4222\ncollectives = choria,other\nclassesfile = {}\n{extra}",
            dir.join("classes.txt").display()
        );
        std::fs::write(dir.join("server.conf"), text).unwrap();
        Config::load(&dir.join("server.conf")).unwrap()
    }

    #[test]
    fn normal_plan_with_certificates_subscribes_in_every_collective() {
        let dir = tempfile::tempdir().unwrap();
        let config = certificate_site(dir.path(), "");
        let startup = startup(Mode::Normal, config, ProvisionSettings::default());
        let plan = plan(&startup, &dir.path().join("server.conf"), SystemTime::now()).unwrap();
        assert!(matches!(plan.credentials, Credentials::Certificate { .. }));
        assert_eq!(plan.ca, Some(dir.path().join("ssl/ca.pem")));
        assert_eq!(
            plan.inbox_prefix,
            format!("choria.reply.{}", subjects::md5_hex("n1.example.net"))
        );
        assert_eq!(plan.subjects.len(), 8);
        assert!(plan
            .subjects
            .contains(&"other.node.n1.example.net".to_string()));
        assert!(plan.provision.is_none(), "no provisioning token, no agent");
        assert_eq!(plan.classes_file, dir.path().join("classes.txt"));
        assert!(matches!(plan.verification, Verification::Required(_)));
        assert_eq!(plan.component, SERVER_COMPONENT);
    }

    #[test]
    fn normal_plan_refuses_what_it_cannot_run() {
        let dir = tempfile::tempdir().unwrap();
        let bad_collective = certificate_site(dir.path(), "collectives = a.b\n");
        let startup_bad = startup(Mode::Normal, bad_collective, ProvisionSettings::default());
        assert!(matches!(
            plan(
                &startup_bad,
                &dir.path().join("server.conf"),
                SystemTime::now()
            ),
            Err(StartupError::Subject(_))
        ));
        let empty = startup(Mode::Normal, Config::new(), ProvisionSettings::default());
        assert!(matches!(
            plan(&empty, &dir.path().join("server.conf"), SystemTime::now()),
            Err(StartupError::NoBrokers)
        ));
        let no_key = certificate_site(dir.path(), "");
        std::fs::remove_file(dir.path().join("ssl/private.pem")).unwrap();
        let startup = startup(Mode::Normal, no_key, ProvisionSettings::default());
        assert!(matches!(
            plan(&startup, &dir.path().join("server.conf"), SystemTime::now()),
            Err(StartupError::NoCredentials { .. })
        ));
    }
}
