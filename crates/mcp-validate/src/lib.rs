//! JSON request bodies, checked once and reported completely.
//!
//! In order: a JSON content type (`415 unsupported_media_type`), the size
//! limit (`413 payload_too_large`; a limit of 100 KiB admits exactly 102,400
//! bytes), the nesting-depth limit and JSON syntax, duplicate keys included
//! (`400 malformed_json`, with line and column, never echoing the input), a
//! JSON object at the root, then every field of the wrong type or missing,
//! then every rule of the type's garde schema (`400 validation_failed`, all
//! failing fields at once, each with its path: `capabilities[2]`,
//! `metadata.owner`). Unknown fields are dropped, never an error.
//!
//! ```
//! use garde::Validate;
//! use mcp_validate::{Limits, parse};
//! use serde::Deserialize;
//!
//! #[derive(Debug, Deserialize, Validate)]
//! struct Agent {
//!     #[garde(length(min = 1, max = 100))]
//!     name: String,
//!     #[garde(inner(length(min = 1)))]
//!     capabilities: Vec<String>,
//! }
//!
//! let limits = Limits::default();
//! let agent: Agent = parse(br#"{"name":"crawler","capabilities":["fetch"],"extra":1}"#, &limits).unwrap();
//! assert_eq!(agent.name, "crawler");
//!
//! let problem = parse::<Agent>(br#"{"name":"","capabilities":["a","",""]}"#, &limits).unwrap_err();
//! let mut fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
//! fields.sort();
//! assert_eq!(fields, ["capabilities[1]", "capabilities[2]", "name"]);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "axum")]
mod extract;
mod strict;

use bytes::Bytes;
use garde::Validate;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use http_body::Body;
use http_body_util::BodyExt;
use mcp_core::{FieldError, Problem};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[cfg(feature = "axum")]
pub use extract::Valid;

/// How field paths are spelled in errors.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldCase {
    /// As in the JSON for type errors, as in the Rust type for rule errors.
    #[default]
    AsIs,
    /// `snake_case` names of Rust fields turned into `camelCase`, for APIs
    /// whose JSON is camelCase (`#[serde(rename_all = "camelCase")]`).
    CamelCase,
}

/// The limits of a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest body in bytes (102,400): a body of exactly this size passes.
    pub max_bytes: usize,
    /// Deepest nesting of arrays and objects (32).
    pub max_depth: usize,
    /// How paths are spelled.
    pub field_case: FieldCase,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_bytes: 100 * 1024,
            max_depth: 32,
            field_case: FieldCase::AsIs,
        }
    }
}

