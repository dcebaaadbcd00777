//! The server's request spine (`mcp-serve`) and a CORS preflight answered
//! by `mcp-cors`, each beside a bare axum router answering the same, in
//! the same run. `benches/ratios.py` prints each one as a ratio to its
//! group's `bare`.
//!
//! `cargo bench -p mcp-benches --bench spine`

use std::hint::black_box;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::routing::{get, options};
use criterion::{Criterion, criterion_group, criterion_main};
use http::{HeaderValue, Request, StatusCode, header};
use mcp_cors::{CorsPolicy, HostOriginGuardLayer};
use mcp_serve::spine::{SpineSettings, spine};
use tower::{Service, ServiceExt};

const ORIGIN: &str = "https://app.example.com";

fn health() -> Router {
    Router::new().route(
        "/health",
        get(|| async {
            (
                [(header::CONTENT_TYPE, "application/json")],
                r#"{"status":"ok"}"#,
            )
        }),
    )
}

fn get_health() -> Request<Body> {
    Request::get("/health")
        .header(header::HOST, "127.0.0.1:8080")
        .body(Body::empty())
        .expect("request")
}

fn preflight() -> Request<Body> {
    Request::options("/api/agents")
        .header(header::HOST, "127.0.0.1:8080")
        .header(header::ORIGIN, ORIGIN)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
        .body(Body::empty())
        .expect("request")
}

/// Drives `service` with `request()` and checks the status, so every
/// entry does (and is checked to do) the same work.
fn run<S>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &tokio::runtime::Runtime,
    name: &str,
    service: S,
    request: fn() -> Request<Body>,
    status: StatusCode,
) where
    S: Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    group.bench_function(name, |b| {
        b.iter(|| {
            runtime.block_on(async {
                let response = service.clone().oneshot(request()).await.expect("call");
                assert_eq!(response.status(), status);
                black_box(response)
            })
        })
    });
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let policy: CorsPolicy = ORIGIN.parse().expect("policy");
    let settings = || SpineSettings::new(1 << 20, Duration::from_secs(30));
    let guarded = || SpineSettings {
        guard: Some(HostOriginGuardLayer::new(policy.clone())),
        cors: policy.layer(),
        ..settings()
    };

    let mut group = c.benchmark_group("spine");
    run(
        &mut group,
        &runtime,
        "bare",
        health(),
        get_health,
        StatusCode::OK,
    );
    run(
        &mut group,
        &runtime,
        "spine",
        spine(health(), settings()),
        get_health,
        StatusCode::OK,
    );
    run(
        &mut group,
        &runtime,
        "spine_guard_cors",
        spine(health(), guarded()),
        get_health,
        StatusCode::OK,
    );
    group.finish();

    let mut group = c.benchmark_group("cors_preflight");
    let bare = Router::new().route(
        "/api/agents",
        options(|| async {
            let value = HeaderValue::from_static;
            (
                StatusCode::NO_CONTENT,
                [
                    (header::ACCESS_CONTROL_ALLOW_ORIGIN, value(ORIGIN)),
                    (header::ACCESS_CONTROL_ALLOW_CREDENTIALS, value("true")),
                    (header::ACCESS_CONTROL_ALLOW_METHODS, value("GET,POST")),
                    (header::ACCESS_CONTROL_ALLOW_HEADERS, value("authorization")),
                    (header::ACCESS_CONTROL_MAX_AGE, value("86400")),
                    (header::VARY, value("origin")),
                ],
            )
        }),
    );
    run(
        &mut group,
        &runtime,
        "bare",
        bare,
        preflight,
        StatusCode::NO_CONTENT,
    );
    let layered = tower::ServiceBuilder::new()
        .layer(policy.layer())
        .service(Router::new().route("/api/agents", get(|| async { "" })));
    run(
        &mut group,
        &runtime,
        "cors_layer",
        layered,
        preflight,
        StatusCode::NO_CONTENT,
    );
    run(
        &mut group,
        &runtime,
        "spine_guard_cors",
        spine(Router::new(), guarded()),
        preflight,
        StatusCode::NO_CONTENT,
    );
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
