//! Overhead of `AuthLayer` + `JwtAuthenticator` on a valid token, for HS256,
//! ES256 and EdDSA, against a bare service in the same run: `*/cached` is
//! the default (a client reusing its token), `*/full` verifies the signature
//! and claims on every request (`no_cache`). `*/bare` sends the same request
//! (same token) to the service without the layer.
//!
//! `cargo bench -p mcp-benches --bench auth`

use std::convert::Infallible;
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::{Request, Response};
use mcp_auth::{
    AccessToken, AuthLayer, JwtAuthenticator, SigningKey, TokenIssuer, TrustedIssuer, VerifyingKey,
};
use tower::{Layer, Service, ServiceExt, service_fn};

const ISS: &str = "https://mcp.example.com";
const AUD: &str = "https://mcp.example.com/mcp";
const KEYS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../crates/mcp-auth/tests/keys/"
);

async fn handler(_req: Request<()>) -> Result<Response<bytes::Bytes>, Infallible> {
    Ok(Response::new(bytes::Bytes::new()))
}

fn read(name: &str) -> Vec<u8> {
    std::fs::read(format!("{KEYS}{name}")).expect("test key")
}

fn case(name: &str) -> (VerifyingKey, SigningKey) {
    match name {
        "HS256" => {
            let secret = [7u8; 32];
            (
                VerifyingKey::hmac(&secret).expect("key"),
                SigningKey::hmac(&secret).expect("key"),
            )
        }
        "ES256" => (
            VerifyingKey::ec_pem(&read("ec-public.pem")).expect("key"),
            SigningKey::ec_pem(&read("ec-private.pem")).expect("key"),
        ),
        _ => (
            VerifyingKey::ed_pem(&read("ed-public.pem")).expect("key"),
            SigningKey::ed_pem(&read("ed-private.pem")).expect("key"),
        ),
    }
}

fn request(authorization: &str) -> Request<()> {
    Request::get("/")
        .header("authorization", authorization)
        .body(())
        .expect("request")
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("auth");

    for name in ["HS256", "ES256", "EdDSA"] {
        let (verifying, signing) = case(name);
        let token = TokenIssuer::new(signing, ISS, AUD)
            .issue(
                &AccessToken::new("user-1")
                    .role("user")
                    .email("a@example.com"),
            )
            .expect("token");
        let authorization = format!("Bearer {}", token.expose());
        // The same request (this token) without the layer, so the difference
        // is the layer and not a shorter header.
        let mut bare = service_fn(handler);
        group.bench_function(format!("{name}/bare"), |b| {
            b.iter(|| {
                runtime.block_on(async {
                    let svc = bare.ready().await.expect("ready");
                    let response = svc.call(request(&authorization)).await.expect("call");
                    assert_eq!(response.status(), 200);
                    black_box(response)
                })
            })
        });
        for cached in [true, false] {
            let builder = JwtAuthenticator::builder()
                .trust(TrustedIssuer::new(ISS, AUD).key(verifying.clone()));
            let builder = if cached { builder } else { builder.no_cache() };
            let jwt = builder.build().expect("authenticator");
            let mut layered = AuthLayer::new(jwt).layer(service_fn(handler));
            let id = format!("{name}/{}", if cached { "cached" } else { "full" });
            group.bench_function(id, |b| {
                b.iter(|| {
                    runtime.block_on(async {
                        let svc = layered.ready().await.expect("ready");
                        let response = svc.call(request(&authorization)).await.expect("call");
                        assert_eq!(response.status(), 200);
                        black_box(response)
                    })
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
