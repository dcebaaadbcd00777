//! Good, bad and hostile bodies: each answered with the documented status and
//! code, never a panic, and every failing field listed at once.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use garde::Validate;
use http::{Request, StatusCode};
use mcp_validate::{FieldCase, Limits, Valid, from_slice, json_body, parse};
use serde::Deserialize;
use serde_json::Value;
use tower::ServiceExt;

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct UserCreate {
    #[garde(email, length(max = 254))]
    email: String,
    #[garde(length(chars, min = 8, max = 1024))]
    password: String,
    #[garde(length(chars, min = 1, max = 200))]
    name: String,
}

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct AgentCreate {
    #[garde(length(min = 1, max = 100))]
    name: String,
    #[garde(length(min = 1, max = 50))]
    r#type: String,
    #[serde(default)]
    #[garde(length(max = 10), inner(length(min = 1, max = 50)))]
    capabilities: Vec<String>,
    #[serde(default)]
    #[garde(dive)]
    metadata: Option<Meta>,
    #[serde(default)]
    #[garde(inner(range(min = 1, max = 3650)))]
    expires_in_days: Option<u32>,
}

#[derive(Debug, Deserialize, Validate)]
struct Meta {
    #[garde(length(min = 1))]
    owner: String,
}

fn limits() -> Limits {
    Limits {
        field_case: FieldCase::CamelCase,
        ..Limits::default()
    }
}

fn fields(problem: &mcp_core::Problem) -> Vec<String> {
    let mut fields: Vec<String> = problem.errors().iter().map(|e| e.field.clone()).collect();
    fields.sort();
    fields
}

