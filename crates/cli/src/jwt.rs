//! `choria jwt`: create provisioning, server and client tokens, ed25519 keys, and view tokens
//! in upstream's layout (spec §3). Parsing and printing only; the token logic is choria-tokens.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Args, Subcommand};

use choria_config::duration::parse_duration;
use choria_config::files::{read_capped, write_new_secret, write_secret, FileError};
use choria_protocol::subjects::md5_hex;
use choria_tokens::{
    add_org_issuer_data, clock, is_chained_issuer, parse_client_token,
    parse_client_token_unverified, parse_provisioning_token, parse_provisioning_token_unverified,
    parse_server_token, parse_server_token_unverified, parse_token_unverified,
    read_public_key_file, sign_chained_token, sign_token, token_purpose, verify_token,
    ClientIdClaims, ClientPermissions, Ed25519Seed, NewClient, NewProvisioning, NewServer,
    ProvisioningClaims, PublicKey, Purpose, ServerClaims, ServerPermissions, SigningKey,
    StandardClaims, TokenClaims, MAX_TOKEN_SIZE,
};

use crate::Failure;

/// Collective used for server tokens when none is given (upstream FOSS `DefaultCollectives`).
const DEFAULT_SERVER_COLLECTIVE: &str = "mcollective";

/// Arguments of `choria jwt`. With only a FILE (and optional PUBLIC-KEY) it views the token.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct JwtArgs {
    #[command(subcommand)]
    command: Option<JwtCommand>,
    #[command(flatten)]
    view: Option<ViewArgs>,
}

#[derive(Debug, Subcommand)]
enum JwtCommand {
    /// Create a provisioning token.
    #[command(visible_aliases = ["prov", "provision", "p"])]
    Provisioning(ProvisioningArgs),
    /// Create a server token.
    #[command(visible_alias = "s")]
    Server(ServerArgs),
    /// Create a client id token.
    #[command(visible_alias = "c")]
    Client(ClientArgs),
    /// Create an ed25519 seed (and optionally a public key file).
    #[command(visible_alias = "k")]
    Keys(KeysArgs),
    /// View a token, validating it when a public key is given.
    #[command(visible_aliases = ["show", "v"])]
    View(ViewArgs),
}

#[derive(Debug, Args)]
struct ProvisioningArgs {
    /// Where to write the token.
    file: PathBuf,
    /// RSA private key (PEM) or hex ed25519 seed file to sign with.
    signing_key: PathBuf,
    /// Provisioning access token (`cht`). Required: there is no interactive prompt.
    #[arg(long)]
    token: Option<String>,
    /// Broker URL to provision through (repeatable).
    #[arg(long = "urls", value_name = "URL")]
    urls: Vec<String>,
    /// Domain for `_choria-provisioner._tcp` SRV lookups.
    #[arg(long, value_name = "DOMAIN")]
    srv: Option<String>,
    /// Enter provisioning mode by default (`chpd`).
    #[arg(long)]
    default: bool,
    /// Disable protocol security while provisioning (the default).
    #[arg(long, overrides_with = "no_insecure")]
    insecure: bool,
    /// Keep protocol security on while provisioning (`chs` = true).
    #[arg(long = "no-insecure", overrides_with = "insecure")]
    no_insecure: bool,
    /// Registration data file published while provisioning.
    #[arg(long, value_name = "FILE")]
    registration: Option<String>,
    /// Facts file used while provisioning.
    #[arg(long, value_name = "FILE")]
    facts: Option<String>,
    /// Broker username.
    #[arg(long)]
    username: Option<String>,
    /// Broker password.
    #[arg(long)]
    password: Option<String>,
    /// Extensions as a JSON object.
    #[arg(long, value_name = "JSON")]
    extensions: Option<String>,
    /// Organisation.
    #[arg(long, default_value = "choria")]
    org: String,
    /// Use protocol version 2 while provisioning.
    #[arg(long = "protocol-v2")]
    protocol_v2: bool,
    /// Allow in-place version upgrades.
    #[arg(long, alias = "update")]
    upgrade: bool,
    /// How long the token is valid (Go duration plus d/w/M/y).
    #[arg(long, default_value = "1y", value_parser = parse_validity)]
    validity: Duration,
    /// Replace FILE if it exists.
    #[arg(long, short)]
    force: bool,
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// Where to write the token.
    file: PathBuf,
    /// The server identity.
    identity: String,
    /// The server's ed25519 public key: hex, or a file holding it.
    public_key: String,
    /// RSA private key (PEM) or hex ed25519 seed file to sign with.
    signing_key: PathBuf,
    /// Collective the server may use (repeatable).
    #[arg(long = "collectives", value_name = "COLLECTIVE")]
    collectives: Vec<String>,
    /// Organisation.
    #[arg(long, default_value = "choria")]
    org: String,
    /// Additional subject the server may publish to (repeatable).
    #[arg(long = "subjects", value_name = "SUBJECT")]
    subjects: Vec<String>,
    /// Allow Choria Submission.
    #[arg(long)]
    submission: bool,
    /// Allow Choria Streams.
    #[arg(long = "stream-user", alias = "streams")]
    stream_user: bool,
    /// Allow Choria Governors (needs --stream-user).
    #[arg(long)]
    governor: bool,
    /// Allow hosting services.
    #[arg(long)]
    service: bool,
    /// How long the token is valid (Go duration plus d/w/M/y).
    #[arg(long, default_value = "8760h", value_parser = parse_validity)]
    validity: Duration,
    #[command(flatten)]
    issue: IssueArgs,
}

