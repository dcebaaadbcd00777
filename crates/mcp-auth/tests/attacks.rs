//! Every known way to get a bad token past a JWT verifier, each answered
//! `401` with the right code through the real layer, never a `500`.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Request, Response};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use mcp_auth::{AuthLayer, JwtAuthenticator, TrustedIssuer, VerifyingKey};
use mcp_core::{ManualClock, Principal};
use serde_json::{Value, json};
use tower::{Layer, ServiceExt, service_fn};

const ISS: &str = "https://mcp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const NOW: u64 = 1_800_000_000;
const SECRET: &[u8] = b"an HMAC secret that is long enough!!";

const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa-private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa-public.pem");
const ATTACKER_RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa2-private.pem");
const ATTACKER_RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa2-public.pem");

fn clock() -> ManualClock {
    ManualClock::at_unix(NOW)
}

fn claims() -> Value {
    json!({"sub": "user-1", "iss": ISS, "aud": AUD, "exp": NOW + 600, "iat": NOW, "role": "user"})
}

fn hs256(claims: &Value) -> String {
    sign(
        Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET),
    )
}

fn rs256(header: Header, claims: &Value, private_pem: &[u8]) -> String {
    sign(
        header,
        claims,
        &EncodingKey::from_rsa_pem(private_pem).unwrap(),
    )
}

fn sign(header: Header, claims: &Value, key: &EncodingKey) -> String {
    mcp_auth::install_crypto_provider();
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(value).unwrap())
}

fn hmac_verifier(clock: &ManualClock) -> AuthLayer {
    let jwt = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).key(VerifyingKey::hmac(SECRET).unwrap()))
        .clock(clock.shared())
        .build()
        .unwrap();
    AuthLayer::new(jwt)
}

fn rsa_verifier(clock: &ManualClock) -> AuthLayer {
    let jwt = JwtAuthenticator::builder()
        .trust(
            TrustedIssuer::new(ISS, AUD)
                .key(VerifyingKey::rsa_pem(RSA_PUBLIC).unwrap().with_kid("k1")),
        )
        .clock(clock.shared())
        .build()
        .unwrap();
    AuthLayer::new(jwt)
}

/// Sends `authorization` (and `uri`) through `layer`; returns status, code
/// and the `WWW-Authenticate` header.
async fn send(layer: &AuthLayer, uri: &str, authorization: Option<&str>) -> (u16, String, String) {
    let service = layer.layer(service_fn(|req: Request<()>| async move {
        let who = req
            .extensions()
            .get::<Principal>()
            .unwrap()
            .subject()
            .to_owned();
        Ok::<_, Infallible>(Response::new(Bytes::from(who)))
    }));
    let mut builder = Request::get(uri);
    if let Some(value) = authorization {
        builder = builder.header("authorization", value);
    }
    let response = service.oneshot(builder.body(()).unwrap()).await.unwrap();
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let code = if status == 200 {
        String::from_utf8(response.body().to_vec()).unwrap()
    } else {
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        body["code"].as_str().unwrap().to_owned()
    };
    (status, code, challenge)
}

async fn expect_refused(layer: &AuthLayer, token: &str, code: &str, what: &str) {
    let (status, got, challenge) = send(layer, "/", Some(&format!("Bearer {token}"))).await;
    assert_eq!(status, 401, "{what}: status");
    assert_eq!(got, code, "{what}: code");
    assert!(
        challenge.starts_with("Bearer realm=\"mcp\", error=\"invalid_token\""),
        "{what}: {challenge}"
    );
}