/// Whether `content_type` is JSON: `application/json` or
/// `application/<something>+json`, parameters allowed.
pub fn is_json(content_type: Option<&HeaderValue>) -> bool {
    content_type
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// Checks the content type, then [`parse`]s `body`.
pub fn from_slice<T>(
    content_type: Option<&HeaderValue>,
    body: &[u8],
    limits: &Limits,
) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    if !is_json(content_type) {
        return Err(Problem::unsupported_media_type(
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    parse(body, limits)
}

/// Reads the body of `request` (at most `limits.max_bytes`) and checks it
/// like [`from_slice`]: for any tower service, not only axum.
pub async fn json_body<T, B>(
    request: http::Request<B>,
    limits: &Limits,
) -> Result<(http::request::Parts, T), Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = request.into_parts();
    if !is_json(parts.headers.get(CONTENT_TYPE)) {
        return Err(Problem::unsupported_media_type(
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    let bytes = read_limited(body, limits.max_bytes).await?;
    let value = parse(&bytes, limits)?;
    Ok((parts, value))
}

/// Reads at most `max` bytes of `body`.
pub async fn read_limited<B>(body: B, max: usize) -> Result<Bytes, Problem>
where
    B: Body,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(error)
            if error
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(Problem::payload_too_large(Some(max)))
        }
        Err(_) => Err(
            Problem::new(http::StatusCode::BAD_REQUEST, mcp_core::code::BAD_REQUEST)
                .with_detail("the request body could not be read"),
        ),
    }
}

/// Parses `body` as a `T` and checks its rules. See the [crate
/// documentation](crate) for the order of checks.
pub fn parse<T>(body: &[u8], limits: &Limits) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    if body.len() > limits.max_bytes {
        return Err(Problem::payload_too_large(Some(limits.max_bytes)));
    }
    if let Some(depth) = too_deep(body, limits.max_depth) {
        return Err(Problem::malformed_json(format!(
            "the body nests deeper than {} levels (at byte {depth})",
            limits.max_depth
        )));
    }
    let value = strict::parse(body)?;
    if !value.is_object() {
        return Err(Problem::validation_failed(vec![FieldError::new(
            "",
            "type",
            "the body must be a JSON object",
        )]));
    }
    let original = value.clone();
    let (typed, mut errors) = deserialize_collecting::<T>(value);
    let used_placeholders = !errors.is_empty();
    match typed {
        Some(typed) => {
            if let Err(report) = typed.validate() {
                for (path, error) in report.iter() {
                    let field = spell(&path.to_string(), limits.field_case);
                    // A field already reported for its type is not reported
                    // again for the placeholder that stood in for it; nor is
                    // one the body does not have (a placeholder under a
                    // renamed field).
                    if errors.iter().any(|e| covers(&e.field, &field))
                        || (used_placeholders && !present(&original, &field))
                    {
                        continue;
                    }
                    errors.push(FieldError::new(
                        field,
                        rule_code(error.message()),
                        error.message(),
                    ));
                }
            }
            if errors.is_empty() {
                Ok(typed)
            } else {
                Err(Problem::validation_failed(errors))
            }
        }
        None => Err(Problem::validation_failed(errors)),
    }
}

/// Whether `field` (`a.b[2]`) names a value in `value`.
fn present(value: &Value, field: &str) -> bool {
    let mut current = value;
    for part in field.split('.') {
        let (key, indexes) = match part.find('[') {
            Some(at) => part.split_at(at),
            None => (part, ""),
        };
        if !key.is_empty() {
            match current.get(key) {
                Some(next) => current = next,
                None => return false,
            }
        }
        for index in indexes.split(['[', ']']).filter(|s| !s.is_empty()) {
            match index.parse::<usize>().ok().and_then(|i| current.get(i)) {
                Some(next) => current = next,
                None => return false,
            }
        }
    }
    true
}

/// Whether an error at `reported` already covers `field`.
fn covers(reported: &str, field: &str) -> bool {
    field == reported
        || field
            .strip_prefix(reported)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

/// The byte offset where nesting first exceeds `max`, outside strings.
fn too_deep(body: &[u8], max: usize) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, &b) in body.iter().enumerate() {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > max {
                    return Some(i);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

/// Values tried in place of a missing or mistyped field so that the rest of
/// the body can still be checked.
fn placeholders() -> [Value; 6] {
    [
        Value::String(String::new()),
        Value::from(0),
        Value::Bool(false),
        Value::Array(Vec::new()),
        Value::Object(serde_json::Map::new()),
        Value::Null,
    ]
}

/// Deserializes `value` as `T`, recording every field that is missing or of
/// the wrong type (serde stops at the first: each is recorded, replaced by a
/// placeholder of a type that fits, and deserialization tried again).
fn deserialize_collecting<T: DeserializeOwned>(mut value: Value) -> (Option<T>, Vec<FieldError>) {
    let mut errors: Vec<FieldError> = Vec::new();
    let mut tried: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    let candidates = placeholders();
    // Each round tries one placeholder for one field: bounded.
    let rounds = candidates.len() * (count_nodes(&value) + 16);
    for _ in 0..rounds {
        let error = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(typed) => return (Some(typed), errors),
            Err(error) => error,
        };
        let message = error.inner().to_string();
        let mut path: Vec<Step> = steps(error.path());
        let missing = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned);
        if let Some(name) = &missing {
            path.push(Step::Key(name.clone()));
        }
        let field = render(&path);
        if !errors.iter().any(|e| e.field == field) {
            let (code, text) = match &missing {
                Some(_) => ("required", "this field is required".to_owned()),
                None => ("type", type_message(&message)),
            };
            errors.push(FieldError::new(field.clone(), code, text));
        }
        let next = tried.entry(field).or_insert(0);
        let Some(candidate) = candidates.get(*next) else {
            // Nothing fits in its place: report what was found so far.
            break;
        };
        *next += 1;
        if !set(&mut value, &path, candidate.clone()) {
            break;
        }
    }
    (None, errors)
}

fn type_message(serde_message: &str) -> String {
    // serde's message names the expected type; cut the position it appends.
    serde_message
        .split(" at line ")
        .next()
        .unwrap_or(serde_message)
        .to_owned()
}

#[derive(Clone, Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn steps(path: &serde_path_to_error::Path) -> Vec<Step> {
    use serde_path_to_error::Segment;
    path.iter()
        .filter_map(|segment| match segment {
            Segment::Map { key } => Some(Step::Key(key.clone())),
            Segment::Seq { index } => Some(Step::Index(*index)),
            Segment::Enum { variant } => Some(Step::Key(variant.clone())),
            Segment::Unknown => None,
        })
        .collect()
}

