//! Error collection: one linear pass over the body, every failing field
//! (enums included) at once, and an answer of bounded size.

use std::cell::Cell;
use std::collections::HashMap;

use garde::Validate;
use mcp_validate::{FieldCase, Limits, parse, read_limited};
use serde::{Deserialize, Deserializer};
use serde_json::Value;

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

fn json(problem: &mcp_core::Problem) -> Value {
    serde_json::from_slice(&problem.to_json()).expect("problem JSON")
}

#[derive(Debug, Deserialize, Validate)]
struct Agent {
    #[garde(length(min = 1, max = 100))]
    name: String,
    #[garde(length(min = 1, max = 50))]
    r#type: String,
    #[serde(default)]
    #[garde(inner(length(min = 1, max = 50)))]
    capabilities: Vec<String>,
}

/// `{"name":"a","type":"b","capabilities":[1,1,...]}` with `items` numbers.
fn hostile(items: usize) -> Vec<u8> {
    let mut body = br#"{"name":"a","type":"b","capabilities":["#.to_vec();
    body.extend(std::iter::repeat_n(&b"1,"[..], items).flatten());
    body.pop();
    body.extend_from_slice(b"]}");
    body
}

#[test]
fn forty_thousand_wrong_items_answer_100_errors_and_a_count() {
    let body = hostile(40_000);
    assert!((80_000..=limits().max_bytes).contains(&body.len()));
    let problem = parse::<Agent>(&body, &limits()).unwrap_err();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (400, "validation_failed")
    );
    assert_eq!(problem.errors().len(), 100);
    assert_eq!(problem.errors()[0].field, "capabilities[0]");
    assert_eq!(problem.errors()[99].field, "capabilities[99]");
    let body = json(&problem);
    assert_eq!(body["errorsTruncated"], 40_000 - 100, "{}", body["detail"]);
    assert_eq!(body["detail"], "40000 fields are invalid");
    // 100 short entries, not megabytes.
    assert!(
        problem.to_json().len() < 16 * 1024,
        "{}",
        problem.to_json().len()
    );
}

#[test]
fn few_errors_are_not_marked_truncated() {
    let problem = parse::<Agent>(&hostile(3), &limits()).unwrap_err();
    assert_eq!(problem.errors().len(), 3);
    assert!(json(&problem).get("errorsTruncated").is_none());
}

thread_local! {
    /// How many times a `Probe` was deserialized on this thread.
    static PROBES: Cell<usize> = const { Cell::new(0) };
}

/// A string that counts its deserializations: the work done on a body.
#[derive(Debug)]
struct Probe;

impl<'de> Deserialize<'de> for Probe {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PROBES.with(|n| n.set(n.get() + 1));
        String::deserialize(d).map(|_| Probe)
    }
}

#[derive(Debug, Deserialize, Validate)]
struct Probes {
    #[garde(skip)]
    items: Vec<Probe>,
}

/// How many element deserializations refusing `items` wrong items costs.
fn work(items: usize) -> usize {
    let mut body = br#"{"items":["#.to_vec();
    body.extend(std::iter::repeat_n(&b"1,"[..], items).flatten());
    body.pop();
    body.extend_from_slice(b"]}");
    PROBES.with(|n| n.set(0));
    let problem = parse::<Probes>(&body, &limits()).unwrap_err();
    assert_eq!(problem.code(), "validation_failed");
    PROBES.with(Cell::get)
}

#[test]
fn collecting_errors_is_linear_in_the_body() {
    let (small, large) = (work(1_000), work(2_000));
    // Re-deserializing once per error makes this 4x (quadratic); one pass,
    // or any fixed number of passes, makes it 2x.
    assert!(
        large <= 2 * small + 16,
        "1,000 items: {small} deserializations, 2,000 items: {large}"
    );
    // And a fixed, small number of passes, whatever the number of errors.
    assert!(
        large <= 2 * 2_000,
        "{large} deserializations of 2,000 items"
    );
    let good: Probes = parse(br#"{"items":["a","b"]}"#, &limits()).unwrap();
    assert_eq!(good.items.len(), 2);
}

#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Role {
    #[default]
    User,
    Admin,
}

#[derive(Debug, Deserialize, Validate)]
struct UserCreate {
    #[garde(email)]
    email: String,
    #[garde(length(chars, min = 8))]
    password: String,
    #[garde(length(chars, min = 1))]
    name: String,
    #[serde(default)]
    #[garde(skip)]
    role: Role,
}

