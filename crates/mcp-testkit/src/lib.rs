//! Test support shared by the workspace's suites (never a dependency of a
//! published crate's code).
//!
//! - Services: a test that needs PostgreSQL, Redis or Chromium is marked
//!   `#[cfg_attr(not(test_postgres), ignore = "...")]`; the cfg comes from
//!   `build/test-services.rs` (`MCP_TEST_SERVICES`, or `CI=true`: the one
//!   place that decides what "in CI" means). Where the
//!   service was promised and is unreachable, [`unreachable()`] fails the test:
//!   nothing here skips silently.
//! - [`spare_port`]: a loopback port nobody in this process was handed.
//! - [`PgSchema`]: a PostgreSQL schema of a test's own, dropped afterwards,
//!   also when the test panics.

use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::Mutex;
use std::time::Duration;

use sqlx::Connection;

/// A promised service is unreachable: fail, naming it and how to skip it.
#[track_caller]
pub fn unreachable(service: &str, error: &dyn std::fmt::Display) -> ! {
    panic!(
        "{service} is unreachable ({error}), but this run was promised it \
         (CI=true or MCP_TEST_SERVICES). Start it, or unset MCP_TEST_SERVICES \
         outside CI to count its tests as ignored."
    )
}

/// `TEST_POSTGRES_URL`, or the local server of the README.
pub fn postgres_url() -> String {
    std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `TEST_REDIS_URL`, or the local server of the README.
pub fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// A name no other test (in any process) is using: `<prefix>_<uuid>`.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// A loopback TCP port that was free a moment ago and that no other caller
/// in this process has been given. Another process may still take it
/// between now and the bind (the OS hands out ephemeral ports in sequence,
/// which makes that rare); tests that start a server on it should treat a
/// failed bind as a retryable start, not as the behaviour under test.
pub fn spare_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
    let given = given.get_or_insert_with(HashSet::new);
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind an ephemeral loopback port")
            .port();
        if given.insert(port) {
            return port;
        }
    }
}

/// A PostgreSQL schema of a test's own, dropped (`CASCADE`) when this value
/// is dropped, which includes unwinding from a failed assertion.
#[derive(Debug)]
pub struct PgSchema {
    name: String,
    admin_url: String,
}

impl PgSchema {
    /// Creates `<prefix>_<uuid>` on [`postgres_url`]. Fails the test, via
    /// [`unreachable()`], when PostgreSQL does not answer within 5 s.
    pub async fn create(prefix: &str) -> PgSchema {
        let admin_url = postgres_url();
        let mut conn = match tokio::time::timeout(
            Duration::from_secs(5),
            sqlx::PgConnection::connect(&admin_url),
        )
        .await
        {
            Ok(Ok(conn)) => conn,
            Ok(Err(e)) => unreachable("PostgreSQL", &e),
            Err(e) => unreachable("PostgreSQL", &e),
        };
        let name = unique(prefix);
        // The name is ours (a prefix from the test and a uuid), not input.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {name}")))
            .execute(&mut conn)
            .await
            .expect("create schema");
        let _ = conn.close().await;
        PgSchema { name, admin_url }
    }

    /// The schema's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let name = std::mem::take(&mut self.name);
        let url = self.admin_url.clone();
        // Drop may run inside a runtime (which cannot block) or during a
        // panic: a thread with a runtime of its own works in both.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&url).await {
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                        "DROP SCHEMA IF EXISTS {name} CASCADE"
                    )))
                    .execute(&mut conn)
                    .await;
                }
            });
        })
        .join();
    }
}

/// Fails unless `shown` (a `Debug` output, a log line, an error body)
/// holds no 8-character run of `secret` in any usual spelling: text, hex
/// (either case), base64 (standard or URL-safe) or a list of bytes.
pub fn assert_hidden(shown: &str, secret: &[u8]) {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
    let decimal: String = secret.iter().map(u8::to_string).collect();
    let spellings = [
        String::from_utf8_lossy(secret).into_owned(),
        hex.clone(),
        hex.to_uppercase(),
        decimal,
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
    ];
    // Byte lists (`[115, 117, ...]`) read as one run once squeezed.
    let squeezed: String = shown.split(", ").collect();
    for hay in [shown, squeezed.as_str()] {
        for spelling in &spellings {
            for run in spelling.as_bytes().windows(8) {
                let run = String::from_utf8_lossy(run);
                assert!(!hay.contains(run.as_ref()), "{shown} shows {run}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spare_ports_are_never_handed_out_twice() {
        let ports: HashSet<u16> = (0..200).map(|_| spare_port()).collect();
        assert_eq!(ports.len(), 200);
    }
}
