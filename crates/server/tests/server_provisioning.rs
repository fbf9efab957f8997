//! End to end against a real broker (TestSite): a node started from a provisioning token
//! joins `provisioning`, answers discovery and every `choria_provision` step from a client
//! holding the provisioner's credentials, is configured, restarts in place into normal
//! mode in `choria`, and there answers only correctly signed requests.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use serde_json::{json, Map, Value};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use choria_protocol::message::{self, RequestMeta, RequestSigner, Routing};
use choria_protocol::{subjects, Filter, RpcReply, RpcRequest, Version};
use choria_server::node::{Node, NodeError, NodeExit, NodeOptions, Phase, RestartPolicy};
use choria_testkit::site::{TestSite, PROVISIONER_CALLER, PROVISIONING_ACCESS_TOKEN};

const WAIT: Duration = Duration::from_secs(30);
const IDENTITY: &str = "n1.example.net";

struct Caller<'a> {
    client: async_nats::Client,
    sender: &'static str,
    caller: String,
    collective: &'static str,
    version: Version,
    signer: RequestSigner<'a>,
}

impl Caller<'static> {
    /// The provisioner's v1 insecure caller in `provisioning`.
    fn provisioner(client: async_nats::Client) -> Self {
        Caller {
            client,
            sender: "provisioner.example.net",
            caller: PROVISIONER_CALLER.into(),
            collective: "provisioning",
            version: Version::V1,
            signer: RequestSigner::Insecure,
        }
    }
}

impl Caller<'_> {
    /// A request for `agent` with `payload` and `filter`: its id, reply subject and bytes.
    fn request(&self, agent: &str, payload: &[u8], filter: Filter) -> (String, String, Vec<u8>) {
        let mut meta = RequestMeta::new(
            self.sender,
            &self.caller,
            self.collective,
            agent,
            Duration::from_secs(60),
            SystemTime::now(),
        );
        meta.filter = filter;
        let reply_to = subjects::reply(self.collective, &self.caller, &meta.id, false).unwrap();
        let routing = Routing {
            reply_to: reply_to.clone(),
            sender: self.sender.into(),
            hops: vec![],
        };
        let bytes =
            message::encode_request(self.version, &meta, payload, &self.signer, &routing).unwrap();
        (meta.id, reply_to, bytes)
    }

    /// Sends one request and returns its raw reply payload.
    async fn send(
        &self,
        subject: &str,
        agent: &str,
        payload: Vec<u8>,
        filter: Filter,
    ) -> message::DecodedReply {
        let (id, reply_to, bytes) = self.request(agent, &payload, filter);
        let mut replies = self.client.subscribe(reply_to).await.unwrap();
        self.client.flush().await.unwrap();
        self.client
            .publish(subject.to_string(), bytes.into())
            .await
            .unwrap();
        self.client.flush().await.unwrap();
        let reply = tokio::time::timeout(WAIT, replies.next())
            .await
            .expect("a reply in time")
            .unwrap();
        let decoded = message::decode_reply(&reply.payload).unwrap();
        assert_eq!(decoded.meta.request_id, id);
        decoded
    }

    /// Publishes an `rpcutil#ping` with `filter` to `subject` without waiting for a
    /// reply; returns its request id.
    async fn publish_ping(&self, subject: &str, filter: Filter) -> String {
        let payload = RpcRequest::new("rpcutil", "ping", Map::new())
            .encode()
            .unwrap();
        let (id, _, bytes) = self.request("rpcutil", &payload, filter);
        self.client
            .publish(subject.to_string(), bytes.into())
            .await
            .unwrap();
        id
    }

    async fn rpc(&self, agent: &str, action: &str, data: Value) -> RpcReply {
        let Value::Object(data) = data else {
            panic!("data must be an object")
        };
        let payload = RpcRequest::new(agent, action, data).encode().unwrap();
        let subject = format!("{}.node.{IDENTITY}", self.collective);
        RpcReply::decode(
            &self
                .send(&subject, agent, payload, Filter::default())
                .await
                .payload,
        )
        .unwrap()
    }
}

async fn wait_for(phase: &mut watch::Receiver<Phase>, want: Phase) {
    tokio::time::timeout(
        WAIT,
        phase.wait_for(|p| *p == want || matches!(p, Phase::Failed(_))),
    )
    .await
    .expect("phase in time")
    .unwrap();
    assert_eq!(*phase.borrow(), want);
}

fn ok_data(reply: &RpcReply) -> Map<String, Value> {
    assert!(
        reply.is_ok(),
        "{} failed: {}",
        reply.action,
        reply.statusmsg
    );
    reply.data_object()
}

