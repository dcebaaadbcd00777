//! The reading of a JSON-RPC body the policy had before it read the bytes
//! itself (through a `serde_json::Value`): what `Messages` must agree
//! with, shared by the property tests and the `messages` fuzz target.

use mcp_endpoint::Messages;
use serde_json::Value;

/// The method and name of each message, and where the body is not
/// JSON-RPC.
pub(crate) type Read = (Vec<(String, Option<String>)>, Vec<String>);

/// What the policy read from a `Value`.
pub(crate) fn reference(message: &Value) -> Read {
    let items = match message {
        Value::Array(items) => items.as_slice(),
        Value::Object(_) => std::slice::from_ref(message),
        _ => &[],
    };
    let pairs = items
        .iter()
        .map(|message| {
            let method = message
                .get("method")
                .and_then(|m| m.as_str())
                .unwrap_or("response");
            let key = match method {
                "tools/call" | "prompts/get" => Some("name"),
                "resources/read" | "resources/subscribe" | "resources/unsubscribe" => Some("uri"),
                "tasks/get" | "tasks/update" | "tasks/cancel" => Some("taskId"),
                _ => None,
            };
            let name = key
                .and_then(|key| message.get("params")?.get(key))
                .and_then(|n| n.as_str());
            (method.to_owned(), name.map(str::to_owned))
        })
        .collect();
    let is_message = |item: &Value| {
        item.get("jsonrpc").and_then(|v| v.as_str()) == Some("2.0")
            && (item.get("method").is_some_and(|m| m.is_string())
                || (item.get("method").is_none()
                    && item.get("id").is_some()
                    && (item.get("result").is_some() || item.get("error").is_some())))
    };
    let invalid = match message {
        Value::Array(items) if items.is_empty() => vec![String::new()],
        Value::Array(items) => items
            .iter()
            .enumerate()
            .filter(|(_, item)| !is_message(item))
            .map(|(i, _)| format!("[{i}]"))
            .collect(),
        item if is_message(item) => Vec::new(),
        _ => vec![String::new()],
    };
    (pairs, invalid)
}

/// What `Messages` reads, in the reference's terms.
pub(crate) fn read(messages: &Messages<'_>) -> Read {
    let pairs = messages
        .pairs()
        .into_iter()
        .map(|(method, name)| (method.to_owned(), name.map(str::to_owned)))
        .collect();
    (pairs, messages.not_json_rpc())
}
