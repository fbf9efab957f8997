//! `choria buildinfo`: how this build of the node agent is configured, including the
//! provisioning settings read from the provisioning JWT (spec §5).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use choria_server::settings::{ProvisionSettings, DEFAULT_PROVISION_JWT_FILE};
use choria_server::startup::{apply_jwt, JWT_FILE_KEY};

/// Arguments of `choria buildinfo`.
#[derive(Debug, clap::Args)]
pub struct BuildinfoArgs {
    /// Server configuration file (its `plugin.choria.server.provision.jwt_file` is honoured).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Provisioning JWT to read instead of /etc/choria/provisioning.jwt.
    #[arg(long)]
    pub provisioning_jwt: Option<PathBuf>,
}

/// Runs `choria buildinfo`.
pub fn run(args: BuildinfoArgs) -> anyhow::Result<ExitCode> {
    print!("{}", render(&args)?);
    Ok(ExitCode::SUCCESS)
}

/// The text `choria buildinfo` prints.
pub fn render(args: &BuildinfoArgs) -> anyhow::Result<String> {
    let from_config = match &args.config {
        Some(path) if path.exists() => choria_config::Config::load(path)
            .with_context(|| format!("could not load {}", path.display()))?
            .get(JWT_FILE_KEY)
            .map(PathBuf::from),
        _ => None,
    };
    let jwt_file = args
        .provisioning_jwt
        .clone()
        .or(from_config)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PROVISION_JWT_FILE));
    let mut settings = ProvisionSettings {
        jwt_file: Some(jwt_file.clone()),
        ..ProvisionSettings::default()
    };
    if jwt_file.exists() {
        if let Err(reason) = apply_jwt(&mut settings, &jwt_file) {
            tracing::warn!(path = %jwt_file.display(), %reason, "provisioning JWT not applied");
        }
    }
    let version = env!("CARGO_PKG_VERSION");
    let mut out = format!(
        "Choria build settings:\n\nBuild Data:\n     Version: {version}\n     License: Apache-2.0\n\n"
    );
    out.push_str(&choria_server::buildinfo::server_settings(&settings));
    out.push_str("Security Defaults:\n\n            TLS: true\n  x509 Security: true\n");
    Ok(out)
}