#[tokio::test]
async fn node_is_provisioned_and_rejoins_the_fleet() {
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("server.conf");
    let node = Arc::new(Node::new(NodeOptions {
        config_file: config_file.clone(),
        provisioning_jwt: Some(site.provisioning_token_path.clone()),
        identity: Some(IDENTITY.into()),
        restart: RestartPolicy::InPlace,
    }));
    let (mut phase, cancel, runner) = spawn_node(&node);
    wait_for(&mut phase, Phase::Provisioning).await;

    let provisioner = Caller::provisioner(site.connect_provisioner().await.unwrap());

    // Discovery broadcast with an agent filter answers `pong`.
    let pong = provisioner
        .send(
            "provisioning.broadcast.agent.discovery",
            "discovery",
            b"ping".to_vec(),
            Filter::for_agent("choria_provision"),
        )
        .await;
    assert_eq!(pong.payload, b"pong");
    assert!(
        pong.signature.is_none(),
        "provisioning-mode replies are not signed"
    );

    let token = PROVISIONING_ACCESS_TOKEN;
    let jwt = ok_data(
        &provisioner
            .rpc("choria_provision", "jwt", json!({"token": token}))
            .await,
    );
    assert_eq!(
        jwt["jwt"].as_str().unwrap(),
        std::fs::read_to_string(&site.provisioning_token_path).unwrap()
    );

    let nonce = "0123456789abcdef0123456789abcdef";
    let keys = ok_data(
        &provisioner
            .rpc(
                "choria_provision",
                "gen25519",
                json!({"token": token, "nonce": nonce}),
            )
            .await,
    );
    let public = hex::decode(keys["public_key"].as_str().unwrap()).unwrap();
    let signature = hex::decode(keys["signature"].as_str().unwrap()).unwrap();
    choria_tokens::verify_nonce(
        keys["public_key"].as_str().unwrap(),
        nonce.as_bytes(),
        &base64_url(&signature),
        choria_tokens::SignatureEncoding::Base64,
    )
    .unwrap();

    let inventory = ok_data(&provisioner.rpc("rpcutil", "inventory", json!({})).await);
    assert_eq!(inventory["main_collective"], "provisioning");

    let csr = ok_data(
        &provisioner
            .rpc(
                "choria_provision",
                "gencsr",
                json!({"token": token, "cn": IDENTITY}),
            )
            .await,
    );
    assert!(csr["csr"].as_str().unwrap().contains("CERTIFICATE REQUEST"));

    // A wrong token and a wrongly typed input are clean refusals.
    let refused = provisioner
        .rpc("choria_provision", "jwt", json!({"token": "wrong"}))
        .await;
    assert_eq!(refused.statusmsg, "Incorrect provision token supplied");
    let refused = provisioner
        .rpc(
            "choria_provision",
            "restart",
            json!({"token": token, "splay": "x"}),
        )
        .await;
    assert_eq!(refused.statuscode.code(), 4);

    let server_jwt = site
        .mint_server_token(IDENTITY, public.clone().try_into().unwrap(), None)
        .unwrap();
    let config = json!({
        "identity": IDENTITY,
        "plugin.choria.server.provision": "false",
        "plugin.security.provider": "choria",
        "plugin.security.choria.token_file": dir.path().join("server.jwt").display().to_string(),
        "plugin.security.choria.seed_file": dir.path().join("server.seed").display().to_string(),
        "plugin.security.choria.ca": site.ca_path.display().to_string(),
        "plugin.security.issuer.names": "choria",
        "plugin.security.issuer.choria.public": site.org_issuer.public_key_hex(),
        "plugin.choria.middleware_hosts": site.broker_url,
    });
    let configured = ok_data(
        &provisioner
            .rpc(
                "choria_provision",
                "configure",
                json!({"token": token, "config": config.to_string(), "server_jwt": server_jwt,
                       "ca": "", "certificate": "", "ssldir": "", "key": "", "ecdh_public": "",
                       "action_policies": {}, "opa_policies": {}}),
            )
            .await,
    );
    assert!(configured["message"]
        .as_str()
        .unwrap()
        .starts_with("Wrote 10 lines to "));
    wait_for(&mut phase, Phase::Configured).await;

    let restart = ok_data(
        &provisioner
            .rpc(
                "choria_provision",
                "restart",
                json!({"token": token, "splay": 1}),
            )
            .await,
    );
    assert_eq!(restart["message"], "Restarting Choria Server after 2s");
    wait_for(&mut phase, Phase::InFleet).await;

    // Normal mode: a fleet manager's signed v2 request is answered.
    let (admin_seed, _) = site.new_seed("admin").unwrap();
    let admin_jwt = site
        .mint_client_token(
            "choria=admin",
            admin_seed.public_key_bytes(),
            Some(choria_tokens::ClientPermissions {
                fleet_management: true,
                ..Default::default()
            }),
        )
        .unwrap();
    let admin_key = signing_key(&admin_seed.to_hex());
    let admin = Caller {
        client: site
            .connect_jwt(&admin_jwt, &admin_seed, "admin")
            .await
            .unwrap(),
        sender: "admin.example.net",
        caller: "choria=admin".into(),
        collective: "choria",
        version: Version::V2,
        signer: RequestSigner::Ed25519 {
            key: &admin_key,
            caller_jwt: &admin_jwt,
            signer_jwt: None,
        },
    };
    let pong = ok_data(&admin.rpc("rpcutil", "ping", json!({})).await);
    assert!(pong["pong"].as_i64().unwrap() > 0);
    // v2 replies in normal mode are signed with the key gen25519 made.
    let payload = RpcRequest::new("rpcutil", "ping", Map::new())
        .encode()
        .unwrap();
    let signed = admin
        .send(
            &format!("choria.node.{IDENTITY}"),
            "rpcutil",
            payload,
            Filter::default(),
        )
        .await;
    signed
        .verify_ed25519(&public)
        .expect("reply signed by the node's key");

    // Unsigned and wrongly signed requests get no answer: send each, then a good one on the
    // same reply prefix; the first reply must belong to the good one.
    let wrong_key = signing_key(&choria_tokens::Ed25519Seed::generate().to_hex());
    let forged = Caller {
        signer: RequestSigner::Ed25519 {
            key: &wrong_key,
            caller_jwt: &admin_jwt,
            signer_jwt: None,
        },
        client: admin.client.clone(),
        sender: admin.sender,
        caller: admin.caller.clone(),
        collective: "choria",
        version: Version::V2,
    };
    let unsigned = Caller {
        signer: RequestSigner::Insecure,
        client: admin.client.clone(),
        sender: admin.sender,
        caller: admin.caller.clone(),
        collective: "choria",
        version: Version::V1,
    };
    for bad in [&forged, &unsigned] {
        assert_only_good_answered(bad, &admin).await;
    }

    cancel.cancel();
    runner.await.unwrap().unwrap();
    assert!(Path::new(&config_file).exists());
}