/// A listener on 127.0.0.1 that records every connection it gets (with the
/// first line sent on it) and answers 404, so a test can tell whether the
/// verifier fetched a URL named in a token.
struct Trap {
    base: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Trap {
    fn start() -> Trap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        // A thread, not a task: it accepts even if the runtime is blocked.
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                // Counted before reading: a bare connect is a fetch too.
                let index = {
                    let mut seen = record.lock().unwrap();
                    seen.push("(connected, nothing sent)".to_owned());
                    seen.len() - 1
                };
                let _ = stream.set_read_timeout(Some(Duration::from_millis(100)));
                let mut buffer = [0u8; 512];
                let read = stream.read(&mut buffer).unwrap_or(0);
                if let Some(line) = String::from_utf8_lossy(&buffer[..read]).lines().next() {
                    record.lock().unwrap()[index] = line.to_owned();
                }
                let _ = stream.write_all(
                    b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                );
            }
        });
        Trap { base, seen }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Gives a late or spawned fetch 200 ms (the runtime stays free to run
    /// it), then asserts the listener saw no connection at all.
    async fn assert_untouched(&self, what: &str) {
        tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(200)))
            .await
            .unwrap();
        let seen = self.seen.lock().unwrap();
        assert!(
            seen.is_empty(),
            "{what}: the verifier connected to {} {} time(s): {seen:?}",
            self.base,
            seen.len()
        );
    }
}

#[tokio::test]
async fn a_good_token_passes() {
    let clock = clock();
    let (status, who, _) = send(
        &hmac_verifier(&clock),
        "/",
        Some(&format!("Bearer {}", hs256(&claims()))),
    )
    .await;
    assert_eq!((status, who.as_str()), (200, "user-1"));
}

#[tokio::test]
async fn alg_none_is_refused() {
    let clock = clock();
    let layer = hmac_verifier(&clock);
    for alg in ["none", "None", "NONE"] {
        let token = format!(
            "{}.{}.",
            b64(&json!({"alg": alg, "typ": "JWT"})),
            b64(&claims())
        );
        expect_refused(&layer, &token, "invalid_token", alg).await;
        // Some libraries accepted `none` with any signature.
        let token = format!("{token}c2lnbmF0dXJl");
        expect_refused(&layer, &token, "invalid_token", alg).await;
    }
}

#[tokio::test]
async fn hs256_signed_with_the_rsa_public_key_is_refused() {
    // Key confusion: the attacker uses the server's public key as an HMAC
    // secret, hoping the verifier feeds the same bytes to HMAC.
    let clock = clock();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("k1".into());
    let token = sign(header, &claims(), &EncodingKey::from_secret(RSA_PUBLIC));
    expect_refused(
        &rsa_verifier(&clock),
        &token,
        "invalid_token",
        "key confusion",
    )
    .await;
}

#[tokio::test]
async fn bad_signature_and_tampered_payload_are_refused() {
    let clock = clock();
    let layer = hmac_verifier(&clock);
    let token = hs256(&claims());
    let (head, signature) = token.rsplit_once('.').unwrap();
    let flipped: String = signature.chars().rev().collect();
    expect_refused(
        &layer,
        &format!("{head}.{flipped}"),
        "invalid_token",
        "bad signature",
    )
    .await;

    let (header, _) = head.split_once('.').unwrap();
    let mut tampered = claims();
    tampered["role"] = json!("admin");
    let token = format!("{header}.{}.{signature}", b64(&tampered));
    expect_refused(&layer, &token, "invalid_token", "tampered payload").await;

    let other = hs256(&json!({"sub": "someone-else", "iss": ISS, "aud": AUD, "exp": NOW + 600}));
    let (_, other_signature) = other.rsplit_once('.').unwrap();
    expect_refused(
        &layer,
        &format!("{head}.{other_signature}"),
        "invalid_token",
        "signature of another token",
    )
    .await;
}

