//! The broker permission sets of spec §3 as pure functions over typed claims.
//! The authorization service turns the result into the `pub`/`sub` lists of a NATS user JWT.

use choria_protocol::subjects::{md5_hex, sha256_hex};
use choria_tokens::{ClientPermissions, ServerPermissions};
use serde::Serialize;

/// Allow and deny lists for one direction (publish or subscribe).
///
/// An absent allow list (`None`) means "everything not denied"; NATS semantics otherwise.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SubjectRules {
    /// Subjects allowed; `None` = no allow list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<Vec<String>>,
    /// Subjects denied (deny always wins).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
}

impl SubjectRules {
    fn allow(list: Vec<String>) -> SubjectRules {
        SubjectRules {
            allow: Some(list),
            deny: Vec::new(),
        }
    }

    fn deny_all() -> SubjectRules {
        SubjectRules {
            allow: None,
            deny: vec![">".into()],
        }
    }
}

/// What one connection may publish and subscribe to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permissions {
    /// No restrictions inside the account (system user, provisioner, legacy mTLS).
    Unrestricted,
    /// Restricted by the given lists.
    Limited {
        /// Publish rules.
        publish: SubjectRules,
        /// Subscribe rules.
        subscribe: SubjectRules,
    },
}

/// The account a connection is placed in (spec §1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Account {
    /// The fleet.
    Choria,
    /// Unprovisioned servers and the provisioner.
    Provisioning,
    /// The nats-server system account.
    System,
}

impl Account {
    /// The account name as configured in nats-server and shown in reports.
    pub fn name(self) -> &'static str {
        match self {
            Account::Choria => "choria",
            Account::Provisioning => "provisioning",
            Account::System => "system",
        }
    }
}

/// The parts of a verified server token the broker needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerGrant {
    /// Claim `identity`.
    pub identity: String,
    /// Claim `collectives`.
    pub collectives: Vec<String>,
    /// Claim `ou` (already defaulted to `choria`).
    pub ou: String,
    /// Claim `pub_subjects`.
    pub pub_subjects: Vec<String>,
    /// Claim `permissions`, if present (spec §3.3: `submission`, `streams`, `governor` and
    /// `service_host` change the ACLs).
    pub permissions: Option<ServerPermissions>,
}

/// The parts of a verified client token the broker needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientGrant {
    /// Claim `callerid`.
    pub caller: String,
    /// Claim `ou` (already defaulted to `choria`).
    pub ou: String,
    /// Claim `pub_subjects`.
    pub pub_subjects: Vec<String>,
    /// Claim `sub_subjects`.
    pub sub_subjects: Vec<String>,
    /// Claim `permissions`, if present (spec §3.2; `system_user` and `provisioner` have no
    /// ACL effect, they admit the system and provisioner users).
    pub permissions: Option<ClientPermissions>,
}

/// The four provisioning broadcast subjects every provisioning-mode server listens on.
pub const PROVISIONING_BROADCASTS: [&str; 4] = [
    "provisioning.broadcast.agent.discovery",
    "provisioning.broadcast.agent.rpcutil",
    "provisioning.broadcast.agent.choria_util",
    "provisioning.broadcast.agent.choria_provision",
];

/// P_DENY_ALL: every publish and subscribe is a violation.
pub fn deny_all() -> Permissions {
    Permissions::Limited {
        publish: SubjectRules::deny_all(),
        subscribe: SubjectRules::deny_all(),
    }
}

/// P_SERVER_DEFAULT (spec §3.1): a non-JWT connection when an allow list is set.
pub fn server_default() -> Permissions {
    Permissions::Limited {
        publish: SubjectRules {
            allow: Some(vec![">".into()]),
            deny: strings(&[
                "*.broadcast.agent.>",
                "*.broadcast.service.>",
                "*.node.>",
                "choria.federation.*.federation",
            ]),
        },
        subscribe: SubjectRules {
            allow: None,
            deny: strings(&["*.reply.>", "choria.federation.>", "choria.lifecycle.>"]),
        },
    }
}

