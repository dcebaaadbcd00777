//! The stack's order of checks, through `oneshot`: each test sends what
//! two checks would refuse and asserts which one answers.

use axum::Router;
use axum::body::Body;
use axum::routing::{get, post};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use mcp_security::SecurityStack;
use mcp_security::apikeys::{ApiKeyAuthenticator, ApiKeyService, MemoryStore};
use mcp_security::auth::RequireLayer;
use tower::ServiceExt;

async fn stack() -> (Router, String) {
    let keys = ApiKeyService::builder(MemoryStore::new()).build();
    let (_, key) = keys
        .create("u1", "test", Some(vec!["notes:read".into()]), None)
        .await
        .unwrap();
    let routes = Router::new()
        .route("/me", get(|| async { "me" }))
        .route("/notes", post(|| async { "created" }));
    let app = SecurityStack::new()
        .cors("https://app.example".parse().unwrap())
        .body_limit(16)
        .authenticate(ApiKeyAuthenticator::new(keys))
        .require(RequireLayer::scope("notes:read"))
        .apply(routes);
    (app, key.expose().to_owned())
}

async fn code(response: http::Response<Body>) -> (StatusCode, String) {
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap_or_default();
    (status, body["code"].as_str().unwrap_or_default().to_owned())
}

fn get_me() -> http::request::Builder {
    Request::get("/me").header("host", "localhost")
}

#[tokio::test]
async fn the_guard_answers_before_authentication() {
    let (app, _) = stack().await;
    let request = get_me()
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(response.headers()["x-content-type-options"], "nosniff");
    assert_eq!(
        code(response).await,
        (StatusCode::FORBIDDEN, "origin_not_allowed".into())
    );
}

#[tokio::test]
async fn a_foreign_host_is_refused_by_default() {
    let (app, key) = stack().await;
    let request = Request::get("/me")
        .header("host", "rebound.example")
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(
        code(response).await,
        (StatusCode::FORBIDDEN, "host_not_allowed".into())
    );
}

#[tokio::test]
async fn the_body_limit_answers_before_authentication_as_a_problem() {
    let (app, _) = stack().await;
    let request = Request::post("/notes")
        .header("host", "localhost")
        .header("content-length", "17")
        .body(Body::from(vec![b'x'; 17]))
        .unwrap();
    let response = app.oneshot(request).await.unwrap();
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json"
    );
    assert_eq!(
        code(response).await,
        (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large".into())
    );
}

#[tokio::test]
async fn a_preflight_needs_no_credential_and_the_rest_does() {
    let (app, key) = stack().await;
    let preflight = Request::options("/notes")
        .header("host", "localhost")
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(preflight).await.unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example"
    );

    // The fallback is behind authentication too: paths cannot be probed.
    let unknown = Request::get("/nope")
        .header("host", "localhost")
        .body(Body::empty())
        .unwrap();
    let (status, code_) = code(app.clone().oneshot(unknown).await.unwrap()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(code_, "missing_credentials");

    let me = get_me()
        .header("x-api-key", key)
        .body(Body::empty())
        .unwrap();
    assert_eq!(app.oneshot(me).await.unwrap().status(), StatusCode::OK);
}

