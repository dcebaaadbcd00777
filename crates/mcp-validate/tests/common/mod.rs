//! The request bodies the suites (and the `json` fuzz target) validate.
// Each test file uses some of it.
#![allow(dead_code, unreachable_pub)]

use garde::Validate;
use serde::Deserialize;

/// The server's agent creation, nested rules and optional fields included.
#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct AgentCreate {
    #[garde(length(min = 1, max = 100))]
    pub name: String,
    #[garde(length(min = 1, max = 50))]
    pub r#type: String,
    #[serde(default)]
    #[garde(length(max = 10), inner(length(min = 1, max = 50)))]
    pub capabilities: Vec<String>,
    #[serde(default)]
    #[garde(dive)]
    pub metadata: Option<Meta>,
    #[serde(default)]
    #[garde(inner(range(min = 1, max = 3650)))]
    pub expires_in_days: Option<u32>,
}

/// A nested object with its own rule.
#[derive(Debug, Deserialize, Validate)]
pub struct Meta {
    #[garde(length(min = 1))]
    pub owner: String,
}
