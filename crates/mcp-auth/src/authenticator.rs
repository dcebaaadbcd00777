use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::AUTHORIZATION;
use http::request::Parts;
use http::{Request, Response};
use mcp_core::Principal;
use tower_layer::Layer;
use tower_service::Service;

use crate::{AuthError, Challenge};

/// A boxed future, as authenticators return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One way of proving who is calling.
///
/// Given the request head, an authenticator answers:
/// - `Ok(Some(principal))`: the credential is its kind and it is good;
/// - `Ok(None)`: there is no credential of its kind, ask the next one;
/// - `Err(error)`: the credential is its kind and it is refused. The chain
///   stops there: a bad token is never retried as something else.
///
/// ```
/// use mcp_auth::{AuthError, Authenticator, BoxFuture};
/// use mcp_core::{AuthMethod, Principal};
///
/// /// Trusts a header set by a proxy that has already authenticated the caller.
/// struct ProxyHeader;
///
/// impl Authenticator for ProxyHeader {
///     fn authenticate<'a>(
///         &'a self,
///         parts: &'a http::request::Parts,
///     ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
///         Box::pin(async move {
///             Ok(parts
///                 .headers
///                 .get("x-authenticated-user")
///                 .and_then(|v| v.to_str().ok())
///                 .map(|user| Principal::builder(user, AuthMethod::Other("proxy".into())).build()))
///         })
///     }
/// }
/// ```
pub trait Authenticator: Send + Sync + 'static {
    /// Checks the credential of its kind in `parts`, if any.
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>>;
}

impl<A: Authenticator + ?Sized> Authenticator for Arc<A> {
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        (**self).authenticate(parts)
    }
}

/// Whether a request without credentials may pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthMode {
    /// No credentials: `401 missing_credentials`.
    Required,
    /// No credentials: the request passes without a [`Principal`]. Refused
    /// credentials are still `401`: a wrong token is never silently ignored.
    Optional,
}

/// Marks a request that went through an [`AuthLayer`], with or without a
/// [`Principal`].
///
/// [`RequireLayer`](crate::RequireLayer) and the axum extractors look for it
/// to tell "anonymous under an optional `AuthLayer`" (`401`) from "no
/// `AuthLayer` in front at all", a misconfiguration they answer with
/// `500 internal` and an error log. Code that authenticates by other means
/// (a transport that calls [`AuthLayer::authenticate`] itself) inserts it
/// beside the principal.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuthChecked;

/// Runs a chain of [`Authenticator`]s and puts the [`Principal`] into the
/// request's extensions (and [`AuthChecked`] into every request it passes).
///
/// When no authenticator recognises the request: without an `Authorization`
/// header that is `missing_credentials` (or a pass in
/// [`AuthMode::Optional`]); with one (an unknown scheme, a token nobody can
/// read) it is `invalid_token`, since the caller did present something.
///
/// The first authenticator is given to [`AuthLayer::new`]; [`AuthLayer::or`]
/// adds the next ones, asked in order. Any `impl Authenticator` is accepted,
/// an `Arc<impl Authenticator>` too (to share one with other code).
///
/// ```
/// use http::{Request, Response};
/// use mcp_auth::{
///     AccessToken, AuthLayer, JwtAuthenticator, KeyPair, TokenIssuer, TrustedIssuer,
/// };
/// use mcp_core::Principal;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let keys = KeyPair::hmac(b"a secret of at least thirty-two bytes!!").unwrap();
/// let jwt = JwtAuthenticator::builder()
///     .trust(
///         TrustedIssuer::new("https://mcp.example.com", "https://mcp.example.com/mcp")
///             .key(keys.verifying().clone()),
///     )
///     .build()
///     .unwrap();
/// let service = AuthLayer::new(jwt).layer(service_fn(|req: Request<String>| async move {
///     let who = req.extensions().get::<Principal>().unwrap().subject().to_owned();
///     Ok::<_, std::convert::Infallible>(Response::new(bytes::Bytes::from(who)))
/// }));
///
/// let issuer = TokenIssuer::new(
///     keys.signing().clone(),
///     "https://mcp.example.com",
///     "https://mcp.example.com/mcp",
/// );
/// let token = issuer.issue(&AccessToken::new("user-1").role("user")).unwrap();
/// let request = Request::get("/")
///     .header("authorization", format!("Bearer {}", token.expose()))
///     .body(String::new())
///     .unwrap();
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.body(), "user-1");
/// # }
/// ```
#[derive(Clone)]
pub struct AuthLayer {
    chain: Vec<Arc<dyn Authenticator>>,
    mode: AuthMode,
    challenge: Challenge,
}