/// How `jwt server` and `jwt client` write the signed token: directly or through a chain
/// issuer, and whether an existing FILE may be replaced.
#[derive(Debug, Args)]
struct IssueArgs {
    /// Issue through a chain issuer: its client token file; SIGNING-KEY is its ed25519 seed.
    /// Refused when the token would grant more than the chain issuer holds.
    #[arg(long = "chain-issuer", value_name = "TOKEN")]
    chain_issuer: Option<PathBuf>,
    /// Replace FILE if it exists.
    #[arg(long, short)]
    force: bool,
}

#[derive(Debug, Args)]
struct ClientArgs {
    /// Where to write the token.
    file: PathBuf,
    /// The caller id, e.g. `up=alice`.
    callerid: String,
    /// RSA private key (PEM) or hex ed25519 seed file to sign with.
    signing_key: PathBuf,
    /// The client's ed25519 public key: hex, or a file holding it.
    #[arg(long = "public-key", value_name = "HEX|FILE")]
    public_key: Option<String>,
    /// Allowed agent or agent.action (repeatable).
    #[arg(long = "agents", value_name = "AGENT")]
    agents: Vec<String>,
    /// Organisation.
    #[arg(long, default_value = "choria")]
    org: String,
    /// File holding an OPA (Rego) policy.
    #[arg(long = "opa-file", value_name = "FILE")]
    opa_file: Option<PathBuf>,
    /// OPA (Rego) policy text.
    #[arg(long)]
    opa: Option<String>,
    /// How long the token is valid (Go duration plus d/w/M/y).
    #[arg(long, default_value = "1h", value_parser = parse_validity)]
    validity: Duration,
    /// Allow administering Choria Streams.
    #[arg(long = "stream-admin")]
    stream_admin: bool,
    /// Allow using Choria Streams.
    #[arg(long = "stream-user")]
    stream_user: bool,
    /// Allow viewing lifecycle and autonomous agent events.
    #[arg(long = "event-viewer")]
    event_viewer: bool,
    /// Allow using leader elections.
    #[arg(long = "elections-user")]
    elections_user: bool,
    /// Allow an extended token lifetime.
    #[arg(long)]
    service: bool,
    /// Allow access to the broker system account.
    #[arg(long, alias = "system-user")]
    system: bool,
    /// Allow signing requests on behalf of other users.
    #[arg(long = "auth-delegation")]
    auth_delegation: bool,
    /// Allow managing fleet nodes (the default).
    #[arg(long = "fleet-management", overrides_with = "no_fleet_management")]
    fleet_management: bool,
    /// Do not allow managing fleet nodes.
    #[arg(long = "no-fleet-management", overrides_with = "fleet_management")]
    no_fleet_management: bool,
    /// Fleet management subject to an authorizing signature.
    #[arg(long = "signed-fleet-management")]
    signed_fleet_management: bool,
    /// Allow observing all traffic (organisation admin).
    #[arg(long = "org-admin")]
    org_admin: bool,
    /// Additional subject the client may publish to (repeatable).
    #[arg(long = "publish", value_name = "SUBJECT")]
    publish: Vec<String>,
    /// Additional subject the client may subscribe to (repeatable).
    #[arg(long = "subscribe", value_name = "SUBJECT")]
    subscribe: Vec<String>,
    /// Make this token a chain issuer signed by the (ed25519) SIGNING-KEY.
    #[arg(long, conflicts_with = "chain_issuer")]
    issuer: bool,
    /// Allow provisioning Choria Servers.
    #[arg(long = "server-provisioner", alias = "provisioner")]
    server_provisioner: bool,
    /// Allow accessing Choria Governors.
    #[arg(long)]
    governor: bool,
    #[command(flatten)]
    issue: IssueArgs,
}