fn render(path: &[Step]) -> String {
    let mut text = String::new();
    for step in path {
        match step {
            Step::Key(key) => {
                if !text.is_empty() {
                    text.push('.');
                }
                text.push_str(key);
            }
            Step::Index(i) => text.push_str(&format!("[{i}]")),
        }
    }
    text
}

fn set(value: &mut Value, path: &[Step], new: Value) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut target = value;
    for step in parents {
        target = match step {
            Step::Key(k) => match target.get_mut(k) {
                Some(v) => v,
                None => return false,
            },
            Step::Index(i) => match target.get_mut(i) {
                Some(v) => v,
                None => return false,
            },
        };
    }
    match (last, target) {
        (Step::Key(k), Value::Object(map)) => {
            map.insert(k.clone(), new);
            true
        }
        (Step::Index(i), Value::Array(items)) if *i < items.len() => {
            items[*i] = new;
            true
        }
        _ => false,
    }
}

fn count_nodes(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(count_nodes).sum::<usize>(),
        Value::Object(map) => 1 + map.values().map(count_nodes).sum::<usize>(),
        _ => 1,
    }
}

/// A stable code for a garde message.
fn rule_code(message: &str) -> &'static str {
    let m = message.to_ascii_lowercase();
    if m.contains("email") {
        "email"
    } else if m.starts_with("length") || m.contains("character") {
        "length"
    } else if m.contains("greater than") || m.contains("lower than") || m.contains("range") {
        "range"
    } else if m.contains("url") {
        "url"
    } else if m.contains("pattern") || m.contains("match") {
        "pattern"
    } else {
        "invalid"
    }
}

/// `expires_in_days` -> `expiresInDays`, component by component; a raw
/// identifier's `r#` (`r#type`) is dropped in any case.
fn spell(path: &str, case: FieldCase) -> String {
    let path = path.replace("r#", "");
    match case {
        FieldCase::AsIs => path,
        FieldCase::CamelCase => {
            let mut out = String::with_capacity(path.len());
            let mut upper = false;
            for c in path.chars() {
                match c {
                    '_' => upper = true,
                    '.' | '[' | ']' => {
                        upper = false;
                        out.push(c);
                    }
                    c if upper => {
                        out.extend(c.to_uppercase());
                        upper = false;
                    }
                    c => out.push(c),
                }
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_ignores_brackets_in_strings() {
        assert_eq!(too_deep(br#"{"a":"[[[[[[[[[["}"#, 2), None);
        assert_eq!(too_deep(br#"{"a":"\"[[[["}"#, 2), None);
        assert_eq!(too_deep(b"[[[", 2), Some(2));
        let deep = "[".repeat(1000) + &"]".repeat(1000);
        assert_eq!(too_deep(deep.as_bytes(), 32), Some(32));
    }

    #[test]
    fn camel_case_paths() {
        assert_eq!(
            spell("expires_in_days", FieldCase::CamelCase),
            "expiresInDays"
        );
        assert_eq!(spell("a_b.c_d[2]", FieldCase::CamelCase), "aB.cD[2]");
        assert_eq!(spell("a_b", FieldCase::AsIs), "a_b");
        assert_eq!(spell("meta.r#type", FieldCase::AsIs), "meta.type");
    }

    #[test]
    fn json_content_types() {
        for good in [
            "application/json",
            "application/json; charset=utf-8",
            "APPLICATION/JSON",
            "application/merge-patch+json",
        ] {
            assert!(is_json(Some(&HeaderValue::from_static(good))), "{good}");
        }
        for bad in [
            "text/json",
            "application/jsonx",
            "text/plain",
            "application/x-www-form-urlencoded",
            "",
        ] {
            assert!(
                !is_json(Some(&HeaderValue::from_str(bad).unwrap())),
                "{bad}"
            );
        }
        assert!(!is_json(None));
    }
}
