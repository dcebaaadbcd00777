//! A layer that records every authorization refusal.

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::{HeaderValue, Method, Request, Response, StatusCode};
use mcp_core::{Principal, ProblemCode, SharedClock, SystemClock};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use crate::{Auditor, Event, Outcome};

/// Finds a request's client address from its headers and extensions (the
/// server's trusted-proxy rule); the default is the socket peer.
pub type ClientIp =
    Arc<dyn Fn(&http::HeaderMap, &http::Extensions) -> Option<IpAddr> + Send + Sync>;

/// Records an `authz.denied` event for every `403` answered to an
/// authenticated request: the principal, the client address, the request
/// id, the route (`route` target `GET /api/keys/{id}`, the matched template
/// when axum's `MatchedPath` is there) and the problem code. Put it right
/// inside the authentication layer, so the principal is in the request and
/// every refusal behind it passes through it.
///
/// A request that is let through costs a clone of its principal (a
/// reference count) and of its request-id header; nothing is allocated
/// unless it is refused.
///
/// ```
/// use mcp_audit::{AuditRefusalsLayer, Auditor};
///
/// let layer = AuditRefusalsLayer::new(Auditor::off());
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct AuditRefusalsLayer {
    shared: Arc<Shared>,
}

struct Shared {
    auditor: Auditor,
    client_ip: Option<ClientIp>,
    clock: SharedClock,
}

impl std::fmt::Debug for AuditRefusalsLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRefusalsLayer")
            .field("auditor", &self.shared.auditor)
            .finish_non_exhaustive()
    }
}

impl AuditRefusalsLayer {
    /// Records refusals to `auditor`; the client address is the socket
    /// peer (set [`client_ip`](Self::client_ip) behind proxies).
    pub fn new(auditor: Auditor) -> Self {
        AuditRefusalsLayer {
            shared: Arc::new(Shared {
                auditor,
                client_ip: None,
                clock: SystemClock::shared(),
            }),
        }
    }

    /// Finds the client address with `client_ip`.
    #[must_use]
    pub fn client_ip(self, client_ip: ClientIp) -> Self {
        self.rebuild(|shared| shared.client_ip = Some(client_ip))
    }

    /// Times events by `clock`.
    #[must_use]
    pub fn clock(self, clock: SharedClock) -> Self {
        self.rebuild(|shared| shared.clock = clock)
    }

    fn rebuild(self, change: impl FnOnce(&mut Shared)) -> Self {
        let mut shared = Shared {
            auditor: self.shared.auditor.clone(),
            client_ip: self.shared.client_ip.clone(),
            clock: self.shared.clock.clone(),
        };
        change(&mut shared);
        AuditRefusalsLayer {
            shared: Arc::new(shared),
        }
    }
}

impl<S> Layer<S> for AuditRefusalsLayer {
    type Service = AuditRefusals<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditRefusals {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service of [`AuditRefusalsLayer`].
#[derive(Clone)]
pub struct AuditRefusals<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S> std::fmt::Debug for AuditRefusals<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditRefusals").finish_non_exhaustive()
    }
}

/// What a refusal's event needs of its request: copies that share their
/// bytes with it (reference counts, no allocation).
struct Seen {
    shared: Arc<Shared>,
    principal: Principal,
    method: Method,
    path: RoutePath,
    request_id: Option<HeaderValue>,
    ip: Option<IpAddr>,
}

impl<S, B, R> Service<Request<B>> for AuditRefusals<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = AuditFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let shared = &self.shared;
        let seen = match request.extensions().get::<Principal>() {
            Some(principal) if shared.auditor.is_on() => Some(Seen {
                shared: shared.clone(),
                principal: principal.clone(),
                method: request.method().clone(),
                path: RoutePath::of(&request),
                request_id: request.headers().get(crate::REQUEST_ID).cloned(),
                ip: match &shared.client_ip {
                    Some(ip) => ip(request.headers(), request.extensions()),
                    None => peer_ip(request.extensions()),
                },
            }),
            _ => None,
        };
        AuditFuture {
            inner: self.inner.call(request),
            seen,
        }
    }
}

/// The route of a refused request: axum's matched template
/// (`/api/keys/{id}`, a reference count to copy) when routed by axum with
/// feature `axum`, else the request's path.
enum RoutePath {
    #[cfg(feature = "axum")]
    Template(axum::extract::MatchedPath),
    Uri(http::Uri),
}

impl RoutePath {
    fn of<B>(request: &Request<B>) -> RoutePath {
        #[cfg(feature = "axum")]
        if let Some(template) = request.extensions().get::<axum::extract::MatchedPath>() {
            return RoutePath::Template(template.clone());
        }
        RoutePath::Uri(request.uri().clone())
    }