#[test]
fn good_bodies_pass_and_unknown_fields_are_dropped() {
    let user: UserCreate = parse(
        br#"{"email":"ada@example.com","password":"correct horse","name":"Ada","role":"x","__proto__":{}}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(user.name, "Ada");
    let agent: AgentCreate = parse(
        br#"{"name":"crawler","type":"web","capabilities":["fetch","parse"],"metadata":{"owner":"ops","x":1}}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(agent.capabilities.len(), 2);
}

#[test]
fn every_failing_field_is_listed_with_its_path() {
    let problem = parse::<UserCreate>(
        br#"{"email":"nope","password":"short","name":""}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
    assert_eq!(problem.code(), "validation_failed");
    assert_eq!(fields(&problem), ["email", "name", "password"]);
    let codes: Vec<&str> = problem.errors().iter().map(|e| e.code.as_ref()).collect();
    assert!(
        codes.contains(&"email") && codes.contains(&"length"),
        "{codes:?}"
    );

    let problem = parse::<AgentCreate>(
        br#"{"name":"a","type":"","capabilities":["ok","","fine",""],"metadata":{"owner":""},"expiresInDays":0}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        fields(&problem),
        [
            "capabilities[1]",
            "capabilities[3]",
            "expiresInDays",
            "metadata.owner",
            "type"
        ]
    );
}

#[test]
fn wrong_types_and_missing_fields_are_each_listed() {
    let problem = parse::<UserCreate>(br#"{"email":5,"password":["x"],"name":{"a":1}}"#, &limits())
        .unwrap_err();
    assert_eq!(problem.code(), "validation_failed");
    assert_eq!(fields(&problem), ["email", "name", "password"]);
    assert!(problem.errors().iter().all(|e| e.code == "type"));

    let problem = parse::<UserCreate>(b"{}", &limits()).unwrap_err();
    assert_eq!(fields(&problem), ["email", "name", "password"]);
    assert!(problem.errors().iter().all(|e| e.code == "required"));

    let problem = parse::<AgentCreate>(
        br#"{"name":true,"capabilities":["a",7,null],"expiresInDays":"5"}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        fields(&problem),
        [
            "capabilities[1]",
            "capabilities[2]",
            "expiresInDays",
            "name",
            "type"
        ]
    );
}

#[test]
fn hostile_bodies() {
    let limits = limits();
    // 1,000-deep nesting: refused before the parser recurses.
    let deep = format!(r#"{{"name":{}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
    let problem = parse::<AgentCreate>(deep.as_bytes(), &limits).unwrap_err();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (400, "malformed_json")
    );
    // 10 MB: over the limit.
    let huge = format!(r#"{{"name":"{}"}}"#, "a".repeat(10 * 1024 * 1024));
    let problem = parse::<AgentCreate>(huge.as_bytes(), &limits).unwrap_err();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (413, "payload_too_large")
    );
    // Exactly the limit passes the size check.
    let mut at_limit = br#"{"name":"a","type":"b"}"#.to_vec();
    at_limit.resize(102_400, b' ');
    assert!(parse::<AgentCreate>(&at_limit, &limits).is_ok());
    at_limit.push(b' ');
    assert_eq!(
        parse::<AgentCreate>(&at_limit, &limits)
            .unwrap_err()
            .status(),
        413
    );
    // Invalid UTF-8, truncated, garbage, empty: malformed, with a position
    // and without echoing the input.
    for body in [
        &b"{\"name\":\"\xff\xfe\"}"[..],
        b"{\"name\":",
        b"{\"name\" \"x\"}",
        b"secret-garbage",
        b"",
        b"{} {}",
    ] {
        let problem = parse::<AgentCreate>(body, &limits).unwrap_err();
        assert_eq!(problem.code(), "malformed_json", "{body:?}");
        let detail = problem.detail().unwrap();
        assert!(detail.contains("line"), "{detail}");
        assert!(!detail.contains("secret-garbage"), "{detail}");
    }
    // Duplicate keys are refused, at any depth.
    for body in [
        &br#"{"name":"a","name":"b","type":"x"}"#[..],
        br#"{"name":"a","type":"x","metadata":{"owner":"a","owner":"b"}}"#,
    ] {
        let problem = parse::<AgentCreate>(body, &limits).unwrap_err();
        assert_eq!(problem.code(), "malformed_json");
        assert!(problem.detail().unwrap().contains("twice"));
    }
    // Not an object.
    for body in [&b"[]"[..], b"\"x\"", b"42", b"null", b"true"] {
        let problem = parse::<AgentCreate>(body, &limits).unwrap_err();
        assert_eq!(problem.code(), "validation_failed", "{body:?}");
    }
    // Absurd numbers and long strings are just wrong values.
    let problem =
        parse::<AgentCreate>(br#"{"name":"a","type":"b","expiresInDays":1e400}"#, &limits)
            .unwrap_err();
    assert_eq!(problem.status(), 400);
    let problem = parse::<AgentCreate>(
        br#"{"name":"a","type":"b","expiresInDays":99999999999999999999999}"#,
        &limits,
    )
    .unwrap_err();
    assert_eq!(problem.status(), 400);
}

#[test]
fn content_type() {
    let body = br#"{"name":"a","type":"b"}"#;
    let problem = from_slice::<AgentCreate>(None, body, &limits()).unwrap_err();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (415, "unsupported_media_type")
    );
    let text = http::HeaderValue::from_static("text/plain");
    assert_eq!(
        from_slice::<AgentCreate>(Some(&text), body, &limits())
            .unwrap_err()
            .status(),
        415
    );
    let json = http::HeaderValue::from_static("application/json; charset=utf-8");
    assert!(from_slice::<AgentCreate>(Some(&json), body, &limits()).is_ok());
}

#[tokio::test]
async fn plain_function_over_any_body() {
    let request = Request::post("/")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(bytes::Bytes::from_static(
            br#"{"name":"a","type":"b"}"#,
        )))
        .unwrap();
    let (parts, agent): (_, AgentCreate) = json_body(request, &limits()).await.unwrap();
    assert_eq!(parts.method, http::Method::POST);
    assert_eq!(agent.name, "a");
    // A streamed body over the limit is cut.
    let chunks = futures_chunks();
    let request = Request::post("/")
        .header("content-type", "application/json")
        .body(chunks)
        .unwrap();
    let problem = json_body::<AgentCreate, _>(
        request,
        &Limits {
            max_bytes: 1000,
            ..limits()
        },
    )
    .await
    .unwrap_err();
    assert_eq!(problem.status(), 413);
}

fn futures_chunks() -> http_body_util::StreamBody<
    impl futures_util::Stream<Item = Result<http_body::Frame<bytes::Bytes>, Infallible>>,
> {
    http_body_util::StreamBody::new(futures_util::stream::iter(
        (0..10).map(|_| Ok(http_body::Frame::data(bytes::Bytes::from(vec![b' '; 512])))),
    ))
}

#[tokio::test]
async fn the_axum_extractor() {
    async fn create(Valid(agent): Valid<AgentCreate>) -> String {
        agent.name
    }
    let app = Router::new().route("/agents", post(create));
    let send = |content_type: Option<&'static str>, body: Vec<u8>| {
        let app = app.clone();
        async move {
            let mut request = Request::post("/agents");
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            let response = app
                .oneshot(request.body(Body::from(body)).unwrap())
                .await
                .unwrap();
            let status = response.status().as_u16();
            let bytes = http_body_util::BodyExt::collect(response.into_body())
                .await
                .unwrap()
                .to_bytes();
            (
                status,
                serde_json::from_slice::<Value>(&bytes).unwrap_or(Value::Null),
            )
        }
    };
    let (status, _) = send(
        Some("application/json"),
        br#"{"name":"x","type":"y"}"#.to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    let (status, body) = send(None, br#"{"name":"x","type":"y"}"#.to_vec()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );
    let (status, body) = send(Some("application/json"), br#"{"name":""}"#.to_vec()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    assert_eq!(body["errors"].as_array().unwrap().len(), 2);
    let (status, body) = send(Some("application/json"), vec![b' '; 200_000]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("payload_too_large"))
    );
}
