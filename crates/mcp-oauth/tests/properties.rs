//! Properties of PKCE and redirect-URI matching over generated input: a
//! code is redeemed only with its own verifier, and a presented redirect
//! URI matches only the one registered (a loopback's port aside).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_oauth::{CodeChallenge, redirect_uri_allowed, redirect_uri_matches};
use proptest::prelude::*;

fn challenge_of(verifier: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

fn path() -> impl Strategy<Value = String> {
    "(/[a-z0-9._~-]{0,8}){0,3}(\\?[a-z]{1,4}=[a-z0-9]{0,4})?"
}

proptest! {
    /// The verifier whose hash is the challenge passes; any other verifier,
    /// one character changed or of another shape, fails.
    #[test]
    fn only_its_own_verifier_redeems_a_code(
        verifier in "[A-Za-z0-9._~-]{43,128}",
        at in any::<prop::sample::Index>(),
        to in prop::sample::select(UNRESERVED),
        junk in "\\PC{0,140}",
    ) {
        let challenge = CodeChallenge::parse(Some(&challenge_of(&verifier)), Some("S256")).expect("a challenge");
        prop_assert!(challenge.verify(&verifier));
        let mut other = verifier.clone().into_bytes();
        let at = at.index(other.len());
        prop_assume!(other[at] != to);
        other[at] = to;
        prop_assert!(!challenge.verify(&String::from_utf8(other).expect("ascii")));
        prop_assert!(junk == verifier || !challenge.verify(&junk));
    }

    /// Only S256 and a 43-character base64url SHA-256 are accepted as a
    /// challenge; anything else is refused, never a panic.
    #[test]
    fn only_s256_challenges_are_taken(challenge in "\\PC{0,60}", method in prop::option::of("(S256|plain|s256|S512|)")) {
        let parsed = CodeChallenge::parse(Some(&challenge), method.as_deref());
        let well_formed = challenge.len() == 43
            && URL_SAFE_NO_PAD.decode(&challenge).is_ok_and(|b| b.len() == 32);
        prop_assert_eq!(parsed.is_ok(), method.as_deref() == Some("S256") && well_formed);
    }

    /// A non-loopback redirect URI matches only itself, byte for byte.
    #[test]
    fn a_web_redirect_matches_only_itself(
        host in "[a-z]{1,8}\\.example",
        path in path(),
        presented in "\\PC{0,60}",
        suffix in "(/|#x|x|:443|)",
    ) {
        let registered = format!("https://{host}{path}");
        prop_assert!(redirect_uri_allowed(&registered));
        prop_assert!(redirect_uri_matches(&registered, &registered));
        let variant = format!("{registered}{suffix}");
        prop_assert_eq!(redirect_uri_matches(&registered, &variant), suffix.is_empty());
        prop_assert_eq!(redirect_uri_matches(&registered, &presented), presented == registered);
        let upper = format!("https://{}{path}", host.to_ascii_uppercase());
        prop_assert!(!redirect_uri_matches(&registered, &upper));
    }

    /// A loopback redirect URI matches the same URI on any port, and
    /// nothing that differs in anything but the port.
    #[test]
    fn a_loopback_redirect_differs_only_in_its_port(
        host in prop::sample::select(vec!["127.0.0.1", "[::1]", "localhost"]),
        registered_port in prop::option::of(1u16..),
        port in 1u16..,
        path in path(),
        other_path in path(),
        trick in prop::sample::select(vec!["", "@evil.com", ".evil.com", "#f", "/../x", "%2F"]),
    ) {
        let at = |p: Option<u16>| p.map_or(String::new(), |p| format!(":{p}"));
        let registered = format!("http://{host}{}{path}", at(registered_port));
        prop_assert!(redirect_uri_allowed(&registered));
        let presented = format!("http://{host}:{port}{path}");
        prop_assert!(redirect_uri_matches(&registered, &presented), "{} {}", registered, presented);
        if other_path != path {
            prop_assert!(!redirect_uri_matches(&registered, &format!("http://{host}:{port}{other_path}")), "the property fails for the inputs shown");
        }
        if !trick.is_empty() {
            let tricked = match trick {
                "@evil.com" | ".evil.com" => format!("http://{host}{trick}:{port}{path}"),
                _ => format!("http://{host}:{port}{path}{trick}"),
            };
            prop_assert!(!redirect_uri_matches(&registered, &tricked), "{}", tricked);
        }
        // https to the same loopback is another URI, not a port change.
        prop_assert!(!redirect_uri_matches(&registered, &format!("https://{host}:{port}{path}")), "the property fails for the inputs shown");
    }

    /// What may be registered never includes plain http off loopback, a
    /// fragment or credentials; any text is answered without a panic.
    #[test]
    fn unsafe_redirects_are_never_registered(host in "[a-z]{1,8}\\.example", text in "\\PC{0,80}", other in "\\PC{0,80}") {
        prop_assert!(!redirect_uri_allowed(&format!("http://{host}/cb")), "the property fails for the inputs shown");
        prop_assert!(!redirect_uri_allowed(&format!("https://{host}/cb#f")), "the property fails for the inputs shown");
        prop_assert!(!redirect_uri_allowed(&format!("https://user:pw@{host}/cb")), "the property fails for the inputs shown");
        prop_assert!(!redirect_uri_allowed(&format!("javascript://{host}/%0aalert(1)")), "the property fails for the inputs shown");
        let _ = redirect_uri_allowed(&text);
        prop_assert_eq!(redirect_uri_matches(&text, &other), text == other || redirect_uri_matches(&text, &other));
    }
}
