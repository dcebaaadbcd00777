//! A JSON body, checked against its schema: the one way handlers read JSON.

use axum::extract::{FromRequest, Request};
use bytes::Bytes;
use garde::Validate;
use http::header::CONTENT_TYPE;
use mcp_core::{FieldError, Problem};
use serde::de::DeserializeOwned;

/// A JSON body of type `T` that passed `T`'s garde rules.
///
/// `415` without a JSON content type, `400 malformed_json` (with line and
/// column) when it does not parse, `400 validation_failed` listing every
/// failing field when it does not fit. Unknown fields are dropped.
#[derive(Debug)]
pub struct Valid<T>(pub T);

impl<S, T> FromRequest<S> for Valid<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate<Context = ()>,
{
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        if !is_json(request.headers()) {
            return Err(Problem::unsupported_media_type(
                "send the body as application/json",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|_| Problem::payload_too_large(None))?;
        parse(&bytes).map(Valid)
    }
}

/// Checks the content type of `headers` and parses and validates `body`:
/// for handlers that must authorize (by path or owner) before validating,
/// as the order of checks requires.
pub fn validated<T>(headers: &http::HeaderMap, body: &[u8]) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    if !is_json(headers) {
        return Err(Problem::unsupported_media_type(
            "send the body as application/json",
        ));
    }
    parse(body)
}

fn is_json(headers: &http::HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase())
        .is_some_and(|v| {
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
}

/// Parses and validates `bytes` as `T`.
pub fn parse<T>(bytes: &[u8]) -> Result<T, Problem>
where
    T: DeserializeOwned + Validate<Context = ()>,
{
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        Problem::malformed_json(format!(
            "the body is not valid JSON (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    if !value.is_object() {
        return Err(Problem::validation_failed(vec![FieldError::new(
            "",
            "type",
            "the body must be a JSON object",
        )]));
    }
    let value: T = serde_path_to_error::deserialize(value).map_err(|e| {
        let message = e.inner().to_string();
        let mut field = e.path().to_string();
        if field == "." {
            field = String::new();
        }
        // serde reports a missing field at its parent.
        let code = match message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            Some(missing) => {
                field = if field.is_empty() {
                    missing.to_owned()
                } else {
                    format!("{field}.{missing}")
                };
                "required"
            }
            None => "type",
        };
        Problem::validation_failed(vec![FieldError::new(field, code, message)])
    })?;
    value.validate().map_err(|report| {
        Problem::validation_failed(
            report
                .iter()
                .map(|(path, error)| {
                    FieldError::new(path.to_string(), "invalid", error.message().to_owned())
                })
                .collect(),
        )
    })?;
    Ok(value)
}