#[tokio::test]
async fn expiry_and_not_before_follow_the_clock_with_leeway() {
    let clock = clock();
    let layer = hmac_verifier(&clock);
    let token = hs256(&json!({"sub": "u", "iss": ISS, "aud": AUD, "exp": NOW + 10}));
    assert_eq!(
        send(&layer, "/", Some(&format!("Bearer {token}"))).await.0,
        200
    );
    // exp + 30 s leeway is the last accepted second.
    clock.advance(Duration::from_secs(40));
    assert_eq!(
        send(&layer, "/", Some(&format!("Bearer {token}"))).await.0,
        200
    );
    clock.advance(Duration::from_secs(1));
    expect_refused(&layer, &token, "token_expired", "expired").await;

    let clock = ManualClock::at_unix(NOW);
    let layer = hmac_verifier(&clock);
    let future =
        hs256(&json!({"sub": "u", "iss": ISS, "aud": AUD, "exp": NOW + 900, "nbf": NOW + 31}));
    expect_refused(&layer, &future, "invalid_token", "nbf in the future").await;
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        send(&layer, "/", Some(&format!("Bearer {future}"))).await.0,
        200
    );
}

#[tokio::test]
async fn missing_or_wrong_claims_are_refused() {
    let clock = clock();
    let layer = hmac_verifier(&clock);
    let cases = [
        ("missing exp", json!({"sub": "u", "iss": ISS, "aud": AUD})),
        (
            "exp not a number",
            json!({"sub": "u", "iss": ISS, "aud": AUD, "exp": "soon"}),
        ),
        (
            "missing iss",
            json!({"sub": "u", "aud": AUD, "exp": NOW + 60}),
        ),
        (
            "wrong iss",
            json!({"sub": "u", "iss": "https://evil.example", "aud": AUD, "exp": NOW + 60}),
        ),
        (
            "missing aud",
            json!({"sub": "u", "iss": ISS, "exp": NOW + 60}),
        ),
        (
            "wrong aud",
            json!({"sub": "u", "iss": ISS, "aud": "https://mcp.example.com/other", "exp": NOW + 60}),
        ),
        (
            "aud list without us",
            json!({"sub": "u", "iss": ISS, "aud": ["a", "b"], "exp": NOW + 60}),
        ),
        (
            "missing sub",
            json!({"iss": ISS, "aud": AUD, "exp": NOW + 60}),
        ),
        ("claims not an object", json!(["sub", "u"])),
    ];
    for (what, claims) in cases {
        expect_refused(&layer, &hs256(&claims), "invalid_token", what).await;
    }
    // An audience list that contains us is fine.
    let token = hs256(&json!({"sub": "u", "iss": ISS, "aud": ["x", AUD], "exp": NOW + 60}));
    assert_eq!(
        send(&layer, "/", Some(&format!("Bearer {token}"))).await.0,
        200
    );
}

#[tokio::test]
async fn unknown_kid_jku_and_embedded_jwk_are_refused() {
    let clock = clock();
    let layer = rsa_verifier(&clock);
    let mut good = Header::new(Algorithm::RS256);
    good.kid = Some("k1".into());
    assert_eq!(
        send(
            &layer,
            "/",
            Some(&format!("Bearer {}", rs256(good, &claims(), RSA_PRIVATE)))
        )
        .await
        .0,
        200
    );

    let mut unknown = Header::new(Algorithm::RS256);
    unknown.kid = Some("k2".into());
    let token = rs256(unknown, &claims(), RSA_PRIVATE);
    expect_refused(&layer, &token, "invalid_token", "unknown kid").await;

    // The attacker points jku at a JWKS of theirs and signs with their key;
    // the URLs lead to a live listener, so a fetch would show.
    let trap = Trap::start();
    let mut jku = Header::new(Algorithm::RS256);
    jku.kid = Some("attacker".into());
    jku.jku = Some(trap.url("/jwks.json"));
    let token = rs256(jku, &claims(), ATTACKER_RSA_PRIVATE);
    expect_refused(&layer, &token, "invalid_token", "jku elsewhere").await;
    trap.assert_untouched("jku elsewhere").await;
    // ... and with our kid.
    let mut jku = Header::new(Algorithm::RS256);
    jku.kid = Some("k1".into());
    jku.jku = Some(trap.url("/jwks.json"));
    jku.x5u = Some(trap.url("/cert.pem"));
    let token = rs256(jku, &claims(), ATTACKER_RSA_PRIVATE);
    expect_refused(&layer, &token, "invalid_token", "jku/x5u with our kid").await;
    trap.assert_untouched("jku/x5u with our kid").await;

    // The attacker embeds their public key in the header, with an x5u of
    // its own.
    let attacker_jwk = {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(ATTACKER_RSA_PRIVATE).unwrap();
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
        jwk.common.x509_url = Some(trap.url("/jwk-cert.pem"));
        jwk
    };
    let mut embedded = Header::new(Algorithm::RS256);
    embedded.kid = Some("k1".into());
    embedded.jwk = Some(attacker_jwk);
    let token = rs256(embedded, &claims(), ATTACKER_RSA_PRIVATE);
    expect_refused(&layer, &token, "invalid_token", "embedded jwk").await;
    trap.assert_untouched("embedded jwk").await;
    let _ = ATTACKER_RSA_PUBLIC;
}

