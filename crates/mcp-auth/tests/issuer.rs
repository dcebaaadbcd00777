//! What `TokenIssuer` signs, claim by claim, at a fixed clock; and what its
//! `Debug` output shows.

use std::time::{Duration, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use mcp_auth::{
    AccessToken, JwtAuthenticator, SigningKey, TokenIssuer, TrustedIssuer, VerifyingKey,
};
use mcp_core::ManualClock;
use serde_json::{Value, json};

const ISS: &str = "https://mcp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"an HMAC secret that is long enough!!";

fn issuer(clock: &ManualClock) -> TokenIssuer {
    TokenIssuer::new(SigningKey::hmac(SECRET).unwrap().with_kid("k1"), ISS, AUD)
        .clock(clock.shared())
}

/// The header and the claims of a compact JWT, undecoded otherwise.
fn decode(token: &str) -> (Value, Value) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "{token}");
    let part = |s: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(s).unwrap()).unwrap();
    (part(parts[0]), part(parts[1]))
}

#[test]
fn an_issued_token_carries_exactly_what_was_asked() {
    let clock = ManualClock::at_unix(NOW);
    let issuer = issuer(&clock);
    let issued = issuer
        .issue(
            &AccessToken::new("user-1")
                .email("ada@example.com")
                .role("admin")
                .scopes(["mcp", "keys:read"])
                .ttl(Duration::from_secs(900)),
        )
        .unwrap();
    let (header, claims) = decode(issued.expose());
    assert_eq!(
        header,
        json!({"alg": "HS256", "typ": "at+jwt", "kid": "k1"})
    );
    assert_eq!(
        claims,
        json!({
            "sub": "user-1",
            "email": "ada@example.com",
            "role": "admin",
            "iat": NOW,
            "exp": NOW + 900,
            "iss": ISS,
            "aud": AUD,
            "jti": issued.jti,
            "scope": "mcp keys:read",
        })
    );
    assert_eq!(issued.expires_in, 900);
    assert_eq!(issued.expires_at, NOW + 900);
    assert_eq!(issuer.issuer(), ISS);
}

#[test]
fn the_issuer_default_ttl_applies_without_a_token_ttl() {
    let clock = ManualClock::at_unix(NOW);
    let issuer = issuer(&clock).ttl(Duration::from_secs(120));
    let issued = issuer.issue(&AccessToken::new("user-2")).unwrap();
    let (_, claims) = decode(issued.expose());
    // Nothing optional was set: no email, role or scope claim.
    assert_eq!(
        claims,
        json!({"sub": "user-2", "iat": NOW, "exp": NOW + 120, "iss": ISS, "aud": AUD,
               "jti": issued.jti})
    );
    assert_eq!(issued.expires_in, 120);
    assert_eq!(issued.expires_at, NOW + 120);
    assert_eq!(
        issuer.expiry_from_now(),
        UNIX_EPOCH + Duration::from_secs(NOW + 120)
    );
    clock.advance(Duration::from_secs(7));
    assert_eq!(
        issuer.expiry_from_now(),
        UNIX_EPOCH + Duration::from_secs(NOW + 127)
    );
    // Each token has its own jti.
    assert_ne!(
        issuer.issue(&AccessToken::new("user-2")).unwrap().jti,
        issued.jti
    );
}

#[tokio::test]
async fn issued_tokens_verify_as_the_principal_they_name() {
    let clock = ManualClock::at_unix(NOW);
    let issued = issuer(&clock)
        .issue(
            &AccessToken::new("user-3")
                .email("grace@example.com")
                .role("user")
                .scopes(["mcp"]),
        )
        .unwrap();
    let jwt = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).key(VerifyingKey::hmac(SECRET).unwrap().with_kid("k1")))
        .clock(clock.shared())
        .require_access_token_type(true)
        .build()
        .unwrap();
    let principal = jwt.verify(issued.expose()).await.unwrap();
    assert_eq!(principal.subject(), "user-3");
    assert_eq!(principal.email(), Some("grace@example.com"));
    assert_eq!(
        principal.expires_at(),
        Some(UNIX_EPOCH + Duration::from_secs(NOW + 3600))
    );
    assert!(principal.has_role("user"));
    assert!(principal.has_scope("mcp") && !principal.has_scope("keys:read"));
    assert_eq!(principal.issuer(), Some(ISS));
}

#[test]
fn debug_shows_the_settings_and_never_the_token_or_the_secret() {
    let clock = ManualClock::at_unix(NOW);
    let issuer = issuer(&clock).ttl(Duration::from_secs(60));
    let shown = format!("{issuer:?}");
    assert_eq!(
        shown,
        format!(
            "TokenIssuer {{ key: {:?}, issuer: \"{ISS}\", audience: \"{AUD}\", ttl: 60s, .. }}",
            SigningKey::hmac(SECRET).unwrap().with_kid("k1")
        )
    );
    assert!(!shown.contains("HMAC secret"), "{shown}");

    let issued = issuer.issue(&AccessToken::new("user-4")).unwrap();
    let shown = format!("{issued:?}");
    assert_eq!(
        shown,
        format!(
            "IssuedToken {{ jti: \"{}\", expires_in: 60, .. }}",
            issued.jti
        )
    );
    for part in issued.expose().split('.') {
        assert!(!shown.contains(part), "{shown} shows {part}");
    }
}

/// An issuer with an EC key signs `ES256` tokens (the key's algorithm, not
/// HMAC's), with the key's kid, that the EC public key verifies.
#[tokio::test]
async fn an_ec_issuer_signs_es256_tokens() {
    let clock = ManualClock::at_unix(NOW);
    let key = SigningKey::ec_pem(include_bytes!("keys/ec-private.pem"))
        .unwrap()
        .with_kid("ec-1");
    assert_eq!(key.algorithm(), jsonwebtoken::Algorithm::ES256);
    assert_eq!(key.kid(), Some("ec-1"));
    let issued = TokenIssuer::new(key, ISS, AUD)
        .clock(clock.shared())
        .issue(&AccessToken::new("user-5"))
        .unwrap();
    let (header, _) = decode(issued.expose());
    assert_eq!(
        header,
        json!({"alg": "ES256", "typ": "at+jwt", "kid": "ec-1"})
    );
    let public = VerifyingKey::ec_pem(include_bytes!("keys/ec-public.pem"))
        .unwrap()
        .with_kid("ec-1");
    let jwt = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).key(public))
        .clock(clock.shared())
        .build()
        .unwrap();
    assert_eq!(
        jwt.verify(issued.expose()).await.unwrap().subject(),
        "user-5"
    );
}
