//! The CORS layer, its service and its response future.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tower_http::cors::CorsLayer as TowerCorsLayer;
use tower_layer::Layer;
use tower_service::Service;

/// tower-http's CORS layer, with preflights answered `204 No Content` and no
/// CORS header at all on a response to a disallowed origin; made by
/// [`CorsPolicy::layer`](crate::CorsPolicy::layer).
///
/// A disabled policy gives a layer that passes requests and responses
/// through untouched, so the layer is applied the same way whatever the
/// setting:
///
/// ```
/// use mcp_cors::{CorsLayer, CorsPolicy};
///
/// let on: CorsLayer = "https://app.example.com".parse::<CorsPolicy>().unwrap().layer();
/// let off: CorsLayer = CorsPolicy::disabled().layer();
/// assert!(!on.is_disabled());
/// assert!(off.is_disabled());
/// ```
#[derive(Clone, Debug)]
pub struct CorsLayer {
    inner: Option<(TowerCorsLayer, Arc<Preflight>)>,
}

/// A preflight's answer, made once: tower-http builds the same headers for
/// each preflight into a fresh map (joining, growing), which is most of
/// what a preflight costs. Its layer still answers everything else.
#[derive(Debug)]
pub(crate) struct Preflight {
    /// Who may call: `*`, or the policy to ask (its origin then reflected
    /// with credentials allowed).
    pub(crate) origins: crate::CorsPolicy,
    pub(crate) methods: HeaderValue,
    pub(crate) headers: HeaderValue,
    pub(crate) max_age: HeaderValue,
}

impl Preflight {
    /// The `204` answer to a preflight from `origin` (its head; the body
    /// is empty): the grant when the origin is allowed, only `Vary`
    /// otherwise.
    fn answer(&self, origin: &HeaderValue) -> http::response::Parts {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = StatusCode::NO_CONTENT;
        let headers = &mut parts.headers;
        headers.reserve(7);
        headers.insert(header::VARY, VARY);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        let allowed = if self.origins.allows_any() {
            Some(HeaderValue::from_static("*"))
        } else if self.origins.allows(origin.as_bytes()) {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
            Some(origin.clone())
        } else {
            None
        };
        if let Some(allowed) = allowed {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
            headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, self.methods.clone());
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, self.headers.clone());
            headers.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        }
        parts
    }
}

impl CorsLayer {
    pub(crate) fn enabled(inner: TowerCorsLayer, preflight: Preflight) -> CorsLayer {
        CorsLayer {
            inner: Some((inner, Arc::new(preflight))),
        }
    }

    /// The layer of a disabled policy: a pass-through.
    pub fn disabled() -> CorsLayer {
        CorsLayer { inner: None }
    }

    /// Whether this layer passes everything through untouched.
    pub fn is_disabled(&self) -> bool {
        self.inner.is_none()
    }
}

impl<S> Layer<S> for CorsLayer {
    type Service = Cors<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let inner = match &self.inner {
            Some((cors, preflight)) => Inner::Enabled(cors.layer(inner), preflight.clone()),
            None => Inner::Disabled(inner),
        };
        Cors { inner }
    }
}

/// The service made by [`CorsLayer`].
#[derive(Clone, Debug)]
pub struct Cors<S> {
    inner: Inner<S>,
}

// Boxing the enabled variant would cost an allocation per service for
// nothing: a disabled service is as large as an enabled one would be.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
enum Inner<S> {
    Enabled(tower_http::cors::Cors<S>, Arc<Preflight>),
    Disabled(S),
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for Cors<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        match &mut self.inner {
            Inner::Enabled(cors, _) => cors.poll_ready(cx),
            Inner::Disabled(inner) => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // A preflight (with its origin): answered here, from values made once.
        let preflight_from = (request.method() == Method::OPTIONS
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD))
        .then(|| request.headers().get(header::ORIGIN).cloned())
        .flatten();
        let kind = match (&mut self.inner, preflight_from) {
            (Inner::Enabled(_, preflight), Some(origin)) => Kind::Answered {
                parts: Some(preflight.answer(&origin)),
            },
            // Without an `Origin` nothing CORS says applies but `Vary`
            // (tower-http answers every `OPTIONS` itself, so those still
            // go through it): skip building and then stripping its headers.
            (Inner::Enabled(cors, _), None)
                if request.method() != Method::OPTIONS
                    && !request.headers().contains_key(header::ORIGIN) =>
            {
                Kind::NoOrigin {
                    inner: cors.get_mut().call(request),
                }
            }
            (Inner::Enabled(cors, _), None) => Kind::Enabled {
                inner: cors.call(request),
            },
            (Inner::Disabled(inner), _) => Kind::Disabled {
                inner: inner.call(request),
            },
        };
        ResponseFuture { kind }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`Cors`].
    pub struct ResponseFuture<F> {
        #[pin]
        kind: Kind<F>,
    }
}

pin_project_lite::pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Enabled {
            #[pin]
            inner: tower_http::cors::ResponseFuture<F>,
        },
        Answered {
            parts: Option<http::response::Parts>,
        },
        NoOrigin {
            #[pin]
            inner: F,
        },
        Disabled {
            #[pin]
            inner: F,
        },
    }
}

/// What every answer of an enabled policy varies on, made once: tower-http
/// would clone a list and join it into a fresh value for each response.
const VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Default,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = match self.project().kind.project() {
            KindProj::Disabled { inner } => return inner.poll(cx),
            KindProj::NoOrigin { inner } => {
                let mut response = std::task::ready!(inner.poll(cx))?;
                response.headers_mut().append(header::VARY, VARY);
                return Poll::Ready(Ok(response));
            }
            KindProj::Answered { parts } => {
                let parts = parts.take().expect("polled after it answered");
                return Poll::Ready(Ok(Response::from_parts(parts, B::default())));
            }
            KindProj::Enabled { inner } => inner,
        };
        let mut response = std::task::ready!(inner.poll(cx))?;
        let headers = response.headers_mut();
        headers.append(header::VARY, VARY);
        // tower-http sends these whatever the origin; without an allowed
        // origin they only tell an attacker about the API.
        if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            for name in [
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::ACCESS_CONTROL_MAX_AGE,
            ] {
                headers.remove(name);
            }
        }
        Poll::Ready(Ok(response))
    }
}
