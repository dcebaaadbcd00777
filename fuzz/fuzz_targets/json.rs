//! Any body through JSON validation: the value or a documented problem,
//! bounded (at most 100 listed errors, each (field, rule) once), never a
//! panic.
#![no_main]

use std::collections::HashSet;

use libfuzzer_sys::fuzz_target;
use mcp_validate::{FieldCase, Limits, parse};

#[path = "../../crates/mcp-validate/tests/common/mod.rs"]
mod common;
use common::AgentCreate;

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        field_case: FieldCase::CamelCase,
        ..Limits::default()
    };
    if let Err(problem) = parse::<AgentCreate>(data, &limits) {
        let status = problem.status().as_u16();
        assert!(status == 400 || status == 413, "{status}");
        let errors = problem.errors();
        assert!(errors.len() <= mcp_core::MAX_FIELD_ERRORS);
        let mut seen = HashSet::new();
        for error in errors {
            assert!(
                seen.insert((&error.field, &error.code)),
                "{} listed twice",
                error.field
            );
            assert!(error.field.len() <= 200 && error.message.len() <= 300);
        }
    }
});
