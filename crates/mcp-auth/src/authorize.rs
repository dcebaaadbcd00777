use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use mcp_core::{Principal, Problem, code};
use tower_layer::Layer;
use tower_service::Service;

use crate::{AuthChecked, AuthError, Challenge};

/// What a route needs of its caller.
///
/// - a **role** is always checked (`403 forbidden` without it);
/// - a **scope** is checked only for restricted principals: an unrestricted
///   one (a user's own session) has every scope of its role, a restricted one
///   (an API key or OAuth token with a scope list) needs the scope listed
///   (`403 insufficient_scope`, naming the scope in `WWW-Authenticate`).
///
/// ```
/// use mcp_auth::{Challenge, Requirement};
/// use mcp_core::{AuthMethod, Principal};
///
/// let need = Requirement::scope("keys:write");
/// let key = Principal::builder("u1", AuthMethod::ApiKey).role("user").scopes(["keys:read"]).build();
/// let session = Principal::builder("u1", AuthMethod::Jwt).role("user").build();
/// assert_eq!(need.check(Some(&key), &Challenge::default()).unwrap_err().code(), "insufficient_scope");
/// assert!(need.check(Some(&session), &Challenge::default()).is_ok());
///
/// let admin_only = Requirement::role("admin").and_scope("admin");
/// assert_eq!(admin_only.check(Some(&session), &Challenge::default()).unwrap_err().code(), "forbidden");
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Requirement {
    roles: Vec<String>,
    scopes: Vec<String>,
}

impl Requirement {
    /// Needs `role`.
    pub fn role(role: impl Into<String>) -> Self {
        Requirement::default().and_role(role)
    }

    /// Needs `scope` (when restricted).
    pub fn scope(scope: impl Into<String>) -> Self {
        Requirement::default().and_scope(scope)
    }

    /// Also needs `role`.
    #[must_use]
    pub fn and_role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Also needs `scope` (when restricted).
    #[must_use]
    pub fn and_scope(mut self, scope: impl Into<String>) -> Self {
        self.scopes.push(scope.into());
        self
    }

    /// The scopes needed (of a restricted principal), for a `401`'s
    /// challenge: `Challenge::scopes(requirement.scopes())` on the
    /// [`AuthLayer`](crate::AuthLayer) in front of this requirement names
    /// them before the client has a token.
    ///
    /// ```
    /// use mcp_auth::{Challenge, Requirement};
    ///
    /// let need = Requirement::role("admin").and_scope("admin");
    /// assert_eq!(need.scopes().collect::<Vec<_>>(), ["admin"]);
    /// let challenge = Challenge::new("api").scopes(need.scopes());
    /// # let _ = challenge;
    /// ```
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scopes.iter().map(String::as_str)
    }

    /// Checks `principal` (`None`: not authenticated).
    pub fn check(
        &self,
        principal: Option<&Principal>,
        challenge: &Challenge,
    ) -> Result<(), Problem> {
        let Some(principal) = principal else {
            return Err(AuthError::MissingCredentials.to_problem(challenge));
        };
        if let Some(role) = self.roles.iter().find(|r| !principal.has_role(r)) {
            return Err(
                Problem::forbidden(code::FORBIDDEN, "your role does not allow this")
                    .with_extension("role", role.as_str()),
            );
        }
        if principal.lacks_any_scope(self.scopes.iter().map(String::as_str)) {
            return Err(challenge.insufficient_scope(self.scopes.iter().map(String::as_str)));
        }
        Ok(())
    }
}

