use std::borrow::Cow;
use std::fmt;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use serde::Serialize;
use serde_json::{Map, Value};

/// The media type of every error body: `application/problem+json`.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// The stable machine-readable codes of the HTTP contract.
///
/// Clients branch on `code`, never on `title` or `detail`.
pub mod code {
    /// The body is not JSON.
    pub const MALFORMED_JSON: &str = "malformed_json";
    /// The body is JSON but fails its schema.
    pub const VALIDATION_FAILED: &str = "validation_failed";
    /// A request the server cannot understand for another reason.
    pub const BAD_REQUEST: &str = "bad_request";
    /// No credentials were sent.
    pub const MISSING_CREDENTIALS: &str = "missing_credentials";
    /// A token was sent and refused.
    pub const INVALID_TOKEN: &str = "invalid_token";
    /// A token was sent after its expiry.
    pub const TOKEN_EXPIRED: &str = "token_expired";
    /// An API key was sent and refused.
    pub const INVALID_API_KEY: &str = "invalid_api_key";
    /// An API key was sent after its expiry.
    pub const API_KEY_EXPIRED: &str = "api_key_expired";
    /// A login with an unknown e-mail or a wrong password.
    pub const INVALID_CREDENTIALS: &str = "invalid_credentials";
    /// The caller's role does not allow this.
    pub const FORBIDDEN: &str = "forbidden";
    /// The caller's scopes do not include the one needed.
    pub const INSUFFICIENT_SCOPE: &str = "insufficient_scope";
    /// The request's `Origin` is not allowed.
    pub const ORIGIN_NOT_ALLOWED: &str = "origin_not_allowed";
    /// The request's `Host` is not allowed.
    pub const HOST_NOT_ALLOWED: &str = "host_not_allowed";
    /// Unknown route, or a resource the caller may not see.
    pub const NOT_FOUND: &str = "not_found";
    /// The route exists, the method does not.
    pub const METHOD_NOT_ALLOWED: &str = "method_not_allowed";
    /// A duplicate of something unique.
    pub const CONFLICT: &str = "conflict";
    /// The body is over the size limit.
    pub const PAYLOAD_TOO_LARGE: &str = "payload_too_large";
    /// A JSON route without a JSON content type.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "unsupported_media_type";
    /// A quota is used up.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// The request took longer than the server allows.
    pub const TIMEOUT: &str = "timeout";
    /// A dependency (database, Redis) is unreachable.
    pub const UNAVAILABLE: &str = "unavailable";
    /// Anything else that went wrong on the server.
    pub const INTERNAL: &str = "internal";
}

/// The stable code of a problem response, in the response's extensions.
///
/// Layers that react to outcomes (counting failed authentications, metrics)
/// read it instead of parsing the body:
///
/// ```
/// use mcp_core::{Problem, ProblemCode, code};
///
/// let response: http::Response<bytes::Bytes> =
///     Problem::unauthorized(code::INVALID_TOKEN, "bad signature").into_response();
/// let problem = response.extensions().get::<ProblemCode>().unwrap();
/// assert_eq!(problem.as_str(), code::INVALID_TOKEN);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProblemCode(pub Cow<'static, str>);

impl ProblemCode {
    /// The code, such as `invalid_token`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Most entries a validation problem lists in `errors`. The rest are only
/// counted, in the extension member `errorsTruncated`, so that no body can
/// make the answer large.
pub const MAX_FIELD_ERRORS: usize = 100;

/// One failing field of a validation error.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field: `email`, `capabilities[2]`, `metadata.owner`.
    pub field: String,
    /// Stable code of the rule that failed, such as `email` or `length`.
    pub code: Cow<'static, str>,
    /// Human-readable explanation.
    pub message: String,
}

impl FieldError {
    /// A failing field.
    pub fn new(
        field: impl Into<String>,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            code: code.into(),
            message: message.into(),
        }
    }
}

