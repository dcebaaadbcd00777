//! The ceiling of `benches/load`: the routes the load scenarios hit, as a
//! bare axum app with no layers at all (no authentication, limits, CORS
//! layer, request ids, logs or metrics). Each handler does the work the
//! real route cannot avoid (serialise the same JSON, parse the same body)
//! and nothing else.
//!
//! `bare_axum [ADDR]` (default `127.0.0.1:0`) prints `listening on ADDR`.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Json};
use axum::routing::get;
use axum::serve::ListenerExt;
use serde::{Deserialize, Serialize};

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Me {
    id: &'static str,
    email: &'static str,
    name: &'static str,
    role: &'static str,
    auth_method: &'static str,
}

#[derive(Deserialize, Serialize)]
struct NewAgent {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    capabilities: Vec<String>,
}

async fn health() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        r#"{"status":"ok"}"#,
    )
}

async fn me() -> Json<Me> {
    Json(Me {
        id: "0190d8a4-7c5e-7a51-9a7e-3f0a3c2b1d00",
        email: "bench@example.com",
        name: "bench",
        role: "user",
        auth_method: "jwt",
    })
}

async fn create_agent(Json(agent): Json<NewAgent>) -> impl IntoResponse {
    (StatusCode::CREATED, Json(agent))
}

async fn list_agents() -> Json<Vec<NewAgent>> {
    Json(Vec::new())
}

/// What a CORS preflight answer carries, with nothing checked.
async fn preflight() -> impl IntoResponse {
    let mut headers = HeaderMap::new();
    for (name, value) in [
        (
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            "http://app.example.com",
        ),
        (
            header::ACCESS_CONTROL_ALLOW_METHODS,
            "GET,POST,PUT,PATCH,DELETE",
        ),
        (
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            "authorization,content-type,x-api-key",
        ),
        (header::ACCESS_CONTROL_MAX_AGE, "600"),
        (header::VARY, "origin"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    (StatusCode::NO_CONTENT, headers)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let app = Router::new()
        .route("/health", get(health))
        .route("/api/auth/me", get(me).options(preflight))
        .route(
            "/api/agents",
            get(list_agents).post(create_agent).options(preflight),
        );
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    // As the server does: a streamed answer must not wait on Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
