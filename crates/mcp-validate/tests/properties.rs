//! Properties of JSON validation over generated bodies: every answer is the
//! value or a documented problem, each failing (field, rule) is listed once,
//! the answer is bounded, and no value sent is echoed.

use std::collections::HashSet;

use mcp_validate::{FieldCase, Limits, parse};
use proptest::prelude::*;
use serde_json::{Map, Value};

mod common;
use common::AgentCreate;

fn limits() -> Limits {
    Limits {
        field_case: FieldCase::CamelCase,
        ..Limits::default()
    }
}

/// Secret-looking text: what must never come back in an answer.
const MARK: &str = "s3cr3t";

/// Any JSON, with the schema's own names among the keys so the body is
/// often nearly right, and string values that carry the mark.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        "[a-z]{0,3}".prop_map(|s| Value::String(format!("{MARK}{s}"))),
        Just(Value::String(String::new())),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..12).prop_map(Value::Array),
            prop::collection::vec(
                (
                    prop::sample::select(vec![
                        "name",
                        "type",
                        "capabilities",
                        "metadata",
                        "owner",
                        "expiresInDays",
                        "x",
                    ]),
                    inner
                ),
                0..8
            )
            .prop_map(|pairs| Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), v))
                    .collect::<Map<_, _>>()
            )),
        ]
    })
}

fn check_problem(problem: &mcp_core::Problem) -> Result<(), TestCaseError> {
    prop_assert!(
        matches!(
            (problem.status().as_u16(), problem.code()),
            (400, "malformed_json" | "validation_failed") | (413, "payload_too_large")
        ),
        "{} {}",
        problem.status(),
        problem.code()
    );
    let errors = problem.errors();
    prop_assert!(
        errors.len() <= mcp_core::MAX_FIELD_ERRORS,
        "{}",
        errors.len()
    );
    let mut seen = HashSet::new();
    for error in errors {
        prop_assert!(
            seen.insert((&error.field, &error.code)),
            "{} {} twice",
            error.field,
            error.code
        );
        prop_assert!(error.field.len() <= 200 && error.message.len() <= 300);
    }
    let body = String::from_utf8_lossy(&problem.to_json()).into_owned();
    prop_assert!(!body.contains(MARK), "a value came back: {}", body);
    Ok(())
}

proptest! {
    /// Any JSON value: the struct, or a problem that lists each failing
    /// field and rule once, bounded, without echoing what was sent.
    #[test]
    fn any_json_gets_a_documented_answer(value in json()) {
        let body = serde_json::to_vec(&value).expect("json");
        if let Err(problem) = parse::<AgentCreate>(&body, &limits()) {
            check_problem(&problem)?;
        }
    }

    /// Any bytes, including broken UTF-8 and truncated JSON.
    #[test]
    fn any_bytes_get_a_documented_answer(value in json(), cut in any::<prop::sample::Index>(), noise in prop::collection::vec(any::<u8>(), 0..16)) {
        let mut body = serde_json::to_vec(&value).expect("json");
        body.truncate(cut.index(body.len() + 1));
        body.extend_from_slice(&noise);
        if let Err(problem) = parse::<AgentCreate>(&body, &limits()) {
            check_problem(&problem)?;
        }
    }

    /// Many wrong items: the list stays bounded and says it was cut.
    #[test]
    fn many_wrong_items_are_bounded(count in 0usize..5_000) {
        let capabilities: Vec<Value> = (0..count).map(|i| Value::from(i as u64)).collect();
        let body = serde_json::json!({"name": "a", "type": "b", "capabilities": capabilities});
        let body = serde_json::to_vec(&body).expect("json");
        match parse::<AgentCreate>(&body, &limits()) {
            Ok(agent) => prop_assert_eq!(count, agent.capabilities.len()),
            Err(problem) => {
                check_problem(&problem)?;
                let listed = problem.errors().len();
                let truncated = problem.extension("errorsTruncated").is_some();
                prop_assert_eq!(truncated, listed == mcp_core::MAX_FIELD_ERRORS && count > listed);
                if truncated {
                    prop_assert_eq!(problem.extension("errorsTruncated"), Some(&Value::from(count - listed)));
                }
            }
        }
    }
}