/// An RFC 9457 problem: the single error response of every layer.
///
/// Serialized as
/// `{"type":"about:blank","title":"Unauthorized","status":401,"detail":"token expired","code":"token_expired"}`,
/// plus `errors` for validation failures and any extension members.
/// Headers such as `WWW-Authenticate` or `Retry-After` travel with it.
///
/// The `detail` is shown to the client: never put internals, secrets or
/// input echoes there. [`Problem::internal`] has a fixed, bland detail.
///
/// ```
/// use http::StatusCode;
/// use mcp_core::{FieldError, Problem};
///
/// let problem = Problem::validation_failed(vec![
///     FieldError::new("email", "email", "must be an e-mail address"),
///     FieldError::new("password", "length", "must be at least 8 characters"),
/// ]);
/// assert_eq!(problem.status(), StatusCode::BAD_REQUEST);
/// let body: serde_json::Value = serde_json::from_slice(&problem.to_json()).unwrap();
/// assert_eq!(body["code"], "validation_failed");
/// assert_eq!(body["errors"].as_array().unwrap().len(), 2);
/// ```
// Boxed so that `Result<T, Problem>` stays one pointer wide on the happy path.
#[derive(Clone, Debug, PartialEq)]
pub struct Problem(Box<Inner>);

#[derive(Clone, Debug, PartialEq)]
struct Inner {
    status: StatusCode,
    code: Cow<'static, str>,
    title: Option<Cow<'static, str>>,
    detail: Option<Cow<'static, str>>,
    type_uri: Cow<'static, str>,
    errors: Vec<FieldError>,
    extensions: Map<String, Value>,
    headers: HeaderMap,
}

/// Members defined by RFC 9457 or by this crate; extensions may not shadow them.
const RESERVED_MEMBERS: [&str; 7] = [
    "type", "title", "status", "detail", "instance", "code", "errors",
];

impl Problem {
    /// A problem with `status` and a stable `code`; the title is the
    /// status's reason phrase unless set.
    pub fn new(status: StatusCode, code: impl Into<Cow<'static, str>>) -> Self {
        Problem(Box::new(Inner {
            status,
            code: code.into(),
            title: None,
            detail: None,
            type_uri: Cow::Borrowed("about:blank"),
            errors: Vec::new(),
            extensions: Map::new(),
            headers: HeaderMap::new(),
        }))
    }

    /// The problem for a bare status code (a response some middleware made
    /// without a body), with the code the contract uses for that status.
    pub fn from_status(status: StatusCode) -> Self {
        let code = match status {
            StatusCode::BAD_REQUEST => code::BAD_REQUEST,
            StatusCode::UNAUTHORIZED => code::MISSING_CREDENTIALS,
            StatusCode::FORBIDDEN => code::FORBIDDEN,
            StatusCode::NOT_FOUND => code::NOT_FOUND,
            StatusCode::METHOD_NOT_ALLOWED => code::METHOD_NOT_ALLOWED,
            StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => code::TIMEOUT,
            StatusCode::CONFLICT => code::CONFLICT,
            StatusCode::PAYLOAD_TOO_LARGE => code::PAYLOAD_TOO_LARGE,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => code::UNSUPPORTED_MEDIA_TYPE,
            StatusCode::TOO_MANY_REQUESTS => code::RATE_LIMITED,
            StatusCode::SERVICE_UNAVAILABLE => code::UNAVAILABLE,
            s if s.is_server_error() => code::INTERNAL,
            _ => code::BAD_REQUEST,
        };
        Problem::new(status, code)
    }

    /// `400 malformed_json`.
    pub fn malformed_json(detail: impl Into<Cow<'static, str>>) -> Self {
        Problem::new(StatusCode::BAD_REQUEST, code::MALFORMED_JSON).with_detail(detail)
    }

    /// `400 validation_failed` listing every failing field (the first
    /// [`MAX_FIELD_ERRORS`] of them; see
    /// [`validation_failed_truncated`](Problem::validation_failed_truncated)).
    pub fn validation_failed(errors: Vec<FieldError>) -> Self {
        let total = errors.len();
        Problem::validation_failed_truncated(errors, total)
    }

