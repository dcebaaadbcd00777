//! The layers in an axum app of your own: JWT and API-key authentication,
//! scopes, rate limiting, CORS with the Origin guard, validated JSON bodies,
//! security headers and problem+json errors. Everything in memory.
//!
//! ```sh
//! cargo run -p mcp-examples --example axum_layers
//! # it prints an API key and a JWT; then:
//! curl -i -H "X-API-Key: $KEY" http://127.0.0.1:3000/me
//! curl -i -H "Authorization: Bearer $JWT" -H 'content-type: application/json' \
//!      -d '{"title":"hello","tags":["a"]}' http://127.0.0.1:3000/notes
//! curl -i http://127.0.0.1:3000/me                  # 401 problem+json
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::{get, post};
use axum::{Json, Router};
use mcp_security::SecurityStack;
use mcp_security::apikeys::{ApiKeyAuthenticator, ApiKeyService, MemoryStore};
use mcp_security::auth::{
    AccessToken, Authenticated, JwtAuthenticator, RequireLayer, SigningKey, TokenIssuer,
    TrustedIssuer, VerifyingKey,
};
use mcp_security::ratelimit::{
    InMemoryBackend, PeerIp, Policy, PrincipalOrIp, Quota, RateLimitLayer,
};
use mcp_security::validate::Valid;
use serde::Deserialize;
use serde_json::{Value, json};

const ISSUER: &str = "http://127.0.0.1:3000";
const AUDIENCE: &str = "http://127.0.0.1:3000/mcp";

/// A note to create: every rule is checked, every failing field reported.
#[derive(Deserialize, garde::Validate)]
struct NewNote {
    #[garde(length(min = 1, max = 200))]
    title: String,
    #[garde(length(max = 10), inner(length(min = 1, max = 32)))]
    #[serde(default)]
    tags: Vec<String>,
}

async fn me(Authenticated(principal): Authenticated) -> Json<Value> {
    Json(json!({
        "subject": principal.subject(),
        "authMethod": principal.auth_method().as_str(),
        "scopes": principal.scopes(),
    }))
}

async fn create_note(
    Authenticated(principal): Authenticated,
    Valid(note): Valid<NewNote>,
) -> (http::StatusCode, Json<Value>) {
    (
        http::StatusCode::CREATED,
        Json(json!({"owner": principal.subject(), "title": note.title, "tags": note.tags})),
    )
}

