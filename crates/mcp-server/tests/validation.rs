//! End-to-end: what validation answers over real HTTP: every failing field
//! at once (enums included), a bounded answer to a hostile body, and `413`
//! for a chunked body over the limit.

mod common;

use common::{Api, TestDb, TestServer, create_user};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: (&str, &str) = ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef");
const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin-password";

fn sorted_fields(problem: &Value) -> Vec<String> {
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    fields.sort();
    fields
}

async fn user_create_lists_every_failing_field(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    let (status, _, problem) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "not-an-email", "password": "short", "role": "root"})),
        )
        .await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(problem["code"], "validation_failed");
    assert_eq!(
        sorted_fields(&problem),
        ["email", "name", "password", "role"],
        "{problem}"
    );
}
both_databases!(
    user_create_lists_every_failing_field,
    user_create_lists_every_failing_field
);

async fn a_hostile_body_gets_a_bounded_answer(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    // 80 KB: 40,000 numbers where capability strings belong.
    let mut body = br#"{"name":"a","type":"b","capabilities":["#.to_vec();
    body.extend(std::iter::repeat_n(&b"1,"[..], 40_000).flatten());
    body.pop();
    body.extend_from_slice(b"]}");
    let response = api
        .client
        .post(server.url("/api/agents"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);
    let bytes = response.bytes().await.expect("body");
    assert!(bytes.len() < 32 * 1024, "{} bytes of errors", bytes.len());
    let problem: Value = serde_json::from_slice(&bytes).expect("problem JSON");
    assert_eq!(problem["code"], "validation_failed");
    let errors = problem["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 100);
    // 40,000 wrong items. The list's length rule (at most 50) is not
    // checked once type errors fill the answer: the body is refused anyway.
    assert_eq!(
        problem["errorsTruncated"],
        40_000 - 100,
        "{}",
        problem["detail"]
    );
}
both_databases!(
    a_hostile_body_gets_a_bounded_answer,
    a_hostile_body_gets_a_bounded_answer
);

/// Sends `POST path` with a chunked body of `chunks` chunks of 512 spaces
/// (no Content-Length); returns the status and the raw response text.
async fn post_chunked(
    server: &TestServer,
    path: &str,
    token: &str,
    chunks: usize,
) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         authorization: Bearer {token}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n",
        server.addr
    );
    stream.write_all(head.as_bytes()).await.expect("write head");
    let chunk = format!("200\r\n{}\r\n", " ".repeat(512));
    for _ in 0..chunks {
        // The server may answer and close as soon as the limit is crossed.
        if stream.write_all(chunk.as_bytes()).await.is_err() {
            break;
        }
    }
    let _ = stream.write_all(b"0\r\n\r\n").await;
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received).await;
    let text = String::from_utf8_lossy(&received).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no response: {text:?}"));
    (status, text)
}

async fn a_chunked_body_over_the_limit_is_413(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = TestServer::start(&db, &[SECRET, ("MCP_BODY_LIMIT", "1KiB")]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    // 8 KiB without a Content-Length, to a route that validates its body.
    let (status, text) = post_chunked(&server, "/api/agents", &admin, 16).await;
    assert_eq!(status, 413, "{text}");
    assert!(text.contains(r#""code":"payload_too_large""#), "{text}");
    // Under the limit, the same framing is read and validated.
    let (status, text) = post_chunked(&server, "/api/agents", &admin, 1).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("malformed_json"), "{text}");
}
both_databases!(
    a_chunked_body_over_the_limit_is_413,
    a_chunked_body_over_the_limit_is_413
);