/// Sends `bad`'s request, then `good`'s, both replying under one prefix; asserts the first
/// reply is the good one (the node handles requests in order, so a reply to `bad` would
/// arrive first).
async fn assert_only_good_answered(bad: &Caller<'_>, good: &Caller<'_>) {
    let prefix = subjects::reply_prefix("choria", &good.caller, false).unwrap();
    let mut replies = good.client.subscribe(format!("{prefix}.>")).await.unwrap();
    good.client.flush().await.unwrap();
    let subject = format!("choria.node.{IDENTITY}");
    let mut ids = Vec::new();
    for caller in [bad, good] {
        ids.push(caller.publish_ping(&subject, Filter::default()).await);
    }
    good.client.flush().await.unwrap();
    let first = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("a reply in time")
        .unwrap();
    let decoded = message::decode_reply(&first.payload).unwrap();
    assert_eq!(
        decoded.meta.request_id, ids[1],
        "only the correctly signed request is answered"
    );
}

/// Runs `node` in a task; cancel the token to stop it.
fn spawn_node(
    node: &Arc<Node>,
) -> (
    watch::Receiver<Phase>,
    CancellationToken,
    tokio::task::JoinHandle<Result<NodeExit, NodeError>>,
) {
    let phase = node.phase();
    let cancel = CancellationToken::new();
    let runner = {
        let (node, cancel) = (node.clone(), cancel.clone());
        tokio::spawn(async move { node.run(cancel).await })
    };
    (phase, cancel, runner)
}

fn provisioning_node(site: &TestSite, dir: &Path) -> Arc<Node> {
    Arc::new(Node::new(NodeOptions {
        config_file: dir.join("server.conf"),
        provisioning_jwt: Some(site.provisioning_token_path.clone()),
        identity: Some(IDENTITY.into()),
        restart: RestartPolicy::InPlace,
    }))
}

