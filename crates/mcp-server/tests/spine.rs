//! End-to-end: the real binary over real HTTP, on SQLite and on PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Proxy, TestDb, TestServer, run_binary};
use mcp_server::with_pool;
use serde_json::Value;

const SECURITY_HEADERS: &[(&str, &str)] = &[
    (
        "content-security-policy",
        "default-src 'none'; frame-ancestors 'none'",
    ),
    (
        "strict-transport-security",
        "max-age=31536000; includeSubDomains",
    ),
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
    ("cross-origin-opener-policy", "same-origin"),
    ("cross-origin-resource-policy", "same-origin"),
    ("x-dns-prefetch-control", "off"),
    ("x-permitted-cross-domain-policies", "none"),
];

fn assert_security_headers(response: &reqwest::Response) {
    for (name, value) in SECURITY_HEADERS {
        assert_eq!(
            response.headers().get(*name).map(|v| v.to_str().unwrap()),
            Some(*value),
            "{name} on {}",
            response.url()
        );
    }
    assert!(response.headers().get("server").is_none());
    assert!(response.headers().get("x-powered-by").is_none());
}

async fn problem(response: reqwest::Response) -> Value {
    assert_eq!(
        response.headers()["content-type"],
        "application/problem+json",
        "{}",
        response.url()
    );
    response.json().await.expect("problem body")
}

async fn health_answers_with_every_security_header(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    let response = reqwest::get(server.url("/health")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_security_headers(&response);
    assert!(response.headers().contains_key("x-request-id"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, serde_json::json!({"status": "ok"}));
}
both_databases!(
    health_answers_with_every_security_header,
    health_answers_with_every_security_header
);

async fn unknown_path_is_a_404_problem(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    let response = reqwest::get(server.url("/no/such/thing?x=1"))
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_security_headers(&response);
    let body = problem(response).await;
    assert_eq!(body["code"], "not_found");
    assert_eq!(body["status"], 404);
    assert_eq!(body["type"], "about:blank");

    let response = reqwest::Client::new()
        .delete(server.url("/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(problem(response).await["code"], "method_not_allowed");
}
both_databases!(unknown_path_is_a_404_problem, unknown_path_is_a_404_problem);

async fn body_limit_admits_100_kib_and_refuses_more(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    let client = reqwest::Client::new();
    // The login route reads its body: 102,400 bytes (a JSON object padded
    // with spaces) are read and validated (400), not refused as too large.
    let mut at_limit = br#"{"email":"a@example.com"}"#.to_vec();
    at_limit.resize(102_400, b' ');
    let response = client
        .post(server.url("/api/auth/login"))
        .header("content-type", "application/json")
        .body(at_limit)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(problem(response).await["code"], "validation_failed");

    // One byte more is refused from its Content-Length, before any handler
    // reads it. The client announces the body with `Expect: 100-continue`
    // and sends it only if asked, as large uploads should: a server that
    // answers early and closes would otherwise race the upload.
    let (status, head, body) = common::expect_continue(
        server.addr,
        "POST /api/auth/login",
        &[("content-type", "application/json")],
        &vec![b' '; 102_401],
    )
    .await;
    assert_eq!(status, 413, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("x-content-type-options: nosniff")
    );
    let body: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(body["code"], "payload_too_large");
    assert_eq!(body["limit"], 102_400);

    // (A chunked body cut where it crosses the limit is shown in-process,
    // in `http::tests::an_oversized_stream_without_length_is_also_413`.)
}
both_databases!(
    body_limit_admits_100_kib_and_refuses_more,
    body_limit_admits_100_kib_and_refuses_more
);

async fn ready_checks_the_database(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    let response = reqwest::get(server.url("/health/ready")).await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"status": "ok", "checks": {"database": "ok", "redis": "disabled"}})
    );
}
both_databases!(ready_checks_the_database, ready_checks_the_database);

async fn a_second_start_reuses_the_database(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    let (status, _) = server.terminate();
    assert!(status.success());

    // Leave a mark the server did not write, then start again on the same
    // database: it must still be there, and migrations must not re-run.
    let direct = db.direct().await;
    let kept = direct
        .setting_or_insert("test-marker", "first")
        .await
        .unwrap();
    assert_eq!(kept, "first");
    let migrations_before: i64 = with_pool!(&direct, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .unwrap()
    });

    let server = TestServer::start(&db, &[]);
    let response = reqwest::get(server.url("/health/ready")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        direct.setting("test-marker").await.unwrap().as_deref(),
        Some("first")
    );
    let migrations_after: i64 = with_pool!(&direct, |pool| {
        sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
            .fetch_one(pool)
            .await
            .unwrap()
    });
    assert_eq!(migrations_before, migrations_after);
    assert!(migrations_after >= 1);
    if db.backend == Backend::Sqlite {
        assert!(common::sqlite_file(&db).exists());
    }
}
both_databases!(
    a_second_start_reuses_the_database,
    a_second_start_reuses_the_database
);

