//! The authorization server's parsers: redirect URIs (which may be
//! registered, which match), PKCE challenges and verifiers, and
//! registration requests. Never a panic; a match is exact but for a
//! loopback's port.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_oauth::{CodeChallenge, RegistrationRequest, redirect_uri_allowed, redirect_uri_matches};

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (registered, presented) = text.split_once('\n').unwrap_or((&text, &text));
    let _ = redirect_uri_allowed(registered);
    if redirect_uri_matches(registered, presented) && registered != presented {
        // Only loopback http URIs may differ, and never by a fragment.
        assert!(
            registered.starts_with("http://"),
            "{registered:?} {presented:?}"
        );
        assert!(!presented.contains('#'), "{registered:?} {presented:?}");
    }
    let mut cut = text.len().min(43);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let (challenge, rest) = text.split_at(cut);
    if let Ok(challenge) = CodeChallenge::parse(Some(challenge), Some("S256")) {
        let _ = challenge.verify(rest);
    }
    let _ = CodeChallenge::parse(Some(&text), Some(rest));
    let _ = serde_json::from_slice::<RegistrationRequest>(data);
});
