//! Redis decision latency on loopback: 20,000 sequential decisions through
//! the Redis backend; prints p50, p90, p99 and max.
//!
//! `cargo bench -p mcp-benches --bench ratelimit_redis` (needs Redis at
//! `TEST_REDIS_URL`, default `redis://127.0.0.1:6379`; fails without it).

use std::time::{Duration, Instant};

use mcp_ratelimit::{Policy, Quota, RateKey, RateLimitBackend, RedisBackend};

fn main() {
    let url =
        std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        // No Redis is a failure, not a skip: a bench that measures nothing
        // and exits 0 looks like a result.
        let backend = RedisBackend::connect(&url, "bench")
            .await
            .unwrap_or_else(|error| {
                panic!("Redis unreachable at {url} (set TEST_REDIS_URL): {error}")
            });
        let policy = Policy::new(
            "bench",
            Quota::per(u32::MAX, Duration::from_secs(3600)).expect("quota"),
        );
        // Warm up: connection and script cache.
        for i in 0..1_000u32 {
            let _ = backend
                .check(&policy, &RateKey::text(format!("w{}", i % 64)), 1)
                .decision()
                .await;
        }
        let mut samples = Vec::with_capacity(20_000);
        for i in 0..20_000u32 {
            let key = RateKey::text(format!("k{}", i % 1024));
            let started = Instant::now();
            let decision = backend
                .check(&policy, &key, 1)
                .decision()
                .await
                .expect("decision");
            samples.push(started.elapsed());
            assert!(decision.allowed);
        }
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
        println!(
            "redis decision latency over {} decisions: p50 {:?}, p90 {:?}, p99 {:?}, max {:?}",
            samples.len(),
            at(0.50),
            at(0.90),
            at(0.99),
            samples[samples.len() - 1]
        );
    });
}