async fn sigterm_stops_cleanly(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    assert_eq!(
        reqwest::get(server.url("/health")).await.unwrap().status(),
        200
    );
    let (status, logs) = server.terminate();
    assert!(status.success(), "exit status {status}\n{logs}");
    assert!(logs.contains("shutting down"), "{logs}");
    assert!(logs.contains("SIGTERM"), "{logs}");
    assert!(logs.contains("\"stopped\""), "{logs}");
}
both_databases!(sigterm_stops_cleanly, sigterm_stops_cleanly);

async fn request_logs_are_one_line_each_and_hold_no_secrets(db: TestDb) {
    let server = TestServer::start(&db, &[]);
    let client = reqwest::Client::new();
    let secrets = [
        "Bearer eyJhbGciOiJIUzI1NiJ9.SECRET-JWT.sig",
        "mcp_SECRETAPIKEY000000000000000000000000000000000000",
        "session=SECRET-COOKIE",
        "SECRET-BODY-PASSWORD",
        "SECRET-QUERY-TOKEN",
    ];
    let response = client
        .post(server.url("/health?token=SECRET-QUERY-TOKEN"))
        .header("authorization", secrets[0])
        .header("x-api-key", secrets[1])
        .header("cookie", secrets[2])
        .header("x-request-id", "trace-me-1")
        .body(r#"{"password":"SECRET-BODY-PASSWORD"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["x-request-id"], "trace-me-1");
    let response = client
        .get(server.url("/health"))
        .header("authorization", secrets[0])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let generated = response.headers()["x-request-id"]
        .to_str()
        .unwrap()
        .to_owned();

    assert!(server.wait_for_log(|l| l.contains(&generated)).await);
    let logs = server.logs();
    for secret in secrets {
        assert!(!logs.contains(secret), "{secret} leaked into logs:\n{logs}");
    }
    for request_id in ["trace-me-1", generated.as_str()] {
        let lines: Vec<Value> = server
            .log_records()
            .into_iter()
            .filter(|r| r["span"]["request_id"] == request_id)
            .collect();
        assert_eq!(lines.len(), 1, "one line per request: {lines:?}");
        let line = &lines[0];
        assert_eq!(line["span"]["route"], "/health");
        assert!(line["span"]["method"].is_string());
        assert!(line["fields"]["status"].is_u64());
        assert!(line["fields"]["latency_ms"].is_number());
    }
}
both_databases!(
    request_logs_are_one_line_each_and_hold_no_secrets,
    request_logs_are_one_line_each_and_hold_no_secrets
);

async fn migrate_applies_and_exits(db: TestDb) {
    let url = db.url();
    let (code, _, stderr) = run_binary(
        db.dir.path(),
        &["migrate"],
        &[("DATABASE_URL", url.as_str()), ("MCP_LOG_FORMAT", "json")],
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("migrations applied"), "{stderr}");
    let direct = db.direct().await;
    assert_eq!(direct.setting("nothing").await.unwrap(), None);
    // Idempotent.
    let (code, _, stderr) = run_binary(
        db.dir.path(),
        &["migrate"],
        &[("DATABASE_URL", url.as_str())],
    );
    assert_eq!(code, Some(0), "{stderr}");
}
both_databases!(migrate_applies_and_exits, migrate_applies_and_exits);

async fn config_file_is_read_and_env_wins(db: TestDb) {
    let file = db.dir.path().join("mcp.toml");
    std::fs::write(
        &file,
        format!(
            "database_url = {:?}\nbody_limit = \"1KiB\"\nbind = \"127.0.0.1:1\"\n",
            db.url()
        ),
    )
    .unwrap();
    let file = file.to_str().unwrap().to_owned();
    // MCP_BIND from the harness (port 0) wins over the file's port 1.
    let server = TestServer::start_in(db.dir.path(), &[("MCP_CONFIG", file.as_str())]);
    let response = reqwest::Client::new()
        .post(server.url("/health"))
        .body(vec![b'x'; 1025])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(problem(response).await["limit"], 1024);
}
both_databases!(
    config_file_is_read_and_env_wins,
    config_file_is_read_and_env_wins
);

/// SQLite is a file opened by the server itself, so "unreachable" only has a
/// meaning for PostgreSQL: a proxy between the server and PostgreSQL cuts
/// every connection and refuses new ones, then lets them through again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_postgres),
    ignore = "needs PostgreSQL: MCP_TEST_SERVICES=postgres (CI=true implies it)"
)]
async fn ready_names_an_unreachable_database_and_recovers() {
    let db = TestDb::new(Backend::Postgres).await;
    let proxy = Proxy::start(common::postgres_socket_addr()).await;
    let url = db.url_via(Some(proxy.addr));
    let server = TestServer::start(
        &db,
        &[
            ("DATABASE_URL", url.as_str()),
            ("MCP_DB_ACQUIRE_TIMEOUT", "300ms"),
        ],
    );
    let client = reqwest::Client::new();
    let ready = || client.get(server.url("/health/ready")).send();
    assert_eq!(ready().await.unwrap().status(), 200);

    proxy.down();
    let response = ready().await.unwrap();
    assert_eq!(response.status(), 503);
    assert_security_headers(&response);
    let body = problem(response).await;
    assert_eq!(body["code"], "unavailable");
    assert_eq!(body["checks"]["database"], "down");
    assert_eq!(body["checks"]["redis"], "disabled");
    assert!(body["detail"].as_str().unwrap().contains("database"));
    // The process keeps serving what does not need the database.
    assert_eq!(
        client
            .get(server.url("/health"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    proxy.up();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = ready().await.unwrap().status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "did not recover: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn bad_settings_stop_start_up_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (env, needle) in [
        (("MCP_BIND", "nonsense"), "MCP_BIND"),
        (
            ("DATABASE_URL", "mysql://root:pw@localhost/db"),
            "DATABASE_URL",
        ),
        (("MCP_BODY_LIMIT", "huge"), "MCP_BODY_LIMIT"),
    ] {
        let (code, stdout, stderr) = run_binary(dir.path(), &[], &[env]);
        assert_eq!(code, Some(2), "{env:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{env:?}: {stderr}");
        assert!(stderr.starts_with("error: invalid setting "), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(!stderr.contains("pw@"), "{stderr}");
        assert!(stdout.is_empty());
    }
    // Nothing was created by a refused start.
    assert!(!dir.path().join("mcp-server.db").exists());
}

#[test]
fn an_unreachable_database_at_start_is_one_line_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    // A port nobody listens on.
    let port = mcp_testkit::spare_port();
    let url = format!("postgres://postgres:hunter2@127.0.0.1:{port}/test");
    let (code, _, stderr) = run_binary(
        dir.path(),
        &[],
        &[
            ("DATABASE_URL", url.as_str()),
            ("MCP_DB_ACQUIRE_TIMEOUT", "200ms"),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("error: cannot open the database"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn help_explains_each_command() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, _) = run_binary(dir.path(), &["--help"], &[]);
    assert_eq!(code, Some(0));
    for needle in ["serve", "migrate", "--config", "MCP_BIND", "SIGTERM"] {
        assert!(stdout.contains(needle), "{needle} missing from:\n{stdout}");
    }
    let (code, stdout, _) = run_binary(dir.path(), &["migrate", "--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(stdout.contains("migrations"));
}

#[test]
fn an_unknown_command_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run_binary(dir.path(), &["frobnicate"], &[]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("frobnicate"));
}