#[derive(Debug, Args)]
struct KeysArgs {
    /// Where to write the hex ed25519 seed.
    seed_file: PathBuf,
    /// Where to write the hex public key.
    public_file: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long, short)]
    force: bool,
    /// With an existing seed, print its public key and exit.
    #[arg(long = "show-public")]
    show_public: bool,
}

#[derive(Debug, Args)]
struct ViewArgs {
    /// The token file.
    #[arg(value_name = "FILE")]
    token_file: PathBuf,
    /// Public key file (PEM certificate or key, or hex ed25519) to validate with.
    #[arg(value_name = "PUBLIC-KEY")]
    public_key_file: Option<PathBuf>,
    /// Print the claims as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `choria jwt`.
pub fn run(args: JwtArgs) -> anyhow::Result<ExitCode> {
    match (args.command, args.view) {
        (Some(JwtCommand::Provisioning(a)), _) => provisioning(a),
        (Some(JwtCommand::Server(a)), _) => server(a),
        (Some(JwtCommand::Client(a)), _) => client(a),
        (Some(JwtCommand::Keys(a)), _) => keys(a),
        (Some(JwtCommand::View(a)), _) | (None, Some(a)) => view(a),
        (None, None) => Err(Failure::usage(
            "a sub command is required: provisioning, server, client, keys or view",
        )
        .into()),
    }
}

fn provisioning(args: ProvisioningArgs) -> anyhow::Result<ExitCode> {
    let Some(token) = args.token.filter(|t| !t.is_empty()) else {
        return Err(Failure::usage(
            "--token is required: give the provisioning access token with --token (there is no interactive prompt)",
        )
        .into());
    };
    let srv = args.srv.unwrap_or_default();
    if args.urls.is_empty() && srv.is_empty() {
        return Err(
            Failure::usage("URLs or a SRV Domain is required (use --urls or --srv)").into(),
        );
    }
    let extensions = match args.extensions.as_deref() {
        None => None,
        Some(text) => Some(
            serde_json::from_str::<BTreeMap<String, serde_json::Value>>(text)
                .map_err(|e| Failure::usage(format!("invalid extensions: {e}")))?,
        ),
    };
    refuse_existing(&args.file, args.force)?;
    let key = signing_key(&args.signing_key)?;
    let mut claims = ProvisioningClaims::new(
        NewProvisioning {
            secure: args.no_insecure,
            by_default: args.default,
            token,
            username: args.username.unwrap_or_default(),
            password: args.password.unwrap_or_default(),
            urls: args.urls,
            srv_domain: srv,
            registration_data: args.registration.unwrap_or_default(),
            facts: args.facts.unwrap_or_default(),
            org: args.org,
            issuer: String::new(),
            validity: args.validity,
            extensions,
            protocol_v2: args.protocol_v2,
            allow_update: args.upgrade,
        },
        SystemTime::now(),
    )
    .context("could not create token")?;
    save_token(
        &args.file,
        &mut claims,
        &key,
        &IssueArgs {
            chain_issuer: None,
            force: args.force,
        },
    )
}

fn server(args: ServerArgs) -> anyhow::Result<ExitCode> {
    if args.governor && !args.stream_user {
        return Err(
            Failure::usage("cannot set --governor unless --stream-user is also set").into(),
        );
    }
    let public_key = ed25519_public_key_arg(&args.public_key)?;
    refuse_existing(&args.file, args.issue.force)?;
    let key = signing_key(&args.signing_key)?;
    let collectives = if args.collectives.is_empty() {
        vec![DEFAULT_SERVER_COLLECTIVE.to_string()]
    } else {
        args.collectives
    };
    let mut claims = ServerClaims::new(
        NewServer {
            identity: args.identity,
            collectives,
            org: args.org,
            permissions: Some(ServerPermissions {
                submission: args.submission,
                streams: args.stream_user,
                governor: args.governor,
                service_host: args.service,
            }),
            pub_subjects: args.subjects,
            public_key: Some(public_key),
            issuer: String::new(),
            validity: args.validity,
        },
        SystemTime::now(),
    )
    .context("could not create token")?;
    save_token(&args.file, &mut claims, &key, &args.issue)
}

fn client(args: ClientArgs) -> anyhow::Result<ExitCode> {
    let public_key = args
        .public_key
        .as_deref()
        .map(ed25519_public_key_arg)
        .transpose()?;
    let opa_policy = match (&args.opa_file, args.opa) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("could not read the OPA policy {}", path.display()))?,
        (None, Some(text)) => text,
        (None, None) => String::new(),
    };
    let perms = ClientPermissions {
        streams_admin: args.stream_admin,
        streams_user: args.stream_user,
        events_viewer: args.event_viewer,
        election_user: args.elections_user,
        system_user: args.system,
        governor: args.governor,
        org_admin: args.org_admin,
        fleet_management: !args.no_fleet_management,
        signed_fleet_management: args.signed_fleet_management,
        service: args.service,
        authentication_delegator: args.auth_delegation,
        provisioner: args.server_provisioner,
    }
    .as_minted(args.issuer);
    if args.issuer && public_key.is_none() {
        return Err(Failure::usage(
            "--issuer needs --public-key: a chain issuer signs with its own ed25519 key",
        )
        .into());
    }
    refuse_existing(&args.file, args.issue.force)?;
    let key = signing_key(&args.signing_key)?;
    let mut claims = ClientIdClaims::new(
        NewClient {
            callerid: args.callerid,
            agents: args.agents,
            org: args.org,
            opa_policy,
            validity: args.validity,
            pub_subjects: args.publish,
            sub_subjects: args.subscribe,
            permissions: Some(perms),
            public_key,
            ..NewClient::default()
        },
        SystemTime::now(),
    )
    .context("could not create token")?;
    if args.issuer {
        let SigningKey::Ed25519(seed) = &key else {
            return Err(Failure::usage(format!(
                "--issuer needs an ed25519 seed as SIGNING-KEY, {} is an RSA key",
                args.signing_key.display()
            ))
            .into());
        };
        add_org_issuer_data(&mut claims, seed).context("chained signature failed")?;
    }
    save_token(&args.file, &mut claims, &key, &args.issue)
}

