//! Build script shared by the packages whose tests need a real PostgreSQL,
//! Redis or Chromium. It turns `MCP_TEST_SERVICES` (and `CI`) into cfgs, so
//! a test that needs a service is `#[ignore]`d, and counted as ignored in
//! the test summary, where the service was not promised:
//!
//! - `MCP_TEST_SERVICES=postgres,redis,chromium` (or `all`) promises them;
//! - `CI=true` (or `1`) promises all of them.
//!
//! A promised service that is unreachable fails its tests: CI never skips.
//!
//! It also rebuilds a package whose `migrations` directory changed:
//! `sqlx::migrate!` embeds the directory at compile time, and cargo would
//! not otherwise know that a new file in it changes the crate.

fn main() {
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=MCP_TEST_SERVICES");
    if std::path::Path::new("migrations").is_dir() {
        println!("cargo::rerun-if-changed=migrations");
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    let promised = std::env::var("MCP_TEST_SERVICES").unwrap_or_default();
    let promised: Vec<&str> = promised.split(',').map(str::trim).collect();
    for service in ["postgres", "redis", "chromium"] {
        println!("cargo::rustc-check-cfg=cfg(test_{service})");
        if ci || promised.contains(&"all") || promised.contains(&service) {
            println!("cargo::rustc-cfg=test_{service}");
        }
    }
}
