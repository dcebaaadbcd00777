//! The HTTP spine every route of an axum app sits in: request ids (a
//! client's kept only when sane), one log line per request without
//! credentials, per-route metrics with bounded labels, security headers,
//! panics and timeouts as problems, the guard, CORS and the body limit,
//! problem+json for every error, and the shutdown signal.

use std::any::Any;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use http::header::HeaderValue;
use mcp_core::{Problem, code};
use mcp_headers::SecurityHeadersLayer;
use tower::{Layer, Service, ServiceBuilder};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;
use tracing::{Span, field};

/// What the spine needs to know.
#[derive(Clone, Debug)]
pub struct SpineSettings {
    /// Largest request body in bytes; a body of exactly this size passes.
    pub body_limit: usize,
    /// Longest a request may take to produce its response head.
    pub request_timeout: Duration,
    /// The Host/Origin guard, `None` when turned off.
    pub guard: Option<mcp_cors::HostOriginGuardLayer>,
    /// CORS (a pass-through when disabled).
    pub cors: mcp_cors::CorsLayer,
}

impl SpineSettings {
    /// Settings without guard or CORS (for tests and embedders).
    pub fn new(body_limit: usize, request_timeout: Duration) -> Self {
        SpineSettings {
            body_limit,
            request_timeout,
            guard: None,
            cors: mcp_cors::CorsLayer::disabled(),
        }
    }
}

/// What [`spine`] returns: a service for requests with body `B`, answering
/// axum responses, never failing, cheap to clone (one per connection), its
/// futures `Send`.
pub trait SpineService<B>:
    Service<
        http::Request<B>,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + Sync
    + 'static
{
}

impl<T, B> SpineService<B> for T where
    T: Service<
            http::Request<B>,
            Response = Response,
            Error = std::convert::Infallible,
            Future: Send + 'static,
        > + Clone
        + Send
        + Sync
        + 'static
{
}

/// Wraps `router` in the spine. Layers run outside-in in this order:
/// request id, trace, metrics, security headers, catch-panic, problem+json
/// for bare errors, timeout, the Host/Origin guard, CORS, body limit, then
/// the router.
///
/// The layers wrap the router as one stack, not each route (as
/// `Router::layer` would): each request then pays for one copy of a stack
/// whose layers hold their settings behind `Arc`s, instead of a boxed copy
/// per layer and route.
///
/// The result is the service to serve (with [`Server`](crate::Server) or
/// hyper), not a `Router`: a router around it would box each request's
/// future once more.
pub fn spine<B>(router: Router, settings: SpineSettings) -> impl SpineService<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    spine_with(router, settings, tower::layer::util::Identity::new())
}

/// [`spine`] with `around` between the body limit and the router: for the
/// application's own layers that see every request (a brute-force limit,
/// an extension). Given to `Router::layer` instead, each would wrap every
/// route and box once more per request.
pub fn spine_with<B, L>(router: Router, settings: SpineSettings, around: L) -> impl SpineService<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
    L: Layer<Router>,
    L::Service: Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + Sync
        + 'static,
    <L::Service as Service<Request>>::Future: Send + 'static,
{
    let timeout = settings.request_timeout;
    let body_limit = settings.body_limit;
    let routed = router
        .fallback(|| async { Problem::not_found() })
        .layer(AroundLayer(RecordRoute));
    ServiceBuilder::new()
        .map_response(|r: http::Response<_>| r.map(Body::new))
        .map_request(|r: http::Request<B>| r.map(Body::new))
        .layer(AroundLayer(RequestIds))
        .option_layer(access_log())
        .map_response(|r: http::Response<_>| r.map(Body::new))
        .layer(AroundLayer(CountRequests::default()))
        .layer(SecurityHeadersLayer::new())
        .layer(CatchPanicLayer::custom(panic_to_problem))
        .map_response(move |response: Response| {
            mcp_core::problem_for_bare_error(response, Some(body_limit))
        })
        .layer(DeadlineLayer(timeout))
        .option_layer(settings.guard)
        .layer(settings.cors)
        .map_response(|r: http::Response<_>| r.map(Body::new))
        .layer(RequestBodyLimitLayer::new(settings.body_limit))
        .map_request(|r: http::Request<_>| r.map(Body::new))
        .layer(around)
        .service(routed)
}

