//! Properties of what the policy reads of a JSON-RPC body.

mod common;

use common::{read, reference};
use mcp_endpoint::Messages;
use proptest::prelude::*;
use serde_json::Value;

/// JSON text built from the keys and values the reader looks at, with
/// keys repeated, escapes in keys and strings, and values of every type
/// where a string is expected.
fn json() -> impl Strategy<Value = String> {
    let text = prop_oneof![
        Just("2.0"),
        Just("1.0"),
        Just("tools/call"),
        Just("tools/list"),
        Just("resources/read"),
        Just("tasks/get"),
        Just("prompts/get"),
        Just("greet"),
        Just(""),
    ]
    .prop_map(|s| serde_json::to_string(s).expect("a string"));
    // The same strings written with escapes (never borrowed from the body).
    let escaped = text
        .clone()
        .prop_map(|s| s.replace('t', "\\u0074").replace('/', "\\/"));
    let leaf = prop_oneof![
        text,
        escaped,
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just("7".to_owned()),
        Just("-1.5e3".to_owned()),
    ];
    let key = prop_oneof![
        Just("jsonrpc"),
        Just("method"),
        Just("id"),
        Just("result"),
        Just("error"),
        Just("params"),
        Just("name"),
        Just("uri"),
        Just("taskId"),
        Just("arguments"),
        Just("m\\u0065thod"),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4)
                .prop_map(|items| format!("[{}]", items.join(","))),
            prop::collection::vec((key.clone(), inner), 0..7).prop_map(|entries| {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(k, v)| format!("\"{k}\":{v}"))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// The bytes read in one pass name the same methods and names, and
    /// find the same items not JSON-RPC, as the same bytes parsed into a
    /// `Value` (whose repeated keys keep the last value): the policy sees
    /// the message a server parsing the whole body sees.
    #[test]
    fn one_pass_reads_what_a_value_holds(body in json()) {
        let value: Value = serde_json::from_str(&body).expect("the strategy makes JSON");
        let from_bytes = Messages::from_slice(body.as_bytes()).expect("JSON");
        prop_assert_eq!(read(&from_bytes), reference(&value), "{}", body);
        prop_assert_eq!(read(&Messages::from_value(&value)), reference(&value), "{}", body);
    }

    /// A body cut short is an error, as it is for a `Value`.
    #[test]
    fn what_is_not_json_is_refused(body in json(), cut in 1usize..64) {
        let end = body.len().saturating_sub(cut);
        let truncated = &body.as_bytes()[..end];
        prop_assert_eq!(
            Messages::from_slice(truncated).is_ok(),
            serde_json::from_slice::<Value>(truncated).is_ok(),
            "{:?}", String::from_utf8_lossy(truncated)
        );
    }
}

/// Many small items, deep nesting, a huge argument: one pass, an answer
/// no larger than the number of items.
#[test]
fn expensive_bodies_stay_bounded() {
    let batch = format!("[{}]", vec!["{}"; 100_000].join(","));
    let messages = Messages::from_slice(batch.as_bytes()).expect("JSON");
    assert_eq!(messages.pairs().len(), 100_000);
    assert_eq!(messages.not_json_rpc().len(), 100_000);

    // What the policy skips is skipped without recursion (serde_json
    // ignores a value with a stack of its own), so deep nesting costs a
    // pass and no stack; the item it is in is still no message, and a
    // server that parses the whole body applies its own depth limit.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let messages = Messages::from_slice(deep.as_bytes()).expect("JSON");
    assert_eq!(messages.not_json_rpc(), ["[0]"]);
    let deep_params = format!(
        r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"name":"x","arguments":{}{}}}}}"#,
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let messages = Messages::from_slice(deep_params.as_bytes()).expect("JSON");
    assert_eq!(messages.pairs(), [("tools/call", Some("x"))]);
    let deep_method = format!(
        r#"{{"jsonrpc":"2.0","method":{}{}}}"#,
        "[".repeat(10_000),
        "]".repeat(10_000)
    );
    let messages = Messages::from_slice(deep_method.as_bytes()).expect("JSON");
    assert_eq!(messages.pairs(), [("response", None)]);
    assert_eq!(messages.not_json_rpc(), [""]);

    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"greet","arguments":{{"text":"{}"}}}}}}"#,
        "x".repeat(4 << 20)
    );
    let messages = Messages::from_slice(huge.as_bytes()).expect("JSON");
    assert_eq!(messages.pairs(), [("tools/call", Some("greet"))]);
    assert!(messages.not_json_rpc().is_empty());
}

/// A `method` that is there but not a string makes no message, even with
/// an `id` and a `result`: only an absent `method` makes a response (the
/// values the generated bodies rarely combine, pinned here).
#[test]
fn a_method_that_is_no_string_is_no_response() {
    for method in ["5", "-5", "1.5", "true", "null", "18446744073709551615"] {
        let body = format!(r#"{{"jsonrpc":"2.0","id":1,"result":{{}},"method":{method}}}"#);
        let value: Value = serde_json::from_str(&body).expect("JSON");
        let messages = Messages::from_slice(body.as_bytes()).expect("JSON");
        assert_eq!(messages.not_json_rpc(), [""], "{body}");
        assert_eq!(read(&messages), reference(&value), "{body}");
        assert_eq!(
            read(&Messages::from_value(&value)),
            reference(&value),
            "{body}"
        );
    }
    let response = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
    let messages = Messages::from_slice(response.as_bytes()).expect("JSON");
    assert!(messages.not_json_rpc().is_empty());
}
