//! How handlers read JSON: `mcp-validate`, with the server's limits and
//! camelCase field paths.

use garde::Validate;
use http::header::CONTENT_TYPE;
use mcp_core::Problem;
use mcp_validate::{FieldCase, Limits};
use serde::de::DeserializeOwned;

pub use mcp_validate::Valid;

/// The limits of every JSON body: the server's body limit, 32 levels of
/// nesting, camelCase paths.
pub fn limits(body_limit: usize) -> Limits {
    Limits {
        max_bytes: body_limit,
        max_depth: 32,
        field_case: FieldCase::CamelCase,
    }
}

/// Checks the content type of `headers` and parses and validates `body`:
/// for handlers that must authorize (by path or owner) before validating,
/// as the order of checks requires.
pub fn validated<T>(limits: &Limits, headers: &http::HeaderMap, body: &[u8]) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    mcp_validate::from_slice(headers.get(CONTENT_TYPE), body, limits)
}

/// Parses and validates `bytes` as `T` (for the CLI).
pub fn parse<T>(bytes: &[u8]) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    mcp_validate::parse(bytes, &limits(1024 * 1024))
}
