//! Allocations per request on the hot paths, counted by dhat's allocator
//! (testing mode): the whole application (spine, guard, CORS,
//! authentication from the caches, rate limits, the handler) against a bare
//! axum router serving the same answer, each request driven with
//! `ServiceExt::oneshot` after a warm-up, so what is counted is what every
//! request pays once caches are filled.
//!
//! The budgets are the counts measured when they were set (issue 14): a
//! change that adds an allocation to one of these paths fails here, and
//! says by how much. Before that issue the same paths made 247 (`/health`),
//! 356 (JWT), 353 (API key) and 277 (preflight) allocations more than the
//! bare router; what is left is listed in `docs/performance.md`.

use std::ffi::OsString;
use std::net::SocketAddr;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use serde_json::Value;
use tower::{Service, ServiceExt};

#[global_allocator]
static ALLOCATOR: dhat::Alloc = dhat::Alloc;

const ORIGIN: &str = "http://app.example.com";
const SECRET: &str = "alloc-test-secret-alloc-test-secret-0123456789";

/// Allocations made while `request` goes through `app` up to its response
/// head (the body is the transport's to write).
async fn allocations<S>(app: &S, request: impl Fn() -> Request<Body>) -> (u64, u16)
where
    S: Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    // Warm up: caches, lazily made metric handles, thread-local pools.
    for _ in 0..3 {
        let response = app.clone().oneshot(request()).await.unwrap();
        drop(response);
    }
    let mut counts = Vec::new();
    let mut status = 0;
    for _ in 0..5 {
        let request = request();
        let app = app.clone();
        let before = dhat::HeapStats::get().total_blocks;
        let response = app.oneshot(request).await.unwrap();
        let after = dhat::HeapStats::get().total_blocks;
        status = response.status().as_u16();
        counts.push(after - before);
        drop(response);
    }
    // The least of five: a rare refill (a pool growing, a moka
    // maintenance run) is not a per-request cost.
    (counts.into_iter().min().unwrap_or(0), status)
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder()
        .method(method)
        .uri(path)
        .header("host", "127.0.0.1:8080");
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let mut request = builder.body(Body::empty()).unwrap();
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    request
}

/// The bare ceiling: the same answers with nothing around them.
fn bare() -> axum::Router {
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/health",
            get(|| async {
                (
                    [(http::header::CONTENT_TYPE, "application/json")],
                    r#"{"status":"ok"}"#,
                )
            }),
        )
        .route(
            "/api/auth/me",
            get(|| async { axum::Json(serde_json::json!({"id": "x", "role": "user"})) }),
        )
        .route("/api/agents", axum::routing::options(|| async { "" }))
}

struct Fixture<S> {
    app: S,
    jwt: String,
    key: String,
    _dir: tempfile::TempDir,
}

async fn fixture() -> Fixture<
    impl Service<Request<Body>, Response = axum::response::Response, Error = std::convert::Infallible>
    + Clone,
> {
    let dir = tempfile::tempdir().unwrap();
    let env: Vec<(OsString, OsString)> = [
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.path().join("mcp.db").display()),
        ),
        ("MCP_JWT_SECRET", SECRET.to_owned()),
        ("MCP_CORS_ORIGIN", ORIGIN.to_owned()),
        ("MCP_ADMIN_EMAIL", "admin@example.com".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.into(), v.into()))
    .collect();
    let (config, _) = mcp_server::config::Config::load(None, env).unwrap();
    let state = mcp_server::Services::open(config).await.unwrap();
    let app = mcp_server::app(state.clone());

    // A user, its JWT and an API key of its own, through the API.
    let password_hash = state
        .passwords
        .hash("a-long-password".to_owned())
        .await
        .unwrap();
    let user = mcp_server::users::create(
        &state.db,
        mcp_server::users::NewUser {
            email: "user@example.com".to_owned(),
            name: "User".to_owned(),
            role: mcp_server::users::Role::User,
            password_hash,
        },
        mcp_server::users::now(&*state.clock),
    )
    .await
    .unwrap()
    .id;
    let login = call(
        &app,
        "POST",
        "/api/auth/login",
        &[],
        serde_json::json!({"email": "user@example.com", "password": "a-long-password"}),
    )
    .await;
    let jwt = login["accessToken"].as_str().unwrap().to_owned();
    let created = call(
        &app,
        "POST",
        "/api/keys",
        &[("authorization", &format!("Bearer {jwt}"))],
        serde_json::json!({"name": "alloc"}),
    )
    .await;
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["userId"], user.to_string(), "{created}");
    Fixture {
        app,
        jwt,
        key,
        _dir: dir,
    }
}

async fn call<S>(app: &S, method: &str, path: &str, headers: &[(&str, &str)], body: Value) -> Value
where
    S: Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut request = request(method, path, headers);
    request
        .headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    *request.body_mut() = Body::from(body.to_string());
    let response = app.clone().oneshot(request).await.unwrap();
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// Makes the same request again for each measured run.
type MakeRequest = Box<dyn Fn() -> Request<Body>>;

/// What each hot path allocates beyond the bare router, at most.
struct Budget {
    name: &'static str,
    extra: u64,
}

#[tokio::test(flavor = "current_thread")]
async fn hot_paths_allocate_no_more_than_their_budget() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let fixture = fixture().await;
    let bare = bare();
    let bearer = format!("Bearer {}", fixture.jwt);
    let paths: Vec<(Budget, MakeRequest)> = vec![
        (
            Budget {
                name: "GET /health",
                extra: 15,
            },
            Box::new(|| request("GET", "/health", &[])),
        ),
        (
            Budget {
                name: "GET /api/auth/me (JWT)",
                extra: 25,
            },
            Box::new(move || request("GET", "/api/auth/me", &[("authorization", &bearer)])),
        ),
        (
            Budget {
                name: "GET /api/auth/me (API key)",
                extra: 26,
            },
            Box::new({
                let key = fixture.key.clone();
                move || request("GET", "/api/auth/me", &[("x-api-key", &key)])
            }),
        ),
        (
            Budget {
                name: "OPTIONS /api/agents (preflight)",
                extra: 5,
            },
            Box::new(|| {
                request(
                    "OPTIONS",
                    "/api/agents",
                    &[
                        ("origin", ORIGIN),
                        ("access-control-request-method", "POST"),
                        (
                            "access-control-request-headers",
                            "authorization,content-type",
                        ),
                    ],
                )
            }),
        ),
    ];
    let mut over = Vec::new();
    for (budget, make) in &paths {
        let (ours, status) = allocations(&fixture.app, make).await;
        let (theirs, _) = allocations(&bare, make).await;
        assert!((200..300).contains(&status), "{}: {status}", budget.name);
        let extra = ours.saturating_sub(theirs);
        eprintln!(
            "{:<34} {ours:>4} allocations, bare {theirs:>3}, extra {extra:>3} (budget {})",
            budget.name, budget.extra
        );
        if extra > budget.extra {
            over.push(format!("{}: {extra} > {}", budget.name, budget.extra));
        }
    }
    assert!(over.is_empty(), "over budget: {over:?}");
}
