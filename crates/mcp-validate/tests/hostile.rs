//! Good, bad and hostile bodies: each answered with the documented status and
//! code, never a panic, and every failing field listed at once.

use std::convert::Infallible;

use axum::Router;
use axum::body::Body;
use axum::routing::post;
use garde::Validate;
use http::{Request, StatusCode};
use mcp_validate::{FieldCase, Limits, Valid, from_slice, json_body, parse, read_body};
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

mod common;
use common::AgentCreate;

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

#[test]
fn the_size_limit_admits_exactly_max_bytes_and_names_itself() {
    for max in [30, 102_400] {
        let limits = Limits {
            max_bytes: max,
            ..limits()
        };
        let mut body = br#"{"name":"a","type":"b"}"#.to_vec();
        body.resize(max, b' ');
        assert!(parse::<AgentCreate>(&body, &limits).is_ok(), "{max} bytes");
        body.push(b' ');
        let problem = parse::<AgentCreate>(&body, &limits).unwrap_err();
        assert_eq!(
            (problem.status().as_u16(), problem.code()),
            (413, "payload_too_large")
        );
        let detail = format!("the request body is larger than {max} bytes");
        assert_eq!(problem.detail(), Some(detail.as_str()));
        assert_eq!(problem.extension("limit"), Some(&Value::from(max)));
    }
}

/// `[[...]]` nested `levels` deep.
fn nest(levels: usize) -> String {
    "[".repeat(levels) + &"]".repeat(levels)
}

