use std::borrow::Cow;
use std::fmt::Write as _;

use http::HeaderValue;
use http::header::WWW_AUTHENTICATE;
use mcp_core::{Problem, code};

/// Why a presented credential was refused.
///
/// Renders as a `401` problem with `WWW-Authenticate: Bearer` (RFC 6750), or
/// `503` when the component that would check it is unreachable. The
/// descriptions are fixed phrases: never the token, never the input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// No credentials were sent.
    #[error("missing credentials")]
    MissingCredentials,
    /// A token was sent and is not acceptable.
    #[error("invalid token: {0}")]
    InvalidToken(Cow<'static, str>),
    /// A token was sent after its `exp` (plus leeway).
    #[error("token expired")]
    TokenExpired,
    /// An API key was sent and is unknown, inactive or revoked.
    #[error("invalid API key")]
    InvalidApiKey,
    /// An API key was sent after its expiry.
    #[error("API key expired")]
    ApiKeyExpired,
    /// What would check the credential (a database, a JWKS endpoint) is
    /// unreachable.
    #[error("authentication unavailable: {0}")]
    Unavailable(Cow<'static, str>),
}

impl AuthError {
    /// An invalid token with a fixed description.
    pub fn invalid_token(description: impl Into<Cow<'static, str>>) -> Self {
        AuthError::InvalidToken(description.into())
    }

    /// The stable problem code.
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::MissingCredentials => code::MISSING_CREDENTIALS,
            AuthError::InvalidToken(_) => code::INVALID_TOKEN,
            AuthError::TokenExpired => code::TOKEN_EXPIRED,
            AuthError::InvalidApiKey => code::INVALID_API_KEY,
            AuthError::ApiKeyExpired => code::API_KEY_EXPIRED,
            AuthError::Unavailable(_) => code::UNAVAILABLE,
        }
    }

    fn description(&self) -> Cow<'static, str> {
        match self {
            AuthError::MissingCredentials => "no credentials were sent".into(),
            AuthError::InvalidToken(reason) => reason.clone(),
            AuthError::TokenExpired => "the token has expired".into(),
            AuthError::InvalidApiKey => "the API key is not valid".into(),
            AuthError::ApiKeyExpired => "the API key has expired".into(),
            AuthError::Unavailable(_) => "authentication is unavailable".into(),
        }
    }

    /// The response problem, with the challenge of `challenge`.
    pub fn to_problem(&self, challenge: &Challenge) -> Problem {
        if let AuthError::Unavailable(_) = self {
            return Problem::unavailable("authentication is temporarily unavailable");
        }
        let description = self.description();
        let header = match self {
            // RFC 6750 §3.1: no error attribute when no credentials were sent.
            AuthError::MissingCredentials => challenge.unauthorized(None),
            _ => challenge.unauthorized(Some(&description)),
        };
        Problem::unauthorized(self.code(), description).with_header(WWW_AUTHENTICATE, header)
    }
}

/// How the server introduces itself in `WWW-Authenticate` challenges.
///
/// ```
/// use mcp_auth::Challenge;
///
/// let challenge = Challenge::new("mcp")
///     .resource_metadata("https://mcp.example.com/.well-known/oauth-protected-resource/mcp");
/// let problem = challenge.insufficient_scope(["keys:write"]);
/// assert_eq!(problem.status(), 403);
/// assert_eq!(
///     problem.headers()["www-authenticate"],
///     "Bearer realm=\"mcp\", error=\"insufficient_scope\", \
///      error_description=\"the token lacks the scope this needs\", scope=\"keys:write\", \
///      resource_metadata=\"https://mcp.example.com/.well-known/oauth-protected-resource/mcp\""
/// );
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Challenge {
    realm: String,
    resource_metadata: Option<String>,
    /// Space-separated scopes a `401` names; empty: none.
    scope: String,
}

impl Default for Challenge {
    fn default() -> Self {
        Challenge::new("mcp")
    }
}

impl Challenge {
    /// A challenge for `realm`. Quotes and backslashes are dropped from it.
    pub fn new(realm: impl Into<String>) -> Self {
        Challenge {
            realm: quoted_safe(&realm.into()),
            resource_metadata: None,
            scope: String::new(),
        }
    }