fn keys(args: KeysArgs) -> anyhow::Result<ExitCode> {
    if args.show_public && args.seed_file.exists() {
        let seed = Ed25519Seed::from_file(&args.seed_file)?;
        println!("Public Key: {}", seed.public_key_hex());
        return Ok(ExitCode::SUCCESS);
    }
    refuse_existing(&args.seed_file, args.force)?;
    if let Some(public) = &args.public_file {
        refuse_existing(public, args.force)?;
    }
    let seed = Ed25519Seed::generate();
    write_file(&args.seed_file, seed.to_hex().as_bytes(), args.force)?;
    if let Some(public) = &args.public_file {
        write_file(public, seed.public_key_hex().as_bytes(), args.force)?;
    }
    println!("Public Key: {}", seed.public_key_hex());
    println!();
    println!("Ed25519 seed saved in {}", args.seed_file.display());
    Ok(ExitCode::SUCCESS)
}

fn view(args: ViewArgs) -> anyhow::Result<ExitCode> {
    let file = args.token_file.display().to_string();
    let bytes = read_capped(&args.token_file, MAX_TOKEN_SIZE as u64)
        .map_err(|e| Failure::failed(format!("could not read token: {e}")))?;
    let token = String::from_utf8(bytes)
        .map_err(|_| Failure::failed(format!("could not parse token: {file} is not text")))?;
    let token = token.trim();
    let key = match &args.public_key_file {
        Some(path) => Some(read_public_key_file(path).map_err(|e| Failure::usage(e.to_string()))?),
        None => None,
    };
    let now = SystemTime::now();
    let purpose = token_purpose(token);
    if args.json || purpose == Purpose::Unknown {
        return view_json(token, key.as_ref(), purpose, now);
    }
    let parse_failed =
        |e: choria_tokens::TokenError| Failure::failed(format!("could not parse token: {e}"));
    let viewing = Viewing {
        file: &file,
        validated: key.is_some(),
        now,
    };
    let (text, standard) = match purpose {
        Purpose::Provisioning => {
            let claims = match &key {
                Some(k) => parse_provisioning_token(token, k, now),
                None => parse_provisioning_token_unverified(token),
            }
            .map_err(parse_failed)?;
            (render_provisioning(&viewing, &claims)?, claims.standard)
        }
        Purpose::Server => {
            let claims = match &key {
                Some(k) => parse_server_token(token, k, now),
                None => parse_server_token_unverified(token),
            }
            .map_err(parse_failed)?;
            (render_server(&viewing, &claims), claims.standard)
        }
        Purpose::ClientId | Purpose::Unknown => {
            let claims = match &key {
                Some(k) => parse_client_token(token, k, now),
                None => parse_client_token_unverified(token),
            }
            .map_err(parse_failed)?;
            (render_client(&viewing, &claims)?, claims.standard)
        }
    };
    print!("{text}");
    match standard.expire_time() {
        Some(exp) if exp != 0 && clock::unix_seconds(now) > exp => {
            Err(Failure::failed(format!("token expired at {}", clock::format_unix(exp))).into())
        }
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn view_json(
    token: &str,
    key: Option<&PublicKey>,
    purpose: Purpose,
    now: SystemTime,
) -> anyhow::Result<ExitCode> {
    let parse_failed =
        |e: choria_tokens::TokenError| Failure::failed(format!("could not parse token: {e}"));
    // With a key, verify with the typed parser so chain-issued tokens are followed.
    if let Some(k) = key {
        match purpose {
            Purpose::Provisioning => parse_provisioning_token(token, k, now).map(drop),
            Purpose::Server => parse_server_token(token, k, now).map(drop),
            Purpose::ClientId => parse_client_token(token, k, now).map(drop),
            Purpose::Unknown => verify_token(token, k, now).map(drop),
        }
        .map_err(parse_failed)?;
    }
    let payload = parse_token_unverified(token).map_err(parse_failed)?;
    println!("{}", go_indent(&serde_json::Value::Object(payload), "")?);
    Ok(ExitCode::SUCCESS)
}

/// The text `jwt view` prints: a title line, then rows whose labels are right-aligned to the
/// width upstream uses for that token type; nested JSON lines up under the values.
struct View {
    out: String,
    width: usize,
    now: SystemTime,
}

/// Which token file `jwt view` shows, whether it was verified, and when.
struct Viewing<'a> {
    file: &'a str,
    validated: bool,
    now: SystemTime,
}

impl View {
    fn new(at: &Viewing<'_>, kind: &str, width: usize) -> View {
        let mut out = String::new();
        let validity = validity_word(at.validated);
        let _ = writeln!(out, "{validity} {kind} Token {}\n", at.file);
        View {
            out,
            width,
            now: at.now,
        }
    }

    fn row(&mut self, label: &str, value: &str) {
        let _ = writeln!(self.out, "{label:>width$}: {value}", width = self.width);
    }

    /// A row only when there is something to show.
    fn row_if_set(&mut self, label: &str, value: &str) {
        if !value.is_empty() {
            self.row(label, value);
        }
    }

    /// The column values start in, for lines that continue a value.
    fn indent(&self) -> String {
        " ".repeat(self.width + 2)
    }

    /// A row holding `value` as indented JSON.
    fn json_row<T: serde::Serialize>(&mut self, label: &str, value: &T) -> anyhow::Result<()> {
        let json = go_indent(value, &self.indent())?;
        self.row(label, &json);
        Ok(())
    }

    fn expiry(&mut self, standard: &StandardClaims) {
        if let Some(exp) = standard.expire_time() {
            self.row("Expires At", &expires_at(exp, self.now));
        }
    }

    fn trust_chain(&mut self, standard: &StandardClaims) {
        if let Some(chain) = trust_chain(standard) {
            self.row("Trust Chain", &chain);
        }
    }

    /// A block listing what the `granted` permissions allow, or `none`.
    fn permissions(&mut self, heading: &str, granted: &[&str], none: &str, indent: usize) {
        let _ = write!(self.out, "\n{heading}:\n\n");
        let pad = " ".repeat(indent);
        if granted.is_empty() {
            let _ = writeln!(self.out, "{pad}{none}");
        }
        for text in granted {
            let _ = writeln!(self.out, "{pad}{text}");
        }
        self.out.push('\n');
    }
}

fn render_provisioning(at: &Viewing<'_>, c: &ProvisioningClaims) -> anyhow::Result<String> {
    let mut v = View::new(at, "Provisioning", 30);
    v.expiry(&c.standard);
    v.row("Token", if c.cht.is_empty() { "" } else { "*****" });
    v.row("Secure", &c.chs.to_string());
    v.row_if_set("SRV Domain", &c.chsrv);
    v.row_if_set("URLS", &c.chu);
    v.row("Provisioning by default", &c.chpd.to_string());
    v.row_if_set("Provisioning Registration Data", &c.chrd);
    v.row_if_set("Provisioning Facts", &c.chf);
    v.row_if_set("Broker Username", &c.chusr);
    if !c.chpwd.is_empty() {
        v.row("Broker Password", "*****");
    }
    if c.v2 {
        v.row("Using version 2 Protocol", "true");
    }
    v.row("Server Version Upgrades", &c.update.to_string());
    if let Some(ext) = c.extensions.as_ref().filter(|e| !e.is_empty()) {
        v.json_row("Extensions", ext)?;
    }
    v.json_row("Standard Claims", &c.standard)?;
    Ok(v.out)
}

fn render_server(at: &Viewing<'_>, c: &ServerClaims) -> String {
    let mut v = View::new(at, "Server", 21);
    v.row("Identity", &c.identity);
    v.expiry(&c.standard);
    v.row("Collectives", &c.collectives.join(", "));
    v.row("Public Key", &c.standard.public_key);
    v.row("Organization Unit", &c.ou);
    v.row_if_set("Additional Subjects", &c.pub_subjects.join(", "));
    v.row("Private Network ID", &md5_hex(&c.identity));
    v.trust_chain(&c.standard);
    if let Some(p) = &c.permissions {
        let granted: Vec<&str> = [
            (p.service_host, "Can host services"),
            (p.submission, "Can publish Choria Submission messages"),
            (p.streams, "Can access Choria Streams"),
            (p.governor, "Can access Choria Governor"),
        ]
        .into_iter()
        .filter_map(|(on, text)| on.then_some(text))
        .collect();
        v.permissions(
            "   Broker Permissions",
            &granted,
            "No server specific permissions granted",
            10,
        );
    }
    v.out
}

fn render_client(at: &Viewing<'_>, c: &ClientIdClaims) -> anyhow::Result<String> {
    let mut v = View::new(at, "Client Identification", 19);
    v.row("Caller ID", &c.callerid);
    v.row_if_set("Organization Unit", &c.ou);
    v.row_if_set("Allowed Agents", &c.agents.join(", "));
    v.row("Public Key", &c.standard.public_key);
    v.row("Private Network ID", &md5_hex(&c.callerid));
    v.expiry(&c.standard);
    if !c.sub_subjects.is_empty() {
        // Upstream does not align this label; kept for byte compatibility.
        let _ = writeln!(
            v.out,
            " Subscriptions Subjects: {}",
            c.sub_subjects.join(", ")
        );
    }
    v.row_if_set("Publish Subjects", &c.pub_subjects.join(", "));
    v.trust_chain(&c.standard);
    if let Some(p) = &c.permissions {
        let fleet = if p.signed_fleet_management {
            Some("Can manage Choria fleet nodes subject to authorizing signature")
        } else if p.fleet_management {
            Some("Can manage Choria fleet nodes")
        } else {
            None
        };
        let granted: Vec<&str> = fleet
            .into_iter()
            .chain(
                [
                    (p.election_user, "Can use Leader Elections"),
                    (
                        p.events_viewer,
                        "Can view Lifecycle and Autonomous Agent events",
                    ),
                    (p.streams_user, "Can use Choria Streams"),
                    (p.streams_admin, "Can administer Choria Streams"),
                    (p.governor, "Can access Choria Governors"),
                    (
                        p.org_admin,
                        "Can observe all traffic on all subjects and access the system account",
                    ),
                    (p.system_user, "Can access the Broker system account"),
                    (
                        p.authentication_delegator,
                        "Can sign requests on behalf of other users",
                    ),
                    (p.service, "Can have an extended token lifetime"),
                    (p.provisioner, "Can provision Choria Servers"),
                ]
                .into_iter()
                .filter_map(|(on, text)| on.then_some(text)),
            )
            .collect();
        v.permissions(
            " Client Permissions",
            &granted,
            "No user specific permissions granted",
            6,
        );
    }
    if !c.user_properties.is_empty() {
        v.json_row("User Properties", &c.user_properties)?;
    }
    if !c.opa_policy.is_empty() {
        let mut lines = c.opa_policy.lines();
        v.row("OPA Policy", lines.next().unwrap_or_default());
        let indent = v.indent();
        for rest in lines {
            let _ = writeln!(v.out, "{indent}{rest}");
        }
    }
    Ok(v.out)
}

fn trust_chain(s: &StandardClaims) -> Option<String> {
    if s.iss.is_empty() || s.tcs.is_empty() {
        return None;
    }
    if let Some(org) = s.iss.strip_prefix("I-") {
        return Some(if is_chained_issuer(s, true) {
            format!("Can Issue Clients as part of a trust chain with Issuer {org}")
        } else {
            "Invalid signing data, issued users will be invalid".to_string()
        });
    }
    let issuer = s.iss.strip_prefix("C-")?;
    let id = issuer.split('.').next().unwrap_or_default();
    Some(format!("Issued by {id}"))
}

fn validity_word(validated: bool) -> &'static str {
    if validated {
        "Validated"
    } else {
        "Unvalidated"
    }
}