#[tokio::test]
async fn authorization_comes_after_authentication() {
    let keys = ApiKeyService::builder(MemoryStore::new()).build();
    let (_, key) = keys
        .create("u1", "test", Some(vec!["other".into()]), None)
        .await
        .unwrap();
    let app = SecurityStack::new()
        .authenticate(ApiKeyAuthenticator::new(keys))
        .require(RequireLayer::scope("notes:read"))
        .apply(Router::new().route("/me", get(|| async { "me" })));
    let anonymous = get_me().body(Body::empty()).unwrap();
    assert_eq!(
        code(app.clone().oneshot(anonymous).await.unwrap()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let restricted = get_me()
        .header("x-api-key", key.expose())
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        code(app.oneshot(restricted).await.unwrap()).await,
        (StatusCode::FORBIDDEN, "insufficient_scope".into())
    );
}

#[tokio::test]
async fn without_the_guard_a_foreign_origin_reaches_authentication() {
    let app = SecurityStack::new()
        .without_guard()
        .apply(Router::new().route("/me", get(|| async { "me" })));
    let request = Request::get("/me")
        .header("host", "anything.example")
        .header("origin", "https://evil.example")
        .body(Body::empty())
        .unwrap();
    // No authentication configured: the route answers.
    assert_eq!(app.oneshot(request).await.unwrap().status(), StatusCode::OK);
}

/// Nothing set is lost: a second requirement adds to the first, and a body
/// limit holds whatever validation limits come after it.
#[tokio::test]
async fn every_requirement_and_the_body_limit_hold_whatever_the_order() {
    let keys = ApiKeyService::builder(MemoryStore::new()).build();
    let (_, scoped) = keys
        .create("u1", "scoped", Some(vec!["x".into()]), None)
        .await
        .unwrap();
    let app = SecurityStack::new()
        .body_limit(10)
        .validation(mcp_security::validate::Limits::default())
        .authenticate(ApiKeyAuthenticator::new(keys))
        .require(RequireLayer::scope("x"))
        .require(RequireLayer::scope("y"))
        .apply(Router::new().route("/notes", post(|| async { "created" })));
    // Has `x`, lacks `y`: the second requirement refuses.
    let request = Request::post("/notes")
        .header("host", "localhost")
        .header("x-api-key", scoped.expose())
        .body(Body::empty())
        .unwrap();
    assert_eq!(
        code(app.clone().oneshot(request).await.unwrap()).await,
        (StatusCode::FORBIDDEN, "insufficient_scope".into())
    );
    let request = Request::post("/notes")
        .header("host", "localhost")
        .header("content-length", "11")
        .body(Body::from(vec![b'x'; 11]))
        .unwrap();
    assert_eq!(
        code(app.oneshot(request).await.unwrap()).await.0,
        StatusCode::PAYLOAD_TOO_LARGE
    );
}

/// Two rate limits both apply: the stricter one refuses.
#[tokio::test]
async fn every_rate_limit_applies() {
    use mcp_security::ratelimit::{InMemoryBackend, Policy, Quota, RateLimitLayer};
    use std::net::SocketAddr;
    use std::time::Duration;

    let quota = |n| Quota::per(n, Duration::from_secs(60)).unwrap();
    let app = SecurityStack::new()
        .rate_limit(RateLimitLayer::new(
            InMemoryBackend::new(),
            Policy::new("wide", quota(100)),
        ))
        .rate_limit(RateLimitLayer::new(
            InMemoryBackend::new(),
            Policy::new("narrow", quota(1)),
        ))
        .apply(Router::new().route("/me", get(|| async { "me" })));
    let peer: SocketAddr = "192.0.2.1:1234".parse().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut request = get_me().body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        statuses.push(
            app.clone()
                .oneshot(request)
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(statuses, [200, 429]);
}

/// The guard admits the hosts and own origin it is given, and nothing
/// else; optional authentication lets anonymous callers through but still
/// refuses a bad credential, with the configured challenge.
#[tokio::test]
async fn hosts_own_origin_optional_auth_and_challenge() {
    let keys = ApiKeyService::builder(MemoryStore::new()).build();
    let app = SecurityStack::new()
        .allowed_hosts("mcp.example".parse().unwrap())
        .own_origin("https://mcp.example".parse().unwrap())
        .authenticate(ApiKeyAuthenticator::new(keys))
        .optional_auth()
        .challenge(mcp_security::auth::Challenge::new("notes"))
        .apply(Router::new().route("/me", get(|| async { "me" })));
    let send = |host: &'static str, origin: Option<&'static str>, key: Option<&'static str>| {
        let mut request = Request::get("/me").header("host", host);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        app.clone().oneshot(request.body(Body::empty()).unwrap())
    };
    // The configured host and origin, anonymous: through.
    let response = send("mcp.example", Some("https://mcp.example"), None)
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Loopback is no longer allowed once hosts are given.
    let (status, code_) = code(send("localhost", None, None).await.unwrap()).await;
    assert_eq!(
        (status, code_.as_str()),
        (StatusCode::FORBIDDEN, "host_not_allowed")
    );
    let (status, code_) = code(
        send("mcp.example", Some("https://other.example"), None)
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, code_.as_str()),
        (StatusCode::FORBIDDEN, "origin_not_allowed")
    );
    // A bad key is refused even in optional mode, with the challenge set.
    let response = send("mcp.example", None, Some("mcp_not_a_real_key"))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(challenge.contains("realm=\"notes\""), "{challenge}");
}

/// Headers other than the defaults, and a lockout, are applied; the
/// stack's `Debug` names what it holds.
#[tokio::test]
async fn custom_headers_and_the_lockout_apply() {
    use mcp_security::headers::SecurityHeadersLayer;
    use mcp_security::ratelimit::{FailureLimitLayer, InMemoryBackend, Policy, Quota};
    use std::net::SocketAddr;
    use std::time::Duration;

    let keys = ApiKeyService::builder(MemoryStore::new()).build();
    let lockout = FailureLimitLayer::new(
        InMemoryBackend::new(),
        Policy::new(
            "auth-failures",
            Quota::per(1, Duration::from_secs(60)).unwrap(),
        ),
        |status, _| status == StatusCode::UNAUTHORIZED,
    );
    let stack = SecurityStack::new()
        .headers(SecurityHeadersLayer::empty().set(
            http::HeaderName::from_static("x-stack"),
            http::HeaderValue::from_static("custom"),
        ))
        .lockout(lockout)
        .authenticate(ApiKeyAuthenticator::new(keys));
    let shown = format!("{stack:?}");
    assert!(
        shown.contains("SecurityStack") && shown.contains("lockout"),
        "{shown}"
    );
    let app = stack.apply(Router::new().route("/me", get(|| async { "me" })));
    let peer: SocketAddr = "192.0.2.9:1234".parse().unwrap();
    let mut statuses = Vec::new();
    for _ in 0..2 {
        let mut request = get_me()
            .header("x-api-key", "mcp_not_a_real_key")
            .body(Body::empty())
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(peer));
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.headers()["x-stack"], "custom");
        statuses.push(response.status().as_u16());
    }
    assert_eq!(
        statuses,
        [401, 429],
        "the second refused credential is locked out"
    );
}