/// A layer that lets a request through only if its [`Principal`] meets a
/// [`Requirement`]. Put it inside an [`AuthLayer`](crate::AuthLayer).
///
/// A request without a principal is `401 missing_credentials` when an
/// `AuthLayer` let it pass (optional mode). One that never passed an
/// `AuthLayer` (no [`AuthChecked`] extension) is a misconfiguration: `500
/// internal` and an error log naming the missing `AuthLayer`, so a
/// forgotten layer cannot pass for a client's mistake.
///
/// ```
/// use mcp_auth::RequireLayer;
///
/// let keys_read = RequireLayer::scope("keys:read");
/// let admin = RequireLayer::role("admin").and_scope("admin");
/// # let _ = (keys_read, admin);
/// ```
#[derive(Clone, Debug)]
pub struct RequireLayer {
    requirement: Arc<Requirement>,
    challenge: Arc<Challenge>,
}

impl RequireLayer {
    /// Needs `role`.
    pub fn role(role: impl Into<String>) -> Self {
        Self::new(Requirement::role(role))
    }

    /// Needs `scope` (when restricted).
    pub fn scope(scope: impl Into<String>) -> Self {
        Self::new(Requirement::scope(scope))
    }

    /// Needs `requirement`.
    pub fn new(requirement: Requirement) -> Self {
        RequireLayer {
            requirement: Arc::new(requirement),
            challenge: Arc::new(Challenge::default()),
        }
    }

    /// Also needs `scope` (when restricted).
    #[must_use]
    pub fn and_scope(self, scope: impl Into<String>) -> Self {
        RequireLayer {
            requirement: Arc::new((*self.requirement).clone().and_scope(scope)),
            challenge: self.challenge,
        }
    }

    /// Uses `challenge` in `WWW-Authenticate` headers.
    #[must_use]
    pub fn challenge(mut self, challenge: impl Into<Challenge>) -> Self {
        self.challenge = Arc::new(challenge.into());
        self
    }
}