impl fmt::Debug for AuthLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthLayer")
            .field("authenticators", &self.chain.len())
            .field("mode", &self.mode)
            .field("challenge", &self.challenge)
            .finish()
    }
}

/// What every [`Auth`] service made by one [`Layer::layer`] call shares.
struct Shared {
    chain: Vec<Arc<dyn Authenticator>>,
    mode: AuthMode,
    challenge: Challenge,
}

impl AuthLayer {
    /// A chain of one authenticator, in [`AuthMode::Required`], with the
    /// default [`Challenge`].
    pub fn new(authenticator: impl Authenticator) -> Self {
        AuthLayer {
            chain: vec![Arc::new(authenticator)],
            mode: AuthMode::Required,
            challenge: Challenge::default(),
        }
    }

    /// Asks `authenticator` when the ones before it do not recognise the
    /// request.
    #[must_use]
    pub fn or(mut self, authenticator: impl Authenticator) -> Self {
        self.chain.push(Arc::new(authenticator));
        self
    }

    /// Whether a request without credentials may pass.
    #[must_use]
    pub fn mode(mut self, mode: AuthMode) -> Self {
        self.mode = mode;
        self
    }

    /// Shorthand for [`mode(AuthMode::Optional)`](Self::mode).
    #[must_use]
    pub fn optional(self) -> Self {
        self.mode(AuthMode::Optional)
    }

    /// Uses `challenge` in `WWW-Authenticate` headers.
    #[must_use]
    pub fn challenge(mut self, challenge: impl Into<Challenge>) -> Self {
        self.challenge = challenge.into();
        self
    }

    /// Runs the chain on `parts`: the principal, `None` when there are no
    /// credentials and the mode is optional, or the error to answer.
    pub async fn authenticate(&self, parts: &Parts) -> Result<Option<Principal>, AuthError> {
        authenticate(&self.chain, self.mode, parts).await
    }
}

/// A layer's whole chain as one authenticator, for wrappers that take one
/// (a WebSocket subprotocol's token, say). It answers as the layer would:
/// in required mode a request no authenticator recognises is
/// `MissingCredentials`, not `None`, so chain it last.
impl Authenticator for AuthLayer {
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(AuthLayer::authenticate(self, parts))
    }
}

async fn authenticate(
    chain: &[Arc<dyn Authenticator>],
    mode: AuthMode,
    parts: &Parts,
) -> Result<Option<Principal>, AuthError> {
    for authenticator in chain {
        if let Some(principal) = authenticator.authenticate(parts).await? {
            return Ok(Some(principal));
        }
    }
    if parts.headers.contains_key(AUTHORIZATION) {
        return Err(AuthError::invalid_token("unsupported credentials"));
    }
    match mode {
        AuthMode::Required => Err(AuthError::MissingCredentials),
        AuthMode::Optional => Ok(None),
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            shared: Arc::new(Shared {
                chain: self.chain.clone(),
                mode: self.mode,
                challenge: self.challenge.clone(),
            }),
        }
    }
}

/// The service made by [`AuthLayer`].
#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for Auth<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Auth")
            .field("inner", &self.inner)
            .field("authenticators", &self.shared.chain.len())
            .field("mode", &self.shared.mode)
            .finish_non_exhaustive()
    }
}

/// Response future of [`Auth`].
pub struct AuthFuture<B, E> {
    inner: BoxFuture<'static, Result<Response<B>, E>>,
}

impl<B, E> fmt::Debug for AuthFuture<B, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthFuture").finish_non_exhaustive()
    }
}