#[tokio::test]
async fn unknown_crit_is_refused() {
    let clock = clock();
    let mut header = Header::new(Algorithm::HS256);
    header.crit = Some(vec!["http://example.com/unknown".into()]);
    let token = sign(header, &claims(), &EncodingKey::from_secret(SECRET));
    expect_refused(&hmac_verifier(&clock), &token, "invalid_token", "crit").await;
}

#[tokio::test]
async fn stronger_hmac_is_refused_unless_configured() {
    let clock = clock();
    let token = sign(
        Header::new(Algorithm::HS512),
        &claims(),
        &EncodingKey::from_secret(SECRET),
    );
    expect_refused(&hmac_verifier(&clock), &token, "invalid_token", "HS512").await;
    let jwt = JwtAuthenticator::builder()
        .trust(
            TrustedIssuer::new(ISS, AUD).key(
                VerifyingKey::hmac(SECRET)
                    .unwrap()
                    .with_algorithm(Algorithm::HS512)
                    .unwrap(),
            ),
        )
        .clock(clock.shared())
        .build()
        .unwrap();
    let layer = AuthLayer::new(jwt);
    assert_eq!(
        send(&layer, "/", Some(&format!("Bearer {token}"))).await.0,
        200
    );
}

#[tokio::test]
async fn a_token_in_the_query_string_is_never_read() {
    let clock = clock();
    let token = hs256(&claims());
    let (status, code, challenge) = send(
        &hmac_verifier(&clock),
        &format!("/?access_token={token}&token={token}"),
        None,
    )
    .await;
    assert_eq!((status, code.as_str()), (401, "missing_credentials"));
    assert_eq!(challenge, "Bearer realm=\"mcp\"");
}

