//! JSON request bodies, checked once and reported completely.
//!
//! In order: a JSON content type (`415 unsupported_media_type`), the size
//! limit (`413 payload_too_large`; a limit of 100 KiB admits exactly 102,400
//! bytes), the nesting-depth limit and JSON syntax, duplicate keys included
//! (`400 malformed_json`, with line and column, never echoing the input), a
//! JSON object at the root, then every field of the wrong type, missing or
//! naming an unknown enum variant, then every rule of the type's garde
//! schema (`400 validation_failed`, all failing fields at once, each with
//! its path: `capabilities[2]`, `metadata.owner`). Unknown fields are
//! dropped, never an error. Collecting the errors takes time linear in the
//! body, and the answer is bounded: at most 100 entries in `errors`, the
//! rest counted in `errorsTruncated`.
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
#![cfg_attr(docsrs, feature(doc_cfg))]
// The crate's `[lints]` only deny unsafe code, for tests/wipe.rs.
#![forbid(unsafe_code)]

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

#[cfg(feature = "tokio")]
mod blocking;
mod collect;
#[cfg(feature = "axum")]
mod extract;
mod secret;
mod strict;

use std::borrow::Cow;

use garde::Validate;
use http::HeaderValue;
use http::header::CONTENT_TYPE;
use http_body::Body;
use mcp_core::{FieldError, Problem};
use serde::de::DeserializeOwned;
use serde_json::Value;

#[cfg(feature = "tokio")]
#[cfg_attr(docsrs, doc(cfg(feature = "tokio")))]
pub use blocking::{BLOCKING_ABOVE, parse_blocking};
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use extract::Valid;
/// Reads a body up to a limit into `Bytes` or the problem to answer
/// (re-exported from `mcp-core`, where every layer that reads a body finds it).
pub use mcp_core::read_body;
pub use secret::Secret;

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
///
/// Passed to [`parse`], [`from_slice`] and [`json_body`] directly. The
/// `Valid` extractor (feature `axum`) reads them from the
/// request's extensions instead, so one router-wide
/// `.layer(axum::Extension(limits))` sets them for every handler; without
/// one it uses the defaults.
///
/// ```
/// use mcp_validate::{FieldCase, Limits};
///
/// let limits = Limits {
///     max_bytes: 1024 * 1024,
///     field_case: FieldCase::CamelCase,
///     ..Limits::default()
/// };
/// assert_eq!(limits.max_depth, 32);
/// ```
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
    let bytes = read_body(body, limits.max_bytes).await?;
    let value = parse(&bytes, limits)?;
    Ok((parts, value))
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
    let (typed, mut errors) = collect::deserialize::<T>(&value);
    let used_placeholders = errors.total > 0;
    let Some(typed) = typed else {
        return Err(errors.into_problem());
    };
    // Once the answer is full of type errors the body cannot be valid, and
    // the schema's rules would run once per placeholder only to be dropped
    // (two thirds of the cost of a body built to be expensive). The count
    // of what was left out is then that of the type errors alone.
    if errors.is_full() {
        return Err(errors.into_problem());
    }
    if let Err(report) = typed.validate() {
        // One buffer for every path: most errors of a hostile body are about
        // placeholders and dropped, so they should cost no allocation.
        let mut rendered = String::new();
        for (path, error) in report.iter() {
            use std::fmt::Write;
            rendered.clear();
            // Writing to a `String` cannot fail.
            let _ = write!(rendered, "{path}");
            let mut field = spell(&rendered, limits.field_case);
            collect::cut(field.to_mut(), collect::MAX_FIELD_LEN);
            // A field already reported for its type is not reported again
            // for the placeholder that stood in for it; nor is one the body
            // does not have (a placeholder under a renamed field).
            if errors.covers(&field) || (used_placeholders && !present(&value, &field)) {
                continue;
            }
            if errors.is_full() {
                errors.count();
            } else {
                errors.push_uncovered(
                    field.into_owned(),
                    rule_code(error.message()),
                    &error.message(),
                );
            }
        }
    }
    if errors.total == 0 {
        Ok(typed)
    } else {
        Err(errors.into_problem())
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
fn spell(path: &str, case: FieldCase) -> Cow<'_, str> {
    // Most paths need neither change: spare them the copies.
    let path = if path.contains("r#") {
        Cow::Owned(path.replace("r#", ""))
    } else {
        Cow::Borrowed(path)
    };
    if case == FieldCase::AsIs || !path.contains('_') {
        return path;
    }
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
    Cow::Owned(out)
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
