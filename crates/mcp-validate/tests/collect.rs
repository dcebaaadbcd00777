//! Error collection: one linear pass over the body, every failing field
//! (enums included) at once, and an answer of bounded size.

use std::cell::Cell;
use std::collections::HashMap;

use garde::Validate;
use mcp_validate::{FieldCase, Limits, parse, read_body};
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
    let problem = read_body(body, 100_000).await.unwrap_err();
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

/// `{"name":"a","type":"b","capabilities":[...]}` with these items.
fn capabilities(items: &[&str]) -> Vec<u8> {
    format!(
        r#"{{"name":"a","type":"b","capabilities":[{}]}}"#,
        items.join(",")
    )
    .into_bytes()
}

#[test]
fn rule_errors_past_100_are_counted_not_listed() {
    let problem = parse::<Agent>(&capabilities(&[r#""""#; 150]), &limits()).unwrap_err();
    assert_eq!(problem.errors().len(), 100);
    for (i, error) in problem.errors().iter().enumerate() {
        assert_eq!(
            (error.field.as_str(), error.code.as_ref()),
            (format!("capabilities[{i}]").as_str(), "length")
        );
    }
    let body = json(&problem);
    assert_eq!(body["errorsTruncated"], 50);
    assert_eq!(body["detail"], "150 fields are invalid");

    // 60 type errors, then 60 rule errors: the first 100 listed, type
    // errors first, and the 20 rule errors left over counted.
    let mut items = vec!["1"; 60];
    items.extend([r#""""#; 60]);
    let problem = parse::<Agent>(&capabilities(&items), &limits()).unwrap_err();
    assert_eq!(problem.errors().len(), 100);
    assert_eq!(problem.errors()[59].code, "type");
    assert_eq!(problem.errors()[60].code, "length");
    assert_eq!(problem.errors()[60].field, "capabilities[60]");
    assert_eq!(problem.errors()[99].field, "capabilities[99]");
    let body = json(&problem);
    assert_eq!(body["errorsTruncated"], 20);
    assert_eq!(body["detail"], "120 fields are invalid");
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

#[derive(Debug, Deserialize, Validate)]
struct Tagged {
    #[garde(skip)]
    tag: u32,
    #[garde(inner(length(min = 1)))]
    tags: Vec<String>,
}

#[test]
fn a_field_covers_its_children_not_fields_it_is_a_prefix_of() {
    // `tag` stood in for does not hide `tags[0]`, whose name begins with it.
    let problem = parse::<Tagged>(br#"{"tag":"x","tags":[""]}"#, &limits()).unwrap_err();
    assert_eq!(
        listed(&problem),
        pairs(&[("tag", "type"), ("tags[0]", "length")])
    );
    let good: Tagged = parse(br#"{"tag":1,"tags":["a"]}"#, &limits()).unwrap();
    assert_eq!((good.tag, good.tags.len()), (1, 1));
}

fn unreserved<'de, D: Deserializer<'de>>(d: D) -> Result<Meta, D::Error> {
    let meta = Meta::deserialize(d)?;
    if meta.owner == "root" {
        return Err(serde::de::Error::custom("the owner `root` is reserved"));
    }
    Ok(meta)
}

#[derive(Debug, Deserialize, Validate)]
struct Reserved {
    #[serde(deserialize_with = "unreserved")]
    #[garde(dive)]
    meta: Meta,
    #[garde(length(min = 1))]
    name: String,
}

#[test]
fn a_value_refused_whole_hides_the_rule_errors_of_its_placeholder() {
    // `meta` is replaced by a placeholder (an empty owner, level 0): its
    // rule errors at `meta.owner` and `meta.level` are the placeholder's,
    // although the body has both fields. `name` is still checked.
    let problem = parse::<Reserved>(
        br#"{"meta":{"level":0,"owner":"root"},"name":""}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        listed(&problem),
        pairs(&[("meta", "type"), ("name", "length")])
    );
    assert_eq!(problem.errors()[0].message, "the owner `root` is reserved");
}

type Deep = HashMap<String, HashMap<String, HashMap<String, HashMap<String, Vec<u32>>>>>;

#[derive(Debug, Deserialize, Validate)]
struct Nested {
    #[garde(skip)]
    m: Deep,
}

/// The field of the one error of `{"m":{k1:{k2:{k3:{k4:["x"]}}}}}`, keys of
/// these lengths, and the path in full.
fn deep_field(lengths: [usize; 4]) -> (String, String) {
    let keys: Vec<String> = lengths
        .iter()
        .zip(['a', 'b', 'c', 'd'])
        .map(|(&n, c)| c.to_string().repeat(n))
        .collect();
    let body = format!(
        r#"{{"m":{{"{}":{{"{}":{{"{}":{{"{}":["x"]}}}}}}}}}}"#,
        keys[0], keys[1], keys[2], keys[3]
    );
    let problem = parse::<Nested>(body.as_bytes(), &limits()).unwrap_err();
    assert_eq!(problem.errors().len(), 1);
    let full = format!("m.{}[0]", keys.join("."));
    (problem.errors()[0].field.clone(), full)
}

#[test]
fn a_path_over_200_bytes_is_cut_to_200_and_marked() {
    // 248 bytes: 197 and the three of `…`.
    let (field, full) = deep_field([60; 4]);
    assert_eq!(full.len(), 248);
    assert_eq!(field, format!("{}…", &full[..197]));
    assert_eq!(field.len(), 200);
    // 200 bytes before the last step, 203 with it: cut all the same.
    let (field, full) = deep_field([49, 49, 49, 48]);
    assert_eq!(full.len(), 203);
    assert_eq!(field, format!("{}…", &full[..197]));
    // Exactly 200 bytes: whole.
    let (field, full) = deep_field([49, 49, 49, 45]);
    assert_eq!(full.len(), 200);
    assert_eq!(field, full);
    let good: Nested = parse(br#"{"m":{"a":{"b":{"c":{"d":[1]}}}}}"#, &limits()).unwrap();
    assert_eq!(good.m["a"]["b"]["c"]["d"], [1]);
}

#[test]
fn keys_are_cut_at_a_character_boundary() {
    // 100 two-byte characters: over 64 bytes, cut to 61 at most, which
    // falls inside a character: 60 bytes and `…`.
    let key = "é".repeat(100);
    let body = format!(r#"{{"labels":{{"{key}":"x"}}}}"#);
    let problem = parse::<Labels>(body.as_bytes(), &limits()).unwrap_err();
    assert_eq!(
        problem.errors()[0].field,
        format!("labels.{}…", "é".repeat(30))
    );
}

/// A string its type refuses with a very long message unless it is empty.
#[derive(Debug)]
struct Verbose;

impl<'de> Deserialize<'de> for Verbose {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.as_str() {
            "" => Ok(Verbose),
            "ascii" => Err(serde::de::Error::custom("x".repeat(1000))),
            _ => Err(serde::de::Error::custom("é".repeat(400))),
        }
    }
}

#[derive(Debug, Deserialize, Validate)]
struct Verbosity {
    #[garde(skip)]
    a: Verbose,
    #[garde(skip)]
    b: Verbose,
}

#[test]
fn messages_are_cut_to_300_bytes_at_a_character_boundary() {
    let problem = parse::<Verbosity>(br#"{"a":"ascii","b":"other"}"#, &limits()).unwrap_err();
    assert_eq!(listed(&problem), pairs(&[("a", "type"), ("b", "type")]));
    // 297 bytes and `…`.
    assert_eq!(problem.errors()[0].message, format!("{}…", "x".repeat(297)));
    // 297 falls inside a two-byte character: 296 bytes and `…`.
    assert_eq!(problem.errors()[1].message, format!("{}…", "é".repeat(148)));
    let Verbosity {
        a: Verbose,
        b: Verbose,
    } = parse(br#"{"a":"","b":""}"#, &limits()).unwrap();
}

/// A lowercase name; its type refuses others itself.
#[derive(Debug)]
struct Slug;

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        if text.chars().any(char::is_uppercase) {
            return Err(serde::de::Error::custom("a slug is lowercase"));
        }
        Ok(Slug)
    }
}

#[derive(Debug, Deserialize, Validate)]
struct Slugs {
    #[garde(skip)]
    tags: Vec<Slug>,
    #[garde(skip)]
    weight: u32,
}

#[test]
fn every_value_a_type_refuses_is_learned_and_reported() {
    let problem = parse::<Slugs>(
        br#"{"tags":["ok","Bad","fine","Worse","X"],"weight":"heavy"}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        listed(&problem),
        pairs(&[
            ("tags[1]", "type"),
            ("tags[3]", "type"),
            ("tags[4]", "type"),
            ("weight", "type"),
        ])
    );
    assert_eq!(problem.errors()[2].message, "a slug is lowercase");
    let good: Slugs = parse(br#"{"tags":["ok","fine"],"weight":3}"#, &limits()).unwrap();
    assert_eq!((good.tags.len(), good.weight), (2, 3));
}

#[test]
fn at_most_16_values_a_type_refuses_are_reported() {
    // Each costs a pass, and passes stop at 16: the 16th is the last.
    let body = format!(
        r#"{{"tags":[{}],"weight":1}}"#,
        vec![r#""X""#; 20].join(",")
    );
    let problem = parse::<Slugs>(body.as_bytes(), &limits()).unwrap_err();
    let expected: Vec<String> = (0..16).map(|i| format!("tags[{i}]")).collect();
    assert_eq!(fields(&problem).len(), 16);
    let listed: Vec<String> = problem.errors().iter().map(|e| e.field.clone()).collect();
    assert_eq!(listed, expected);
    let body = json(&problem);
    assert_eq!(body["detail"], "16 fields are invalid");
    assert!(body.get("errorsTruncated").is_none());
}

thread_local! {
    /// How many times a `Port` was deserialized on this thread.
    static PORTS: Cell<usize> = const { Cell::new(0) };
    /// How many objects a `Person` visitor was given on this thread.
    static PERSONS: Cell<usize> = const { Cell::new(0) };
}

/// A port, never 0; the placeholder, 0, is refused too.
#[derive(Debug)]
struct Port;

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        PORTS.with(|n| n.set(n.get() + 1));
        match u16::deserialize(d)? {
            0 => Err(serde::de::Error::custom("the port must not be 0")),
            _ => Ok(Port),
        }
    }
}

#[derive(Debug, Deserialize, Validate)]
struct Listen {
    #[garde(skip)]
    port: Port,
}

#[test]
fn a_type_that_refuses_its_placeholder_too_ends_the_collection_at_once() {
    PORTS.with(|n| n.set(0));
    let problem = parse::<Listen>(br#"{"port":0}"#, &limits()).unwrap_err();
    assert_eq!(listed(&problem), pairs(&[("port", "type")]));
    assert_eq!(problem.errors()[0].message, "the port must not be 0");
    // The body's value, then the placeholder: two passes, not sixteen.
    assert_eq!(PORTS.with(Cell::get), 2);
    let Listen { port: Port } = parse(br#"{"port":8080}"#, &limits()).unwrap();
}

/// A person, whose type counts an empty `first` as none given.
#[derive(Debug)]
struct Person;

impl<'de> Deserialize<'de> for Person {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Fields;
        impl<'de> serde::de::Visitor<'de> for Fields {
            type Value = Person;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a person")
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Person, A::Error> {
                PERSONS.with(|n| n.set(n.get() + 1));
                let mut first = false;
                while let Some(key) = map.next_key::<String>()? {
                    let value: String = map.next_value()?;
                    first |= key == "first" && !value.is_empty();
                }
                if first {
                    Ok(Person)
                } else {
                    Err(serde::de::Error::missing_field("first"))
                }
            }
        }
        d.deserialize_struct("Person", &["first"], Fields)
    }
}

#[derive(Debug, Deserialize, Validate)]
struct Team {
    #[garde(skip)]
    lead: Person,
}

#[test]
fn a_field_still_missing_with_its_placeholder_ends_the_collection_at_once() {
    for body in [&br#"{"lead":{}}"#[..], br#"{"lead":{"first":""}}"#] {
        PERSONS.with(|n| n.set(0));
        let problem = parse::<Team>(body, &limits()).unwrap_err();
        assert_eq!(listed(&problem), pairs(&[("lead.first", "required")]));
        // Learned in the first pass, missing again in the second: done.
        assert_eq!(PERSONS.with(Cell::get), 2, "{body:?}");
    }
    let Team { lead: Person } = parse(br#"{"lead":{"first":"Ada"}}"#, &limits()).unwrap();
}

fn messages(problem: &mcp_core::Problem) -> Vec<(String, String)> {
    problem
        .errors()
        .iter()
        .map(|e| (e.field.clone(), e.message.clone()))
        .collect()
}

#[derive(Debug, Deserialize, Validate)]
#[garde(allow_unvalidated)]
struct Kinds {
    a: String,
    b: String,
    c: String,
    d: String,
    e: String,
    f: u32,
}

#[test]
fn a_wrong_type_is_named_by_its_kind() {
    let problem = parse::<Kinds>(
        br#"{"a":null,"b":true,"c":1.5,"d":["x"],"e":{"x":1},"f":"x"}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[
            ("a", "invalid type: null, expected a string"),
            ("b", "invalid type: a boolean, expected a string"),
            ("c", "invalid type: a number, expected a string"),
            ("d", "invalid type: an array, expected a string"),
            ("e", "invalid type: an object, expected a string"),
            (
                "f",
                "invalid type: a string, expected an integer from 0 to 4294967295"
            ),
        ])
    );
    let good: Kinds = parse(
        br#"{"a":"1","b":"2","c":"3","d":"4","e":"5","f":6}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(
        [good.a, good.b, good.c, good.d, good.e],
        ["1", "2", "3", "4", "5"]
    );
    assert_eq!(good.f, 6);
}

#[derive(Debug, Deserialize, Validate)]
#[garde(allow_unvalidated)]
struct Integers {
    byte: u8,
    small: i8,
    short: i16,
    int: i32,
    long: i64,
}

#[test]
fn integers_are_checked_against_their_type_range() {
    let good: Integers = parse(
        br#"{"byte":255,"small":-128,"short":-32768,"int":-5,"long":-9223372036854775808}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(
        (good.byte, good.small, good.short, good.int, good.long),
        (255, -128, -32_768, -5, i64::MIN)
    );
    let good: Integers = parse(
        br#"{"byte":0,"small":127,"short":1,"int":2147483647,"long":7}"#,
        &limits(),
    )
    .unwrap();
    assert_eq!(
        (good.byte, good.small, good.short, good.int, good.long),
        (0, 127, 1, i32::MAX, 7)
    );
    let problem = parse::<Integers>(
        br#"{"byte":256,"small":-129,"short":32768,"int":1.5,"long":"1"}"#,
        &limits(),
    )
    .unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[
            (
                "byte",
                "invalid value: a number, expected an integer from 0 to 255"
            ),
            (
                "int",
                "invalid value: a number, expected an integer from -2147483648 to 2147483647"
            ),
            (
                "long",
                "invalid type: a string, expected an integer from -9223372036854775808 to 9223372036854775807"
            ),
            (
                "short",
                "invalid value: a number, expected an integer from -32768 to 32767"
            ),
            (
                "small",
                "invalid value: a number, expected an integer from -128 to 127"
            ),
        ])
    );
}

#[derive(Debug, Deserialize, Validate)]
struct Initial {
    #[garde(skip)]
    initial: char,
}

#[test]
fn a_char_is_a_string_of_one_character() {
    let good: Initial = parse(r#"{"initial":"é"}"#.as_bytes(), &limits()).unwrap();
    assert_eq!(good.initial, 'é');
    for body in [&br#"{"initial":"ab"}"#[..], br#"{"initial":""}"#] {
        let problem = parse::<Initial>(body, &limits()).unwrap_err();
        assert_eq!(
            messages(&problem),
            pairs(&[(
                "initial",
                "invalid type: a string, expected a single character"
            )])
        );
    }
}

#[derive(Debug, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
enum Shape {
    Circle(u32),
    Dot,
}

#[derive(Debug, Deserialize, Validate)]
struct Drawing {
    #[garde(skip)]
    shape: Shape,
}

#[test]
fn an_enum_is_a_name_or_an_object_of_one_name() {
    for (body, shape) in [
        (&br#"{"shape":"dot"}"#[..], Shape::Dot),
        (br#"{"shape":{"dot":null}}"#, Shape::Dot),
        (br#"{"shape":{"circle":3}}"#, Shape::Circle(3)),
    ] {
        let drawing: Drawing = parse(body, &limits()).unwrap();
        assert_eq!(drawing.shape, shape);
    }
    for body in [
        &br#"{"shape":{"circle":3,"dot":null}}"#[..],
        br#"{"shape":{}}"#,
        br#"{"shape":5}"#,
    ] {
        let problem = parse::<Drawing>(body, &limits()).unwrap_err();
        let message = problem.errors()[0].message.as_str();
        assert!(
            message.ends_with("expected a variant name or an object with one key"),
            "{message}"
        );
        assert_eq!(problem.errors().len(), 1);
    }
    // A unit variant has no content.
    let problem = parse::<Drawing>(br#"{"shape":{"dot":5}}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[("shape", "invalid type: a number, expected a unit variant")])
    );
}

#[derive(Debug, Deserialize, Validate)]
struct Roles {
    #[garde(skip)]
    roles: Vec<Role>,
}

#[test]
fn unknown_variants_are_learned_once_for_the_enum_type() {
    // One pass learns that `Role` refuses unknown names: all 40 are listed,
    // not the 16 that learning each value on its own would allow.
    let body = format!(
        r#"{{"roles":["user",{}]}}"#,
        vec![r#""root""#; 40].join(",")
    );
    let problem = parse::<Roles>(body.as_bytes(), &limits()).unwrap_err();
    assert_eq!(problem.errors().len(), 40);
    assert_eq!(problem.errors()[39].field, "roles[40]");
    for error in problem.errors() {
        assert_eq!(
            (error.code.as_ref(), error.message.as_str()),
            ("type", "unknown variant, expected one of `user`, `admin`")
        );
    }
    let good: Roles = parse(br#"{"roles":["admin","user"]}"#, &limits()).unwrap();
    assert_eq!(good.roles, [Role::Admin, Role::User]);
}

#[derive(Debug, Deserialize, Validate)]
struct Pair {
    #[garde(skip)]
    pair: (u32, u32),
}

#[test]
fn a_tuple_takes_exactly_its_length() {
    let good: Pair = parse(br#"{"pair":[1,2]}"#, &limits()).unwrap();
    assert_eq!(good.pair, (1, 2));
    let problem = parse::<Pair>(br#"{"pair":[1,2,3]}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[("pair", "invalid length 3, expected fewer elements")])
    );
    let problem = parse::<Pair>(br#"{"pair":[1]}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[("pair", "invalid length 1, expected a tuple of size 2")])
    );
}

#[derive(Debug, Deserialize, Validate)]
#[garde(allow_unvalidated)]
struct Refusals {
    #[serde(deserialize_with = "slug_in_context")]
    name: Slug,
    port: std::num::NonZeroU16,
}

/// Adds context to what the type of the name said.
fn slug_in_context<'de, D: Deserializer<'de>>(d: D) -> Result<Slug, D::Error> {
    Slug::deserialize(d).map_err(|e| serde::de::Error::custom(format!("the name: {e}")))
}

#[derive(Debug, Deserialize, Validate)]
#[garde(allow_unvalidated)]
struct Logged {
    event: Event,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind")]
enum Event {
    Start,
}

#[test]
fn what_a_type_says_when_it_refuses_a_value_is_kept_without_the_value() {
    let problem = parse::<Refusals>(br#"{"name":"Bad","port":0}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[
            ("name", "the name: a slug is lowercase"),
            ("port", "invalid value: a number, expected a nonzero u16"),
        ])
    );
    let good: Refusals = parse(br#"{"name":"ok","port":443}"#, &limits()).unwrap();
    assert!(matches!(good.name, Slug));
    assert_eq!(good.port.get(), 443);

    let problem = parse::<Logged>(br#"{"event":"start"}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[(
            "event",
            "invalid type: a string, expected internally tagged enum Event"
        )])
    );
    let good: Logged = parse(br#"{"event":{"kind":"Start"}}"#, &limits()).unwrap();
    assert!(matches!(good.event, Event::Start));
}

#[test]
fn keys_of_up_to_64_bytes_are_kept_whole() {
    for (len, shown) in [(64, 64), (65, 61)] {
        let key = "k".repeat(len);
        let body = format!(r#"{{"labels":{{"{key}":"x"}}}}"#);
        let problem = parse::<Labels>(body.as_bytes(), &limits()).unwrap_err();
        let mark = if shown < len { "…" } else { "" };
        assert_eq!(
            problem.errors()[0].field,
            format!("labels.{}{mark}", &key[..shown]),
            "{len} bytes"
        );
    }
}

thread_local! {
    /// The size hints the probes saw on this thread, in order.
    static HINTS: std::cell::RefCell<Vec<Option<usize>>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Records the size hint of the object it is given, which needs an `id`.
#[derive(Debug)]
struct MapHint;

/// Records the size hint of the array it is given.
#[derive(Debug)]
struct SeqHint;

struct HintProbe;

impl<'de> serde::de::Visitor<'de> for HintProbe {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array, or an object with an `id`")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        HINTS.with(|h| h.borrow_mut().push(map.size_hint()));
        let mut id = false;
        while let Some(key) = map.next_key::<String>()? {
            map.next_value::<serde::de::IgnoredAny>()?;
            id |= key == "id";
        }
        if id {
            Ok(())
        } else {
            Err(serde::de::Error::missing_field("id"))
        }
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        HINTS.with(|h| h.borrow_mut().push(seq.size_hint()));
        while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
        Ok(())
    }
}

impl<'de> Deserialize<'de> for MapHint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_struct("MapHint", &["id"], HintProbe)
            .map(|()| MapHint)
    }
}

impl<'de> Deserialize<'de> for SeqHint {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_seq(HintProbe).map(|()| SeqHint)
    }
}

#[derive(Debug, Deserialize, Validate)]
#[garde(allow_unvalidated)]
struct Hints {
    list: SeqHint,
    object: MapHint,
}

/// The answer to `body`, and the size hints its probes saw.
fn hints(body: &[u8]) -> (Result<Hints, mcp_core::Problem>, Vec<Option<usize>>) {
    HINTS.with(|h| h.borrow_mut().clear());
    let answer = parse::<Hints>(body, &limits());
    (answer, HINTS.with(|h| h.borrow().clone()))
}

#[test]
fn size_hints_are_exact_placeholders_included() {
    let (answer, seen) = hints(br#"{"list":[1,2,3],"object":{"a":2,"id":1}}"#);
    assert!(matches!(
        answer,
        Ok(Hints {
            list: SeqHint,
            object: MapHint
        })
    ));
    assert_eq!(seen, [Some(3), Some(2)]);
    // The first pass learns that `id` is needed; the next one stands in
    // for it: two entries in the body, three in all.
    let (answer, seen) = hints(br#"{"list":[],"object":{"a":2,"b":3}}"#);
    assert_eq!(
        listed(&answer.unwrap_err()),
        pairs(&[("object.id", "required")])
    );
    assert_eq!(seen, [Some(0), Some(2), Some(0), Some(3)]);
}

#[test]
fn a_missing_tuple_gets_a_placeholder_of_its_length() {
    let problem = parse::<Pair>(br#"{}"#, &limits()).unwrap_err();
    assert_eq!(listed(&problem), pairs(&[("pair", "required")]));
    let problem = parse::<Pair>(br#"{"pair":"x"}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[("pair", "invalid type: a string, expected an array of 2")])
    );
}

/// A type that contains itself, through an `Option`.
#[derive(Debug, Deserialize, Validate)]
struct Chain {
    #[garde(length(min = 1))]
    name: String,
    #[garde(dive)]
    next: Option<Box<Chain>>,
}

#[test]
fn placeholders_of_a_recursive_type_end() {
    // `next` is a placeholder `Chain`, whose `next` is one too, and so on:
    // from some depth on, the placeholder for an `Option` is `None`.
    let problem = parse::<Chain>(br#"{"name":"a","next":5}"#, &limits()).unwrap_err();
    assert_eq!(
        messages(&problem),
        pairs(&[("next", "invalid type: a number, expected an object")])
    );
    let problem = parse::<Chain>(br#"{"next":{"next":{}}}"#, &limits()).unwrap_err();
    assert_eq!(
        listed(&problem),
        pairs(&[
            ("next.next.name", "required"),
            ("next.name", "required"),
            ("name", "required"),
        ])
    );
    let good: Chain = parse(br#"{"name":"a","next":{"name":"b"}}"#, &limits()).unwrap();
    assert_eq!(good.next.map(|n| n.name).as_deref(), Some("b"));
}

#[derive(Debug, Deserialize, Validate)]
struct Flags {
    #[garde(skip)]
    on: bool,
    #[garde(skip)]
    off: bool,
    #[garde(skip)]
    nothing: Option<bool>,
}

#[test]
fn booleans_and_null_keep_their_value() {
    let flags: Flags = parse(br#"{"on":true,"off":false,"nothing":null}"#, &limits()).unwrap();
    assert_eq!((flags.on, flags.off, flags.nothing), (true, false, None));
}