impl<S> Layer<S> for RequireLayer {
    type Service = Require<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Require {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service made by [`RequireLayer`].
#[derive(Clone, Debug)]
pub struct Require<S> {
    inner: S,
    layer: RequireLayer,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Require<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = RequireFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let principal = request.extensions().get::<Principal>();
        let checked = match principal {
            None if request.extensions().get::<AuthChecked>().is_none() => {
                Err(missing_auth_layer("RequireLayer"))
            }
            _ => self
                .layer
                .requirement
                .check(principal, &self.layer.challenge),
        };
        match checked {
            Ok(()) => RequireFuture::inner(self.inner.call(request)),
            Err(problem) => RequireFuture::refused(problem.into_response()),
        }
    }
}

/// The answer to a request that reached `what` without passing an
/// [`AuthLayer`](crate::AuthLayer): a misconfiguration, so `500 internal`
/// and an error naming the fix, never a `401` that blames the caller.
pub(crate) fn missing_auth_layer(what: &'static str) -> Problem {
    tracing::error!(
        "{what} found no AuthChecked extension: the request did not pass an AuthLayer; \
         put an AuthLayer in front of (outside) the {what}"
    );
    Problem::internal()
}

/// Response future of [`Require`]: the inner service's, or the refusal.
pub type RequireFuture<F, B> = mcp_core::RefusalFuture<F, B>;

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_core::AuthMethod;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    async fn call(layer: RequireLayer, principal: Option<Principal>) -> Response<Bytes> {
        let service = layer.layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok")))
        }));
        let mut request = Request::new(());
        // As an AuthLayer leaves it.
        request.extensions_mut().insert(AuthChecked);
        if let Some(principal) = principal {
            request.extensions_mut().insert(principal);
        }
        service.oneshot(request).await.unwrap()
    }

    fn user(scopes: Option<&[&str]>, role: &str) -> Principal {
        let builder = Principal::builder("u1", AuthMethod::ApiKey).role(role);
        match scopes {
            Some(scopes) => builder.scopes(scopes.iter().copied()).build(),
            None => builder.build(),
        }
    }

    #[tokio::test]
    async fn scopes_restrict_only_restricted_principals() {
        let layer = RequireLayer::scope("agents:write");
        assert_eq!(
            call(layer.clone(), Some(user(None, "user"))).await.status(),
            200
        );
        assert_eq!(
            call(layer.clone(), Some(user(Some(&["agents:write"]), "user")))
                .await
                .status(),
            200
        );
        let refused = call(layer.clone(), Some(user(Some(&["agents:read"]), "user"))).await;
        assert_eq!(refused.status(), 403);
        assert_eq!(
            refused.headers()["www-authenticate"],
            "Bearer realm=\"mcp\", error=\"insufficient_scope\", \
             error_description=\"the token lacks the scope this needs\", scope=\"agents:write\""
        );
        let body: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
        assert_eq!(body["code"], "insufficient_scope");
        assert_eq!(body["scope"], "agents:write");
        // An empty list allows nothing.
        assert_eq!(
            call(layer, Some(user(Some(&[]), "user"))).await.status(),
            403
        );
    }

    #[tokio::test]
    async fn roles_are_always_checked() {
        let layer = RequireLayer::role("admin").and_scope("admin");
        assert_eq!(
            call(layer.clone(), Some(user(None, "admin")))
                .await
                .status(),
            200
        );
        let refused = call(layer.clone(), Some(user(None, "user"))).await;
        assert_eq!(refused.status(), 403);
        let body: serde_json::Value = serde_json::from_slice(refused.body()).unwrap();
        assert_eq!(body["code"], "forbidden");
        // A restricted admin key needs the admin scope as well.
        assert_eq!(
            call(layer.clone(), Some(user(Some(&["keys:read"]), "admin")))
                .await
                .status(),
            403
        );
        assert_eq!(
            call(layer, Some(user(Some(&["admin"]), "admin")))
                .await
                .status(),
            200
        );
    }

    use crate::test_support::Gate;

    /// `Require` is ready exactly when the service it wraps is: pending
    /// while it is pending, its error when it fails.
    #[test]
    fn readiness_is_the_inner_services() {
        let layer = RequireLayer::scope("mcp");
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut pending = layer.layer(Gate {
            ready: || Poll::Pending,
        });
        assert_eq!(pending.poll_ready(&mut cx), Poll::Pending);
        let mut failing = layer.layer(Gate {
            ready: || Poll::Ready(Err("overloaded")),
        });
        assert_eq!(failing.poll_ready(&mut cx), Poll::Ready(Err("overloaded")));
        let mut ready = layer.layer(Gate {
            ready: || Poll::Ready(Ok(())),
        });
        assert_eq!(ready.poll_ready(&mut cx), Poll::Ready(Ok(())));
    }

    #[tokio::test]
    async fn no_principal_is_401() {
        let response = call(RequireLayer::scope("mcp"), None).await;
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"mcp\""
        );
    }

    /// A RequireLayer with no AuthLayer in front: `500 internal`, not a
    /// `401` that tells the client to fix credentials it may not have.
    #[tokio::test]
    async fn without_an_auth_layer_is_a_loud_500() {
        let service = RequireLayer::scope("mcp").layer(service_fn(|_req: Request<()>| async {
            Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok")))
        }));
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), 500);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["code"], "internal");
    }

    /// Behind an optional AuthLayer, an anonymous request is the caller's
    /// `401`; behind a required one it never gets this far.
    #[tokio::test]
    async fn behind_an_optional_auth_layer_anonymous_is_401() {
        struct Nobody;
        impl crate::Authenticator for Nobody {
            fn authenticate<'a>(
                &'a self,
                _: &'a http::request::Parts,
            ) -> crate::BoxFuture<'a, Result<Option<Principal>, AuthError>> {
                Box::pin(async { Ok(None) })
            }
        }
        let service = tower::ServiceBuilder::new()
            .layer(crate::AuthLayer::new(Nobody).optional())
            .layer(RequireLayer::scope("mcp"))
            .service(service_fn(|_req: Request<()>| async {
                Ok::<_, Infallible>(Response::new(Bytes::from_static(b"ok")))
            }));
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(
            response.headers()["www-authenticate"],
            "Bearer realm=\"mcp\""
        );
    }
}
