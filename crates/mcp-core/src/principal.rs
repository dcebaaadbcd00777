use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

/// How a [`Principal`] proved who it is.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AuthMethod {
    /// A bearer JSON Web Token.
    Jwt,
    /// An API key (`X-API-Key`, or a bearer token with the key prefix).
    ApiKey,
    /// A scheme of the embedding application, named by it.
    Other(Cow<'static, str>),
}

impl AuthMethod {
    /// The stable name used in responses and logs: `jwt`, `api_key`, or the
    /// custom name.
    pub fn as_str(&self) -> &str {
        match self {
            AuthMethod::Jwt => "jwt",
            AuthMethod::ApiKey => "api_key",
            AuthMethod::Other(name) => name,
        }
    }
}

impl fmt::Display for AuthMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for AuthMethod {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Who is calling: an authenticated subject with roles and, optionally, a
/// restricted set of scopes.
///
/// Authentication layers insert a `Principal` into the request's extensions;
/// everything downstream reads it from there. Cloning is one reference-count
/// increment, so caches can hand out the same principal to every request.
///
/// **Scopes:** `None` means *unrestricted within its roles* (a user's own
/// session token); `Some(set)` means only what the set names (an API key
/// created with scopes, an OAuth token). An empty set allows nothing that
/// needs a scope.
///
/// A `Principal` carries no secret, so its `Debug` output is safe to log.
///
/// ```
/// use mcp_core::{AuthMethod, Principal};
///
/// let key = Principal::builder("user-7", AuthMethod::ApiKey)
///     .role("user")
///     .scopes(["mcp", "keys:read"])
///     .key_id("key-42")
///     .build();
/// assert!(key.has_role("user") && !key.has_role("admin"));
/// assert!(key.has_scope("mcp"));
/// assert!(!key.has_scope("agents:write"));
/// assert_eq!(key.key_id(), Some("key-42"));
///
/// let session = Principal::builder("user-7", AuthMethod::Jwt).role("user").build();
/// assert!(!session.is_restricted());
/// assert!(session.has_scope("agents:write"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Principal {
    inner: Arc<Inner>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Inner {
    subject: String,
    roles: BTreeSet<String>,
    scopes: Option<BTreeSet<String>>,
    auth_method: AuthMethod,
    key_id: Option<String>,
    email: Option<String>,
    issuer: Option<String>,
    expires_at: Option<SystemTime>,
    session: Option<String>,
}

impl Principal {
    /// Starts a principal for `subject` (a stable id, such as a user id).
    pub fn builder(subject: impl Into<String>, auth_method: AuthMethod) -> PrincipalBuilder {
        PrincipalBuilder {
            inner: Inner {
                subject: subject.into(),
                roles: BTreeSet::new(),
                scopes: None,
                auth_method,
                key_id: None,
                email: None,
                issuer: None,
                expires_at: None,
                session: None,
            },
        }
    }

    /// The stable id of the caller (the user id, or the token's `sub`).
    pub fn subject(&self) -> &str {
        &self.inner.subject
    }

    /// The caller's roles.
    pub fn roles(&self) -> &BTreeSet<String> {
        &self.inner.roles
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.inner.roles.contains(role)
    }

    /// The scope restriction: `None` when unrestricted.
    pub fn scopes(&self) -> Option<&BTreeSet<String>> {
        self.inner.scopes.as_ref()
    }

    /// Whether a scope list restricts this caller.
    pub fn is_restricted(&self) -> bool {
        self.inner.scopes.is_some()
    }

    /// Whether the caller may act with `scope`: always when unrestricted,
    /// otherwise when a scope of its list grants it ([`scope_grants`]: the
    /// scope itself, or one above it in the `:` hierarchy).
    ///
    /// [`scope_grants`]: crate::scope_grants
    pub fn has_scope(&self, scope: &str) -> bool {
        self.inner
            .scopes
            .as_ref()
            .is_none_or(|scopes| crate::scopes_grant(scopes.iter().map(String::as_str), scope))
    }