fn expires_at(exp: i64, now: SystemTime) -> String {
    let now = clock::unix_seconds(now);
    let when = clock::format_unix(exp);
    if now > exp {
        format!("{when} (expired {} ago)", render_duration(now - exp))
    } else {
        format!("{when} ({})", render_duration(exp - now))
    }
}

/// Upstream `RenderDuration` over whole seconds: `6y8d11h42m57s`, `3h0m5s`, `42.00s`.
fn render_duration(secs: i64) -> String {
    if secs == 0 {
        return "forever".to_string();
    }
    let (m, h) = (secs / 60, secs / 3600);
    let (d, y) = (h / 24, h / 24 / 365);
    if y > 0 {
        format!("{y}y{}d{}h{}m{}s", d % 365, h % 24, m % 60, secs % 60)
    } else if d > 0 {
        format!("{d}d{}h{}m{}s", h % 24, m % 60, secs % 60)
    } else if h > 0 {
        format!("{h}h{}m{}s", m % 60, secs % 60)
    } else if m > 0 {
        format!("{m}m{}s", secs % 60)
    } else {
        format!("{:.2}s", secs as f64)
    }
}

/// Go `json.MarshalIndent(v, prefix, "  ")` for the first line placed after a label:
/// members are prefixed with `prefix`, `<>&` escaped. Structs keep declaration order; maps
/// are `BTreeMap`s or serde_json maps, both sorted like Go's.
fn go_indent<T: serde::Serialize>(value: &T, prefix: &str) -> anyhow::Result<String> {
    let pretty = serde_json::to_string_pretty(value)?;
    let mut out = String::with_capacity(pretty.len() * 2);
    for (i, line) in pretty.lines().enumerate() {
        if i > 0 {
            out.push('\n');
            out.push_str(prefix);
        }
        out.push_str(line);
    }
    Ok(out
        .replace('<', "\\u003c")
        .replace('>', "\\u003e")
        .replace('&', "\\u0026"))
}

