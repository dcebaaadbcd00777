//! Overhead of `SecurityHeadersLayer` over a bare service, in the same run.
//!
//! `cargo bench -p mcp-benches --bench headers`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mcp_headers::SecurityHeadersLayer;
use tower::{Layer, Service, ServiceExt, service_fn};

async fn handler(_req: Request<()>) -> Result<Response<&'static str>, Infallible> {
    Ok(Response::new("{}"))
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("security_headers");

    let mut bare = service_fn(handler);
    group.bench_function("bare", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let svc = bare.ready().await.expect("ready");
                black_box(svc.call(Request::new(())).await.expect("call"))
            })
        })
    });

    let mut layered = SecurityHeadersLayer::new().layer(service_fn(handler));
    group.bench_function("layered", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let svc = layered.ready().await.expect("ready");
                black_box(svc.call(Request::new(())).await.expect("call"))
            })
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