    /// `400 validation_failed` for `total` failing fields, of which `errors`
    /// are the first: at most [`MAX_FIELD_ERRORS`] are listed, and when
    /// fewer than `total` are, `errorsTruncated` counts the ones left out.
    /// For collectors that count errors without keeping them all.
    ///
    /// ```
    /// use mcp_core::{FieldError, MAX_FIELD_ERRORS, Problem};
    ///
    /// let first: Vec<FieldError> = (0..MAX_FIELD_ERRORS)
    ///     .map(|i| FieldError::new(format!("items[{i}]"), "type", "must be a string"))
    ///     .collect();
    /// let problem = Problem::validation_failed_truncated(first, 40_000);
    /// assert_eq!(problem.errors().len(), 100);
    /// assert_eq!(problem.extension("errorsTruncated"), Some(&39_900.into()));
    /// ```
    pub fn validation_failed_truncated(mut errors: Vec<FieldError>, total: usize) -> Self {
        errors.truncate(MAX_FIELD_ERRORS);
        let total = total.max(errors.len());
        let left_out = total - errors.len();
        let detail = match total {
            1 => "1 field is invalid".to_owned(),
            n => format!("{n} fields are invalid"),
        };
        let problem = Problem::new(StatusCode::BAD_REQUEST, code::VALIDATION_FAILED)
            .with_detail(detail)
            .with_errors(errors);
        if left_out > 0 {
            problem.with_extension("errorsTruncated", left_out)
        } else {
            problem
        }
    }

    /// `401` with one of the authentication codes.
    pub fn unauthorized(
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Problem::new(StatusCode::UNAUTHORIZED, code).with_detail(detail)
    }

    /// `403` with one of the authorization codes.
    pub fn forbidden(
        code: impl Into<Cow<'static, str>>,
        detail: impl Into<Cow<'static, str>>,
    ) -> Self {
        Problem::new(StatusCode::FORBIDDEN, code).with_detail(detail)
    }

    /// `404 not_found`.
    pub fn not_found() -> Self {
        Problem::new(StatusCode::NOT_FOUND, code::NOT_FOUND).with_detail("no such resource")
    }

    /// `405 method_not_allowed`.
    pub fn method_not_allowed() -> Self {
        Problem::new(StatusCode::METHOD_NOT_ALLOWED, code::METHOD_NOT_ALLOWED)
            .with_detail("this method is not allowed on this resource")
    }

    /// `409 conflict`.
    pub fn conflict(detail: impl Into<Cow<'static, str>>) -> Self {
        Problem::new(StatusCode::CONFLICT, code::CONFLICT).with_detail(detail)
    }

    /// `413 payload_too_large`, naming the limit in bytes.
    pub fn payload_too_large(limit_bytes: Option<usize>) -> Self {
        let problem = Problem::new(StatusCode::PAYLOAD_TOO_LARGE, code::PAYLOAD_TOO_LARGE);
        match limit_bytes {
            Some(limit) => problem
                .with_detail(format!("the request body is larger than {limit} bytes"))
                .with_extension("limit", limit),
            None => problem.with_detail("the request body is too large"),
        }
    }