#[test]
fn nesting_is_counted_outside_strings_and_32_levels_pass() {
    let limits = limits();
    for prefix in [
        r#"{"name":"a","type":"b","x":"#,
        // Brackets inside strings are text.
        r#"{"name":"[[[[[[[[{{{{{{{{","type":"b","x":"#,
        // An escaped quote does not end the string, the next quote does.
        r#"{"name":"say \"hi\"","type":"b","x":"#,
        // An escaped backslash does not escape the quote after it.
        r#"{"name":"back\\","type":"b","x":"#,
    ] {
        // The object is the first level: 1 + 31 = 32 passes.
        let deepest = format!("{prefix}{}}}", nest(31));
        let agent = parse::<AgentCreate>(deepest.as_bytes(), &limits);
        assert!(agent.is_ok(), "{deepest}: {agent:?}");
        let too_deep = format!("{prefix}{}}}", nest(32));
        let problem = parse::<AgentCreate>(too_deep.as_bytes(), &limits).unwrap_err();
        assert_eq!(
            (problem.status().as_u16(), problem.code()),
            (400, "malformed_json"),
            "{too_deep}"
        );
        // The 32nd bracket of the array is the 33rd level.
        let detail = format!(
            "the body nests deeper than 32 levels (at byte {})",
            prefix.len() + 31
        );
        assert_eq!(problem.detail(), Some(detail.as_str()), "{too_deep}");
    }
    // A lower limit counts the same way.
    let two = Limits {
        max_depth: 2,
        ..limits
    };
    let problem = parse::<AgentCreate>(br#"{"name":"\"[","type":"b","x":[[]]}"#, &two).unwrap_err();
    assert_eq!(
        problem.detail(),
        Some("the body nests deeper than 2 levels (at byte 30)")
    );
    assert!(parse::<AgentCreate>(br#"{"name":"\"[","type":"b","x":[]}"#, &two).is_ok());
}

/// A body whose second chunk fails to arrive.
fn broken_body() -> http_body_util::StreamBody<
    impl futures_util::Stream<Item = Result<http_body::Frame<bytes::Bytes>, std::io::Error>>,
> {
    http_body_util::StreamBody::new(futures_util::stream::iter([
        Ok(http_body::Frame::data(bytes::Bytes::from_static(
            b"{\"name\":",
        ))),
        Err(std::io::Error::other("connection reset")),
    ]))
}

#[tokio::test]
async fn a_body_that_fails_to_arrive_is_400_not_413() {
    let expected = (
        400,
        "bad_request".to_owned(),
        Some("the request body could not be read".to_owned()),
    );
    let answer = |problem: mcp_core::Problem| {
        (
            problem.status().as_u16(),
            problem.code().to_owned(),
            problem.detail().map(str::to_owned),
        )
    };
    let problem = read_body(broken_body(), 1000).await.unwrap_err();
    assert_eq!(answer(problem), expected);
    // Inside axum's body error too: only a length limit's error is 413.
    let problem = read_body(Body::new(broken_body()), 1000).await.unwrap_err();
    assert_eq!(answer(problem), expected);
    let request = Request::post("/")
        .header("content-type", "application/json")
        .body(broken_body())
        .unwrap();
    let problem = json_body::<AgentCreate, _>(request, &limits())
        .await
        .unwrap_err();
    assert_eq!(answer(problem), expected);
}

#[tokio::test]
async fn a_streamed_body_of_exactly_the_limit_is_read_whole() {
    // 10 chunks of 512 bytes: 5,120 bytes.
    let bytes = read_body(futures_chunks(), 5_120).await.unwrap();
    assert_eq!(bytes.len(), 5_120);
    let problem = read_body(futures_chunks(), 5_119).await.unwrap_err();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (413, "payload_too_large")
    );
    assert_eq!(
        problem.detail(),
        Some("the request body is larger than 5119 bytes")
    );
}

#[derive(Debug, Deserialize, Validate)]
struct Renamed {
    #[serde(rename = "ttl")]
    #[garde(range(min = 1))]
    expires: u32,
    #[serde(default)]
    #[garde(length(min = 1), inner(length(min = 1)))]
    tags: Vec<String>,
}

fn listed(problem: &mcp_core::Problem) -> Vec<(String, String)> {
    problem
        .errors()
        .iter()
        .map(|e| (e.field.clone(), e.code.to_string()))
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(f, c)| ((*f).to_owned(), (*c).to_owned()))
        .collect()
}

#[test]
fn rule_errors_of_fields_the_body_lacks() {
    // A field filled in by `#[serde(default)]` is checked like any other:
    // an empty list where one entry is needed is reported.
    let problem = parse::<Renamed>(br#"{"ttl":5}"#, &limits()).unwrap_err();
    assert_eq!(listed(&problem), pairs(&[("tags", "length")]));
    // A rule error of a renamed field is reported, under the Rust name.
    let problem = parse::<Renamed>(br#"{"ttl":0,"tags":["a"]}"#, &limits()).unwrap_err();
    assert_eq!(listed(&problem), pairs(&[("expires", "range")]));
    // Once a placeholder stood in for `ttl`, the rule error of that
    // placeholder (named `expires`, which the body lacks) is not reported;
    // rule errors of values the body has still are.
    let problem = parse::<Renamed>(br#"{"ttl":"soon","tags":["a"]}"#, &limits()).unwrap_err();
    assert_eq!(listed(&problem), pairs(&[("ttl", "type")]));
    let problem = parse::<Renamed>(br#"{"tags":["a",""]}"#, &limits()).unwrap_err();
    assert_eq!(
        listed(&problem),
        pairs(&[("ttl", "required"), ("tags[1]", "length")])
    );
}

fn level_in_range(value: &u32, (): &()) -> garde::Result {
    if *value == 7 {
        return Err(garde::Error::new("7 is outside the allowed range"));
    }
    Ok(())
}

fn few_characters(value: &str, (): &()) -> garde::Result {
    if value.len() > 3 {
        return Err(garde::Error::new("at most 3 characters"));
    }
    Ok(())
}

fn not_reserved(value: &str, (): &()) -> garde::Result {
    if value == "root" {
        return Err(garde::Error::new("is reserved"));
    }
    Ok(())
}

#[derive(Debug, Deserialize, Validate)]
struct Rules {
    #[garde(email)]
    email: String,
    #[garde(length(min = 2))]
    short: String,
    #[garde(length(chars, max = 2))]
    long: String,
    #[garde(range(min = 1, max = 10))]
    low: u32,
    #[garde(range(min = 1, max = 10))]
    high: u32,
    #[garde(custom(level_in_range))]
    level: u32,
    #[garde(pattern(r"^[a-z]+$"))]
    slug: String,
    #[garde(skip)]
    password: String,
    #[garde(matches(password))]
    password_again: String,
    #[garde(custom(few_characters))]
    code: String,
    #[garde(ascii)]
    plain: String,
    #[garde(custom(not_reserved))]
    owner: String,
}

#[test]
fn each_rule_has_its_code() {
    let problem = parse::<Rules>(
        r#"{"email":"nope","short":"a","long":"abc","low":0,"high":11,"level":7,
            "slug":"Not A Slug","password":"one","password_again":"two","code":"abcd",
            "plain":"é","owner":"root"}"#
            .as_bytes(),
        &Limits::default(),
    )
    .unwrap_err();
    let mut codes = listed(&problem);
    codes.sort();
    assert_eq!(
        codes,
        pairs(&[
            ("code", "length"),
            ("email", "email"),
            ("high", "range"),
            ("level", "range"),
            ("long", "length"),
            ("low", "range"),
            ("owner", "invalid"),
            ("password_again", "pattern"),
            ("plain", "invalid"),
            ("short", "length"),
            ("slug", "pattern"),
        ])
    );
}

#[test]
fn a_struct_of_the_wrong_type_is_reported_and_the_rest_still_checked() {
    let problem = parse::<AgentCreate>(
        br#"{"name":"a","type":"b","metadata":5,"capabilities":[""]}"#,
        &limits(),
    )
    .unwrap_err();
    let errors: Vec<(&str, &str, &str)> = problem
        .errors()
        .iter()
        .map(|e| (e.field.as_str(), e.code.as_ref(), e.message.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                "metadata",
                "type",
                "invalid type: a number, expected an object"
            ),
            ("capabilities[0]", "length", "length is lower than 1"),
        ]
    );
}