fn ed25519_public_key_arg(arg: &str) -> anyhow::Result<[u8; 32]> {
    let path = Path::new(arg);
    let text = if path.is_file() {
        std::fs::read_to_string(path)
            .with_context(|| format!("could not read public key file {arg}"))?
    } else {
        arg.to_string()
    };
    let bytes = hex::decode(text.trim()).map_err(|e| {
        Failure::usage(format!(
            "public key {arg} is not hex (nor a readable file): {e}"
        ))
    })?;
    bytes.try_into().map_err(|b: Vec<u8>| {
        Failure::usage(format!(
            "public key {arg} is {} bytes, an ed25519 key is 32",
            b.len()
        ))
        .into()
    })
}

fn signing_key(path: &Path) -> anyhow::Result<SigningKey> {
    SigningKey::from_file(path)
        .map_err(|e| Failure::usage(format!("could not read signing key: {e}")).into())
}

fn refuse_existing(path: &Path, force: bool) -> anyhow::Result<()> {
    if !force && std::fs::symlink_metadata(path).is_ok() {
        return Err(Failure::failed(format!(
            "{} already exists, refusing to overwrite it (use --force to replace it)",
            path.display()
        ))
        .into());
    }
    Ok(())
}

fn save_token<C: TokenClaims>(
    file: &Path,
    claims: &mut C,
    key: &SigningKey,
    issue: &IssueArgs,
) -> anyhow::Result<ExitCode> {
    let token = match issue.chain_issuer.as_deref() {
        None => sign_token(claims, key).context("could not create token")?,
        Some(path) => sign_through(claims, key, path)?,
    };
    write_file(file, token.as_bytes(), issue.force)?;
    println!(
        "Saved token to {0}, use 'choria jwt view {0}' to view it",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// Signs `claims` through the chain issuer whose token is at `path`, with its seed `key`;
/// the token may grant only what the issuer holds.
fn sign_through<C: TokenClaims>(
    claims: &mut C,
    key: &SigningKey,
    path: &Path,
) -> anyhow::Result<String> {
    let SigningKey::Ed25519(seed) = key else {
        return Err(Failure::usage(
            "--chain-issuer needs the issuer's ed25519 seed as SIGNING-KEY",
        )
        .into());
    };
    let bytes = read_capped(path, MAX_TOKEN_SIZE as u64)
        .map_err(|e| Failure::usage(format!("could not read the chain issuer token: {e}")))?;
    let text = String::from_utf8_lossy(&bytes);
    let issuer = parse_client_token_unverified(text.trim())
        .map_err(|e| Failure::usage(format!("invalid chain issuer token: {e}")))?;
    if issuer.standard.public_key != seed.public_key_hex() {
        return Err(Failure::usage(
            "SIGNING-KEY is not the chain issuer's key (its public_key differs)",
        )
        .into());
    }
    sign_chained_token(claims, &issuer, seed)
        .map_err(|e| Failure::failed(format!("could not create token: {e}")).into())
}

fn write_file(path: &Path, bytes: &[u8], force: bool) -> anyhow::Result<()> {
    let result = if force {
        write_secret(path, bytes)
    } else {
        write_new_secret(path, bytes)
    };
    result.map_err(|e| match e {
        FileError::AlreadyExists { .. } => Failure::failed(format!(
            "{} already exists, refusing to overwrite it (use --force to replace it)",
            path.display()
        ))
        .into(),
        other => anyhow::Error::new(other),
    })
}

fn parse_validity(text: &str) -> Result<Duration, String> {
    let d = parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("validity must be more than zero".into());
    }
    Ok(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_render_like_upstream() {
        assert_eq!(render_duration(0), "forever");
        assert_eq!(render_duration(42), "42.00s");
        assert_eq!(render_duration(61), "1m1s");
        assert_eq!(render_duration(3605), "1h0m5s");
        assert_eq!(render_duration(90_061), "1d1h1m1s");
        // 2026-06-15T00:00:00Z to 2032-06-21T11:42:57Z, the spec's example.
        assert_eq!(
            render_duration(1_971_430_977 - 1_781_481_600),
            "6y8d11h42m57s"
        );
    }
}
