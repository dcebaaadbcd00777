//! Overhead of `RateLimitLayer` on the in-process backend (keyed by peer IP)
//! against a bare service in the same run: allowed requests with and without
//! headers, and refused ones (`429`).
//!
//! `cargo bench -p mcp-benches --bench ratelimit`

use std::convert::Infallible;
use std::hint::black_box;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mcp_ratelimit::{
    Check, HeaderStyle, InMemoryBackend, Policy, Quota, RateKey, RateLimitBackend, RateLimitLayer,
};
use tower::{Layer, Service, ServiceExt, service_fn};

async fn handler(_req: Request<()>) -> Result<Response<bytes::Bytes>, Infallible> {
    Ok(Response::new(bytes::Bytes::new()))
}

fn request() -> Request<()> {
    let mut request = Request::new(());
    request
        .extensions_mut()
        .insert(SocketAddr::from(([192, 0, 2, 1], 4321)));
    request
}

const REMAINING: http::HeaderName = http::HeaderName::from_static("ratelimit-remaining");

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("ratelimit");
    let mut bare = service_fn(handler);
    group.bench_function("bare", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let svc = bare.ready().await.expect("ready");
                let response = svc.call(request()).await.expect("call");
                // The same checks as the layered runs, so they cost the same.
                assert_eq!(response.status(), 200);
                assert!(!response.headers().contains_key(REMAINING));
                black_box(response)
            })
        })
    });
    // A quota no benchmark run can use up (10 million a second), so every
    // request is admitted.
    let quota = Quota::per(10_000, Duration::from_millis(1)).expect("quota");
    let mut layered =
        RateLimitLayer::new(Arc::new(InMemoryBackend::new()), Policy::new("api", quota))
            .layer(service_fn(handler));
    group.bench_function("in_process", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let svc = layered.ready().await.expect("ready");
                let response = svc.call(request()).await.expect("call");
                assert_eq!(response.status(), 200);
                assert!(response.headers().contains_key(REMAINING));
                black_box(response)
            })
        })
    });
    // The same decision without writing headers: what the limiter itself
    // costs, apart from the three header insertions.
    let mut headerless =
        RateLimitLayer::new(Arc::new(InMemoryBackend::new()), Policy::new("api", quota))
            .headers(HeaderStyle::NONE)
            .layer(service_fn(handler));
    group.bench_function("in_process_no_headers", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let svc = headerless.ready().await.expect("ready");
                let response = svc.call(request()).await.expect("call");
                assert_eq!(response.status(), 200);
                assert!(!response.headers().contains_key(REMAINING));
                black_box(response)
            })
        })
    });
    // Over quota: one request an hour, used up before measuring, so every
    // measured request is answered 429 (a problem body, `Retry-After`).
    let mut refusing = RateLimitLayer::new(
        Arc::new(InMemoryBackend::new()),
        Policy::new(
            "api",
            Quota::per(1, Duration::from_secs(3600)).expect("quota"),
        ),
    )
    .layer(service_fn(handler));
    runtime.block_on(async {
        let svc = refusing.ready().await.expect("ready");
        assert_eq!(svc.call(request()).await.expect("call").status(), 200);
    });
    group.bench_function("in_process_refused", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let svc = refusing.ready().await.expect("ready");
                let response = svc.call(request()).await.expect("call");
                assert_eq!(response.status(), 429);
                assert!(response.headers().contains_key(REMAINING));
                black_box(response)
            })
        })
    });
    // The parts on their own, no runtime: one in-process decision (governor's
    // keyed GCRA, the clock, the key's hash), and three header insertions
    // into a fresh response, which is what every limited response pays.
    let backend = InMemoryBackend::new();
    let policy = Policy::new("api", quota);
    let key = RateKey::ip(std::net::IpAddr::from([192, 0, 2, 1]));
    group.bench_function("decision_only", |b| {
        b.iter(|| match backend.check(&policy, black_box(&key), 1) {
            Check::Ready(decision) => black_box(decision.expect("decision")),
            Check::Pending(_) => unreachable!("the in-process backend decides at once"),
        })
    });
    let names = [
        http::HeaderName::from_static("ratelimit-limit"),
        http::HeaderName::from_static("ratelimit-remaining"),
        http::HeaderName::from_static("ratelimit-reset"),
    ];
    let value = http::HeaderValue::from_static("42");
    group.bench_function("three_headers_only", |b| {
        b.iter(|| {
            let mut response = Response::new(bytes::Bytes::new());
            for name in &names {
                response.headers_mut().insert(name.clone(), value.clone());
            }
            black_box(response)
        })
    });
    group.bench_function("empty_response_only", |b| {
        b.iter(|| black_box(Response::new(bytes::Bytes::new())))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
