use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::Header;
use mcp_core::{SharedClock, SystemClock};
use serde::Serialize;

use crate::keys::{SigningKey, install_crypto_provider};

/// What to put in an access token.
///
/// ```
/// use mcp_auth::AccessToken;
///
/// let token = AccessToken::new("user-1")
///     .email("ada@example.com")
///     .role("admin")
///     .scopes(["mcp", "keys:read"]);
/// ```
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct AccessToken {
    subject: String,
    email: Option<String>,
    role: Option<String>,
    scopes: Option<Vec<String>>,
    ttl: Option<Duration>,
    client_id: Option<String>,
    session: Option<String>,
}

impl AccessToken {
    /// A token for `subject` (a user id).
    pub fn new(subject: impl Into<String>) -> Self {
        AccessToken {
            subject: subject.into(),
            ..AccessToken::default()
        }
    }

    /// The `email` claim.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.email = Some(email.into());
        self
    }

    /// The `role` claim.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.role = Some(role.into());
        self
    }

    /// Restricts the token to `scopes` (the `scope` claim, space-separated).
    /// Without this call the token is unrestricted within its role.
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// The `client_id` claim: the OAuth client the token is issued to
    /// (RFC 9068).
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = Some(client_id.into());
        self
    }

    /// The `sid` claim: the session or grant the token belongs to, so that
    /// revoking it can refuse the token before it expires
    /// ([`Principal::session`](mcp_core::Principal::session)).
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.session = Some(session.into());
        self
    }

    /// A lifetime other than the issuer's default.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }
}

/// A signed token. Its `Debug` output hides the token itself.
#[derive(Clone)]
pub struct IssuedToken {
    token: String,
    /// The `jti` claim.
    pub jti: String,
    /// Seconds until expiry, for `expiresIn`.
    pub expires_in: u64,
    /// The `exp` claim, seconds since the epoch.
    pub expires_at: u64,
}

impl IssuedToken {
    /// The compact JWT, to hand to the client once.
    pub fn expose(&self) -> &str {
        &self.token
    }
}

impl fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuedToken")
            .field("jti", &self.jti)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// Why a token could not be signed.
#[derive(Debug, thiserror::Error)]
#[error("signing the token failed: {0}")]
pub struct IssueError(#[from] jsonwebtoken::errors::Error);

/// Signs access tokens: `sub`, `email`, `role`, `iat`, `exp`, `iss`, `aud`,
/// `jti`, when restricted `scope`, and `client_id` and `sid` when set; header `typ: at+jwt` (RFC 9068) and
/// the key's `kid`.
///
/// ```
/// use mcp_auth::{AccessToken, SigningKey, TokenIssuer};
///
/// let issuer = TokenIssuer::new(
///     SigningKey::hmac(&[42; 32]).unwrap(),
///     "https://mcp.example.com",
///     "https://mcp.example.com/mcp",
/// );
/// let token = issuer.issue(&AccessToken::new("user-1").role("user")).unwrap();
/// assert_eq!(token.expires_in, 3600);
/// assert_eq!(token.expose().split('.').count(), 3);
/// ```
#[derive(Clone)]
pub struct TokenIssuer {
    key: SigningKey,
    issuer: String,
    audience: String,
    ttl: Duration,
    clock: SharedClock,
}

impl fmt::Debug for TokenIssuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenIssuer")
            .field("key", &self.key)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct IssuedClaims<'a> {
    sub: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'a str>,
    iat: u64,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
    jti: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    client_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sid: Option<&'a str>,
}

impl TokenIssuer {
    /// Tokens signed with `key`, from `issuer`, for `audience`, valid for an
    /// hour.
    pub fn new(key: SigningKey, issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        install_crypto_provider();
        TokenIssuer {
            key,
            issuer: issuer.into(),
            audience: audience.into(),
            ttl: Duration::from_secs(3600),
            clock: SystemClock::shared(),
        }
    }

    /// The default lifetime.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The time source for `iat` and `exp`.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The `iss` of issued tokens.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Signs `token`.
    pub fn issue(&self, token: &AccessToken) -> Result<IssuedToken, IssueError> {
        let now = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let ttl = token.ttl.unwrap_or(self.ttl).as_secs();
        let jti = uuid::Uuid::new_v4().to_string();
        let claims = IssuedClaims {
            sub: &token.subject,
            email: token.email.as_deref(),
            role: token.role.as_deref(),
            iat: now,
            exp: now + ttl,
            iss: &self.issuer,
            aud: &self.audience,
            jti: &jti,
            scope: token.scopes.as_ref().map(|s| s.join(" ")),
            client_id: token.client_id.as_deref(),
            sid: token.session.as_deref(),
        };
        let mut header = Header::new(self.key.algorithm());
        header.typ = Some("at+jwt".to_owned());
        header.kid = self.key.kid().map(str::to_owned);
        let token = jsonwebtoken::encode(&header, &claims, &self.key.key)?;
        Ok(IssuedToken {
            token,
            jti,
            expires_in: ttl,
            expires_at: now + ttl,
        })
    }

    /// When a token issued now would expire.
    pub fn expiry_from_now(&self) -> SystemTime {
        self.clock.now() + self.ttl
    }
}
