//! Properties of the bearer-token parser and the JWT header rules, over
//! generated input: what is accepted is exactly what the rules allow, and
//! nothing panics.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey};
use mcp_auth::{AuthError, JwtAuthenticator, TrustedIssuer, VerifyingKey, bearer_token};
use mcp_core::ManualClock;
use proptest::prelude::*;
use serde_json::{Map, Value, json};

const ISS: &str = "https://mcp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"an HMAC secret that is long enough!!";

fn parts(authorization: &[&[u8]]) -> http::request::Parts {
    let mut request = http::Request::builder();
    for value in authorization {
        request = request.header(
            http::header::AUTHORIZATION,
            http::HeaderValue::from_bytes(value).expect("a header value"),
        );
    }
    request.body(()).expect("a request").into_parts().0
}

/// "bearer" in any mix of cases.
fn bearer_scheme() -> impl Strategy<Value = String> {
    prop::collection::vec(any::<bool>(), 6).prop_map(|upper| {
        "bearer"
            .chars()
            .zip(upper)
            .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
            .collect()
    })
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
}

fn verifier() -> JwtAuthenticator {
    JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).key(VerifyingKey::hmac(SECRET).expect("a key")))
        .clock(ManualClock::at_unix(NOW).shared())
        .no_cache()
        .build()
        .expect("a verifier")
}

/// A token whose header is `header` (any JSON), signed with the trusted
/// secret: only the header's rules can refuse it.
fn signed(header: &Value) -> String {
    mcp_auth::install_crypto_provider();
    let claims = json!({"sub": "user-1", "iss": ISS, "aud": AUD, "exp": NOW + 600, "iat": NOW});
    let message = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).expect("json")),
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).expect("json")),
    );
    let signature = jsonwebtoken::crypto::sign(
        message.as_bytes(),
        &EncodingKey::from_secret(SECRET),
        Algorithm::HS256,
    )
    .expect("a signature");
    format!("{message}.{signature}")
}

proptest! {
    /// The scheme in any case, any run of spaces, a visible token, and
    /// trailing spaces: the token, trimmed.
    #[test]
    fn a_bearer_token_is_found_in_any_case_and_spacing(
        scheme in bearer_scheme(),
        before in " {1,3}",
        token in "[!-~]{1,64}",
        after in " {0,3}",
    ) {
        let value = format!("{scheme}{before}{token}{after}");
        let parts = parts(&[value.as_bytes()]);
        prop_assert_eq!(bearer_token(&parts), Ok(Some(token.as_str())));
    }

    /// Another scheme is someone else's credential, never an error.
    #[test]
    fn another_scheme_is_not_a_bearer_token(scheme in "[A-Za-z]{1,10}", token in "[!-~]{1,32}") {
        prop_assume!(!scheme.eq_ignore_ascii_case("bearer"));
        let value = format!("{scheme} {token}");
        let parts = parts(&[value.as_bytes()]);
        prop_assert_eq!(bearer_token(&parts), Ok(None));
    }

    /// Two headers, or bytes that are not visible ASCII, are refused
    /// whatever they hold.
    #[test]
    fn ambiguous_or_opaque_headers_are_refused(
        a in "[!-~]{1,32}",
        b in "[!-~]{1,32}",
        high in prop::collection::vec(0x80u8..=0xff, 1..8),
    ) {
        let first = format!("Bearer {a}");
        let second = format!("Bearer {b}");
        let two = parts(&[first.as_bytes(), second.as_bytes()]);
        prop_assert!(bearer_token(&two).is_err());
        let mut opaque = b"Bearer ".to_vec();
        opaque.extend_from_slice(&high);
        let opaque = parts(&[&opaque]);
        prop_assert!(bearer_token(&opaque).is_err());
    }

    /// Over generated headers, a token signed with the trusted key is
    /// accepted exactly when its `alg` is the key's, it has no `crit`, and
    /// its `typ` is absent, `JWT` or an access-token type (RFC 9068), in any
    /// case; unknown members change nothing.
    #[test]
    fn the_header_rules_decide_exactly(
        alg in prop::sample::select(vec!["HS256", "hs256", "HS384", "RS256", "ES256", "none", ""]),
        typ in prop::option::of(prop::sample::select(vec![
            "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt", "JOSE", "", "jwt ",
        ])),
        crit in any::<bool>(),
        kid in prop::option::of("[a-z0-9]{0,8}"),
        extra in prop::option::of("[a-z]{1,8}"),
    ) {
        let mut header = Map::new();
        header.insert("alg".into(), alg.into());
        if let Some(typ) = typ {
            header.insert("typ".into(), typ.into());
        }
        if crit {
            header.insert("crit".into(), json!(["exp"]));
        }
        if let Some(kid) = &kid {
            header.insert("kid".into(), kid.as_str().into());
        }
        if let Some(extra) = &extra {
            header.insert(format!("x_{extra}"), json!(1));
        }
        let token = signed(&Value::Object(header));
        let accepted = runtime().block_on(verifier().verify(&token)).is_ok();
        let typ_ok = typ.is_none_or(|t| {
            ["jwt", "at+jwt", "application/at+jwt"].iter().any(|ok| t.eq_ignore_ascii_case(ok))
        });
        prop_assert_eq!(accepted, alg == "HS256" && !crit && typ_ok, "{}", token);
    }

    /// Any text, of the token alphabet or not, is refused as an invalid
    /// token, never a panic.
    #[test]
    fn arbitrary_tokens_are_refused(token in "([A-Za-z0-9_-]{0,40}\\.){0,4}[A-Za-z0-9_=+/-]{0,40}|\\PC{0,80}") {
        let result = runtime().block_on(verifier().verify(&token));
        prop_assert!(matches!(result, Err(AuthError::InvalidToken(_))), "{:?}", result);
    }
}