#[test]
fn an_unknown_variant_is_collected_like_a_type_error() {
    let problem = parse::<UserCreate>(
        br#"{"email":"nope","password":"short","role":"root"}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(fields(&problem), ["email", "name", "password", "role"]);
    let code = |field: &str| {
        problem
            .errors()
            .iter()
            .find(|e| e.field == field)
            .map(|e| e.code.to_string())
    };
    assert_eq!(code("name").as_deref(), Some("required"));
    assert_eq!(code("role").as_deref(), Some("type"));
    assert_eq!(code("email").as_deref(), Some("email"));
    assert_eq!(code("password").as_deref(), Some("length"));
    // A good variant passes.
    let user: UserCreate = parse(
        br#"{"email":"a@example.com","password":"long enough","name":"A","role":"admin"}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(user.role, Role::Admin);
}

#[derive(Debug, Deserialize, Validate)]
struct Labels {
    #[garde(skip)]
    labels: HashMap<String, u32>,
}

#[test]
fn huge_keys_and_values_are_not_echoed_at_length() {
    let good: Labels = parse(br#"{"labels":{"a":1}}"#, &limits()).unwrap();
    assert_eq!(good.labels["a"], 1);
    let key = "k".repeat(50_000);
    let body = format!(r#"{{"labels":{{"{key}":1,"b":"{}"}}}}"#, "v".repeat(40_000));
    let problem = parse::<Labels>(body.as_bytes(), &limits()).unwrap_err();
    assert_eq!(problem.code(), "validation_failed");
    assert_eq!(fields(&problem), ["labels.b"]);
    let message = &problem.errors()[0].message;
    assert!(!message.contains("vvvv"), "{message}");

    let body = format!(r#"{{"labels":{{"{key}":"x"}}}}"#);
    let problem = parse::<Labels>(body.as_bytes(), &limits()).unwrap_err();
    let error = &problem.errors()[0];
    assert!(error.field.starts_with("labels.kkk"), "{}", error.field);
    assert!(error.field.len() <= 256, "{} bytes", error.field.len());
    assert!(
        problem.to_json().len() <= 2048,
        "{}",
        problem.to_json().len()
    );
}

#[tokio::test]
async fn a_wrapped_length_limit_error_is_413() {
    // What a handler sees behind tower-http's limit without a
    // Content-Length: the limit's error inside axum's error.
    let chunks = futures_util::stream::iter(
        (0..4).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512]))),
    );
    let limited = http_body_util::Limited::new(
        http_body_util::StreamBody::new(futures_util::StreamExt::map(chunks, |c| {
            c.map(http_body::Frame::data)
        })),
        1000,
    );
    let body = axum::body::Body::new(limited);
    let problem = read_limited(body, 100_000).await.unwrap_err();
    assert_eq!(
        (problem.status().as_u16(), problem.code()),
        (413, "payload_too_large")
    );
}

#[derive(Debug, Deserialize, Validate)]
struct Owned {
    #[garde(dive)]
    items: Vec<Meta>,
}

#[derive(Debug, Deserialize, Validate)]
struct Meta {
    #[garde(length(min = 1))]
    owner: String,
    #[garde(range(min = 1, max = 10))]
    level: u8,
}

#[test]
fn missing_fields_of_list_elements_are_each_listed() {
    let mut body = br#"{"items":["#.to_vec();
    body.extend(std::iter::repeat_n(&b"{},"[..], 1_000).flatten());
    body.extend_from_slice(br#"{"owner":"","level":300}]}"#);
    let problem = parse::<Owned>(&body, &limits()).unwrap_err();
    assert_eq!(problem.errors()[0].field, "items[0].owner");
    assert_eq!(problem.errors()[0].code, "required");
    assert_eq!(problem.errors()[1].field, "items[0].level");
    // Two per empty element, then the last one's wrong level. Its empty
    // owner is a rule error, and rules are not checked once type errors
    // fill the answer: they would cost a check per placeholder.
    let body = json(&problem);
    assert_eq!(body["detail"], "2001 fields are invalid", "{body}");

    // With room left in the answer, the rule error is listed too.
    let few = br#"{"items":[{},{"owner":"","level":300}]}"#;
    let problem = parse::<Owned>(few, &limits()).unwrap_err();
    let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "items[0].owner",
            "items[0].level",
            "items[1].level",
            "items[1].owner"
        ]
    );
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Status {
    Active,
    #[serde(other)]
    Unknown,
}

fn not_null<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(Some)
        .ok_or_else(|| serde::de::Error::custom("must not be null"))
}

#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
struct Update {
    #[serde(default, deserialize_with = "not_null")]
    #[garde(inner(length(min = 1)))]
    name: Option<String>,
    #[serde(default)]
    #[garde(skip)]
    status: Option<Status>,
    #[serde(default)]
    #[garde(inner(range(min = 1)))]
    expires_in_days: Option<u32>,
    #[serde(default)]
    #[garde(skip)]
    tags: Vec<String>,
}

#[test]
fn a_type_that_refuses_a_value_itself_is_reported_with_the_rest() {
    let problem = parse::<Update>(
        br#"{"name":null,"status":"paused","expiresInDays":99999999999,"tags":[true,"ok",{}]}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        fields(&problem),
        ["expiresInDays", "name", "tags[0]", "tags[2]"]
    );
    let name = problem.errors().iter().find(|e| e.field == "name").unwrap();
    assert_eq!(
        (name.code.as_ref(), name.message.as_str()),
        ("type", "must not be null")
    );
    // The catch-all variant still catches; a good body passes.
    let update: Update = parse(
        br#"{"status":"paused","expiresInDays":30,"tags":["a"]}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(update.status, Some(Status::Unknown));
    assert_eq!(update.expires_in_days, Some(30));
    assert_eq!(update.tags, ["a"]);
}

#[test]
fn messages_name_the_expected_type_without_the_input() {
    let problem = parse::<Agent>(
        br#"{"name":"secret-value-1","type":["secret-value-2"],"capabilities":"secret-value-3"}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(fields(&problem), ["capabilities", "type"]);
    for error in problem.errors() {
        assert!(!error.message.contains("secret-value"), "{}", error.message);
        assert!(
            error.message.starts_with("invalid type: "),
            "{}",
            error.message
        );
    }
}