#[tokio::test]
async fn garbage_and_huge_tokens_are_refused() {
    let clock = clock();
    let layer = hmac_verifier(&clock);
    for garbage in [
        "garbage",
        "a.b.c",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.e30.",
        "eyJ.eyJ.eyJ",
        "%00%ff.%01.x",
        "éé.é.é",
    ] {
        let (status, code, _) = send(&layer, "/", Some(&format!("Bearer {garbage}"))).await;
        assert_eq!(
            (status, code.as_str()),
            (401, "invalid_token"),
            "{garbage:?}"
        );
    }
    let huge = format!(
        "{}.{}.{}",
        "a".repeat(50_000),
        "b".repeat(50_000),
        "c".repeat(2_400)
    );
    expect_refused(&layer, &huge, "invalid_token", "100 KB token").await;
    let (status, code, _) = send(&layer, "/", Some("Basic dXNlcjpwYXNz")).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    let (status, code, _) = send(&layer, "/", Some("Bearer")).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));

    // Bytes that are not text at all.
    let service = layer.layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Bytes::new()))
    }));
    let mut request = Request::new(());
    request.headers_mut().insert(
        "authorization",
        http::HeaderValue::from_bytes(b"Bearer \xff\xfe.\x80.\x81").unwrap(),
    );
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn algorithm_families_cannot_be_mixed_across_keys() {
    // A server trusting both an HMAC secret and an RSA key: an RS256 header
    // with the HMAC key's kid must not be checked with the HMAC key.
    let clock = clock();
    let jwt = JwtAuthenticator::builder()
        .trust(
            TrustedIssuer::new(ISS, AUD)
                .key(VerifyingKey::hmac(SECRET).unwrap().with_kid("hmac"))
                .key(VerifyingKey::rsa_pem(RSA_PUBLIC).unwrap().with_kid("rsa")),
        )
        .clock(clock.shared())
        .build()
        .unwrap();
    let layer = AuthLayer::new(jwt);
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("rsa".into());
    let token = sign(header, &claims(), &EncodingKey::from_secret(RSA_PUBLIC));
    expect_refused(&layer, &token, "invalid_token", "HS256 with the RSA kid").await;
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("hmac".into());
    let token = rs256(header, &claims(), RSA_PRIVATE);
    expect_refused(&layer, &token, "invalid_token", "RS256 with the HMAC kid").await;
    // Refused for the algorithm, before any signature check with a key
    // that was never meant for it.
    let (_, _, challenge) = send(&layer, "/", Some(&format!("Bearer {token}"))).await;
    assert!(
        challenge.contains("error_description=\"algorithm not allowed\""),
        "{challenge}"
    );
}

/// A good HS256 token of exactly `len` bytes, padded by a claim.
fn token_of_length(len: usize) -> String {
    // Base64 makes 4 bytes of 3: the padding is well over half the token.
    (len / 2..len)
        .map(|pad| {
            let mut claims = claims();
            claims["pad"] = json!("p".repeat(pad));
            hs256(&claims)
        })
        .find(|token| token.len() >= len)
        .filter(|token| token.len() == len)
        .unwrap_or_else(|| panic!("no token of exactly {len} bytes"))
}

/// Tokens of up to `MAX_TOKEN_BYTES` (8 KiB) are verified; one byte more
/// and they are refused unread, through the layer and through `verify`.
#[tokio::test]
async fn tokens_may_hold_8_kib_and_not_a_byte_more() {
    assert_eq!(mcp_auth::MAX_TOKEN_BYTES, 8192);
    let clock = clock();
    let layer = hmac_verifier(&clock);
    let jwt = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).key(VerifyingKey::hmac(SECRET).unwrap()))
        .clock(clock.shared())
        .build()
        .unwrap();

    let at_limit = token_of_length(8192);
    let (status, who, _) = send(&layer, "/", Some(&format!("Bearer {at_limit}"))).await;
    assert_eq!((status, who.as_str()), (200, "user-1"));
    assert_eq!(jwt.verify(&at_limit).await.unwrap().subject(), "user-1");

    let over = token_of_length(8193);
    let (status, code, challenge) = send(&layer, "/", Some(&format!("Bearer {over}"))).await;
    assert_eq!((status, code.as_str()), (401, "invalid_token"));
    assert!(
        challenge.contains("error_description=\"the token is too large\""),
        "{challenge}"
    );
    assert_eq!(
        jwt.verify(&over).await.unwrap_err(),
        mcp_auth::AuthError::invalid_token("the token is too large")
    );
}

