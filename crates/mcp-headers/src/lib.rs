//! Security response headers as one tower layer.
//!
//! [`SecurityHeadersLayer`] sets helmet's defaults, adapted to a JSON API,
//! on every response, and strips `Server` and `X-Powered-By`:
//!
//! | header | default |
//! |---|---|
//! | `Content-Security-Policy` | `default-src 'none'; frame-ancestors 'none'` |
//! | `Cross-Origin-Opener-Policy` | `same-origin` |
//! | `Cross-Origin-Resource-Policy` | `same-origin` |
//! | `Origin-Agent-Cluster` | `?1` |
//! | `Referrer-Policy` | `no-referrer` |
//! | `Strict-Transport-Security` | `max-age=31536000; includeSubDomains` |
//! | `X-Content-Type-Options` | `nosniff` |
//! | `X-DNS-Prefetch-Control` | `off` |
//! | `X-Download-Options` | `noopen` |
//! | `X-Frame-Options` | `DENY` |
//! | `X-Permitted-Cross-Domain-Policies` | `none` |
//! | `X-XSS-Protection` | `0` |
//!
//! Each header can be replaced ([`SecurityHeadersLayer::set`]) or dropped
//! ([`SecurityHeadersLayer::remove`]). A header the inner service already set
//! is left alone, so a handler can override one on purpose. The layer is
//! plain tower and works with any response body.
//!
//! ```
//! use http::{Request, Response, header::HeaderValue};
//! use mcp_headers::SecurityHeadersLayer;
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let layer = SecurityHeadersLayer::new()
//!     .set(
//!         http::header::CONTENT_SECURITY_POLICY,
//!         HeaderValue::from_static("default-src 'self'"),
//!     )
//!     .remove(http::header::STRICT_TRANSPORT_SECURITY);
//! let service = layer.layer(service_fn(|_req: Request<()>| async {
//!     Ok::<_, std::convert::Infallible>(Response::new("{}"))
//! }));
//!
//! let response = service.oneshot(Request::new(())).await.unwrap();
//! assert_eq!(response.headers()["x-content-type-options"], "nosniff");
//! assert_eq!(response.headers()["content-security-policy"], "default-src 'self'");
//! assert!(!response.headers().contains_key("strict-transport-security"));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Response};
use tower_layer::Layer;
use tower_service::Service;

const X_POWERED_BY: HeaderName = HeaderName::from_static("x-powered-by");

/// Sets security headers on every response and strips server identification.
///
/// See the [crate documentation](crate) for the defaults.
#[derive(Clone, Debug)]
pub struct SecurityHeadersLayer {
    config: Arc<Config>,
}

#[derive(Clone, Debug)]
struct Config {
    set: Vec<(HeaderName, HeaderValue)>,
    strip: Vec<HeaderName>,
}

impl Default for SecurityHeadersLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SecurityHeadersLayer {
    /// The defaults listed in the [crate documentation](crate).
    pub fn new() -> Self {
        let set = [
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; frame-ancestors 'none'",
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                "same-origin",
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                "same-origin",
            ),
            (HeaderName::from_static("origin-agent-cluster"), "?1"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::STRICT_TRANSPORT_SECURITY,
                "max-age=31536000; includeSubDomains",
            ),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::X_DNS_PREFETCH_CONTROL, "off"),
            (HeaderName::from_static("x-download-options"), "noopen"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (
                HeaderName::from_static("x-permitted-cross-domain-policies"),
                "none",
            ),
            (header::X_XSS_PROTECTION, "0"),
        ]
        .into_iter()
        .map(|(name, value)| (name, HeaderValue::from_static(value)))
        .collect();
        SecurityHeadersLayer {
            config: Arc::new(Config {
                set,
                strip: vec![header::SERVER, X_POWERED_BY],
            }),
        }
    }

    /// No headers set and nothing stripped: a base to build on.
    pub fn empty() -> Self {
        SecurityHeadersLayer {
            config: Arc::new(Config {
                set: Vec::new(),
                strip: Vec::new(),
            }),
        }
    }

    /// Sets `name` to `value` on every response that does not already carry
    /// it, replacing a default of the same name.
    #[must_use]
    pub fn set(mut self, name: HeaderName, value: HeaderValue) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.strip.retain(|stripped| *stripped != name);
        match config.set.iter_mut().find(|(n, _)| *n == name) {
            Some(entry) => entry.1 = value,
            None => config.set.push((name, value)),
        }
        self
    }

    /// Stops setting `name` (a default or one added with [`set`](Self::set)).
    #[must_use]
    pub fn remove(mut self, name: HeaderName) -> Self {
        Arc::make_mut(&mut self.config)
            .set
            .retain(|(n, _)| *n != name);
        self
    }

    /// Removes `name` from every response, whoever set it (by default
    /// `Server` and `X-Powered-By`).
    #[must_use]
    pub fn strip(mut self, name: HeaderName) -> Self {
        let config = Arc::make_mut(&mut self.config);
        config.set.retain(|(n, _)| *n != name);
        if !config.strip.contains(&name) {
            config.strip.push(name);
        }
        self
    }

    /// Sets `Strict-Transport-Security` from its parts.
    #[must_use]
    pub fn hsts(self, max_age: Duration, include_subdomains: bool, preload: bool) -> Self {
        let mut value = format!("max-age={}", max_age.as_secs());
        if include_subdomains {
            value.push_str("; includeSubDomains");
        }
        if preload {
            value.push_str("; preload");
        }
        // Digits, letters, `=`, `;` and spaces are always a valid header value.
        match HeaderValue::from_str(&value) {
            Ok(value) => self.set(header::STRICT_TRANSPORT_SECURITY, value),
            Err(_) => self,
        }
    }

    /// The headers this layer sets, in order.
    pub fn headers(&self) -> impl Iterator<Item = (&HeaderName, &HeaderValue)> {
        self.config.set.iter().map(|(n, v)| (n, v))
    }
}

