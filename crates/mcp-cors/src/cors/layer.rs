//! The CORS layer, its service and its response future.

use std::future::Future;
use std::pin::Pin;
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
    inner: Option<TowerCorsLayer>,
}

impl CorsLayer {
    pub(crate) fn enabled(inner: TowerCorsLayer) -> CorsLayer {
        CorsLayer { inner: Some(inner) }
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
            Some(cors) => Inner::Enabled(cors.layer(inner)),
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
    Enabled(tower_http::cors::Cors<S>),
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
            Inner::Enabled(cors) => cors.poll_ready(cx),
            Inner::Disabled(inner) => inner.poll_ready(cx),
        }
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let kind = match &mut self.inner {
            // Without an `Origin` nothing CORS says applies but `Vary`
            // (tower-http answers every `OPTIONS` itself, so those still
            // go through it): skip building and then stripping its headers.
            Inner::Enabled(cors)
                if request.method() != Method::OPTIONS
                    && !request.headers().contains_key(header::ORIGIN) =>
            {
                Kind::NoOrigin {
                    inner: cors.get_mut().call(request),
                }
            }
            Inner::Enabled(cors) => {
                let preflight = request.method() == Method::OPTIONS
                    && request.headers().contains_key(header::ORIGIN)
                    && request
                        .headers()
                        .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
                Kind::Enabled {
                    inner: cors.call(request),
                    preflight,
                }
            }
            Inner::Disabled(inner) => Kind::Disabled {
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
            preflight: bool,
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
        let (inner, preflight) = match self.project().kind.project() {
            KindProj::Disabled { inner } => return inner.poll(cx),
            KindProj::NoOrigin { inner } => {
                let mut response = std::task::ready!(inner.poll(cx))?;
                response.headers_mut().append(header::VARY, VARY);
                return Poll::Ready(Ok(response));
            }
            KindProj::Enabled { inner, preflight } => (inner, *preflight),
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
        if preflight && response.status() == StatusCode::OK {
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        Poll::Ready(Ok(response))
    }
}
