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

/// Checks the content type of `headers` and parses and validates `body`
/// (large ones off the async workers): for handlers that must authorize (by
/// path or owner) before validating, as the order of checks requires.
pub async fn validated<T>(
    limits: &Limits,
    headers: &http::HeaderMap,
    body: bytes::Bytes,
) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()> + Send + 'static,
{
    if !mcp_validate::is_json(headers.get(CONTENT_TYPE)) {
        return Err(Problem::unsupported_media_type(
            "the body must be JSON (Content-Type: application/json)",
        ));
    }
    mcp_validate::parse_blocking(body, *limits).await
}

/// Parses and validates `bytes` as `T` (for the CLI and tool arguments).
pub fn parse<T>(bytes: &[u8]) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    mcp_validate::parse(bytes, &limits(1024 * 1024))
}
