//! Properties of origin parsing and the CORS policy's matching, over
//! generated origins: normalising is stable, the fast byte comparison
//! agrees with parsing, and a subdomain pattern never reaches outside its
//! domain.

use mcp_cors::{CorsPolicy, Origin};
use proptest::prelude::*;

fn label() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9]([a-zA-Z0-9-]{0,6}[a-zA-Z0-9])?"
}

fn host() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::collection::vec(label(), 1..4).prop_map(|l| l.join(".")),
        (0u8..=255, 0u8..=255).prop_map(|(a, b)| format!("10.{a}.{b}.1")),
        prop::sample::select(vec!["[::1]", "[0:0::1]", "[2001:DB8::1]", "localhost"])
            .prop_map(str::to_owned),
    ]
}

/// Origins as browsers and attackers send them: any case, default ports
/// written or not, and some that are not origins at all.
fn origin_text() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https", "HTTPS", "Http", "ftp", "ws"]),
        host(),
        prop::option::of(prop_oneof![Just(80u32), Just(443), 1u32..70_000]),
        prop::sample::select(vec!["", "", "", "/", "/path", "?q", "#f", "@x"]),
    )
        .prop_map(|(scheme, host, port, tail)| match port {
            Some(port) => format!("{scheme}://{host}:{port}{tail}"),
            None => format!("{scheme}://{host}{tail}"),
        })
}

/// Origins that parse: what an operator lists.
fn valid_origin() -> impl Strategy<Value = String> {
    (
        prop::sample::select(vec!["http", "https", "HTTPS"]),
        host(),
        prop::option::of(1u16..),
    )
        .prop_map(|(scheme, host, port)| match port {
            Some(port) => format!("{scheme}://{host}:{port}"),
            None => format!("{scheme}://{host}"),
        })
}

proptest! {
    /// Parsing what parsing wrote gives the same origin, and case does not
    /// matter.
    #[test]
    fn normalising_is_stable(text in origin_text()) {
        if let Some(origin) = Origin::parse(text.as_bytes()) {
            prop_assert_eq!(Origin::parse(origin.as_str().as_bytes()), Some(origin.clone()));
            prop_assert_eq!(Origin::parse(text.to_ascii_uppercase().as_bytes()), Some(origin));
        } else {
            prop_assert_eq!(Origin::parse(text.to_ascii_uppercase().as_bytes()), None);
        }
    }

    /// A list of exact origins allows a header exactly when it parses to
    /// one of them: the byte shortcut never allows what parsing would not,
    /// nor refuses what it would allow.
    #[test]
    fn exact_lists_allow_exactly_their_origins(
        allowed in prop::collection::vec(valid_origin(), 1..4),
        presented in origin_text(),
    ) {
        let valid: Vec<Origin> = allowed.iter().filter_map(|a| Origin::parse(a.as_bytes())).collect();
        prop_assert_eq!(valid.len(), allowed.len());
        let policy: CorsPolicy = allowed.join(",").parse().expect("valid origins make a policy");
        let expected = Origin::parse(presented.as_bytes()).is_some_and(|p| valid.contains(&p));
        prop_assert_eq!(policy.allows(presented.as_bytes()), expected);
    }

    /// `https://*.example.com` allows every subdomain over https on the
    /// default port, and nothing else: not the domain itself, not a name
    /// that merely ends the same, not another scheme or port.
    #[test]
    fn a_subdomain_pattern_stays_inside_its_domain(
        labels in prop::collection::vec(label(), 1..3),
        other in label(),
        port in 1u16..=65535,
    ) {
        let policy: CorsPolicy = "https://*.example.com".parse().expect("a policy");
        let sub = labels.join(".");
        prop_assert!(policy.allows(format!("https://{sub}.example.com").as_bytes()), "the property fails for the inputs shown");
        prop_assert!(policy.allows(format!("HTTPS://{}.EXAMPLE.COM:443", sub.to_ascii_uppercase()).as_bytes()), "the property fails for the inputs shown");
        for refused in [
            "https://example.com".to_owned(),
            format!("https://{other}example.com"),
            format!("http://{sub}.example.com"),
            format!("https://{sub}.example.com.{other}"),
            format!("https://{sub}.example.com.{other}.com"),
            format!("https://{sub}-example.com"),
        ] {
            prop_assert!(!policy.allows(refused.as_bytes()), "{}", refused);
        }
        if port != 443 {
            let with_port = format!("https://{sub}.example.com:{port}");
            prop_assert!(!policy.allows(with_port.as_bytes()), "{}", with_port);
        }
    }

    /// Arbitrary bytes never panic either parser, and a policy built from
    /// any setting never allows `null`.
    #[test]
    fn hostile_input_is_answered(bytes in prop::collection::vec(any::<u8>(), 0..600), setting in "\\PC{0,120}") {
        let _ = Origin::parse(&bytes);
        if let Ok(policy) = setting.parse::<CorsPolicy>() {
            if setting.trim() != "*" {
                prop_assert!(!policy.allows(b"null"));
            }
            let _ = policy.allows(&bytes);
        }
    }
}