/// The request span and its one log line, when the subscriber wants them
/// (`info` for this module, decided once, when the spine is made): with
/// the level off, the layer is not there at all instead of timing,
/// classifying and wrapping every response for nothing.
fn access_log() -> Option<AccessLogLayer> {
    tracing::enabled!(tracing::Level::INFO).then_some(AccessLogLayer)
}

/// tower-http's `TraceLayer` with the spine's span and line, its body
/// turned back into axum's.
#[derive(Clone, Copy, Debug)]
struct AccessLogLayer;

type AccessLog<S> = tower::util::MapResponse<
    tower_http::trace::Trace<
        S,
        tower_http::classify::SharedClassifier<tower_http::classify::ServerErrorsAsFailures>,
        fn(&Request) -> Span,
        (),
        fn(&Response, Duration, &Span),
        (),
        (),
        (),
    >,
    fn(http::Response<AccessLogged>) -> Response,
>;

impl<S> Layer<S> for AccessLogLayer {
    type Service = AccessLog<S>;

    fn layer(&self, inner: S) -> AccessLog<S> {
        let trace = TraceLayer::new_for_http()
            .make_span_with(request_span as fn(&Request) -> Span)
            .on_request(())
            .on_response(log_response as fn(&Response, Duration, &Span))
            .on_body_chunk(())
            .on_eos(())
            // A failure is already the status of the one response line.
            .on_failure(());
        tower::util::MapResponse::new(
            trace.layer(inner),
            to_body as fn(http::Response<AccessLogged>) -> Response,
        )
    }
}

/// The body `TraceLayer` answers with, around the spine's own.
type AccessLogged = tower_http::trace::ResponseBody<
    Body,
    tower_http::classify::NeverClassifyEos<tower_http::classify::ServerErrorsFailureClass>,
    (),
    (),
    (),
>;

fn to_body(response: http::Response<AccessLogged>) -> Response {
    response.map(Body::new)
}

/// Answers `503 timeout` when the inner service has not produced its
/// response head within the duration (tower's `Timeout` answers with an
/// error, which would need a boxed error handler to become a response).
#[derive(Clone, Copy, Debug)]
struct DeadlineLayer(Duration);

impl<S> Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Deadline<S> {
        Deadline {
            inner,
            timeout: self.0,
        }
    }
}

#[derive(Clone, Debug)]
struct Deadline<S> {
    inner: S,
    timeout: Duration,
}

impl<S, B> Service<http::Request<B>> for Deadline<S>
where
    S: Service<http::Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = DeadlineFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        DeadlineFuture {
            inner: self.inner.call(request),
            sleep: tokio::time::sleep(self.timeout),
            timeout: self.timeout,
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner future, or the timeout's problem.
    struct DeadlineFuture<F> {
        #[pin]
        inner: F,
        #[pin]
        sleep: tokio::time::Sleep,
        timeout: Duration,
    }
}

impl<F, E> Future for DeadlineFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(result) = this.inner.poll(cx) {
            return Poll::Ready(result);
        }
        std::task::ready!(this.sleep.poll(cx));
        Poll::Ready(Ok(timed_out(*this.timeout)))
    }
}

fn timed_out(timeout: Duration) -> Response {
    Problem::new(http::StatusCode::SERVICE_UNAVAILABLE, code::TIMEOUT)
        .with_detail(format!(
            "the request took longer than {}",
            humantime::format_duration(timeout)
        ))
        .into_response()
}

const X_REQUEST_ID: http::HeaderName = mcp_core::REQUEST_ID;

/// A client's request id is kept only when it is 1 to 128 of
/// `[A-Za-z0-9._-]`: anything else could forge log lines or smuggle markup.
fn is_sane_request_id(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=128).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Whether the request needs an id of ours: it has none, or not exactly
/// one sane one.
fn needs_request_id(headers: &http::HeaderMap) -> bool {
    let mut ids = headers.get_all(&X_REQUEST_ID).iter();
    !matches!((ids.next(), ids.next()), (Some(id), None) if is_sane_request_id(id))
}