    fn as_str(&self) -> &str {
        match self {
            #[cfg(feature = "axum")]
            RoutePath::Template(template) => template.as_str(),
            RoutePath::Uri(uri) => uri.path(),
        }
    }
}

pin_project! {
    /// The response future of [`AuditRefusals`].
    pub struct AuditFuture<F> {
        #[pin]
        inner: F,
        seen: Option<Seen>,
    }
}

impl<F, R, E> Future for AuditFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(seen)) = (&result, this.seen.take())
            && response.status() == StatusCode::FORBIDDEN
        {
            let code = response
                .extensions()
                .get::<ProblemCode>()
                .map_or("forbidden", |code| code.0.as_ref());
            let mut event = Event::new("authz.denied", Outcome::Denied, seen.shared.clock.now())
                .actor(&seen.principal)
                .ip(seen.ip)
                // The path, never the query (where a careless client may
                // have put a token).
                .target("route", format!("{} {}", seen.method, seen.path.as_str()))
                .detail("code", code);
            if let Some(id) = seen.request_id.as_ref().and_then(|v| v.to_str().ok()) {
                event = event.request_id(id);
            }
            seen.shared.auditor.record(event);
        }
        Poll::Ready(result)
    }
}

/// The socket peer's address (a `SocketAddr` in the extensions, as
/// `mcp-serve` puts it there).
pub fn peer_ip(extensions: &http::Extensions) -> Option<IpAddr> {
    extensions
        .get::<std::net::SocketAddr>()
        .map(|peer| peer.ip())
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use mcp_core::{AuthMethod, Problem};
    use tower::{ServiceExt, service_fn};

    use super::*;
    use crate::{AuditError, AuditSink, AuditorSettings, BoxFuture};

    #[derive(Clone, Default)]
    struct Kept(Arc<Mutex<Vec<Event>>>);

    impl AuditSink for Kept {
        fn write<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), AuditError>> {
            Box::pin(async move {
                self.0.lock().unwrap().extend_from_slice(events);
                Ok(())
            })
        }
    }

    async fn through(status: StatusCode, principal: bool) -> Vec<Event> {
        let sink = Kept::default();
        let (auditor, writer) = Auditor::start(sink.clone(), AuditorSettings::default());
        let layer = AuditRefusalsLayer::new(auditor);
        let service = layer.layer(service_fn(move |_: Request<()>| async move {
            let response: Response<bytes::Bytes> = if status == StatusCode::FORBIDDEN {
                Problem::forbidden("insufficient_scope", "no").into_response()
            } else {
                let mut response = Response::new(bytes::Bytes::new());
                *response.status_mut() = status;
                response
            };
            Ok::<_, Infallible>(response)
        }));
        let mut request = Request::get("/api/keys/k1?access_token=secret")
            .header("x-request-id", "req-1")
            .body(())
            .unwrap();
        request
            .extensions_mut()
            .insert("10.1.2.3:4000".parse::<std::net::SocketAddr>().unwrap());
        if principal {
            request.extensions_mut().insert(
                Principal::builder("u1", AuthMethod::ApiKey)
                    .key_id("k9")
                    .build(),
            );
        }
        let response = service.oneshot(request).await.unwrap();
        assert_eq!(response.status(), status);
        writer.shutdown().await;
        sink.0.lock().unwrap().clone()
    }

    #[tokio::test]
    async fn a_refusal_is_recorded_with_who_where_and_which_request() {
        let events = through(StatusCode::FORBIDDEN, true).await;
        assert_eq!(events.len(), 1);
        let event = &events[0];
        assert_eq!(event.kind, "authz.denied");
        assert_eq!(event.outcome, Outcome::Denied);
        let actor = event.actor.as_ref().unwrap();
        assert_eq!(
            (actor.subject.as_str(), actor.key_id.as_deref()),
            ("u1", Some("k9"))
        );
        assert_eq!(event.ip.as_deref(), Some("10.1.2.3"));
        assert_eq!(event.request_id.as_deref(), Some("req-1"));
        let target = event.target.as_ref().unwrap();
        // The path, never the query.
        assert_eq!(
            (target.kind.as_str(), target.id.as_str()),
            ("route", "GET /api/keys/k1")
        );
        assert_eq!(event.detail["code"], "insufficient_scope");
    }

    #[tokio::test]
    async fn what_passes_or_was_never_authenticated_is_not_recorded() {
        assert!(through(StatusCode::OK, true).await.is_empty());
        assert!(through(StatusCode::NOT_FOUND, true).await.is_empty());
        assert!(through(StatusCode::FORBIDDEN, false).await.is_empty());
    }
}