impl<S> Layer<S> for SecurityHeadersLayer {
    type Service = SecurityHeaders<S>;

    fn layer(&self, inner: S) -> Self::Service {
        // Room for the handler's and the other layers' headers (type,
        // length, CORS, rate limits, request id, cache): a clone keeps the
        // template's table size, so no response rehashes while it grows.
        let mut template = http::HeaderMap::with_capacity(self.config.set.len() + ROOM);
        for (name, value) in &self.config.set {
            template.insert(name.clone(), value.clone());
        }
        SecurityHeaders {
            inner,
            config: Arc::new(Compiled {
                template,
                strip: self.config.strip.clone(),
            }),
        }
    }
}

/// Headers a response usually carries besides this layer's.
const ROOM: usize = 16;

/// The headers as a map made once: each response starts from a copy of it
/// (no hashing) and only the handler's own headers are hashed into it.
#[derive(Debug)]
struct Compiled {
    template: http::HeaderMap,
    strip: Vec<HeaderName>,
}

/// The service made by [`SecurityHeadersLayer`].
#[derive(Clone, Debug)]
pub struct SecurityHeaders<S> {
    inner: S,
    config: Arc<Compiled>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SecurityHeaders<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        ResponseFuture {
            inner: self.inner.call(request),
            config: self.config.clone(),
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`SecurityHeaders`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        config: Arc<Compiled>,
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<ResBody>, E>>,
{
    type Output = Result<Response<ResBody>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        let own = std::mem::take(response.headers_mut());
        let mut headers = this.config.template.clone();
        // The handler's headers win over the defaults (all their values);
        // stripped names are dropped.
        let mut current: Option<HeaderName> = None;
        for (name, value) in own {
            match name {
                Some(name) if this.config.strip.contains(&name) => current = None,
                Some(name) => {
                    headers.insert(name.clone(), value);
                    current = Some(name);
                }
                // Another value of the name before.
                None => {
                    if let Some(name) = &current {
                        headers.append(name.clone(), value);
                    }
                }
            }
        }
        *response.headers_mut() = headers;
        Poll::Ready(Ok(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use tower::{ServiceExt, service_fn};

    /// The handler's headers survive the copy of the defaults whole: every
    /// value of a repeated name, its own value of a default, and none of a
    /// stripped name however often it was set.
    #[tokio::test]
    async fn handler_headers_keep_every_value_and_win() {
        let service = SecurityHeadersLayer::new().layer(service_fn(|_req: Request<()>| async {
            let mut response = Response::new("{}");
            let headers = response.headers_mut();
            headers.append("set-cookie", HeaderValue::from_static("a=1"));
            headers.append("set-cookie", HeaderValue::from_static("b=2"));
            headers.append(header::SERVER, HeaderValue::from_static("x"));
            headers.append(header::SERVER, HeaderValue::from_static("y"));
            headers.insert(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            );
            headers.append("vary", HeaderValue::from_static("origin"));
            Ok::<_, Infallible>(response)
        }));
        let response = service.oneshot(Request::new(())).await.unwrap();
        let headers = response.headers();
        let cookies: Vec<_> = headers.get_all("set-cookie").iter().collect();
        assert_eq!(cookies, ["a=1", "b=2"]);
        assert!(!headers.contains_key(header::SERVER));
        assert_eq!(headers.get_all(header::X_FRAME_OPTIONS).iter().count(), 1);
        assert_eq!(headers[header::X_FRAME_OPTIONS], "SAMEORIGIN");
        assert_eq!(headers["vary"], "origin");
        assert_eq!(headers[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
    }

    async fn respond(
        layer: SecurityHeadersLayer,
        handler_headers: &[(&'static str, &'static str)],
    ) -> Response<&'static str> {
        let handler_headers = handler_headers.to_vec();
        let service = layer.layer(service_fn(move |_req: Request<()>| {
            let handler_headers = handler_headers.clone();
            async move {
                let mut response = Response::new("{}");
                for (name, value) in handler_headers {
                    response.headers_mut().insert(
                        HeaderName::from_static(name),
                        HeaderValue::from_static(value),
                    );
                }
                Ok::<_, Infallible>(response)
            }
        }));
        service.oneshot(Request::new(())).await.unwrap()
    }

    #[tokio::test]
    async fn sets_every_contract_header() {
        let response = respond(SecurityHeadersLayer::new(), &[]).await;
        let h = response.headers();
        assert_eq!(
            h["content-security-policy"],
            "default-src 'none'; frame-ancestors 'none'"
        );
        // A year, subdomains included: `max-age=0` would switch HSTS off.
        assert_eq!(
            h["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["cross-origin-opener-policy"], "same-origin");
        assert_eq!(h["cross-origin-resource-policy"], "same-origin");
        assert_eq!(h["x-dns-prefetch-control"], "off");
        assert_eq!(h["x-permitted-cross-domain-policies"], "none");
    }

    #[tokio::test]
    async fn strips_server_identification_even_when_a_handler_sets_it() {
        let response = respond(
            SecurityHeadersLayer::new(),
            &[("server", "hyper/1.0"), ("x-powered-by", "Rust")],
        )
        .await;
        assert!(!response.headers().contains_key("server"));
        assert!(!response.headers().contains_key("x-powered-by"));
    }

    #[tokio::test]
    async fn a_handler_may_override_on_purpose() {
        let response = respond(
            SecurityHeadersLayer::new(),
            &[("x-frame-options", "SAMEORIGIN")],
        )
        .await;
        assert_eq!(response.headers()["x-frame-options"], "SAMEORIGIN");
        assert_eq!(
            response.headers().get_all("x-frame-options").iter().count(),
            1
        );
    }

    #[tokio::test]
    async fn set_replaces_and_remove_drops() {
        // Present by default, so its absence below is the removal's doing.
        let default = respond(SecurityHeadersLayer::new(), &[]).await;
        assert_eq!(default.headers()["x-xss-protection"], "0");
        let layer = SecurityHeadersLayer::new()
            .set(
                header::X_FRAME_OPTIONS,
                HeaderValue::from_static("SAMEORIGIN"),
            )
            .set(
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static("camera=()"),
            )
            .remove(header::X_XSS_PROTECTION);
        let response = respond(layer, &[]).await;
        assert_eq!(response.headers()["x-frame-options"], "SAMEORIGIN");
        assert_eq!(response.headers()["permissions-policy"], "camera=()");
        assert!(!response.headers().contains_key("x-xss-protection"));
    }

    #[tokio::test]
    async fn set_undoes_a_strip_and_strip_undoes_a_set() {
        let layer = SecurityHeadersLayer::new()
            .set(header::SERVER, HeaderValue::from_static("ours"))
            .strip(header::X_FRAME_OPTIONS);
        let response = respond(layer, &[("x-frame-options", "SAMEORIGIN")]).await;
        assert_eq!(response.headers()["server"], "ours");
        assert!(!response.headers().contains_key("x-frame-options"));
    }

    #[tokio::test]
    async fn empty_sets_nothing() {
        let response = respond(SecurityHeadersLayer::empty(), &[("server", "x")]).await;
        assert_eq!(response.headers().len(), 1);
    }

    #[test]
    fn hsts_from_parts() {
        let layer = SecurityHeadersLayer::new().hsts(Duration::from_secs(600), false, true);
        let (_, value) = layer
            .headers()
            .find(|(n, _)| **n == header::STRICT_TRANSPORT_SECURITY)
            .unwrap();
        assert_eq!(value, "max-age=600; preload");
    }

    #[tokio::test]
    async fn works_inside_axum() {
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "ok" }))
            .layer(SecurityHeadersLayer::new());
        let response = app
            .oneshot(Request::new(axum::body::Body::empty()))
            .await
            .unwrap();
        assert_eq!(response.headers()["x-frame-options"], "DENY");
    }
}