/// P_PUBSUB (spec §3.1): issuer mode, verified mTLS, no JWT.
pub fn pubsub() -> Permissions {
    let deny = strings(&[
        "*.broadcast.>",
        "*.node.>",
        "*.reply.>",
        "choria.federation.>",
        "choria.lifecycle.>",
        "choria.machine.>",
    ]);
    Permissions::Limited {
        publish: SubjectRules {
            allow: Some(vec![">".into()]),
            deny: deny.clone(),
        },
        subscribe: SubjectRules {
            allow: Some(vec![">".into()]),
            deny,
        },
    }
}

/// P_PROV_SERVER (spec §3.1), optionally narrowed to one identity.
///
/// Upstream lets every unprovisioned server subscribe to `provisioning.node.>`, so any node
/// could watch the RPCs (and the keys and configuration they carry) sent to every other node.
/// When the connection names its identity we grant only `provisioning.node.<identity>`
/// (spec §10 S2); `None` gives upstream's wide grant (used only when the operator asks).
pub fn provisioning_server(identity: Option<&str>) -> Permissions {
    let mut subscribe = Vec::with_capacity(5);
    match identity {
        None => subscribe.push("provisioning.node.>".to_string()),
        Some(id) => subscribe.push(format!("provisioning.node.{id}")),
    }
    subscribe.extend(PROVISIONING_BROADCASTS.iter().map(|s| s.to_string()));
    Permissions::Limited {
        publish: SubjectRules::allow(strings(&[
            "choria.lifecycle.>",
            "provisioning.reply.>",
            "provisioning.registration.>",
        ])),
        subscribe: SubjectRules::allow(subscribe),
    }
}

/// Whether `name` can be appended to a subject literally: dot-separated non-empty tokens of
/// printable ASCII without wildcards. Only such names narrow [`provisioning_server`].
pub fn is_literal_subject_suffix(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name.split('.').all(|token| !token.is_empty())
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'*' | b'>'))
}

/// P_SERVER_CLAIMS (spec §3.3), or P_DENY_ALL when the token names no collectives.
pub fn server_claims(grant: &ServerGrant, fips: bool) -> Permissions {
    if grant.collectives.is_empty() {
        return deny_all();
    }
    let flags = grant.permissions.unwrap_or_default();
    let mut publish = strings(&[
        "choria.lifecycle.>",
        "choria.machine.transition",
        "choria.machine.watcher.>",
    ]);
    publish.extend(grant.pub_subjects.iter().cloned());
    let mut subscribe = Vec::new();
    for c in &grant.collectives {
        publish.push(format!("{c}.reply.>"));
        publish.push(format!("{c}.broadcast.agent.registration"));
        publish.push(format!("choria.federation.{c}.collective"));
        if flags.submission {
            publish.push(format!("{c}.submission.in.>"));
        }
        if flags.governor && flags.streams {
            publish.push(format!("{c}.governor.*"));
        }
        subscribe.push(format!("{c}.broadcast.agent.>"));
        subscribe.push(format!("{c}.node.{}", grant.identity));
        for hash in reply_hashes(&grant.identity, fips) {
            subscribe.push(format!("{c}.reply.{hash}.>"));
        }
        if flags.service_host {
            subscribe.push(format!("{c}.broadcast.service.>"));
        }
    }
    if flags.streams {
        let prefix = if grant.ou == "choria" {
            "$JS.API"
        } else {
            "choria.streams"
        };
        subscribe.push(format!("{}.republish.>", grant.ou));
        for suffix in [
            "STREAM.INFO.*",
            "STREAM.MSG.GET.*",
            "STREAM.MSG.DELETE.*",
            "DIRECT.GET.*",
            "DIRECT.GET.*.>",
            "CONSUMER.CREATE.*",
            "CONSUMER.CREATE.*.>",
            "CONSUMER.DURABLE.CREATE.*.*",
            "CONSUMER.INFO.*.*",
            "CONSUMER.MSG.NEXT.*.*",
        ] {
            publish.push(format!("{prefix}.{suffix}"));
        }
        publish.push("$JS.ACK.>".into());
        publish.push("$JS.FC.>".into());
    }
    Permissions::Limited {
        publish: SubjectRules::allow(publish),
        subscribe: SubjectRules::allow(subscribe),
    }
}