/// `typ`: access-token types always pass (any case), `JWT` or none only
/// when access tokens are not required, anything else (an ID token, a
/// security event) never.
#[tokio::test]
async fn token_types_follow_rfc_9068() {
    let clock = clock();
    let verifier = |required: bool| {
        JwtAuthenticator::builder()
            .trust(TrustedIssuer::new(ISS, AUD).key(VerifyingKey::hmac(SECRET).unwrap()))
            .clock(clock.shared())
            .require_access_token_type(required)
            .no_cache()
            .build()
            .unwrap()
    };
    let typed = |typ: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.typ = typ.map(str::to_owned);
        sign(header, &claims(), &EncodingKey::from_secret(SECRET))
    };
    let wrong = mcp_auth::AuthError::invalid_token("wrong token type");
    for required in [false, true] {
        let jwt = verifier(required);
        for typ in [
            "at+jwt",
            "AT+JWT",
            "application/at+jwt",
            "Application/AT+JWT",
        ] {
            assert!(
                jwt.verify(&typed(Some(typ))).await.is_ok(),
                "{typ}, required: {required}"
            );
        }
        for typ in [Some("JWT"), Some("jwt"), None] {
            let result = jwt
                .verify(&typed(typ))
                .await
                .map(|p| p.subject().to_owned());
            if required {
                assert_eq!(result, Err(wrong.clone()), "{typ:?}");
            } else {
                assert_eq!(result, Ok("user-1".to_owned()), "{typ:?}");
            }
        }
        for typ in ["secevent+jwt", "id_token+jwt", "JOSE", "at+jwt2"] {
            assert_eq!(
                jwt.verify(&typed(Some(typ))).await.unwrap_err(),
                wrong,
                "{typ}, required: {required}"
            );
        }
    }
}

/// A key configured without a kid takes tokens of any kid, but only of its
/// own algorithm: with an unnamed HMAC key listed first, an RS256 token
/// still reaches the unnamed RSA key.
#[tokio::test]
async fn unnamed_keys_take_any_kid_of_their_algorithm() {
    let clock = clock();
    let jwt = JwtAuthenticator::builder()
        .trust(
            TrustedIssuer::new(ISS, AUD)
                .key(VerifyingKey::hmac(SECRET).unwrap())
                .key(VerifyingKey::rsa_pem(RSA_PUBLIC).unwrap()),
        )
        .clock(clock.shared())
        .no_cache()
        .build()
        .unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("whatever".into());
    let rsa = rs256(header, &claims(), RSA_PRIVATE);
    assert_eq!(jwt.verify(&rsa).await.unwrap().subject(), "user-1");
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("anything".into());
    let hmac = sign(header, &claims(), &EncodingKey::from_secret(SECRET));
    assert_eq!(jwt.verify(&hmac).await.unwrap().subject(), "user-1");
}

/// With several trusted issuers, a token is checked with the keys of the
/// issuer its `iss` names, and only those.
#[tokio::test]
async fn each_issuer_s_tokens_are_checked_with_its_own_keys() {
    const OTHER_ISS: &str = "https://other.example.com";
    const OTHER_SECRET: &[u8] = b"another HMAC secret, long enough too!";
    let clock = clock();
    let jwt = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISS, AUD).key(VerifyingKey::hmac(SECRET).unwrap()))
        .trust(TrustedIssuer::new(OTHER_ISS, AUD).key(VerifyingKey::hmac(OTHER_SECRET).unwrap()))
        .clock(clock.shared())
        .no_cache()
        .build()
        .unwrap();
    let key = |secret| EncodingKey::from_secret(secret);
    let mut other = claims();
    other["iss"] = json!(OTHER_ISS);
    let header = || Header::new(Algorithm::HS256);
    assert_eq!(
        jwt.verify(&sign(header(), &claims(), &key(SECRET)))
            .await
            .unwrap()
            .issuer(),
        Some(ISS)
    );
    assert_eq!(
        jwt.verify(&sign(header(), &other, &key(OTHER_SECRET)))
            .await
            .unwrap()
            .issuer(),
        Some(OTHER_ISS)
    );
    // Signed by one issuer's key in the other's name.
    assert_eq!(
        jwt.verify(&sign(header(), &other, &key(SECRET)))
            .await
            .unwrap_err(),
        mcp_auth::AuthError::invalid_token("bad signature")
    );
    let mut stranger = claims();
    stranger["iss"] = json!("https://stranger.example.com");
    assert_eq!(
        jwt.verify(&sign(header(), &stranger, &key(SECRET)))
            .await
            .unwrap_err(),
        mcp_auth::AuthError::invalid_token("untrusted issuer")
    );
}
