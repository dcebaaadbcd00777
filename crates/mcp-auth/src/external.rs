//! Claims of an issuer whose users are not this server's own.

use std::collections::BTreeMap;

use mcp_core::Principal;

use crate::AuthError;
use crate::jwt::{Claims, ClaimsMapper, DefaultClaimsMapper};

/// Maps the tokens of an external issuer (an identity provider this server
/// trusts but does not run) so that they never pass for local users:
///
/// - **Roles come only from an explicit map.** The issuer's `role`/`roles`
///   values mean what that issuer means by them; a token saying
///   `role: admin` gets the local role `admin` only if the map says so.
///   When no value maps, the principal gets the default roles (none unless
///   set; a server typically gives its least-privileged role).
/// - **The subject is qualified by the issuer**, as
///   [`qualified_subject`](Self::qualified_subject) writes it
///   (`<iss>#<sub>`), so it can never equal a local user's id, whatever
///   `sub` the issuer puts in its tokens. The principal's
///   [`issuer`](Principal::issuer) is the token's `iss`.
///
/// Scopes, e-mail and everything else are read as [`DefaultClaimsMapper`]
/// reads them.
///
/// ```
/// use mcp_auth::{ExternalClaimsMapper, TrustedIssuer};
/// # use mcp_auth::VerifyingKey;
///
/// let mapper = ExternalClaimsMapper::new()
///     .map_role("mcp-admins", "admin")
///     .default_role("user");
/// let issuer = TrustedIssuer::new("https://idp.example.com", "https://mcp.example.com/mcp")
/// #   .key(VerifyingKey::hmac(&[7; 32]).unwrap())
///     .mapper(mapper);
/// assert_eq!(
///     ExternalClaimsMapper::qualified_subject("https://idp.example.com", "alice"),
///     "https://idp.example.com#alice"
/// );
/// ```
#[derive(Clone, Debug, Default)]
pub struct ExternalClaimsMapper {
    /// An issuer's role value -> the local roles it grants.
    roles: BTreeMap<String, Vec<String>>,
    /// The roles of a principal none of whose values map.
    default_roles: Vec<String>,
}

impl ExternalClaimsMapper {
    /// Maps no role, and gives none by default.
    pub fn new() -> Self {
        Self::default()
    }

    /// A token whose `role` or `roles` contains `claim` gets the local
    /// `role`. Several claims may grant the same role; one claim may grant
    /// several roles.
    #[must_use]
    pub fn map_role(mut self, claim: impl Into<String>, role: impl Into<String>) -> Self {
        self.roles
            .entry(claim.into())
            .or_default()
            .push(role.into());
        self
    }

    /// Adds a role given when no claim maps.
    #[must_use]
    pub fn default_role(mut self, role: impl Into<String>) -> Self {
        self.default_roles.push(role.into());
        self
    }

    /// The subject of an external principal: `<iss>#<sub>`.
    ///
    /// `#` cannot occur in an issuer identifier (RFC 8414 issuers have no
    /// fragment), so the issuer part is unambiguous.
    pub fn qualified_subject(issuer: &str, subject: &str) -> String {
        format!("{issuer}#{subject}")
    }
}