#[tokio::test]
async fn bad_input_gets_clean_errors_and_the_node_survives() {
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = provisioning_node(&site, dir.path());
    let (mut phase, cancel, runner) = spawn_node(&node);
    wait_for(&mut phase, Phase::Provisioning).await;
    let provisioner = Caller::provisioner(site.connect_provisioner().await.unwrap());
    let subject = format!("provisioning.node.{IDENTITY}");

    // Malformed envelopes are dropped without harm.
    for garbage in [
        &b""[..],
        b"{",
        b"null",
        b"{\"protocol\":\"choria:transport:1\",\"data\":\"!!!\"}",
        &[0xff; 4096][..],
    ] {
        provisioner
            .client
            .publish(subject.clone(), garbage.to_vec().into())
            .await
            .unwrap();
    }
    // A well-formed envelope whose SimpleRPC payload is not JSON gets status 4.
    let reply = provisioner
        .send(&subject, "rpcutil", b"not json".to_vec(), Filter::default())
        .await;
    let reply = RpcReply::decode(&reply.payload).unwrap();
    assert_eq!(reply.statuscode.code(), 4);
    assert!(reply.statusmsg.starts_with("Could not process request: could not parse incoming message as a MCollective SimpleRPC Request"), "{}", reply.statusmsg);

    let token = PROVISIONING_ACCESS_TOKEN;
    ok_data(
        &provisioner
            .rpc("choria_provision", "jwt", json!({"token": token}))
            .await,
    );
    // A second provisioner is locked out while the first holds the lock.
    let second = Caller {
        sender: "other.example.net",
        client: provisioner.client.clone(),
        caller: PROVISIONER_CALLER.into(),
        collective: "provisioning",
        version: Version::V1,
        signer: RequestSigner::Insecure,
    };
    let locked = second
        .rpc(
            "choria_provision",
            "gen25519",
            json!({"token": token, "nonce": "n"}),
        )
        .await;
    assert_eq!(locked.statusmsg, "Could not obtain provisioning lock");

    // Path traversal in a policy name is refused and nothing is written.
    let refused = provisioner
        .rpc("choria_provision", "configure", json!({"token": token, "config": "{\"identity\":\"x\"}", "action_policies": {"../../evil.policy": "policy default allow"}}))
        .await;
    assert_eq!(refused.statuscode.code(), 1);
    assert!(
        refused
            .statusmsg
            .starts_with("Could not save Action Policies: invalid file name"),
        "{}",
        refused.statusmsg
    );
    assert!(!dir.path().join("server.conf").exists());
    assert!(!dir.path().parent().unwrap().join("evil.policy").exists());

    // Still serving.
    assert!(ok_data(&provisioner.rpc("rpcutil", "ping", json!({})).await).contains_key("pong"));
    cancel.cancel();
    runner.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_node_killed_during_configure_comes_back_provisioning() {
    // What a kill between configure's first write and its final rename leaves behind: the
    // server JWT and seed, policies, a temp file, but no configuration.
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("server.seed"),
        choria_tokens::Ed25519Seed::generate().to_hex(),
    )
    .unwrap();
    std::fs::write(dir.path().join("server.jwt"), "a.b.c").unwrap();
    std::fs::write(dir.path().join(".server.conf.tmp"), "identity=half").unwrap();
    let node = provisioning_node(&site, dir.path());
    let (mut phase, cancel, runner) = spawn_node(&node);
    wait_for(&mut phase, Phase::Provisioning).await;
    cancel.cancel();
    runner.await.unwrap().unwrap();
}

