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
            AuthError::MissingCredentials => challenge.header(None),
            _ => challenge.header(Some(("invalid_token", &description, None))),
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
/// let problem = challenge.insufficient_scope("keys:write");
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
        }
    }

    /// Adds `resource_metadata="<url>"` (RFC 9728 §5.1) to every challenge.
    #[must_use]
    pub fn resource_metadata(mut self, url: impl Into<String>) -> Self {
        self.resource_metadata = Some(quoted_safe(&url.into()));
        self
    }

    /// `403 insufficient_scope` naming the scope needed (RFC 6750 §3.1), so a
    /// client can ask for it.
    pub fn insufficient_scope(&self, scope: &str) -> Problem {
        let description = "the token lacks the scope this needs";
        let header = self.header(Some(("insufficient_scope", description, Some(scope))));
        Problem::forbidden(code::INSUFFICIENT_SCOPE, description)
            .with_extension("scope", scope)
            .with_header(WWW_AUTHENTICATE, header)
    }

    fn header(&self, error: Option<(&str, &str, Option<&str>)>) -> HeaderValue {
        let mut value = format!("Bearer realm=\"{}\"", self.realm);
        if let Some((error, description, scope)) = error {
            let _ = write!(
                value,
                ", error=\"{error}\", error_description=\"{}\"",
                quoted_safe(description)
            );
            if let Some(scope) = scope {
                let _ = write!(value, ", scope=\"{}\"", quoted_safe(scope));
            }
        }
        if let Some(url) = &self.resource_metadata {
            let _ = write!(value, ", resource_metadata=\"{url}\"");
        }
        // Every part was filtered to visible ASCII and spaces.
        HeaderValue::from_str(&value).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }
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
