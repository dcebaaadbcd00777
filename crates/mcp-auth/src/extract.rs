//! axum extractors for the [`Principal`] an [`AuthLayer`](crate::AuthLayer)
//! found.
//!
//! Both need an `AuthLayer` in front of the handler. Without one (no
//! [`AuthChecked`] extension) they answer `500 internal` and log an error
//! naming the missing layer: a forgotten `AuthLayer` must not look like a
//! client without credentials, nor let every caller through as anonymous.

use axum_core::extract::FromRequestParts;
use http::request::Parts;
use mcp_core::{Principal, Problem};

use crate::authorize::missing_auth_layer;
use crate::{AuthChecked, AuthError, Challenge};

/// The authenticated caller; `401 missing_credentials` when there is none
/// (under an optional [`AuthLayer`](crate::AuthLayer)), `500 internal` when
/// no `AuthLayer` ran.
///
/// ```
/// use mcp_auth::Authenticated;
///
/// async fn me(Authenticated(principal): Authenticated) -> String {
///     principal.subject().to_owned()
/// }
/// # let _ = me;
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Debug)]
pub struct Authenticated(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for Authenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(Authenticated(principal.clone()));
        }
        if parts.extensions.get::<AuthChecked>().is_none() {
            return Err(missing_auth_layer("Authenticated extractor"));
        }
        Err(AuthError::MissingCredentials.to_problem(&Challenge::default()))
    }
}

/// The caller if authenticated (for routes under an optional
/// [`AuthLayer`](crate::AuthLayer)); `500 internal` when no `AuthLayer` ran.
///
/// ```
/// use mcp_auth::MaybeAuthenticated;
///
/// async fn hello(MaybeAuthenticated(who): MaybeAuthenticated) -> String {
///     who.map_or("hello, stranger".to_owned(), |p| format!("hello, {}", p.subject()))
/// }
/// # let _ = hello;
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
#[derive(Clone, Debug)]
pub struct MaybeAuthenticated(pub Option<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeAuthenticated {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Problem> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(MaybeAuthenticated(Some(principal.clone())));
        }
        if parts.extensions.get::<AuthChecked>().is_none() {
            return Err(missing_auth_layer("MaybeAuthenticated extractor"));
        }
        Ok(MaybeAuthenticated(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn extract<T: FromRequestParts<()>>(checked: bool) -> Result<T, T::Rejection> {
        let mut parts = http::Request::new(()).into_parts().0;
        if checked {
            parts.extensions.insert(AuthChecked);
        }
        T::from_request_parts(&mut parts, &()).await
    }

    /// No AuthLayer ran: both extractors answer `500 internal`.
    #[tokio::test]
    async fn without_an_auth_layer_both_extractors_are_a_loud_500() {
        let refused = extract::<Authenticated>(false).await.unwrap_err();
        assert_eq!(refused.status(), 500);
        assert_eq!(refused.code(), "internal");
        let refused = extract::<MaybeAuthenticated>(false).await.unwrap_err();
        assert_eq!(refused.status(), 500);
        assert_eq!(refused.code(), "internal");
    }

    /// An optional AuthLayer let an anonymous request pass: `401` for the
    /// one that needs a principal, `None` for the one that does not.
    #[tokio::test]
    async fn behind_an_auth_layer_anonymous_is_401_or_none() {
        let refused = extract::<Authenticated>(true).await.unwrap_err();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.code(), "missing_credentials");
        assert!(
            extract::<MaybeAuthenticated>(true)
                .await
                .unwrap()
                .0
                .is_none()
        );
    }

    /// The same through an axum router, as a user would wire it.
    #[tokio::test]
    async fn a_router_without_an_auth_layer_answers_500() {
        use tower::ServiceExt;
        async fn me(Authenticated(principal): Authenticated) -> String {
            principal.subject().to_owned()
        }
        let app = axum::Router::new().route("/me", axum::routing::get(me));
        let response = app
            .oneshot(
                http::Request::get("/me")
                    .body(axum::body::Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(response.status(), 500);
    }
}
