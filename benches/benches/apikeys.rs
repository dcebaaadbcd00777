//! Overhead of `AuthLayer` + `ApiKeyAuthenticator` on a valid key that is
//! in the cache (the steady state), against a bare service in the same run.
//!
//! `cargo bench -p mcp-benches --bench apikeys`

use std::convert::Infallible;
use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mcp_apikeys::{ApiKeyAuthenticator, ApiKeyService, KeyHasher, MemoryStore};
use mcp_auth::AuthLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn handler(_req: Request<()>) -> Result<Response<bytes::Bytes>, Infallible> {
    Ok(Response::new(bytes::Bytes::new()))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let keys = Arc::new(
        ApiKeyService::builder(MemoryStore::new())
            .hasher(KeyHasher::peppered(b"bench pepper"))
            .build(),
    );
    let (_, secret) = runtime
        .block_on(keys.create("user-1", "bench", Some(vec!["mcp".into()]), None))
        .expect("key");
    let key = secret.expose().to_owned();

    let mut group = c.benchmark_group("apikeys");
    let mut bare = service_fn(handler);
    group.bench_function("bare", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = Request::get("/")
                    .header("x-api-key", key.as_str())
                    .body(())
                    .expect("request");
                let svc = bare.ready().await.expect("ready");
                black_box(svc.call(request).await.expect("call"))
            })
        })
    });

    let mut layered =
        AuthLayer::new(ApiKeyAuthenticator::new(keys.clone())).layer(service_fn(handler));
    group.bench_function("cached_key", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let request = Request::get("/")
                    .header("x-api-key", key.as_str())
                    .body(())
                    .expect("request");
                let svc = layered.ready().await.expect("ready");
                let response = svc.call(request).await.expect("call");
                assert_eq!(response.status(), 200);
                black_box(response)
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
