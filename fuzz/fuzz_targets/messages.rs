//! Any body through the policy's one-pass reading of JSON-RPC
//! (`mcp_endpoint::Messages`): whenever the bytes are JSON, it reads the
//! same methods, names and non-messages as a `serde_json::Value` of them
//! (a difference would let a body mean one thing to the policy and another
//! to the server behind), its answer no larger than the body, never a
//! panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_endpoint::Messages;

#[path = "../../crates/mcp-endpoint/tests/common/mod.rs"]
mod common;
use common::{read, reference};

fuzz_target!(|data: &[u8]| {
    let messages = Messages::from_slice(data);
    if let Ok(messages) = &messages {
        assert!(messages.pairs().len() <= data.len());
    }
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let messages = messages.expect("JSON that a Value reads is read");
        assert_eq!(read(&messages), reference(&value));
        assert_eq!(read(&Messages::from_value(&value)), reference(&value));
    }
});