/// The application: `quota` for the api policy, `secret` for JWTs, `keys`
/// for API keys. The stack puts every check in the safe order.
fn app(secret: &[u8], keys: Arc<ApiKeyService>, quota: Quota) -> Router {
    let jwt = JwtAuthenticator::builder()
        .trust(TrustedIssuer::new(ISSUER, AUDIENCE).key(VerifyingKey::hmac(secret).expect("key")))
        .build()
        .expect("JWT settings");
    let routes = Router::new().route("/me", get(me)).route(
        "/notes",
        post(create_note).route_layer(RequireLayer::scope("notes:write")),
    );
    SecurityStack::new()
        .cors("https://app.example.com".parse().expect("origins"))
        .own_origin(ISSUER.parse().expect("origin"))
        .authenticate(jwt) // tried in order: JWTs, then API keys
        .authenticate(ApiKeyAuthenticator::new(keys))
        // Keyed by API key or user when authenticated, else by peer IP.
        .rate_limit(
            RateLimitLayer::new(InMemoryBackend::new(), Policy::new("api", quota))
                .key(PrincipalOrIp::with_fallback(PeerIp)),
        )
        .apply(routes)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let secret = b"an example secret, at least 32 bytes long";
    let keys = Arc::new(ApiKeyService::builder(MemoryStore::new()).build());
    let (_, key) = keys
        .create("user-1", "example", Some(vec!["notes:write".into()]), None)
        .await
        .expect("key");
    let issuer = TokenIssuer::new(SigningKey::hmac(secret).expect("secret"), ISSUER, AUDIENCE);
    let token = issuer
        .issue(&AccessToken::new("user-1").role("user"))
        .expect("token");
    eprintln!("API key (scope notes:write): {}", key.expose());
    eprintln!("JWT (unrestricted):          {}", token.expose());

    let quota = Quota::per(100, Duration::from_secs(60)).expect("quota");
    let app = app(secret, keys, quota);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    eprintln!("listening on http://{}", listener.local_addr()?);
    // The peer address reaches `PeerIp` through `ConnectInfo`.
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_real_requests_through_every_layer() {
        let secret = b"a test secret of at least 32 bytes!!";
        let keys = Arc::new(ApiKeyService::builder(MemoryStore::new()).build());
        let (_, key) = keys
            .create("user-1", "test", Some(vec!["notes:write".into()]), None)
            .await
            .unwrap();
        let (_, read_only) = keys
            .create("user-2", "ro", Some(vec![]), None)
            .await
            .unwrap();
        let token = TokenIssuer::new(SigningKey::hmac(secret).unwrap(), ISSUER, AUDIENCE)
            .issue(&AccessToken::new("user-3").role("user"))
            .unwrap();
        let quota = Quota::per(8, Duration::from_secs(60)).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let app = app(secret, keys, quota);
        tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
        });
        let client = reqwest::Client::new();

        // An API key: who am I, with the rate-limit headers.
        let response = client
            .get(format!("{base}/me"))
            .header("x-api-key", key.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "8");
        assert_eq!(response.headers()["x-content-type-options"], "nosniff");
        let me: Value = response.json().await.unwrap();
        assert_eq!(me["authMethod"], "api_key");
        assert_eq!(me["scopes"], json!(["notes:write"]));

        // A JWT: a validated note.
        let response = client
            .post(format!("{base}/notes"))
            .bearer_auth(token.expose())
            .json(&json!({"title": "hello", "tags": ["a"], "ignored": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        let note: Value = response.json().await.unwrap();
        assert_eq!(
            note,
            json!({"owner": "user-3", "title": "hello", "tags": ["a"]})
        );

        // Every failing field at once.
        let response = client
            .post(format!("{base}/notes"))
            .header("x-api-key", key.expose())
            .json(&json!({"title": "", "tags": ["", "ok", ""]}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "validation_failed");
        let mut fields: Vec<&str> = problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["field"].as_str().unwrap())
            .collect();
        fields.sort();
        assert_eq!(fields, ["tags[0]", "tags[2]", "title"]);

        // No credentials, a key without the scope, a foreign Origin.
        let response = client.get(format!("{base}/me")).send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let response = client
            .post(format!("{base}/notes"))
            .header("x-api-key", read_only.expose())
            .json(&json!({"title": "x"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        let response = client
            .get(format!("{base}/me"))
            .header("x-api-key", key.expose())
            .header("origin", "https://evil.example")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);

        // The order of checks: an oversized body is refused before any
        // credential is asked for, as a problem; so is a wrong method.
        let response = client
            .post(format!("{base}/notes"))
            .header("content-type", "application/json")
            .body(vec![b' '; 200 * 1024])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413);
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        let response = client
            .delete(format!("{base}/me"))
            .header("x-api-key", read_only.expose())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "method_not_allowed");

        // A browser's preflight from the allowed origin.
        let response = client
            .request(reqwest::Method::OPTIONS, format!("{base}/notes"))
            .header("origin", "https://app.example.com")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-api-key, content-type")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 204);
        assert_eq!(
            response.headers()["access-control-allow-origin"],
            "https://app.example.com"
        );

        // The quota of 8: two used by this key above; the ninth request is
        // 429 with Retry-After.
        let mut statuses = Vec::new();
        for _ in 0..7 {
            let response = client
                .get(format!("{base}/me"))
                .header("x-api-key", key.expose())
                .send()
                .await
                .unwrap();
            statuses.push(response.status().as_u16());
            if response.status() == 429 {
                assert!(response.headers().contains_key("retry-after"));
            }
        }
        assert_eq!(statuses, [200, 200, 200, 200, 200, 200, 429]);
    }
}