/// P_CLIENT (spec §3.2) for a client token used in `account`.
pub fn client_claims(grant: &ClientGrant, account: Account, fips: bool) -> Permissions {
    let flags = grant.permissions.as_ref();
    if flags.is_some_and(|f| f.org_admin) {
        return Permissions::Limited {
            publish: SubjectRules::allow(vec![">".into()]),
            subscribe: SubjectRules::allow(vec![">".into()]),
        };
    }
    let choria = account == Account::Choria;
    let provisioning = account == Account::Provisioning;
    let mut subscribe: Vec<String> = if grant.caller.is_empty() {
        vec!["*.reply.>".into()]
    } else {
        reply_hashes(&grant.caller, fips)
            .into_iter()
            .map(|h| format!("*.reply.{h}.>"))
            .collect()
    };
    let mut publish = vec!["$SYS.REQ.USER.INFO".to_string()];
    subscribe.extend(grant.sub_subjects.iter().cloned());
    publish.extend(grant.pub_subjects.iter().cloned());
    let mut pub_deny = Vec::new();
    let mut sub_deny = Vec::new();
    if let Some(f) = flags {
        let mut matched = false;
        if f.streams_admin {
            matched = true;
            if choria {
                subscribe.push("$JS.EVENT.>".into());
                publish.push("$JS.>".into());
            }
        }
        if f.streams_user {
            matched = true;
            if choria {
                subscribe.push(format!("{}.republish.>", grant.ou));
                publish.extend(strings(&[
                    "$JS.API.INFO",
                    "$JS.API.STREAM.NAMES",
                    "$JS.API.STREAM.LIST",
                    "$JS.API.STREAM.INFO.*",
                    "$JS.API.STREAM.MSG.GET.*",
                    "$JS.API.STREAM.MSG.DELETE.*",
                    "$JS.API.DIRECT.GET.*",
                    "$JS.API.DIRECT.GET.*.>",
                    "$JS.API.CONSUMER.CREATE.*",
                    "$JS.API.CONSUMER.CREATE.*.>",
                    "$JS.API.CONSUMER.DURABLE.CREATE.*.*",
                    "$JS.API.CONSUMER.DELETE.*.*",
                    "$JS.API.CONSUMER.NAMES.*",
                    "$JS.API.CONSUMER.LIST.*",
                    "$JS.API.CONSUMER.INFO.*.*",
                    "$JS.API.CONSUMER.MSG.NEXT.*.*",
                    "$JS.ACK.>",
                    "$JS.FC.>",
                    "$KV.>",
                    "$O.>",
                ]));
            }
        }
        if f.events_viewer {
            matched = true;
            if choria {
                subscribe.extend(strings(&[
                    "choria.lifecycle.event.>",
                    "choria.machine.watcher.>",
                    "choria.machine.transition",
                ]));
            } else if provisioning {
                subscribe.push("choria.lifecycle.event.*.provision_mode_server".into());
            }
        }
        if f.election_user {
            matched = true;
            if choria {
                publish.extend(strings(&[
                    "$JS.API.STREAM.INFO.KV_CHORIA_LEADER_ELECTION",
                    "$KV.CHORIA_LEADER_ELECTION.>",
                ]));
            } else if provisioning {
                publish.extend(strings(&[
                    "choria.streams.STREAM.INFO.KV_CHORIA_LEADER_ELECTION",
                    "$KV.CHORIA_LEADER_ELECTION.provisioner",
                ]));
            }
        }
        if f.governor && (f.streams_user || f.streams_admin) {
            matched = true;
            if choria {
                publish.extend(strings(&[
                    "*.governor.*",
                    "choria.lifecycle.event.governor.>",
                ]));
            }
        }
        if f.fleet_management || f.signed_fleet_management {
            matched = true;
            publish.extend(strings(&[
                "*.broadcast.agent.>",
                "*.broadcast.service.>",
                "*.node.>",
                "choria.federation.*.federation",
            ]));
        }
        if !matched {
            if subscribe.is_empty() {
                sub_deny.push(">".to_string());
            }
            if publish.is_empty() {
                pub_deny.push(">".to_string());
            }
        }
    }
    if choria {
        if publish.is_empty() && pub_deny.is_empty() {
            pub_deny.push(">".into());
        }
        if subscribe.is_empty() && sub_deny.is_empty() {
            sub_deny.push(">".into());
        }
    }
    Permissions::Limited {
        publish: SubjectRules {
            allow: Some(publish),
            deny: pub_deny,
        },
        subscribe: SubjectRules {
            allow: Some(subscribe),
            deny: sub_deny,
        },
    }
}

