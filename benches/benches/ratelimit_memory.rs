//! One million distinct keys through the in-process backend, then idle
//! eviction; prints resident memory (VmRSS) before, after filling and after
//! evicting.
//!
//! `cargo bench -p mcp-benches --bench ratelimit_memory`

use std::sync::Arc;
use std::time::Duration;

use mcp_core::ManualClock;
use mcp_ratelimit::{Check, InMemoryBackend, Policy, Quota, RateKey, RateLimitBackend};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn main() {
    const KEYS: u32 = 1_000_000;
    let clock = ManualClock::at_unix(1_800_000_000);
    let backend = Arc::new(
        InMemoryBackend::new()
            .clock(clock.shared())
            .max_keys(2_000_000),
    );
    let policy = Policy::new(
        "api",
        Quota::per(100, Duration::from_secs(60)).expect("quota"),
    );
    let before = rss_kib();
    let started = std::time::Instant::now();
    for i in 0..KEYS {
        // Distinct IPv4 clients: 10.x.y.z.
        let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i);
        let key = RateKey::ip(ip.into());
        match backend.check(&policy, &key, 1) {
            Check::Ready(Ok(decision)) => assert!(decision.allowed),
            _ => panic!("in-process decisions are immediate"),
        }
    }
    let fill = started.elapsed();
    let filled = rss_kib();
    let tracked = backend.tracked_keys();
    clock.advance(Duration::from_secs(61));
    let started = std::time::Instant::now();
    let left = backend.evict_idle();
    let evict = started.elapsed();
    let evicted = rss_kib();
    println!("keys: {KEYS} distinct, tracked after filling: {tracked}, after eviction: {left}");
    println!(
        "fill: {:.0} ns/key; eviction: {:.0} ms",
        fill.as_nanos() as f64 / f64::from(KEYS),
        evict.as_secs_f64() * 1000.0
    );
    println!(
        "VmRSS: before {:.1} MiB, filled {:.1} MiB (+{:.0} bytes/key), after eviction {:.1} MiB",
        before as f64 / 1024.0,
        filled as f64 / 1024.0,
        (filled.saturating_sub(before) * 1024) as f64 / f64::from(KEYS),
        evicted as f64 / 1024.0
    );
}