/// A fresh random (version 4) UUID, from the thread's generator (uuid's
/// `fast-rng`), formatted on the stack and shared with the response's copy:
/// no system call and one allocation.
fn fresh_request_id() -> HeaderValue {
    let mut buffer = [0u8; uuid::fmt::Hyphenated::LENGTH];
    uuid::Uuid::new_v4().hyphenated().encode_lower(&mut buffer);
    // Hex digits and hyphens are always a valid value.
    HeaderValue::from_maybe_shared(bytes::Bytes::from_owner(buffer))
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

/// Gives every request an `X-Request-Id` (its one sane one, or ours) and its
/// response the same, unless the response names one. tower-http's
/// `SetRequestId` and `PropagateRequestId` do this too, but also store the
/// id in the request's and the response's extensions (two allocations per
/// request) for readers this server does not have.
#[derive(Clone, Copy, Debug)]
struct RequestIds;

impl Around for RequestIds {
    type Then = GiveId;

    fn request<B>(&self, request: &mut http::Request<B>) -> GiveId {
        if needs_request_id(request.headers()) {
            // `insert` drops every client value first.
            request
                .headers_mut()
                .insert(X_REQUEST_ID, fresh_request_id());
        }
        GiveId(request.headers().get(X_REQUEST_ID).cloned())
    }
}

/// The id the response gets.
#[derive(Debug)]
struct GiveId(Option<HeaderValue>);

impl Then for GiveId {
    fn response<R>(self, response: &mut http::Response<R>) {
        if let Some(id) = self.0
            && !response.headers().contains_key(X_REQUEST_ID)
        {
            response.headers_mut().insert(X_REQUEST_ID, id);
        }
    }
}

/// The span every log line of a request is in. Deliberately no headers,
/// no query string and no body: they carry credentials.
fn request_span(request: &Request) -> Span {
    let request_id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        route = field::Empty,
        request_id = %request_id,
    );
    #[cfg(feature = "otel")]
    if !span.is_disabled() {
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        // A client's `traceparent` makes this request a part of its trace
        // (nothing is extracted until a propagator is installed).
        let parent = opentelemetry::global::get_text_map_propagator(|propagator| {
            propagator.extract(&opentelemetry_http::HeaderExtractor(request.headers()))
        });
        let _ = span.set_parent(parent);
    }
    span
}

/// Names the matched route template (`/api/keys/{id}`) in the request span
/// and hands it to the response for the metrics; only known once the router
/// has matched, so it is the one layer inside the router.
#[derive(Clone, Copy, Debug)]
struct RecordRoute;

impl Around for RecordRoute {
    type Then = GiveRoute;

    fn request<B>(&self, request: &mut http::Request<B>) -> GiveRoute {
        let route = request.extensions().get::<MatchedPath>().cloned();
        // `Span::current` asks the subscriber for its span stack even when
        // the request span was never made; the callsite check is one load.
        if let Some(route) = route
            .as_ref()
            .filter(|_| tracing::enabled!(tracing::Level::INFO))
        {
            Span::current().record("route", route.as_str());
        }
        GiveRoute(route)
    }
}

/// The route the response gets.
#[derive(Debug)]
struct GiveRoute(Option<MatchedPath>);

impl Then for GiveRoute {
    fn response<R>(self, response: &mut http::Response<R>) {
        if let Some(route) = self.0 {
            response.extensions_mut().insert(route);
        }
    }
}

/// Counts every response by route template (never the raw path, which
/// would let clients mint label values), method and status, with its
/// latency; and every refused credential or permission by its problem code.
///
/// The handles of each label set are made once and kept (the sets are
/// bounded: routes, eight methods, statuses), so a request costs two map
/// lookups under a read lock, not a registry lookup with owned labels.
#[derive(Clone, Debug, Default)]
struct CountRequests {
    handles: Arc<Handles>,
}