    /// Adds `resource_metadata="<url>"` (RFC 9728 §5.1) to every challenge.
    #[must_use]
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(quoted_safe(&url.into()));
        self
    }

    /// The scopes a `401` from this challenge names (`scope="..."`, MCP
    /// authorization): what the protected endpoint needs, so a client asks
    /// for them on its first authorization.
    #[must_use]
    pub fn scopes<'a>(mut self, scopes: impl IntoIterator<Item = &'a str>) -> Self {
        self.scope = join_scopes(scopes);
        self
    }

    /// `403 insufficient_scope` (RFC 6750 §3.1) naming every scope the
    /// operation needs, in the challenge's `scope` attribute
    /// (space-separated) and the problem's `requiredScopes`, so a client
    /// can ask for one token that carries them all.
    ///
    /// ```
    /// let problem = mcp_auth::Challenge::default().insufficient_scope(["mcp", "agents:write"]);
    /// assert_eq!(problem.status(), 403);
    /// assert!(problem.headers()["www-authenticate"].to_str().unwrap()
    ///     .contains("scope=\"mcp agents:write\""));
    /// ```
    pub fn insufficient_scope<'a>(&self, scopes: impl IntoIterator<Item = &'a str>) -> Problem {
        let description = "the token lacks the scope this needs";
        let scopes: Vec<String> = scopes.into_iter().map(quoted_safe).collect();
        let joined = scopes.join(" ");
        let header = self.header(Some(("insufficient_scope", description, Some(&joined))));
        Problem::forbidden(code::INSUFFICIENT_SCOPE, description)
            .with_extension("scope", joined.as_str())
            .with_extension("requiredScopes", scopes)
            .with_header(WWW_AUTHENTICATE, header)
    }

    /// The `WWW-Authenticate` value of a `401`: `error` (with its
    /// description) when a credential was refused, none when none was
    /// sent (RFC 6750 §3.1); the challenge's scopes either way.
    pub(crate) fn unauthorized(&self, error: Option<&str>) -> HeaderValue {
        let scope = (!self.scope.is_empty()).then_some(self.scope.as_str());
        match error {
            Some(description) => self.header(Some(("invalid_token", description, scope))),
            None => self.header_with(None, scope),
        }
    }

    fn header(&self, error: Option<(&str, &str, Option<&str>)>) -> HeaderValue {
        let scope = error.and_then(|(_, _, scope)| scope);
        self.header_with(error.map(|(e, d, _)| (e, d)), scope)
    }

    fn header_with(&self, error: Option<(&str, &str)>, scope: Option<&str>) -> HeaderValue {
        let mut value = format!("Bearer realm=\"{}\"", self.realm);
        if let Some((error, description)) = error {
            let _ = write!(
                value,
                ", error=\"{error}\", error_description=\"{}\"",
                quoted_safe(description)
            );
        }
        if let Some(scope) = scope {
            let _ = write!(value, ", scope=\"{}\"", quoted_safe(scope));
        }
        if let Some(url) = &self.resource_metadata {
            let _ = write!(value, ", resource_metadata=\"{url}\"");
        }
        // Every part was filtered to visible ASCII and spaces.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
}

/// Scopes as one space-separated, quotable attribute value.
fn join_scopes<'a>(scopes: impl IntoIterator<Item = &'a str>) -> String {
    scopes
        .into_iter()
        .map(quoted_safe)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Keeps what may sit inside an RFC 6750 quoted string: visible ASCII and
/// spaces, minus `"` and `\`.
fn quoted_safe(text: &str) -> String {
    text.chars()
        .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '"' && *c != '\\')
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_credentials_has_no_error_attribute() {
        let problem = AuthError::MissingCredentials.to_problem(&Challenge::default());
        assert_eq!(problem.status(), 401);
        assert_eq!(problem.code(), "missing_credentials");
        assert_eq!(problem.headers()[WWW_AUTHENTICATE], "Bearer realm=\"mcp\"");
    }

    #[test]
    fn refused_credentials_say_invalid_token() {
        let challenge = Challenge::new("mcp").resource_metadata("https://x/.well-known/r");
        for (error, code) in [
            (AuthError::TokenExpired, "token_expired"),
            (AuthError::invalid_token("bad signature"), "invalid_token"),
            (AuthError::InvalidApiKey, "invalid_api_key"),
            (AuthError::ApiKeyExpired, "api_key_expired"),
        ] {
            let problem = error.to_problem(&challenge);
            assert_eq!(problem.status(), 401);
            assert_eq!(problem.code(), code);
            let header = problem.headers()[WWW_AUTHENTICATE].to_str().unwrap();
            assert!(header.starts_with(
                "Bearer realm=\"mcp\", error=\"invalid_token\", error_description=\""
            ));
            assert!(header.ends_with(", resource_metadata=\"https://x/.well-known/r\""));
        }
    }

    #[test]
    fn a_401_names_the_scopes_the_endpoint_needs() {
        let challenge = Challenge::new("mcp")
            .resource_metadata("https://x/.well-known/oauth-protected-resource/mcp")
            .scopes(["mcp"]);
        let missing = AuthError::MissingCredentials.to_problem(&challenge);
        assert_eq!(
            missing.headers()[WWW_AUTHENTICATE],
            "Bearer realm=\"mcp\", scope=\"mcp\", \
             resource_metadata=\"https://x/.well-known/oauth-protected-resource/mcp\""
        );
        let refused = AuthError::TokenExpired.to_problem(&challenge);
        let header = refused.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(header.contains("error=\"invalid_token\""), "{header}");
        assert!(
            header.contains(", scope=\"mcp\", resource_metadata="),
            "{header}"
        );
    }

    #[test]
    fn insufficient_scope_names_every_scope_needed() {
        let problem = Challenge::default().insufficient_scope(["mcp", "agents:write", "x\"y"]);
        assert_eq!(problem.code(), "insufficient_scope");
        let header = problem.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert!(header.contains("scope=\"mcp agents:write xy\""), "{header}");
        let body: serde_json::Value = serde_json::from_slice(&problem.to_json()).unwrap();
        assert_eq!(
            body["requiredScopes"],
            serde_json::json!(["mcp", "agents:write", "xy"])
        );
        assert_eq!(body["scope"], "mcp agents:write xy");
    }

    #[test]
    fn unavailable_is_503_without_challenge() {
        let problem = AuthError::Unavailable("db down".into()).to_problem(&Challenge::default());
        assert_eq!(problem.status(), 503);
        assert!(problem.headers().get(WWW_AUTHENTICATE).is_none());
        assert!(!problem.detail().unwrap_or_default().contains("db down"));
    }

    #[test]
    fn hostile_text_cannot_break_the_header() {
        let challenge = Challenge::new("a\"b\\c\r\nd");
        let problem = AuthError::invalid_token("x\"y\u{7f}z").to_problem(&challenge);
        let header = problem.headers()[WWW_AUTHENTICATE].to_str().unwrap();
        assert_eq!(
            header,
            "Bearer realm=\"abcd\", error=\"invalid_token\", error_description=\"xyz\""
        );
    }
}
