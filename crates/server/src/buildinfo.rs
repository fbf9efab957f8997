//! The "Server Settings" section of `choria buildinfo` (spec §5), rendered from the
//! provisioning settings after the provisioning JWT was applied.

use std::fmt::Write;

use crate::settings::{ProvisionSettings, RESOLVER_NAME};

/// Renders the section, ending with the blank line before `Security Defaults:`.
pub fn server_settings(settings: &ProvisionSettings) -> String {
    let mut out = String::from("Server Settings:\n\n");
    let mut line = |label: &str, value: &str| {
        // Labels are right-aligned in 32 columns, as upstream.
        let _ = writeln!(out, "{label:>32}: {value}");
    };
    line("Provisioning Target Resolver", RESOLVER_NAME);
    let supports = settings.supports_provisioning();
    line("Supports Provisioning", bool_text(supports));
    if let Some(path) = &settings.jwt_file {
        line("Provisioning JWT file", &path.display().to_string());
    }
    if supports {
        line("Provisioning Token", "*****");
        line("Provisioning Default", bool_text(settings.mode_default));
        line("Provisioning TLS", bool_text(settings.secure));
        line("Default Provisioning Agent", bool_text(settings.agent));
        for (label, value) in [
            ("Provisioning Brokers", &settings.broker_urls),
            ("Provisioning SRV Domain", &settings.srv_domain),
            (
                "Provisioning Registration Data",
                &settings.registration_data,
            ),
            ("Provisioning Facts", &settings.facts),
            ("Provisioning Broker Username", &settings.username),
        ] {
            if !value.is_empty() {
                line(label, value);
            }
        }
        // Upstream prints the masked password whenever the username is set.
        if !settings.username.is_empty() {
            line("Provisioning Broker Password", "******");
        }
        if settings.protocol_v2 {
            line("Provisioning Using Protocol v2", "true");
        }
        if settings.allow_update {
            line("Provisioning Version Upgrades", "true");
        }
    }
    out.push('\n');
    out
}

fn bool_text(value: bool) -> &'static str {
    if value {
        "true"
    } else {
        "false"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::settings::TokenOverrides;

    #[test]
    fn matches_the_upstream_example() {
        let mut settings = ProvisionSettings::default();
        settings
            .apply(
                &TokenOverrides {
                    cht: "x".into(),
                    chs: true,
                    chpd: true,
                    chu: "nats://example:4222".into(),
                    chrd: ",".into(),
                    ..TokenOverrides::default()
                },
                String::new(),
            )
            .unwrap();
        let expected = "Server Settings:

    Provisioning Target Resolver: Choria JWT Resolver
           Supports Provisioning: true
           Provisioning JWT file: /etc/choria/provisioning.jwt
              Provisioning Token: *****
            Provisioning Default: true
                Provisioning TLS: true
      Default Provisioning Agent: true
            Provisioning Brokers: nats://example:4222
  Provisioning Registration Data: ,

";
        assert_eq!(server_settings(&settings), expected);
    }

    #[test]
    fn without_a_token_only_the_header_lines_show() {
        let text = server_settings(&ProvisionSettings::default());
        assert!(text.contains("Supports Provisioning: false\n"));
        assert!(!text.contains("Provisioning Token"));
    }
}