// Keys are route templates of the application and bounded labels, never a
// client's text: a fast hasher is safe, and SipHash was half of a lookup.
type Hasher = foldhash::fast::RandomState;
type HandleMap = HashMap<(&'static str, u16), (metrics::Counter, metrics::Histogram), Hasher>;

#[derive(Debug, Default)]
struct Handles {
    by_route: RwLock<HashMap<String, HandleMap, Hasher>>,
}

impl Handles {
    fn record(&self, route: &str, method: &'static str, status: http::StatusCode, took: Duration) {
        let key = (method, status.as_u16());
        let found = self
            .by_route
            .read()
            .ok()
            .and_then(|routes| routes.get(route).and_then(|m| m.get(&key)).cloned());
        let (counter, histogram) = match found {
            Some(handles) => handles,
            None => {
                let labels = [
                    metrics::Label::new("route", route.to_owned()),
                    metrics::Label::from_static_parts("method", method),
                    metrics::Label::new("status", status.as_str().to_owned()),
                ];
                let handles = (
                    metrics::counter!("http_requests_total", labels.iter()),
                    metrics::histogram!("http_request_duration_seconds", labels.iter()),
                );
                if let Ok(mut routes) = self.by_route.write() {
                    routes
                        .entry(route.to_owned())
                        .or_default()
                        .insert(key, handles.clone());
                }
                handles
            }
        };
        counter.increment(1);
        histogram.record(took.as_secs_f64());
    }
}

impl Around for CountRequests {
    type Then = Count;

    fn request<B>(&self, request: &mut http::Request<B>) -> Count {
        Count {
            started: Instant::now(),
            method: method_label(request.method()),
            handles: self.handles.clone(),
        }
    }
}

/// What the response is counted with.
#[derive(Debug)]
struct Count {
    started: Instant,
    method: &'static str,
    handles: Arc<Handles>,
}

impl Then for Count {
    fn response<R>(self, response: &mut http::Response<R>) {
        let route = response
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", MatchedPath::as_str);
        let status = response.status();
        self.handles
            .record(route, self.method, status, self.started.elapsed());
        if matches!(status.as_u16(), 401 | 403) {
            let code = response
                .extensions()
                .get::<mcp_core::ProblemCode>()
                .map_or_else(|| status.as_str().to_owned(), |c| c.as_str().to_owned());
            metrics::counter!("auth_failures_total", "code" => code).increment(1);
        }
    }
}

/// A layer that looks at each request on its way in and, with what it
/// kept, at its response on the way out: the shape of the spine's own small
/// layers, with a named future (`axum::middleware::from_fn` boxes two
/// things per request).
trait Around: Clone {
    /// What is kept for the response.
    type Then: Then;

    /// Looks at (and may change) the request.
    fn request<B>(&self, request: &mut http::Request<B>) -> Self::Then;
}

/// The response half of an [`Around`].
trait Then {
    /// Looks at (and may change) the response.
    fn response<R>(self, response: &mut http::Response<R>);
}

#[derive(Clone, Copy, Debug)]
struct AroundLayer<A>(A);

impl<S, A: Clone> Layer<S> for AroundLayer<A> {
    type Service = AroundService<S, A>;

    fn layer(&self, inner: S) -> AroundService<S, A> {
        AroundService {
            inner,
            around: self.0.clone(),
        }
    }
}

#[derive(Clone, Debug)]
struct AroundService<S, A> {
    inner: S,
    around: A,
}

impl<S, A, B, R> Service<http::Request<B>> for AroundService<S, A>
where
    S: Service<http::Request<B>, Response = http::Response<R>>,
    A: Around,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = AroundFuture<S::Future, A::Then>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let then = self.around.request(&mut request);
        AroundFuture {
            inner: self.inner.call(request),
            then: Some(then),
        }
    }
}

pin_project_lite::pin_project! {
    /// The inner future, then the response half of the layer.
    struct AroundFuture<F, T> {
        #[pin]
        inner: F,
        then: Option<T>,
    }
}

impl<F, T, R, E> Future for AroundFuture<F, T>
where
    F: Future<Output = Result<http::Response<R>, E>>,
    T: Then,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        if let Some(then) = this.then.take() {
            then.response(&mut response);
        }
        Poll::Ready(Ok(response))
    }
}