    /// Whether the caller lacks any of `needed`; then the whole of `needed`
    /// is what a `403 insufficient_scope` names, so a client asks for a
    /// token that carries all of it at once.
    pub fn lacks_any_scope<'a>(&self, needed: impl IntoIterator<Item = &'a str>) -> bool {
        needed.into_iter().any(|scope| !self.has_scope(scope))
    }

    /// How the caller authenticated.
    pub fn auth_method(&self) -> &AuthMethod {
        &self.inner.auth_method
    }

    /// The id of the API key used, when authenticated by one.
    pub fn key_id(&self) -> Option<&str> {
        self.inner.key_id.as_deref()
    }

    /// The caller's e-mail address, when the credential carried one.
    pub fn email(&self) -> Option<&str> {
        self.inner.email.as_deref()
    }

    /// A copy of this principal with `roles` instead of its own (for a
    /// server that learns a user's current role after the token was issued).
    pub fn with_roles<I, S>(&self, roles: I) -> Principal
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let inner = &self.inner;
        Principal {
            inner: Arc::new(Inner {
                subject: inner.subject.clone(),
                roles: roles.into_iter().map(Into::into).collect(),
                scopes: inner.scopes.clone(),
                auth_method: inner.auth_method.clone(),
                key_id: inner.key_id.clone(),
                email: inner.email.clone(),
                issuer: inner.issuer.clone(),
                expires_at: inner.expires_at,
                session: inner.session.clone(),
            }),
        }
    }

    /// A copy of this principal acting as `subject` (for a mapping that
    /// qualifies an external issuer's subjects, so that they never equal a
    /// local user's id).
    pub fn with_subject(&self, subject: impl Into<String>) -> Principal {
        Principal {
            inner: Arc::new(Inner {
                subject: subject.into(),
                ..(*self.inner).clone()
            }),
        }
    }

    /// Who vouched for the subject: a token's `iss`. A subject is unique only
    /// per issuer, so code that trusts several issuers keys on both.
    pub fn issuer(&self) -> Option<&str> {
        self.inner.issuer.as_deref()
    }

    /// When the credential stops being valid (a token's `exp`, a key's
    /// expiry), if it does: a long-lived connection authenticated once
    /// must end then.
    pub fn expires_at(&self) -> Option<SystemTime> {
        self.inner.expires_at
    }

    /// The session or grant the credential belongs to (an OAuth token's
    /// `sid`: its grant), when it has one: revoking that ends the
    /// credential before it expires.
    pub fn session(&self) -> Option<&str> {
        self.inner.session.as_deref()
    }

    /// Who this is, as one stable string: `key:<id>` for an API key, else
    /// `sub:<issuer>|<subject>` (or `sub:<subject>` without an issuer).
    /// Everything that keys state by caller (rate-limit buckets, MCP
    /// session owners, quotas) uses this one rule, so two credentials of
    /// different callers never share a key, and one key never splits.
    ///
    /// ```
    /// use mcp_core::{AuthMethod, Principal};
    ///
    /// let key = Principal::builder("u1", AuthMethod::ApiKey).key_id("k7").build();
    /// assert_eq!(key.identity(), "key:k7");
    /// let jwt = Principal::builder("u1", AuthMethod::Jwt).issuer("https://idp").build();
    /// assert_eq!(jwt.identity(), "sub:https://idp|u1");
    /// ```
    pub fn identity(&self) -> String {
        // Sized once: `format!` would grow the string a few times on the
        // way, and this runs for every rate-limited request.
        let parts: [&str; 4] = match (self.key_id(), self.issuer()) {
            (Some(key), _) => ["key:", key, "", ""],
            (None, Some(issuer)) => ["sub:", issuer, "|", self.subject()],
            (None, None) => ["sub:", self.subject(), "", ""],
        };
        let mut identity = String::with_capacity(parts.iter().map(|p| p.len()).sum());
        parts.iter().for_each(|part| identity.push_str(part));
        identity
    }
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("subject", &self.inner.subject)
            .field("roles", &self.inner.roles)
            .field("scopes", &self.inner.scopes)
            .field("auth_method", &self.inner.auth_method)
            .field("key_id", &self.inner.key_id)
            .field("issuer", &self.inner.issuer)
            .field("session", &self.inner.session)
            .finish_non_exhaustive()
    }
}

