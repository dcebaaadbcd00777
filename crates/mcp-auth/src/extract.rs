//! axum extractors for the [`Principal`] an [`AuthLayer`](crate::AuthLayer)
//! found.

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use mcp_core::{Principal, Problem};

use crate::{AuthError, Challenge};

/// The authenticated caller; `401 missing_credentials` when there is none.
///
/// ```
/// use mcp_auth::Authenticated;
///
/// async fn me(Authenticated(principal): Authenticated) -> String {
///     principal.subject().to_owned()
/// }
/// # let _ = me;
/// ```
#[derive(Clone, Debug)]
pub struct Authenticated(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .map(Authenticated)
            .ok_or_else(|| AuthError::MissingCredentials.to_problem(&Challenge::default()))
    }
}

/// The caller if authenticated (for routes under an optional
/// [`AuthLayer`](crate::AuthLayer)).
#[derive(Clone, Debug)]
pub struct MaybeAuthenticated(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthenticated {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        _state: &S,
    ) -> Result<Self, std::convert::Infallible> {
        Ok(MaybeAuthenticated(
            parts.extensions.get::<Principal>().cloned(),
        ))
    }
}