/// The reply-subject hashes of an id: md5 then sha256 hex, or only sha256 in FIPS mode.
pub fn reply_hashes(id: &str, fips: bool) -> Vec<String> {
    if fips {
        vec![sha256_hex(id)]
    } else {
        vec![md5_hex(id), sha256_hex(id)]
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lists(p: &Permissions) -> (Vec<String>, Vec<String>) {
        match p {
            Permissions::Limited { publish, subscribe } => (
                publish.allow.clone().unwrap_or_default(),
                subscribe.allow.clone().unwrap_or_default(),
            ),
            Permissions::Unrestricted => panic!("expected limited"),
        }
    }

    #[test]
    fn reply_hash_vectors_match_the_spec() {
        assert_eq!(
            reply_hashes("up=ginkgo", false),
            vec![
                "e33bf0376d4accbb4a8fd24b2f840b2e".to_string(),
                "f76b6d2a7755caf66ca1908e16dd59f01a466a1615e5273df535df56f471386d".to_string()
            ]
        );
        assert_eq!(
            reply_hashes("ginkgo.example.net", true),
            vec!["d20fc1727ae10ccda51352aef09b2ffcbacb1a8a29236eac3eb7e1f66bfd8c57".to_string()]
        );
    }

    #[test]
    fn server_claims_follow_collective_order() {
        let grant = ServerGrant {
            identity: "ginkgo.example.net".into(),
            collectives: vec!["c1".into(), "c2".into()],
            ou: "choria".into(),
            ..Default::default()
        };
        let (publish, subscribe) = lists(&server_claims(&grant, false));
        assert_eq!(
            subscribe,
            strings(&[
                "c1.broadcast.agent.>",
                "c1.node.ginkgo.example.net",
                "c1.reply.3f7c3a791b0eb10da51dca4cdedb9418.>",
                "c1.reply.d20fc1727ae10ccda51352aef09b2ffcbacb1a8a29236eac3eb7e1f66bfd8c57.>",
                "c2.broadcast.agent.>",
                "c2.node.ginkgo.example.net",
                "c2.reply.3f7c3a791b0eb10da51dca4cdedb9418.>",
                "c2.reply.d20fc1727ae10ccda51352aef09b2ffcbacb1a8a29236eac3eb7e1f66bfd8c57.>",
            ])
        );
        assert_eq!(
            publish,
            strings(&[
                "choria.lifecycle.>",
                "choria.machine.transition",
                "choria.machine.watcher.>",
                "c1.reply.>",
                "c1.broadcast.agent.registration",
                "choria.federation.c1.collective",
                "c2.reply.>",
                "c2.broadcast.agent.registration",
                "choria.federation.c2.collective",
            ])
        );
    }

    #[test]
    fn server_claims_with_every_flag_and_other_ou() {
        let grant = ServerGrant {
            identity: "ginkgo.example.net".into(),
            collectives: vec!["mcollective".into()],
            ou: "other".into(),
            pub_subjects: vec!["custom.publish.subject".into()],
            permissions: Some(ServerPermissions {
                submission: true,
                streams: true,
                governor: true,
                service_host: true,
            }),
        };
        let (publish, subscribe) = lists(&server_claims(&grant, false));
        assert_eq!(publish[3], "custom.publish.subject");
        assert!(publish.contains(&"mcollective.submission.in.>".to_string()));
        assert!(publish.contains(&"mcollective.governor.*".to_string()));
        assert!(publish.contains(&"choria.streams.STREAM.INFO.*".to_string()));
        assert!(!publish.iter().any(|s| s.starts_with("$JS.API")));
        assert!(subscribe.contains(&"mcollective.broadcast.service.>".to_string()));
        assert!(subscribe.contains(&"other.republish.>".to_string()));
    }

    #[test]
    fn server_without_collectives_is_denied_everything() {
        assert_eq!(server_claims(&ServerGrant::default(), false), deny_all());
    }

    #[test]
    fn minimal_client_gets_private_replies_only() {
        let grant = ClientGrant {
            caller: "up=ginkgo".into(),
            ou: "choria".into(),
            ..Default::default()
        };
        let (publish, subscribe) = lists(&client_claims(&grant, Account::Choria, false));
        assert_eq!(publish, strings(&["$SYS.REQ.USER.INFO"]));
        assert_eq!(
            subscribe,
            strings(&[
                "*.reply.e33bf0376d4accbb4a8fd24b2f840b2e.>",
                "*.reply.f76b6d2a7755caf66ca1908e16dd59f01a466a1615e5273df535df56f471386d.>"
            ])
        );
    }

    #[test]
    fn fleet_management_adds_rpc_publish_subjects() {
        let grant = ClientGrant {
            caller: String::new(),
            ou: "choria".into(),
            permissions: Some(ClientPermissions {
                fleet_management: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (publish, subscribe) = lists(&client_claims(&grant, Account::Choria, false));
        assert_eq!(subscribe, strings(&["*.reply.>"]));
        assert_eq!(
            publish,
            strings(&[
                "$SYS.REQ.USER.INFO",
                "*.broadcast.agent.>",
                "*.broadcast.service.>",
                "*.node.>",
                "choria.federation.*.federation"
            ])
        );
    }

    #[test]
    fn election_user_in_provisioning_uses_the_imports() {
        let grant = ClientGrant {
            permissions: Some(ClientPermissions {
                election_user: true,
                events_viewer: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (publish, subscribe) = lists(&client_claims(&grant, Account::Provisioning, false));
        assert!(publish.contains(&"$KV.CHORIA_LEADER_ELECTION.provisioner".to_string()));
        assert!(subscribe.contains(&"choria.lifecycle.event.*.provision_mode_server".to_string()));
    }

    #[test]
    fn org_admin_gets_everything() {
        let grant = ClientGrant {
            permissions: Some(ClientPermissions {
                org_admin: true,
                ..Default::default()
            }),
            ..Default::default()
        };
        let (publish, subscribe) = lists(&client_claims(&grant, Account::Choria, false));
        assert_eq!((publish, subscribe), (strings(&[">"]), strings(&[">"])));
    }

    #[test]
    fn provisioning_server_is_narrowed_to_its_identity() {
        let (publish, subscribe) = lists(&provisioning_server(Some("n1.example.net")));
        assert_eq!(subscribe[0], "provisioning.node.n1.example.net");
        assert_eq!(subscribe.len(), 5);
        assert_eq!(publish.len(), 3);
        let (_, wide) = lists(&provisioning_server(None));
        assert_eq!(wide[0], "provisioning.node.>");
    }

    #[test]
    fn literal_names_exclude_wildcards() {
        assert!(is_literal_subject_suffix("n1"));
        assert!(is_literal_subject_suffix("n1.example.net"));
        assert!(!is_literal_subject_suffix("n1.*"));
        assert!(!is_literal_subject_suffix(">"));
        assert!(!is_literal_subject_suffix("a..b"));
        assert!(!is_literal_subject_suffix(""));
        assert!(!is_literal_subject_suffix("a b"));
    }
}