/// Builds a [`Principal`]; start with [`Principal::builder`].
#[derive(Debug)]
#[must_use]
pub struct PrincipalBuilder {
    inner: Inner,
}

impl PrincipalBuilder {
    /// Adds a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.inner.roles.insert(role.into());
        self
    }

    /// Adds several roles.
    pub fn roles<I, S>(mut self, roles: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.roles.extend(roles.into_iter().map(Into::into));
        self
    }

    /// Restricts the principal to exactly these scopes (possibly none).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.inner.scopes = Some(scopes.into_iter().map(Into::into).collect());
        self
    }

    /// Sets the scope restriction: `None` for unrestricted.
    pub fn scope_set(mut self, scopes: Option<BTreeSet<String>>) -> Self {
        self.inner.scopes = scopes;
        self
    }

    /// Records the API key the caller used.
    pub fn key_id(mut self, key_id: impl Into<String>) -> Self {
        self.inner.key_id = Some(key_id.into());
        self
    }

    /// Records the caller's e-mail address.
    pub fn email(mut self, email: impl Into<String>) -> Self {
        self.inner.email = Some(email.into());
        self
    }

    /// Records when the credential stops being valid.
    pub fn expires_at(mut self, at: SystemTime) -> Self {
        self.inner.expires_at = Some(at);
        self
    }

    /// Records the issuer that vouched for the subject.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.inner.issuer = Some(issuer.into());
        self
    }

    /// Records the session or grant the credential belongs to.
    pub fn session(mut self, session: impl Into<String>) -> Self {
        self.inner.session = Some(session.into());
        self
    }

    /// Finishes the principal.
    pub fn build(self) -> Principal {
        Principal {
            inner: Arc::new(self.inner),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_is_the_key_else_issuer_and_subject() {
        let key = Principal::builder("u1", AuthMethod::ApiKey)
            .key_id("k7")
            .issuer("i")
            .build();
        assert_eq!(key.identity(), "key:k7");
        let jwt = Principal::builder("u1", AuthMethod::Jwt)
            .issuer("https://idp")
            .build();
        assert_eq!(jwt.identity(), "sub:https://idp|u1");
        let bare = Principal::builder("u1", AuthMethod::Jwt).build();
        assert_eq!(bare.identity(), "sub:u1");
    }
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn empty_scope_list_allows_nothing() {
        let p = Principal::builder("u", AuthMethod::ApiKey)
            .scopes(Vec::<String>::new())
            .build();
        assert!(p.is_restricted());
        assert!(!p.has_scope("mcp"));
    }

    #[test]
    fn a_scope_grants_the_scopes_below_it() {
        let p = Principal::builder("u", AuthMethod::ApiKey)
            .scopes(["agents", "mcp"])
            .build();
        assert!(p.has_scope("agents:read") && p.has_scope("agents:write"));
        assert!(p.has_scope("mcp") && !p.has_scope("keys:read"));
        assert!(!p.lacks_any_scope(["mcp", "agents:write"]));
        assert!(p.lacks_any_scope(["mcp", "keys:read"]));
        let narrow = Principal::builder("u", AuthMethod::ApiKey)
            .scopes(["agents:write"])
            .build();
        assert!(!narrow.has_scope("agents:read") && !narrow.has_scope("agents"));
    }

    #[test]
    fn scope_set_none_is_unrestricted() {
        let p = Principal::builder("u", AuthMethod::Jwt)
            .scopes(["mcp"])
            .scope_set(None)
            .build();
        assert!(!p.is_restricted());
        assert!(p.has_scope("anything"));
    }

    #[test]
    fn auth_method_names_are_stable() {
        assert_eq!(AuthMethod::Jwt.as_str(), "jwt");
        assert_eq!(AuthMethod::ApiKey.to_string(), "api_key");
        assert_eq!(AuthMethod::Other("mtls".into()).as_str(), "mtls");
        assert_eq!(
            serde_json::to_string(&AuthMethod::ApiKey).unwrap(),
            "\"api_key\""
        );
    }

    #[test]
    fn with_roles_replaces_only_the_roles() {
        let p = Principal::builder("u", AuthMethod::ApiKey)
            .role("admin")
            .scopes(["mcp"])
            .key_id("k")
            .build();
        let q = p.with_roles(["user"]);
        assert!(q.has_role("user") && !q.has_role("admin"));
        assert_eq!(q.key_id(), Some("k"));
        assert!(q.has_scope("mcp") && !q.has_scope("x"));
    }

    fn full_principal() -> Principal {
        Principal::builder("user-7", AuthMethod::Jwt)
            .roles(["user", "admin"])
            .scopes(["mcp", "keys:read"])
            .issuer("https://issuer.example")
            .expires_at(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
            .key_id("key-42")
            .email("a@example.com")
            .build()
    }

    fn set(items: &[&str]) -> BTreeSet<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn a_principal_returns_exactly_what_it_was_built_with() {
        let p = full_principal();
        assert_eq!(p.subject(), "user-7");
        assert_eq!(p.roles(), &set(&["admin", "user"]));
        assert_eq!(p.scopes(), Some(&set(&["keys:read", "mcp"])));
        assert_eq!(p.issuer(), Some("https://issuer.example"));
        assert_eq!(
            p.expires_at(),
            Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
        assert_eq!(p.auth_method(), &AuthMethod::Jwt);
        assert_eq!(p.key_id(), Some("key-42"));
        assert_eq!(p.email(), Some("a@example.com"));
    }

    #[test]
    fn a_bare_principal_has_no_roles_restriction_issuer_or_expiry() {
        let p = Principal::builder("svc", AuthMethod::ApiKey).build();
        assert_eq!(p.subject(), "svc");
        assert!(p.roles().is_empty());
        assert_eq!(p.scopes(), None);
        assert_eq!(p.issuer(), None);
        assert_eq!(p.expires_at(), None);
        // An empty scope list is a restriction, not the absence of one.
        let none = Principal::builder("svc", AuthMethod::ApiKey)
            .scopes(Vec::<String>::new())
            .build();
        assert_eq!(none.scopes(), Some(&BTreeSet::new()));
    }

    #[test]
    fn with_subject_changes_the_subject_and_keeps_the_rest() {
        let p = full_principal();
        let q = p.with_subject("https://issuer.example|user-7");
        assert_eq!(q.subject(), "https://issuer.example|user-7");
        assert_ne!(q, p);
        // Everything but the subject is the original's.
        assert_eq!(q.with_subject("user-7"), p);
        assert_eq!(q.roles(), p.roles());
        assert_eq!(q.scopes(), p.scopes());
        assert_eq!(q.issuer(), Some("https://issuer.example"));
        assert_eq!(q.expires_at(), p.expires_at());
        assert_eq!(q.key_id(), Some("key-42"));
        // The original is untouched.
        assert_eq!(p.subject(), "user-7");
    }

    #[test]
    fn clones_are_equal_and_cheap() {
        let p = Principal::builder("u", AuthMethod::Jwt)
            .roles(["user", "admin"])
            .email("a@example.com")
            .build();
        let q = p.clone();
        assert_eq!(p, q);
        assert!(Arc::ptr_eq(&p.inner, &q.inner));
        assert_eq!(q.email(), Some("a@example.com"));
        assert!(format!("{q:?}").contains("admin"));
    }
}