impl<B, E> Future for AuthFuture<B, E> {
    type Output = Result<Response<B>, E>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Auth<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + 'static,
    S::Error: 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = AuthFuture<ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready is the one that gets called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        AuthFuture {
            inner: Box::pin(async move {
                let (mut parts, body) = request.into_parts();
                match authenticate(&shared.chain, shared.mode, &parts).await {
                    Ok(Some(principal)) => {
                        parts.extensions.insert(principal);
                    }
                    Ok(None) => {}
                    Err(error) => {
                        tracing::debug!(code = error.code(), "credentials refused");
                        return Ok(error.to_problem(&shared.challenge).into_response());
                    }
                }
                parts.extensions.insert(AuthChecked);
                inner.call(Request::from_parts(parts, body)).await
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_core::AuthMethod;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    /// Accepts `x-user: <name>`, refuses `x-user: bad`.
    struct HeaderAuth;

    impl Authenticator for HeaderAuth {
        fn authenticate<'a>(
            &'a self,
            parts: &'a Parts,
        ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
            Box::pin(async move {
                match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
                    None => Ok(None),
                    Some("bad") => Err(AuthError::InvalidApiKey),
                    Some(user) => Ok(Some(Principal::builder(user, AuthMethod::ApiKey).build())),
                }
            })
        }
    }

    async fn call(layer: AuthLayer, headers: &[(&str, &str)]) -> Response<Bytes> {
        let service = layer.layer(service_fn(|req: Request<()>| async move {
            let who = req
                .extensions()
                .get::<Principal>()
                .map_or("anonymous".to_owned(), |p| p.subject().to_owned());
            Ok::<_, Infallible>(Response::new(Bytes::from(who)))
        }));
        let mut request = Request::new(());
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        service.oneshot(request).await.unwrap()
    }

    fn code(response: &Response<Bytes>) -> String {
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        body["code"].as_str().unwrap().to_owned()
    }

    /// A layer's chain inside another layer answers as the layer would:
    /// the principal, or (required mode) missing credentials, never `None`.
    #[tokio::test]
    async fn a_layer_is_an_authenticator_of_its_whole_chain() {
        let inner = AuthLayer::new(HeaderAuth);
        let outer = AuthLayer::new(AuthLayer::new(HeaderAuth).optional()).or(inner.clone());
        let (alice, ()) = Request::builder()
            .header("x-user", "alice")
            .body(())
            .unwrap()
            .into_parts();
        let (nobody, ()) = Request::new(()).into_parts();
        let as_authenticator: &dyn Authenticator = &inner;
        let found = as_authenticator.authenticate(&alice).await.unwrap();
        assert_eq!(
            found.map(|p| p.subject().to_owned()).as_deref(),
            Some("alice")
        );
        assert!(matches!(
            as_authenticator.authenticate(&nobody).await,
            Err(AuthError::MissingCredentials)
        ));
        // An optional chain yields `None`, so the next one decides.
        assert_eq!(code(&call(outer, &[]).await), "missing_credentials");
    }

    /// `AuthLayer::authenticate`, outside any service: the principal of the
    /// first authenticator that recognises the request, `None` for an
    /// anonymous request in optional mode, the refusal otherwise.
    #[tokio::test]
    async fn authenticate_answers_the_principal_itself() {
        let parts = |headers: &[(&str, &str)]| {
            let mut builder = Request::builder();
            for (name, value) in headers {
                builder = builder.header(*name, *value);
            }
            builder.body(()).unwrap().into_parts().0
        };
        let required = AuthLayer::new(HeaderAuth);
        let principal = required
            .authenticate(&parts(&[("x-user", "dora")]))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(principal.subject(), "dora");
        assert_eq!(principal.auth_method(), &AuthMethod::ApiKey);
        assert_eq!(
            required.authenticate(&parts(&[])).await,
            Err(AuthError::MissingCredentials)
        );
        assert_eq!(
            required.authenticate(&parts(&[("x-user", "bad")])).await,
            Err(AuthError::InvalidApiKey)
        );
        let optional = AuthLayer::new(HeaderAuth).optional();
        assert_eq!(optional.authenticate(&parts(&[])).await, Ok(None));
        assert_eq!(
            optional
                .authenticate(&parts(&[("x-user", "eve")]))
                .await
                .unwrap()
                .map(|p| p.subject().to_owned()),
            Some("eve".to_owned())
        );
    }

    use crate::test_support::Gate;

    /// `Auth` is ready exactly when the service it wraps is: pending while
    /// it is pending, its error when it fails.
    #[test]
    fn readiness_is_the_inner_services() {
        let layer = AuthLayer::new(HeaderAuth);
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
    async fn required_mode() {
        let layer = AuthLayer::new(HeaderAuth);
        let ok = call(layer.clone(), &[("x-user", "alice")]).await;
        assert_eq!(ok.body(), "alice");

        let missing = call(layer.clone(), &[]).await;
        assert_eq!(missing.status(), 401);
        assert_eq!(code(&missing), "missing_credentials");
        assert_eq!(
            missing.headers()["www-authenticate"],
            "Bearer realm=\"mcp\""
        );

        let refused = call(layer.clone(), &[("x-user", "bad")]).await;
        assert_eq!(refused.status(), 401);
        assert_eq!(code(&refused), "invalid_api_key");

        let unknown_scheme = call(layer, &[("authorization", "Basic YTpi")]).await;
        assert_eq!(unknown_scheme.status(), 401);
        assert_eq!(code(&unknown_scheme), "invalid_token");
    }

    #[tokio::test]
    async fn optional_mode_passes_anonymous_but_not_refused() {
        let layer = AuthLayer::new(HeaderAuth).optional();
        assert_eq!(call(layer.clone(), &[]).await.body(), "anonymous");
        assert_eq!(
            call(layer.clone(), &[("x-user", "bob")]).await.body(),
            "bob"
        );
        assert_eq!(call(layer, &[("x-user", "bad")]).await.status(), 401);
    }

    #[tokio::test]
    async fn first_recognising_authenticator_wins_and_errors_stop_the_chain() {
        struct Never;
        impl Authenticator for Never {
            fn authenticate<'a>(
                &'a self,
                _: &'a Parts,
            ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
                Box::pin(async { panic!("must not be asked after a refusal") })
            }
        }
        let layer = AuthLayer::new(HeaderAuth).or(Never);
        assert_eq!(
            call(layer.clone(), &[("x-user", "bad")]).await.status(),
            401
        );
        assert_eq!(call(layer, &[("x-user", "carol")]).await.body(), "carol");
    }

    /// A setter makes a new layer: the clone it came from keeps its own
    /// mode, and a shared `Arc<impl Authenticator>` is accepted as is.
    #[tokio::test]
    async fn setters_never_change_a_clone_and_arcs_are_accepted() {
        let shared = Arc::new(HeaderAuth);
        let required = AuthLayer::new(shared.clone());
        let optional = required.clone().optional();
        assert_eq!(call(required.clone(), &[]).await.status(), 401);
        assert_eq!(call(optional, &[]).await.body(), "anonymous");
        assert_eq!(call(required, &[("x-user", "dan")]).await.body(), "dan");
    }

    #[test]
    fn debug_names_the_chain_not_its_contents() {
        let layer = AuthLayer::new(HeaderAuth)
            .or(HeaderAuth)
            .challenge(Challenge::new("api"));
        let shown = format!("{layer:?}");
        assert!(
            shown.starts_with("AuthLayer { authenticators: 2, mode: Required"),
            "{shown}"
        );
    }

    /// Every request an AuthLayer passes carries `AuthChecked`, with or
    /// without a principal: what lets later layers tell a missing layer
    /// from an anonymous caller.
    #[tokio::test]
    async fn passed_requests_are_marked() {
        let service = AuthLayer::new(HeaderAuth).optional().layer(service_fn(
            |req: Request<()>| async move {
                let marked = req.extensions().get::<AuthChecked>().is_some();
                Ok::<_, Infallible>(Response::new(Bytes::from(marked.to_string())))
            },
        ));
        let response = service.oneshot(Request::new(())).await.unwrap();
        assert_eq!(response.body(), "true");
    }
}