/// Standard methods by name; anything else as `other`, so the label set
/// stays bounded.
fn method_label(method: &http::Method) -> &'static str {
    match *method {
        http::Method::GET => "GET",
        http::Method::POST => "POST",
        http::Method::PUT => "PUT",
        http::Method::PATCH => "PATCH",
        http::Method::DELETE => "DELETE",
        http::Method::HEAD => "HEAD",
        http::Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

fn log_response(response: &Response, latency: Duration, _span: &Span) {
    tracing::info!(
        status = response.status().as_u16(),
        latency_ms = latency.as_secs_f64() * 1000.0,
        "request"
    );
}

fn panic_to_problem(panic: Box<dyn Any + Send + 'static>) -> http::Response<Body> {
    let message = panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned());
    tracing::error!(panic = %message, "handler panicked");
    Problem::internal().into_response()
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM. The handlers are installed when
/// this is called, not when the future is first polled, so a signal sent as
/// soon as the server says it listens is not lost.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt());
        let terminate = signal(SignalKind::terminate());
        async move {
            let (Ok(mut interrupt), Ok(mut terminate)) = (interrupt, terminate) else {
                tracing::warn!("cannot install signal handlers; stop the server with SIGKILL");
                return std::future::pending::<()>().await;
            };
            tokio::select! {
                _ = interrupt.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
                _ = terminate.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!(signal = "Ctrl-C", "shutting down");
        } else {
            std::future::pending::<()>().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::routing::{get, post};
    use http::header;
    use http_body_util::BodyExt;
    use mcp_core::PROBLEM_CONTENT_TYPE;
    use tower::ServiceExt;

    fn app() -> impl Service<
        Request,
        Response = Response,
        Error = std::convert::Infallible,
        Future: Send + 'static,
    > + Clone {
        let routes = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/echo",
                post(|body: axum::body::Bytes| async move { body.len().to_string() }),
            )
            .route(
                "/panic",
                get(|| async {
                    if true {
                        panic!("secret internal detail");
                    }
                    "unreachable"
                }),
            )
            .route("/stuck", get(std::future::pending::<&'static str>));
        spine(routes, SpineSettings::new(16, Duration::from_millis(50)))
    }

    async fn send(request: Request) -> (http::StatusCode, http::HeaderMap, serde_json::Value) {
        let response = app().oneshot(request).await.unwrap();
        let (parts, body) = response.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn get_request(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    /// Every response is counted by route template (not the raw path),
    /// method and status, and a refusal by its problem code.
    #[test]
    fn responses_are_counted_by_route_method_and_status() {
        use metrics_util::debugging::{DebugValue, DebuggingRecorder};
        let recorder = DebuggingRecorder::new();
        let snapshotter = recorder.snapshotter();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        metrics::with_local_recorder(&recorder, || {
            runtime.block_on(async {
                let routes = Router::new()
                    .route("/items/{id}", get(|| async { "ok" }))
                    .route(
                        "/refuse",
                        get(|| async { Problem::unauthorized(code::INVALID_TOKEN, "no") }),
                    );
                let app = spine(routes, SpineSettings::new(16, Duration::from_secs(5)));
                for path in ["/items/1", "/items/2", "/refuse", "/nope"] {
                    app.clone().oneshot(get_request(path)).await.unwrap();
                }
            })
        });
        let mut counted = std::collections::BTreeMap::new();
        for (key, _, _, value) in snapshotter.snapshot().into_vec() {
            let key = key.key();
            let labels: Vec<String> = key
                .labels()
                .map(|l| format!("{}={}", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => n,
                DebugValue::Histogram(samples) => samples.len() as u64,
                DebugValue::Gauge(_) => continue,
            };
            counted.insert(format!("{} {}", key.name(), labels.join(",")), value);
        }
        let want = |name: &str| counted.get(name).copied();
        assert_eq!(
            want("http_requests_total route=/items/{id},method=GET,status=200"),
            Some(2),
            "{counted:?}"
        );
        assert_eq!(
            want("http_request_duration_seconds route=/items/{id},method=GET,status=200"),
            Some(2)
        );
        assert_eq!(
            want("http_requests_total route=/refuse,method=GET,status=401"),
            Some(1)
        );
        assert_eq!(
            want("http_requests_total route=unmatched,method=GET,status=404"),
            Some(1)
        );
        assert_eq!(want("auth_failures_total code=invalid_token"), Some(1));
    }

    #[tokio::test]
    async fn unknown_route_is_a_404_problem_with_security_headers() {
        let (status, headers, body) = send(get_request("/nope")).await;
        assert_eq!(status, 404);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(body["code"], "not_found");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert!(headers.contains_key(X_REQUEST_ID));
    }

    #[tokio::test]
    async fn wrong_method_is_a_405_problem_keeping_allow() {
        let request = Request::delete("/ok").body(Body::empty()).unwrap();
        let (status, headers, body) = send(request).await;
        assert_eq!(status, 405);
        assert_eq!(body["code"], "method_not_allowed");
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        let response = app()
            .oneshot(Request::delete("/ok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(
            response
                .extensions()
                .get::<mcp_core::ProblemCode>()
                .map(|c| c.as_str()),
            Some("method_not_allowed")
        );
        assert!(headers[header::ALLOW].to_str().unwrap().contains("GET"));
    }

    #[tokio::test]
    async fn a_panic_is_a_bland_500() {
        let (status, headers, body) = send(get_request("/panic")).await;
        assert_eq!(status, 500);
        assert_eq!(body["code"], "internal");
        assert!(!body.to_string().contains("secret"));
        assert_eq!(headers["x-frame-options"], "DENY");
    }

    #[tokio::test]
    async fn a_stuck_request_is_cut_by_the_timeout() {
        let (status, _, body) = send(get_request("/stuck")).await;
        assert_eq!(status, 503);
        assert_eq!(body["code"], "timeout");
    }

    #[tokio::test]
    async fn body_limit_admits_exactly_the_limit() {
        let at_limit = Request::post("/echo")
            .body(Body::from(vec![b'a'; 16]))
            .unwrap();
        let (status, _, body) = send(at_limit).await;
        assert_eq!(status, 200);
        assert_eq!(body, 16);

        let over = Request::post("/echo")
            .body(Body::from(vec![b'a'; 17]))
            .unwrap();
        let (status, headers, body) = send(over).await;
        assert_eq!(status, 413);
        assert_eq!(headers[header::CONTENT_TYPE], PROBLEM_CONTENT_TYPE);
        assert_eq!(body["code"], "payload_too_large");
        assert_eq!(body["limit"], 16);
    }

    #[tokio::test]
    async fn an_oversized_stream_without_length_is_also_413() {
        let chunks = futures_chunks(vec![vec![b'a'; 10], vec![b'a'; 10]]);
        let request = Request::post("/echo").body(chunks).unwrap();
        let (status, _, body) = send(request).await;
        assert_eq!(status, 413);
        assert_eq!(body["code"], "payload_too_large");
    }

    fn futures_chunks(chunks: Vec<Vec<u8>>) -> Body {
        Body::from_stream(futures_util::stream::iter(
            chunks
                .into_iter()
                .map(|c| Ok::<_, std::io::Error>(bytes::Bytes::from(c))),
        ))
    }

    #[tokio::test]
    async fn sane_request_ids_are_kept_and_others_replaced() {
        let mut request = get_request("/ok");
        request
            .headers_mut()
            .insert(X_REQUEST_ID, HeaderValue::from_static("abc-123.X_y"));
        let (_, headers, _) = send(request).await;
        assert_eq!(headers[X_REQUEST_ID], "abc-123.X_y");

        let long = "a".repeat(129);
        for bad in ["has space", "<script>", long.as_str(), "a\"b"] {
            let mut request = get_request("/ok");
            request
                .headers_mut()
                .insert(X_REQUEST_ID, HeaderValue::from_str(bad).unwrap());
            let (_, headers, _) = send(request).await;
            let id = headers[X_REQUEST_ID].to_str().unwrap();
            assert_ne!(id, bad);
            assert!(uuid::Uuid::parse_str(id).is_ok(), "{id}");
        }

        let mut request = get_request("/ok");
        request
            .headers_mut()
            .append(X_REQUEST_ID, HeaderValue::from_static("one"));
        request
            .headers_mut()
            .append(X_REQUEST_ID, HeaderValue::from_static("two"));
        let (_, headers, _) = send(request).await;
        assert!(uuid::Uuid::parse_str(headers[X_REQUEST_ID].to_str().unwrap()).is_ok());
    }
}
