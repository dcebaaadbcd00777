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