fn signing_key(hex_seed: &str) -> ed25519_dalek::SigningKey {
    ed25519_dalek::SigningKey::from_bytes(&hex::decode(hex_seed).unwrap().try_into().unwrap())
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

#[tokio::test]
async fn registration_data_is_published_while_provisioning() {
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("registration.json");
    std::fs::write(&data, r#"{"rack":"r1"}"#).unwrap();
    let claims = choria_tokens::ProvisioningClaims::new(
        choria_tokens::NewProvisioning {
            secure: false,
            by_default: true,
            token: PROVISIONING_ACCESS_TOKEN.into(),
            urls: vec![site.broker_url.clone()],
            registration_data: data.display().to_string(),
            org: "choria".into(),
            validity: Duration::from_secs(3600),
            ..Default::default()
        },
        SystemTime::now(),
    )
    .unwrap();
    let token = choria_tokens::sign_token(
        &claims,
        &choria_tokens::SigningKey::Ed25519(site.provisioning_signer.clone()),
    )
    .unwrap();
    let jwt_path = dir.path().join("provisioning.jwt");
    std::fs::write(&jwt_path, token).unwrap();

    let provisioner = site.connect_provisioner().await.unwrap();
    let mut registrations = provisioner
        .subscribe("provisioning.registration.data")
        .await
        .unwrap();
    provisioner.flush().await.unwrap();

    let node = Arc::new(Node::new(NodeOptions {
        config_file: dir.path().join("server.conf"),
        provisioning_jwt: Some(jwt_path),
        identity: Some(IDENTITY.into()),
        restart: RestartPolicy::InPlace,
    }));
    let cancel = CancellationToken::new();
    let runner = {
        let (node, cancel) = (node.clone(), cancel.clone());
        tokio::spawn(async move { node.run(cancel).await })
    };
    let message = tokio::time::timeout(WAIT, registrations.next())
        .await
        .expect("registration in time")
        .unwrap();
    let request = message::decode_request(&message.payload).unwrap();
    assert_eq!(request.meta.agent, "registration");
    assert_eq!(request.meta.collective, "provisioning");
    assert_eq!(request.routing.reply_to, "dev.null");
    let content = choria_protocol::registration::FileContent::decode(&request.payload).unwrap();
    assert_eq!(content.file_bytes().unwrap(), br#"{"rack":"r1"}"#);
    assert!(!content.updated, "the first publish is never an update");
    cancel.cancel();
    runner.await.unwrap().unwrap();
}

#[tokio::test]
async fn an_identity_that_would_break_subjects_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let jwt = dir.path().join("provisioning.jwt");
    std::fs::copy(
        choria_testkit::vectors_dir().join("tokens/rsa/good-provisioning.jwt"),
        &jwt,
    )
    .unwrap();
    for identity in ["bad identity", "n1.>", "*"] {
        let node = Node::new(NodeOptions {
            config_file: dir.path().join("server.conf"),
            provisioning_jwt: Some(jwt.clone()),
            identity: Some(identity.into()),
            restart: RestartPolicy::InPlace,
        });
        let phase = node.phase();
        let err = node.run(CancellationToken::new()).await.unwrap_err();
        assert!(
            matches!(err, choria_server::node::NodeError::Identity(_)),
            "{identity}: {err}"
        );
        assert!(matches!(*phase.borrow(), Phase::Failed(_)));
    }
}

/// Issue 13 item 4: a request whose filter is only a compound expression used to match
/// every node. We do not evaluate compound expressions, so such a request reaches none;
/// identity regular expressions are evaluated as upstream does.
#[tokio::test]
async fn a_compound_only_filter_reaches_no_node() {
    let site = TestSite::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let node = provisioning_node(&site, dir.path());
    let (mut phase, cancel, runner) = spawn_node(&node);
    wait_for(&mut phase, Phase::Provisioning).await;
    let provisioner = Caller::provisioner(site.connect_provisioner().await.unwrap());
    let client = &provisioner.client;
    let prefix = subjects::reply_prefix("provisioning", PROVISIONER_CALLER, false).unwrap();
    let mut replies = client.subscribe(format!("{prefix}.>")).await.unwrap();
    client.flush().await.unwrap();

    let mut expression = Map::new();
    expression.insert("expr".into(), json!("with('rpcutil')"));
    let compound = Filter {
        compound: vec![vec![expression]],
        ..Filter::default()
    };
    let other_node = Filter {
        identity: vec!["/^n2\\./".into()],
        ..Filter::default()
    };
    let this_node = Filter {
        identity: vec!["/^n1\\.example/".into()],
        ..Filter::default()
    };
    let mut ids = Vec::new();
    for (subject, filter) in [
        (
            subjects::broadcast_agent("provisioning", "rpcutil").unwrap(),
            compound.clone(),
        ),
        (format!("provisioning.node.{IDENTITY}"), compound),
        (format!("provisioning.node.{IDENTITY}"), other_node),
        (format!("provisioning.node.{IDENTITY}"), this_node),
    ] {
        ids.push(provisioner.publish_ping(&subject, filter).await);
    }
    client.flush().await.unwrap();
    let first = tokio::time::timeout(WAIT, replies.next())
        .await
        .expect("a reply in time")
        .unwrap();
    let decoded = message::decode_reply(&first.payload).unwrap();
    assert_eq!(
        decoded.meta.request_id, ids[3],
        "only the request whose identity regex selects the node is answered"
    );
    // The broadcast came in on another subscription, which the node may read later.
    let late = tokio::time::timeout(Duration::from_secs(1), replies.next()).await;
    assert!(late.is_err(), "no reply to a compound-only request");

    cancel.cancel();
    runner.await.unwrap().unwrap();
}
