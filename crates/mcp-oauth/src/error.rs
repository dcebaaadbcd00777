//! OAuth errors as their RFCs define them: RFC 6749 §5.2 (token), §4.1.2.1
//! (authorization), RFC 7591 §3.2.2 (registration), RFC 7009 (revocation),
//! RFC 8707 (`invalid_target`). Not problem+json: OAuth clients parse these.

use std::borrow::Cow;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

/// The `error` code of an OAuth error response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ErrorCode {
    /// Malformed or missing parameter.
    InvalidRequest,
    /// Client authentication failed, or the client is unknown.
    InvalidClient,
    /// The code or refresh token is invalid, expired, used or revoked, or
    /// the verifier or redirect URI does not match.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// Not `authorization_code` nor `refresh_token`.
    UnsupportedGrantType,
    /// Scopes beyond what may be granted.
    InvalidScope,
    /// The user refused.
    AccessDenied,
    /// Not `code`.
    UnsupportedResponseType,
    /// The resource is not this server's (RFC 8707).
    InvalidTarget,
    /// A registration's redirect URI is refused (RFC 7591).
    InvalidRedirectUri,
    /// A registration's metadata is refused (RFC 7591).
    InvalidClientMetadata,
    /// Something on our side failed.
    ServerError,
    /// A dependency (the store) is down.
    TemporarilyUnavailable,
}

impl ErrorCode {
    /// The code as sent.
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidClient => "invalid_client",
            ErrorCode::InvalidGrant => "invalid_grant",
            ErrorCode::UnauthorizedClient => "unauthorized_client",
            ErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            ErrorCode::InvalidScope => "invalid_scope",
            ErrorCode::AccessDenied => "access_denied",
            ErrorCode::UnsupportedResponseType => "unsupported_response_type",
            ErrorCode::InvalidTarget => "invalid_target",
            ErrorCode::InvalidRedirectUri => "invalid_redirect_uri",
            ErrorCode::InvalidClientMetadata => "invalid_client_metadata",
            ErrorCode::ServerError => "server_error",
            ErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
        }
    }
}

/// An OAuth error: its code and a description for people. The description
/// never holds a secret, nor a value the client sent.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error, Serialize)]
#[error("{}: {description}", code.as_str())]
pub struct OAuthError {
    /// `error`.
    #[serde(rename = "error")]
    pub code: ErrorCode,
    /// `error_description`.
    #[serde(rename = "error_description")]
    pub description: Cow<'static, str>,
}

impl OAuthError {
    /// An error with `code`.
    pub fn new(code: ErrorCode, description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError {
            code,
            description: description.into(),
        }
    }

    /// `invalid_request`.
    pub fn invalid_request(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(ErrorCode::InvalidRequest, description)
    }

    /// `invalid_grant`.
    pub fn invalid_grant(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(ErrorCode::InvalidGrant, description)
    }

    /// `invalid_client`.
    pub fn invalid_client(description: impl Into<Cow<'static, str>>) -> Self {
        OAuthError::new(ErrorCode::InvalidClient, description)
    }

    /// `temporarily_unavailable`, for a store that failed (its error is logged, not
    /// sent).
    pub fn unavailable() -> Self {
        OAuthError::new(
            ErrorCode::TemporarilyUnavailable,
            "the authorization server cannot reach its store",
        )
    }

    /// The status RFC 6749 gives it: `401` for `invalid_client`, `503` when
    /// unavailable, `500` for a server error, `400` otherwise.
    pub fn status(&self) -> StatusCode {
        match self.code {
            ErrorCode::InvalidClient => StatusCode::UNAUTHORIZED,
            ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The JSON response, with `Cache-Control: no-store` (RFC 6749 §5.1);
    /// an `invalid_client` also carries a `Basic` challenge (§5.2).
    ///
    /// ```
    /// use mcp_oauth::OAuthError;
    ///
    /// let response: http::Response<bytes::Bytes> =
    ///     OAuthError::invalid_grant("the code was used").to_response();
    /// assert_eq!(response.status(), 400);
    /// assert_eq!(response.headers()["cache-control"], "no-store");
    /// assert_eq!(
    ///     response.body().as_ref(),
    ///     br#"{"error":"invalid_grant","error_description":"the code was used"}"#
    /// );
    /// ```
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut response = json_response(self.status(), body);
        if self.code == ErrorCode::InvalidClient {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"oauth\""),
            );
        }
        response
    }
}

/// A JSON answer of an OAuth endpoint: never cached (it holds tokens).
pub(crate) fn json_response<B: From<Bytes>>(status: StatusCode, body: Vec<u8>) -> Response<B> {
    let mut response = Response::new(B::from(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
#[error("OAuth store: {0}")]
pub struct StoreError(pub String);

impl From<StoreError> for OAuthError {
    fn from(error: StoreError) -> Self {
        // Logged here, never sent: the client learns only that the store
        // is unavailable.
        tracing::warn!(%error, "the OAuth store failed");
        OAuthError::unavailable()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_rfc_6749() {
        assert_eq!(OAuthError::unavailable().status(), 503);
        assert_eq!(OAuthError::new(ErrorCode::ServerError, "x").status(), 500);
        assert_eq!(OAuthError::invalid_client("x").status(), 401);
        assert_eq!(OAuthError::invalid_grant("x").status(), 400);
        let response: Response<Bytes> = OAuthError::unavailable().to_response();
        assert_eq!(response.status(), 503);
        assert!(!response.headers().contains_key(header::WWW_AUTHENTICATE));
        assert_eq!(response.headers()[header::PRAGMA], "no-cache");
    }
}