impl ClaimsMapper for ExternalClaimsMapper {
    fn map(&self, claims: &Claims<'_>) -> Result<Principal, AuthError> {
        let issuer = claims
            .iss
            .as_deref()
            .ok_or_else(|| AuthError::invalid_token("missing iss"))?;
        // The default mapping first, so whatever it learns to read (scopes,
        // e-mail, expiry) applies here too; then roles and subject are
        // replaced, never merged.
        let principal = DefaultClaimsMapper.map(claims)?;
        let mut roles: Vec<&str> = claims
            .all_roles()
            .filter_map(|claim| self.roles.get(claim))
            .flatten()
            .map(String::as_str)
            .collect();
        if roles.is_empty() {
            roles.extend(self.default_roles.iter().map(String::as_str));
        }
        Ok(principal
            .with_subject(Self::qualified_subject(issuer, &claims.sub))
            .with_roles(roles))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(mapper: &ExternalClaimsMapper, json: &str) -> Principal {
        let claims: Claims<'_> = serde_json::from_str(json).unwrap();
        mapper.map(&claims).unwrap()
    }

    const ISS: &str = "https://idp.example.com";

    #[test]
    fn an_external_admin_is_not_an_admin_without_a_map() {
        let mapper = ExternalClaimsMapper::new().default_role("user");
        let principal = map(
            &mapper,
            r#"{"sub": "u1", "iss": "https://idp.example.com", "role": "admin", "roles": ["admin"]}"#,
        );
        assert!(!principal.has_role("admin"), "{principal:?}");
        assert_eq!(principal.roles().iter().collect::<Vec<_>>(), ["user"]);

        // No default either: no role at all.
        let principal = map(
            &ExternalClaimsMapper::new(),
            r#"{"sub": "u1", "iss": "https://idp.example.com", "role": "admin"}"#,
        );
        assert!(principal.roles().is_empty(), "{principal:?}");
    }

    #[test]
    fn only_mapped_values_grant_roles() {
        let mapper = ExternalClaimsMapper::new()
            .map_role("mcp-admins", "admin")
            .map_role("staff", "user")
            .default_role("user");
        let principal = map(
            &mapper,
            r#"{"sub": "u1", "iss": "https://idp.example.com", "role": "admin", "roles": "staff mcp-admins"}"#,
        );
        assert_eq!(
            principal.roles().iter().collect::<Vec<_>>(),
            ["admin", "user"]
        );
        // `admin` itself is not in the map.
        let principal = map(
            &mapper,
            r#"{"sub": "u1", "iss": "https://idp.example.com", "role": "admin"}"#,
        );
        assert_eq!(principal.roles().iter().collect::<Vec<_>>(), ["user"]);
    }

    #[test]
    fn the_subject_is_qualified_by_the_issuer() {
        let local_id = "0196f1c2-7a3b-7c4d-8e5f-0123456789ab";
        let principal = map(
            &ExternalClaimsMapper::new(),
            &format!(
                r#"{{"sub": "{local_id}", "iss": "{ISS}", "email": "e@example.com", "scope": "mcp"}}"#
            ),
        );
        assert_eq!(principal.subject(), format!("{ISS}#{local_id}"));
        assert_ne!(principal.subject(), local_id);
        assert!(uuid::Uuid::parse_str(principal.subject()).is_err());
        assert_eq!(principal.issuer(), Some(ISS));
        // The rest reads as the default mapping reads it.
        assert_eq!(principal.email(), Some("e@example.com"));
        assert!(principal.has_scope("mcp") && !principal.has_scope("keys:read"));
    }

    /// Through the authenticator: a signed `role: admin` token of an issuer
    /// trusted with this mapper is a qualified, non-admin principal.
    #[test]
    fn a_verified_external_token_is_mapped() {
        use crate::{
            AccessToken, JwtAuthenticator, SigningKey, TokenIssuer, TrustedIssuer, VerifyingKey,
        };
        let secret = [42u8; 32];
        let issuer = TokenIssuer::new(SigningKey::hmac(&secret).unwrap(), ISS, "https://mcp/mcp");
        let token = issuer
            .issue(&AccessToken::new("root").role("admin"))
            .unwrap();
        let jwt = JwtAuthenticator::builder()
            .trust(
                TrustedIssuer::new(ISS, "https://mcp/mcp")
                    .key(VerifyingKey::hmac(&secret).unwrap())
                    .mapper(ExternalClaimsMapper::new().default_role("user")),
            )
            .build()
            .unwrap();
        let principal = futures_now(jwt.verify(token.expose())).unwrap();
        assert_eq!(principal.subject(), format!("{ISS}#root"));
        assert!(!principal.has_role("admin"));
        assert!(principal.has_role("user"));
    }

    /// Runs a future that needs no runtime (static keys do no I/O).
    fn futures_now<F: std::future::Future>(future: F) -> F::Output {
        let waker = std::task::Waker::noop();
        let mut cx = std::task::Context::from_waker(waker);
        let mut future = std::pin::pin!(future);
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(output) => output,
            std::task::Poll::Pending => panic!("static-key verification awaited"),
        }
    }
}
