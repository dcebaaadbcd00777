//! End-to-end: the real binary over real HTTP, on SQLite and on PostgreSQL.

mod common;

use std::time::{Duration, Instant};

use common::{Backend, Proxy, TestDb, TestServer, run_binary};
use mcp_server::db::Database;
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

/// The secrets of one request and the forms a log could hold them in.
fn encodings(secret: &str) -> Vec<String> {
    use base64::Engine;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    vec![
        secret.to_owned(),
        STANDARD.encode(secret),
        URL_SAFE_NO_PAD.encode(secret),
        hex,
        // JSON-escaped and percent-encoded forms are the text itself for
        // the characters used here; a debug print of bytes is not.
        format!("{:?}", secret.as_bytes()),
    ]
}

/// Credentials through every way the auth layer reads them, accepted and
/// refused, at log level `debug` for every crate: none of the secrets, in
/// any of their obvious encodings, reaches a log line.
async fn credentials_on_every_auth_path_stay_out_of_debug_logs(db: TestDb) {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    const RIGHT: &str = "Right-PW-7f3a9c";
    const WRONG: &str = "Wrong-PW-2b8e1d";
    const FRESH: &str = "Fresh-PW-5c6d0e";
    const JWT_SECRET: &str = "Jwt-Secret-4e9b27c1d8a05f3e6b7c9d0a";
    let user = common::create_user(&db, "ada@example.com", RIGHT, "user");
    let server = TestServer::start(&db, &[("MCP_JWT_SECRET", JWT_SECRET), ("MCP_LOG", "debug")]);
    let api = common::Api::new(&server);
    let login = |password: &'static str| {
        api.call(
            "POST",
            "/api/auth/login",
            None,
            Some(serde_json::json!({"email": "ada@example.com", "password": password})),
        )
    };
    let me = |header: &'static str, value: String| {
        let request = api
            .client
            .get(format!("{}/api/auth/me", api.base))
            .header(header, value);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body["code"].as_str().map(str::to_owned))
        }
    };

    // Login: a wrong password, then the right one.
    let (status, _, body) = login(WRONG).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_credentials"))
    );
    let (status, _, body) = login(RIGHT).await;
    assert_eq!(status, 200, "{body}");
    let jwt = body["accessToken"].as_str().unwrap().to_owned();

    // A key (its secret is in the answer), and one revoked at once.
    let mut keys = Vec::new();
    for name in ["kept", "revoked"] {
        let (status, _, created) = api
            .call(
                "POST",
                "/api/keys",
                Some(&jwt),
                Some(serde_json::json!({"name": name})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        keys.push((
            created["key"].as_str().unwrap().to_owned(),
            created["id"].as_str().unwrap().to_owned(),
        ));
    }
    let (key, revoked) = (keys[0].0.clone(), keys[1].0.clone());
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/keys/{}", keys[1].1),
            Some(&jwt),
            None,
        )
        .await;
    assert_eq!(status, 204);
    // One character changed: the checksum no longer matches.
    let mut mistyped = key.clone().into_bytes();
    mistyped[10] = if mistyped[10] == b'a' { b'b' } else { b'a' };
    let mistyped = String::from_utf8(mistyped).unwrap();
    // A well-formed token signed with another secret.
    let forged = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &serde_json::json!({"sub": user["id"], "exp": 4_000_000_000u64}),
        &jsonwebtoken::EncodingKey::from_secret(b"Forged-Secret-0123456789abcdefgh"),
    )
    .unwrap();

    // /api/auth/me, accepted and refused, by each way of presenting them.
    assert_eq!(me("authorization", format!("Bearer {jwt}")).await.0, 200);
    assert_eq!(me("x-api-key", key.clone()).await.0, 200);
    assert_eq!(me("authorization", format!("Bearer {key}")).await.0, 200);
    assert_eq!(
        me("authorization", format!("Bearer {forged}")).await,
        (401, Some("invalid_token".to_owned()))
    );
    assert_eq!(
        me("x-api-key", mistyped.clone()).await,
        (401, Some("invalid_api_key".to_owned()))
    );
    assert_eq!(
        me("x-api-key", revoked.clone()).await,
        (401, Some("invalid_api_key".to_owned()))
    );

    // A password change: a wrong current password, then the right one.
    let path = format!("/api/users/{}", user["id"].as_str().unwrap());
    let (status, _, _) = api
        .call(
            "PATCH",
            &path,
            Some(&jwt),
            Some(serde_json::json!({"password": FRESH, "currentPassword": WRONG})),
        )
        .await;
    assert_eq!(status, 401);
    let (status, _, body) = api
        .call(
            "PATCH",
            &path,
            Some(&jwt),
            Some(serde_json::json!({"password": FRESH, "currentPassword": RIGHT})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // The WebSocket: the browser's `bearer.<token>` subprotocol, accepted
    // (and used for a call) and refused.
    let upgrade = |token: &str| {
        let mut request = format!("ws://{}/ws", server.addr)
            .into_client_request()
            .unwrap();
        request.headers_mut().insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_str(&format!("mcp, bearer.{token}")).unwrap(),
        );
        tokio_tungstenite::connect_async(request)
    };
    let (mut socket, response) = upgrade(&jwt).await.expect("a browser's upgrade");
    assert_eq!(response.status(), 101);
    let initialize = serde_json::json!({
        "jsonrpc": "2.0", "id": 1, "method": "initialize",
        "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                   "clientInfo": {"name": "logs", "version": "1"}}
    });
    socket
        .send(Message::text(initialize.to_string()))
        .await
        .unwrap();
    let answer = loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => break text,
            Some(Ok(_)) => continue,
            other => panic!("no answer to initialize: {other:?}"),
        }
    };
    assert!(answer.contains("mcp-server"), "{answer}");
    socket.close(None).await.unwrap();
    match upgrade(&forged).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 401);
        }
        other => panic!("a forged subprotocol token: {:?}", other.map(|_| ())),
    }

    // Everything above was logged (at debug, many lines each) before the
    // last request's line.
    let (status, headers, _) = api.call("GET", "/api/auth/me", Some(&key), None).await;
    assert_eq!(status, 200);
    let last = headers["x-request-id"].to_str().unwrap().to_owned();
    assert!(server.wait_for_log(|l| l.contains(&last)).await);
    let records = server.log_records();
    assert!(
        records.iter().any(|r| r["level"] == "DEBUG"),
        "the log level is really debug"
    );
    for (route, status) in [
        ("/api/auth/login", 401),
        ("/api/auth/login", 200),
        ("/api/auth/me", 200),
        ("/api/auth/me", 401),
        ("/api/users/{id}", 401),
        ("/api/users/{id}", 200),
        ("/ws", 101),
        ("/ws", 401),
    ] {
        assert!(
            records
                .iter()
                .any(|r| r["span"]["route"] == route && r["fields"]["status"] == status),
            "no {status} line for {route}: the request was not logged"
        );
    }

    let signature = |token: &str| token.rsplit('.').next().unwrap().to_owned();
    let logs = server.logs();
    let mut secrets = vec![
        RIGHT.to_owned(),
        WRONG.to_owned(),
        FRESH.to_owned(),
        JWT_SECRET.to_owned(),
        jwt.clone(),
        signature(&jwt),
        forged.clone(),
        signature(&forged),
    ];
    for key in [&key, &revoked, &mistyped] {
        secrets.push(key.clone());
        // The secret part without its `mcp_` prefix.
        secrets.push(key["mcp_".len()..].to_owned());
    }
    for secret in &secrets {
        for form in encodings(secret) {
            assert!(
                !logs.contains(&form),
                "{secret} leaked into the logs{}",
                if &form == secret {
                    String::new()
                } else {
                    format!(" as {form}")
                }
            );
        }
    }
}
both_databases!(
    credentials_on_every_auth_path_stay_out_of_debug_logs,
    credentials_on_every_auth_path_stay_out_of_debug_logs
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