    /// `415 unsupported_media_type`.
    pub fn unsupported_media_type(detail: impl Into<Cow<'static, str>>) -> Self {
        Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            code::UNSUPPORTED_MEDIA_TYPE,
        )
        .with_detail(detail)
    }

    /// `429 rate_limited` with `Retry-After` in whole seconds (at least 1).
    pub fn rate_limited(retry_after_seconds: u64) -> Self {
        let seconds = retry_after_seconds.max(1);
        Problem::new(StatusCode::TOO_MANY_REQUESTS, code::RATE_LIMITED)
            .with_detail(format!("rate limit exceeded; retry in {seconds} s"))
            .with_header(header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    /// `503 unavailable`.
    pub fn unavailable(detail: impl Into<Cow<'static, str>>) -> Self {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE).with_detail(detail)
    }

    /// `500 internal`. The body says nothing about the cause: log it instead.
    pub fn internal() -> Self {
        Problem::new(StatusCode::INTERNAL_SERVER_ERROR, code::INTERNAL)
            .with_detail("an internal error occurred")
    }

    /// Sets the human-readable explanation of this occurrence.
    #[must_use]
    pub fn with_detail(mut self, detail: impl Into<Cow<'static, str>>) -> Self {
        self.0.detail = Some(detail.into());
        self
    }

    /// Overrides the title (default: the status's reason phrase).
    #[must_use]
    pub fn with_title(mut self, title: impl Into<Cow<'static, str>>) -> Self {
        self.0.title = Some(title.into());
        self
    }

    /// Sets the `type` URI (default `about:blank`).
    #[must_use]
    pub fn with_type(mut self, type_uri: impl Into<Cow<'static, str>>) -> Self {
        self.0.type_uri = type_uri.into();
        self
    }

    /// Sets the per-field errors.
    #[must_use]
    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.0.errors = errors;
        self
    }

    /// Adds an extension member. Names of standard members (`type`, `title`,
    /// `status`, `detail`, `instance`, `code`, `errors`) are ignored.
    #[must_use]
    pub fn with_extension(mut self, name: impl Into<String>, value: impl Into<Value>) -> Self {
        let name = name.into();
        if !RESERVED_MEMBERS.contains(&name.as_str()) {
            self.0.extensions.insert(name, value.into());
        }
        self
    }

    /// Adds a response header (such as `WWW-Authenticate` or `Retry-After`).
    /// A header of the same name is replaced; `Content-Type` cannot be set.
    #[must_use]
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        if name != header::CONTENT_TYPE {
            self.0.headers.insert(name, value);
        }
        self
    }

    /// The HTTP status.
    pub fn status(&self) -> StatusCode {
        self.0.status
    }

    /// The stable code.
    pub fn code(&self) -> &str {
        &self.0.code
    }

    /// The explanation, if any.
    pub fn detail(&self) -> Option<&str> {
        self.0.detail.as_deref()
    }

    /// The per-field errors.
    pub fn errors(&self) -> &[FieldError] {
        &self.0.errors
    }

    /// The extension member `name`, if set.
    pub fn extension(&self, name: &str) -> Option<&Value> {
        self.0.extensions.get(name)
    }

    /// The headers sent with the problem.
    pub fn headers(&self) -> &HeaderMap {
        &self.0.headers
    }

    /// Mutable access to the headers, for layers that add to a problem made
    /// elsewhere.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }

    fn title(&self) -> &str {
        match &self.0.title {
            Some(title) => title,
            None => self.0.status.canonical_reason().unwrap_or("Error"),
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> Bytes {
        #[derive(Serialize)]
        struct Body<'a> {
            #[serde(rename = "type")]
            type_uri: &'a str,
            title: &'a str,
            status: u16,
            #[serde(skip_serializing_if = "Option::is_none")]
            detail: Option<&'a str>,
            code: &'a str,
            #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
            errors: &'a [FieldError],
            #[serde(flatten)]
            extensions: &'a Map<String, Value>,
        }
        let body = Body {
            type_uri: &self.0.type_uri,
            title: self.title(),
            status: self.0.status.as_u16(),
            detail: self.0.detail.as_deref(),
            code: &self.0.code,
            errors: &self.0.errors,
            extensions: &self.0.extensions,
        };
        // Serializing strings, numbers and a map of `Value`s cannot fail.
        serde_json::to_vec(&body).map_or_else(|_| Bytes::new(), Bytes::from)
    }

    /// The response: status, `Content-Type: application/problem+json`, the
    /// problem's headers and its JSON body, in any body type that can be
    /// made from bytes. The response's extensions carry a [`ProblemCode`],
    /// so outer layers can tell problems apart without parsing the body.
    pub fn into_response<B: From<Bytes>>(self) -> Response<B> {
        let body = self.to_json();
        let mut response = Response::new(B::from(body));
        *response.status_mut() = self.0.status;
        response
            .extensions_mut()
            .insert(ProblemCode(self.0.code.clone()));
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        headers.extend(self.0.headers);
        response
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0.status.as_u16(), self.0.code)?;
        if let Some(detail) = &self.0.detail {
            write!(f, ": {detail}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problem {}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
impl axum_core::response::IntoResponse for Problem {
    fn into_response(self) -> axum_core::response::Response {
        Problem::into_response(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(problem: &Problem) -> Value {
        serde_json::from_slice(&problem.to_json()).unwrap()
    }

    #[test]
    fn renders_the_contract_shape() {
        let problem = Problem::unauthorized(code::TOKEN_EXPIRED, "token expired");
        assert_eq!(
            body(&problem),
            json!({"type":"about:blank","title":"Unauthorized","status":401,
                   "detail":"token expired","code":"token_expired"})
        );
    }

    #[test]
    fn field_order_is_stable() {
        let text = String::from_utf8(Problem::not_found().to_json().to_vec()).unwrap();
        assert!(text.starts_with(r#"{"type":"about:blank","title":"Not Found","status":404"#));
    }

    #[test]
    fn response_carries_content_type_and_headers() {
        let response: Response<Bytes> = Problem::rate_limited(0).into_response();
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        assert_eq!(response.headers()[header::RETRY_AFTER], "1");
        assert_eq!(
            response
                .extensions()
                .get::<ProblemCode>()
                .map(ProblemCode::as_str),
            Some("rate_limited")
        );
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["code"], "rate_limited");
    }

    #[test]
    fn extensions_cannot_shadow_standard_members() {
        let problem = Problem::unavailable("database is down")
            .with_extension("status", "ok")
            .with_extension("code", "x")
            .with_extension("checks", json!({"database":"down"}));
        let value = body(&problem);
        assert_eq!(value["status"], 503);
        assert_eq!(value["code"], "unavailable");
        assert_eq!(value["checks"]["database"], "down");
    }

    #[test]
    fn content_type_cannot_be_overridden() {
        let response: Response<Bytes> = Problem::internal()
            .with_header(header::CONTENT_TYPE, HeaderValue::from_static("text/html"))
            .into_response();
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
    }

    #[test]
    fn internal_says_nothing_specific() {
        let value = body(&Problem::internal());
        assert_eq!(value["code"], "internal");
        assert_eq!(value["detail"], "an internal error occurred");
    }

    #[test]
    fn bare_statuses_map_to_contract_codes() {
        for (status, code) in [
            (404, "not_found"),
            (405, "method_not_allowed"),
            (408, "timeout"),
            (413, "payload_too_large"),
            (415, "unsupported_media_type"),
            (429, "rate_limited"),
            (500, "internal"),
            (502, "internal"),
            (503, "unavailable"),
            (418, "bad_request"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            assert_eq!(Problem::from_status(status).code(), code, "{status}");
        }
    }

    #[test]
    fn bare_statuses_render_the_contract_body() {
        // A bare status gets the contract's code for it, the reason phrase
        // as title, `about:blank` as type, and no detail.
        for (status, code, title) in [
            (400, "bad_request", "Bad Request"),
            (401, "missing_credentials", "Unauthorized"),
            (403, "forbidden", "Forbidden"),
            (404, "not_found", "Not Found"),
            (409, "conflict", "Conflict"),
            (413, "payload_too_large", "Payload Too Large"),
            (429, "rate_limited", "Too Many Requests"),
            (503, "unavailable", "Service Unavailable"),
            (504, "timeout", "Gateway Timeout"),
        ] {
            let status = StatusCode::from_u16(status).unwrap();
            let problem = Problem::from_status(status);
            assert_eq!(problem.status(), status);
            assert_eq!(problem.code(), code, "{status}");
            assert_eq!(problem.detail(), None, "{status}");
            assert_eq!(
                body(&problem),
                json!({"type":"about:blank","title":title,"status":status.as_u16(),"code":code}),
                "{status}"
            );
        }
    }

    #[test]
    fn accessors_return_what_was_set() {
        let errors = vec![
            FieldError::new("email", "email", "must be an e-mail address"),
            FieldError::new("password", "length", "must be at least 8 characters"),
        ];
        let problem = Problem::new(StatusCode::CONFLICT, code::CONFLICT)
            .with_detail("duplicate email")
            .with_errors(errors.clone())
            .with_extension("limit", 1024)
            .with_extension("checks", json!({"database":"down"}))
            .with_header(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mcp\""),
            );
        assert_eq!(problem.status(), StatusCode::CONFLICT);
        assert_eq!(problem.code(), "conflict");
        assert_eq!(problem.detail(), Some("duplicate email"));
        assert_eq!(problem.errors(), errors.as_slice());
        assert_eq!(problem.extension("limit"), Some(&json!(1024)));
        assert_eq!(
            problem.extension("checks"),
            Some(&json!({"database":"down"}))
        );
        assert_eq!(problem.extension("missing"), None);
        let mut expected = HeaderMap::new();
        expected.insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mcp\""),
        );
        assert_eq!(problem.headers(), &expected);

        // Unset, there is no detail, no errors, no extension and no header.
        let bare = Problem::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST);
        assert_eq!(bare.detail(), None);
        assert!(bare.errors().is_empty());
        assert_eq!(bare.extension("limit"), None);
        assert!(bare.headers().is_empty());
    }

    #[test]
    fn headers_added_through_headers_mut_are_sent() {
        let mut problem = Problem::unauthorized(code::INVALID_TOKEN, "bad signature");
        problem.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
        assert_eq!(
            problem.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(problem.headers().len(), 1);
        let response: Response<Bytes> = problem.into_response();
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn axum_response_renders_status_content_type_headers_and_body() {
        use http_body_util::BodyExt;

        let problem = Problem::unauthorized(code::TOKEN_EXPIRED, "token expired").with_header(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"mcp\", error=\"invalid_token\""),
        );
        let response = axum_core::response::IntoResponse::into_response(problem);
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            response.headers()[header::CONTENT_TYPE],
            PROBLEM_CONTENT_TYPE
        );
        assert_eq!(
            response.headers()[header::WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\", error=\"invalid_token\""
        );
        assert_eq!(response.headers().len(), 2);
        assert_eq!(
            response
                .extensions()
                .get::<ProblemCode>()
                .map(ProblemCode::as_str),
            Some("token_expired")
        );
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(
            value,
            json!({"type":"about:blank","title":"Unauthorized","status":401,
                   "detail":"token expired","code":"token_expired"})
        );
    }

    #[test]
    fn validation_errors_are_capped_and_counted() {
        let errors = |n: usize| -> Vec<FieldError> {
            (0..n)
                .map(|i| FieldError::new(format!("f{i}"), "type", "bad"))
                .collect()
        };
        let value = body(&Problem::validation_failed(errors(250)));
        assert_eq!(
            value["errors"].as_array().map(Vec::len),
            Some(MAX_FIELD_ERRORS)
        );
        assert_eq!(value["errorsTruncated"], 150);
        assert_eq!(value["detail"], "250 fields are invalid");
        let value = body(&Problem::validation_failed(errors(2)));
        assert!(value.get("errorsTruncated").is_none());
        // A total below the entries given cannot go negative.
        let value = body(&Problem::validation_failed_truncated(errors(3), 1));
        assert_eq!(value["detail"], "3 fields are invalid");
        assert!(value.get("errorsTruncated").is_none());
    }

    #[test]
    fn display_names_status_and_code() {
        assert_eq!(
            Problem::conflict("duplicate email").to_string(),
            "409 conflict: duplicate email"
        );
    }
}
