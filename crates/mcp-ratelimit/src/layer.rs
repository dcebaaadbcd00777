//! The tower layers: [`RateLimitLayer`], [`BodyRateLimitLayer`] and
//! [`FailureLimitLayer`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, Request, Response};
use http_body::Body;
use http_body_util::BodyExt;
use mcp_core::Problem;
use tower_layer::Layer;
use tower_service::Service;

use crate::backend::{BackendError, Check, InMemoryBackend, RateLimitBackend};
use crate::key::{JsonBodyField, KeyExtractor, PeerIp, RateKey, RequestInfo, keyless};
use crate::quota::{Decision, Policy, ceil_secs};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
type Skip = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;
type Attempts = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;
type Counts = Arc<dyn Fn(http::StatusCode, &http::Extensions) -> bool + Send + Sync>;

/// What to do when the backend cannot decide (Redis down, cap reached).
/// Always logged and counted (`ratelimit_backend_errors_total`).
#[derive(Clone, Debug, Default)]
pub enum FailurePolicy {
    /// Let the request through unlimited (the original design's behaviour).
    #[default]
    Open,
    /// Answer `503 unavailable`.
    Closed,
    /// Decide with this in-process backend instead (per-replica limits).
    Fallback(Arc<InMemoryBackend>),
}

/// Which rate-limit headers to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeaderStyle {
    /// `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` (on by
    /// default).
    pub standard: bool,
    /// The IETF draft's structured `RateLimit-Policy: "api";q=100;w=60`
    /// and `RateLimit: "api";r=42;t=17`.
    pub draft: bool,
    /// `X-RateLimit-Limit`, `X-RateLimit-Remaining`, `X-RateLimit-Reset`.
    pub legacy: bool,
}

impl Default for HeaderStyle {
    fn default() -> Self {
        HeaderStyle {
            standard: true,
            draft: false,
            legacy: false,
        }
    }
}

const RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
const RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
const RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");
const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
const X_LIMIT: HeaderName = HeaderName::from_static("x-ratelimit-limit");
const X_REMAINING: HeaderName = HeaderName::from_static("x-ratelimit-remaining");
const X_RESET: HeaderName = HeaderName::from_static("x-ratelimit-reset");

/// `0..=10_000` as header values backed by static memory, so putting one on
/// a response is a copy, not an allocation or a reference count.
fn small_numbers() -> &'static [HeaderValue] {
    static NUMBERS: std::sync::OnceLock<Vec<HeaderValue>> = std::sync::OnceLock::new();
    NUMBERS.get_or_init(|| {
        // One string for all of them, kept for the life of the process.
        let text: &'static str = Box::leak(
            (0..=10_000u32)
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
                .into_boxed_str(),
        );
        text.split(' ').map(HeaderValue::from_static).collect()
    })
}

/// What a limiter is configured with: a plain value. A layer keeps one and
/// makes its services' [`Shared`] state from it in `Layer::layer`, so a
/// setting made on any copy, at any time before that, applies to the
/// services that copy makes, and nothing set can be lost.
#[derive(Clone)]
struct Settings {
    backend: Arc<dyn RateLimitBackend>,
    policy: Policy,
    failure: FailurePolicy,
    style: HeaderStyle,
    skip: Option<Skip>,
}

impl Settings {
    fn new(backend: Arc<dyn RateLimitBackend>, policy: Policy) -> Settings {
        Settings {
            backend,
            policy,
            failure: FailurePolicy::Open,
            style: HeaderStyle::default(),
            skip: None,
        }
    }

    fn build(&self) -> Arc<Shared> {
        Arc::new(Shared::new(self))
    }
}

/// Everything a limiter of one policy shares between its services.
#[derive(Clone)]
struct Shared {
    backend: Arc<dyn RateLimitBackend>,
    policy: Policy,
    failure: FailurePolicy,
    style: HeaderStyle,
    skip: Option<Skip>,
    /// Header values of small numbers, shared by every limiter.
    numbers: &'static [HeaderValue],
    policy_header: HeaderValue,
    allowed: metrics::Counter,
    limited: metrics::Counter,
    errors: metrics::Counter,
}

impl Shared {
    fn new(settings: &Settings) -> Shared {
        let policy = settings.policy.clone();
        let quota = policy.quota();
        let numbers = small_numbers();
        let policy_header = HeaderValue::from_str(&format!(
            "\"{}\";q={};w={}",
            policy.name(),
            quota.limit(),
            ceil_secs(quota.period())
        ))
        .unwrap_or_else(|_| HeaderValue::from_static("\"default\""));
        let name = policy.name().to_owned();
        Shared {
            backend: settings.backend.clone(),
            failure: settings.failure.clone(),
            style: settings.style,
            skip: settings.skip.clone(),
            numbers,
            policy_header,
            allowed: metrics::counter!("ratelimit_decisions_total", "policy" => name.clone(), "outcome" => "allowed"),
            limited: metrics::counter!("ratelimit_decisions_total", "policy" => name.clone(), "outcome" => "limited"),
            errors: metrics::counter!("ratelimit_backend_errors_total", "policy" => name),
            policy,
        }
    }

    fn number(&self, n: u64) -> HeaderValue {
        usize::try_from(n)
            .ok()
            .and_then(|i| self.numbers.get(i))
            .cloned()
            .unwrap_or_else(|| HeaderValue::from(n))
    }

    /// Writes the headers of `decision`, unless an inner limiter already
    /// wrote headers with fewer requests left (read back from whichever
    /// remaining-header it wrote).
    fn apply(&self, headers: &mut HeaderMap, decision: &Decision) {
        if let Some(inner) = written_remaining(headers)
            && inner <= decision.remaining
        {
            return;
        }
        let limit = self.number(u64::from(decision.limit));
        let remaining = self.number(u64::from(decision.remaining));
        let reset = self.number(decision.reset_seconds());
        if self.style.standard {
            headers.insert(RATELIMIT_LIMIT, limit.clone());
            headers.insert(RATELIMIT_REMAINING, remaining.clone());
            headers.insert(RATELIMIT_RESET, reset.clone());
        }
        if self.style.legacy {
            headers.insert(X_LIMIT, limit);
            headers.insert(X_REMAINING, remaining);
            headers.insert(X_RESET, reset);
        }
        if self.style.draft {
            headers.insert(RATELIMIT_POLICY, self.policy_header.clone());
            if let Ok(value) = HeaderValue::from_str(&format!(
                "\"{}\";r={};t={}",
                self.policy.name(),
                decision.remaining,
                decision.reset_seconds()
            )) {
                headers.insert(RATELIMIT, value);
            }
        }
    }

    fn limited_response<B: From<Bytes>>(&self, decision: &Decision) -> Response<B> {
        self.limited.increment(1);
        let retry = decision.retry_after_seconds().unwrap_or(1);
        let mut response: Response<B> = Problem::rate_limited(retry)
            .with_extension("policy", self.policy.name())
            .into_response();
        self.apply(response.headers_mut(), decision);
        response
    }

    fn unavailable<B: From<Bytes>>(&self) -> Response<B> {
        Problem::unavailable("rate limiting is unavailable").into_response()
    }

    fn log_error(&self, error: &BackendError) {
        self.errors.increment(1);
        tracing::warn!(policy = self.policy.name(), %error, "rate limit backend failed");
    }
}

/// The remaining count an inner limiter wrote, in any style.
fn written_remaining(headers: &HeaderMap) -> Option<u32> {
    if headers.is_empty() {
        return None;
    }
    let number = |name: &HeaderName| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok())
    };
    number(&RATELIMIT_REMAINING)
        .or_else(|| number(&X_REMAINING))
        .or_else(|| {
            let value = headers.get(&RATELIMIT)?.to_str().ok()?;
            value
                .split(';')
                .find_map(|part| part.trim().strip_prefix("r="))
                .and_then(|r| r.parse().ok())
        })
}

/// What the limiter concluded before calling the service.
enum Verdict<B> {
    /// Call the service; then add these headers (none when unlimited).
    Pass(Option<Decision>),
    /// Answer this instead.
    Stop(Response<B>),
}

/// What a backend's answer comes to under the failure policy.
enum Outcome {
    /// Decided, allowed or not.
    Decided(Decision),
    /// The backend failed; let the event through unlimited.
    Unlimited,
    /// The backend failed; refuse.
    Unavailable(BackendError),
}

/// Applies the failure policy to a backend's answer (logging and counting a
/// failure); `None` means "ask the fallback backend".
fn settle(shared: &Shared, result: Result<Decision, BackendError>) -> Option<Outcome> {
    match result {
        Ok(decision) => Some(Outcome::Decided(decision)),
        Err(error) => {
            shared.log_error(&error);
            match &shared.failure {
                FailurePolicy::Open => Some(Outcome::Unlimited),
                FailurePolicy::Closed => Some(Outcome::Unavailable(error)),
                FailurePolicy::Fallback(_) => None,
            }
        }
    }
}

/// Which backend decided: the one to refund.
#[derive(Clone, Copy, Debug)]
enum Decider {
    Primary,
    Fallback,
}

impl Shared {
    fn decider(&self, decider: Decider) -> &dyn RateLimitBackend {
        match (decider, &self.failure) {
            (Decider::Fallback, FailurePolicy::Fallback(fallback)) => &**fallback,
            _ => &*self.backend,
        }
    }
}

/// Whether one more request for `key` would pass, without counting it,
/// following the failure policy (fallback included).
async fn peeked(shared: &Shared, key: &RateKey) -> Outcome {
    let result = shared.backend.peek(&shared.policy, key).decision().await;
    if let Some(outcome) = settle(shared, result) {
        return outcome;
    }
    let FailurePolicy::Fallback(fallback) = &shared.failure else {
        return Outcome::Unlimited;
    };
    match fallback.peek(&shared.policy, key).decision().await {
        Ok(decision) => Outcome::Decided(decision),
        Err(_) => Outcome::Unlimited,
    }
}

/// Counts one unit for `key` without waiting for the answer: now when the
/// backend is in process, else from a task (following the failure policy
/// either way). For a failure that no reservation was made for.
fn charge(shared: Arc<Shared>, key: RateKey) {
    let pending = match shared.backend.check(&shared.policy, &key, 1) {
        Check::Ready(result) => {
            if settle(&shared, result).is_none()
                && let FailurePolicy::Fallback(fallback) = &shared.failure
            {
                // In process: counted as it is asked.
                let _ = fallback.check(&shared.policy, &key, 1);
            }
            false
        }
        Check::Pending(_) => true,
    };
    if pending && let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            let _ = outcome(&shared, &key).await;
        });
    }
}

/// Decides for `key`, following the failure policy (fallback included).
async fn outcome(shared: &Shared, key: &RateKey) -> (Outcome, Decider) {
    let result = shared
        .backend
        .check(&shared.policy, key, 1)
        .decision()
        .await;
    if let Some(outcome) = settle(shared, result) {
        return (outcome, Decider::Primary);
    }
    fallback_outcome(shared, key).await
}

/// Decides for `key` on the fallback backend, the primary having failed
/// (already logged and counted by [`settle`]).
async fn fallback_outcome(shared: &Shared, key: &RateKey) -> (Outcome, Decider) {
    let FailurePolicy::Fallback(fallback) = &shared.failure else {
        return (Outcome::Unlimited, Decider::Primary);
    };
    match fallback.check(&shared.policy, key, 1).decision().await {
        Ok(decision) => (Outcome::Decided(decision), Decider::Fallback),
        // The in-process backend always decides (past its cap, in its
        // overflow bucket); were it ever to fail, failing open is what a
        // fallback is for.
        Err(_) => (Outcome::Unlimited, Decider::Fallback),
    }
}

/// The HTTP form of an outcome, counted.
fn verdict<B: From<Bytes>>(shared: &Shared, outcome: Outcome) -> Verdict<B> {
    match outcome {
        Outcome::Decided(decision) if decision.allowed => {
            shared.allowed.increment(1);
            Verdict::Pass(Some(decision))
        }
        Outcome::Decided(decision) => Verdict::Stop(shared.limited_response(&decision)),
        Outcome::Unlimited => Verdict::Pass(None),
        Outcome::Unavailable(_) => Verdict::Stop(shared.unavailable()),
    }
}

/// Decides for `key` and says what to do with the request.
async fn decide<B: From<Bytes>>(shared: &Shared, key: &RateKey) -> Verdict<B> {
    verdict(shared, outcome(shared, key).await.0)
}

/// Limits requests under one [`Policy`], keyed by a [`KeyExtractor`], on a
/// [`RateLimitBackend`].
///
/// Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining`
/// and `RateLimit-Reset` (seconds; other styles with
/// [`headers`](Self::headers)); a refused request is a `429` problem with
/// `Retry-After`. When limiters are stacked, the response carries the
/// headers of the one with fewer requests left.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use http::{Request, Response};
/// use mcp_ratelimit::{InMemoryBackend, Policy, Quota, RateLimitLayer, RateKey};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = Policy::new("api", Quota::per(1, Duration::from_secs(60)).unwrap());
/// let layer = RateLimitLayer::new(Arc::new(InMemoryBackend::new()), policy)
///     .key(|_: &mcp_ratelimit::RequestInfo<'_>| Some(RateKey::text("everyone")));
/// let service = layer.layer(service_fn(|_req: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(bytes::Bytes::new()))
/// }));
/// let first = service.clone().oneshot(Request::new(())).await.unwrap();
/// assert_eq!(first.headers()["ratelimit-remaining"], "0");
/// let second = service.oneshot(Request::new(())).await.unwrap();
/// assert_eq!(second.status(), 429);
/// assert_eq!(second.headers()["retry-after"], "60");
/// # }
/// ```
///
/// The layer is a plain value: clone it, configure the clone, and each
/// applies its own settings (they are read when [`Layer::layer`] runs):
///
/// ```
/// use std::sync::Arc;
/// use mcp_ratelimit::{FailurePolicy, InMemoryBackend, Policy, RateLimitLayer};
///
/// let api = RateLimitLayer::new(Arc::new(InMemoryBackend::new()), Policy::new("api", "100/60s".parse().unwrap()));
/// let strict = api.clone().on_failure(FailurePolicy::Closed);
/// # let _ = (api, strict);
/// ```
#[derive(Clone)]
pub struct RateLimitLayer {
    settings: Settings,
    key: Arc<dyn KeyExtractor>,
}

impl RateLimitLayer {
    /// Limits `policy` on `backend`, keyed by the socket peer.
    pub fn new(backend: Arc<dyn RateLimitBackend>, policy: Policy) -> Self {
        RateLimitLayer {
            settings: Settings::new(backend, policy),
            key: Arc::new(PeerIp),
        }
    }

    /// Keys requests with `key` (default: the socket peer).
    #[must_use]
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// What to do when the backend fails (default: let requests through).
    #[must_use]
    pub fn on_failure(mut self, failure: FailurePolicy) -> Self {
        self.settings.failure = failure;
        self
    }

    /// Which headers to send.
    #[must_use]
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.settings.style = style;
        self
    }

    /// Requests for which `skip` is true are not limited (and get no
    /// headers).
    #[must_use]
    pub fn skip(mut self, skip: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.settings.skip = Some(Arc::new(skip));
        self
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimit<S>;

    fn layer(&self, inner: S) -> RateLimit<S> {
        RateLimit {
            inner,
            shared: self.settings.build(),
            key: self.key.clone(),
        }
    }
}

/// The service made by [`RateLimitLayer`].
#[derive(Clone)]
pub struct RateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    key: Arc<dyn KeyExtractor>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for RateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let info = RequestInfo::of(&request);
        if self.shared.skip.as_ref().is_some_and(|skip| skip(&info)) {
            return ResponseFuture::inner(self.inner.call(request), None, self.shared.clone());
        }
        let key = self.key.extract(&info).unwrap_or_else(keyless);
        // In process, the decision is already made: no allocation. Over the
        // network the (lazy, unpolled) check is dropped and made again
        // inside a boxed future that owns what it needs.
        // A primary that failed at once is not asked again: the fallback
        // decides (the failure is logged and counted once).
        let failed = match self.shared.backend.check(&self.shared.policy, &key, 1) {
            Check::Ready(result) => match settle(&self.shared, result) {
                Some(outcome) => {
                    return match verdict(&self.shared, outcome) {
                        Verdict::Pass(decision) => ResponseFuture::inner(
                            self.inner.call(request),
                            decision,
                            self.shared.clone(),
                        ),
                        Verdict::Stop(response) => ResponseFuture::ready(response),
                    };
                }
                None => true,
            },
            Check::Pending(_) => false,
        };
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::boxed(Box::pin(async move {
            let answer = if failed {
                verdict(&shared, fallback_outcome(&shared, &key).await.0)
            } else {
                decide(&shared, &key).await
            };
            match answer {
                Verdict::Pass(decision) => {
                    let mut response = inner.call(request).await?;
                    if let Some(decision) = decision {
                        shared.apply(response.headers_mut(), &decision);
                    }
                    Ok(response)
                }
                Verdict::Stop(response) => Ok(response),
            }
        }))
    }
}

pin_project_lite::pin_project! {
    /// Response future of the limiters.
    pub struct ResponseFuture<F, B, E> {
        #[pin]
        inner: Option<F>,
        decision: Option<Decision>,
        shared: Option<Arc<Shared>>,
        ready: Option<Response<B>>,
        boxed: Option<BoxFuture<Result<Response<B>, E>>>,
    }
}

impl<F, B, E> ResponseFuture<F, B, E> {
    fn inner(future: F, decision: Option<Decision>, shared: Arc<Shared>) -> Self {
        ResponseFuture {
            inner: Some(future),
            decision,
            shared: Some(shared),
            ready: None,
            boxed: None,
        }
    }

    fn ready(response: Response<B>) -> Self {
        ResponseFuture {
            inner: None,
            decision: None,
            shared: None,
            ready: Some(response),
            boxed: None,
        }
    }

    fn boxed(future: BoxFuture<Result<Response<B>, E>>) -> Self {
        ResponseFuture {
            inner: None,
            decision: None,
            shared: None,
            ready: None,
            boxed: Some(future),
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, B, E>
where
    F: Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.ready.take() {
            return Poll::Ready(Ok(response));
        }
        if let Some(boxed) = this.boxed.as_mut() {
            return boxed.as_mut().poll(cx);
        }
        let Some(inner) = this.inner.as_pin_mut() else {
            return Poll::Pending;
        };
        let mut response = ready!(inner.poll(cx))?;
        if let (Some(decision), Some(shared)) = (this.decision.take(), this.shared.as_ref()) {
            shared.apply(response.headers_mut(), &decision);
        }
        Poll::Ready(Ok(response))
    }
}

/// Like [`RateLimitLayer`], keyed by a field of the JSON body (the login
/// policy keys on the e-mail address).
///
/// The body is buffered, up to `max_buffer` bytes (64 KiB by default; a
/// larger body is refused `413`), read for the field, and handed on to the
/// service intact. Put it inside the server's body limit.
///
/// ```
/// use std::sync::Arc;
/// use mcp_ratelimit::{BodyRateLimitLayer, FailurePolicy, InMemoryBackend, JsonBodyField, PeerIp, Policy};
///
/// let login = BodyRateLimitLayer::new(
///     Arc::new(InMemoryBackend::new()),
///     Policy::new("auth", "10/15m".parse().unwrap()),
///     // Every body the layer buffers is read for the e-mail.
///     JsonBodyField::new("email", 64 * 1024, PeerIp),
/// )
/// .on_failure(FailurePolicy::Closed);
/// # let _ = login;
/// ```
#[derive(Clone)]
pub struct BodyRateLimitLayer {
    settings: Settings,
    field: Arc<JsonBodyField>,
    max_buffer: usize,
}

impl BodyRateLimitLayer {
    /// Limits `policy` on `backend`, keyed by `field`.
    pub fn new(backend: Arc<dyn RateLimitBackend>, policy: Policy, field: JsonBodyField) -> Self {
        BodyRateLimitLayer {
            settings: Settings::new(backend, policy),
            field: Arc::new(field),
            max_buffer: 64 * 1024,
        }
    }

    /// What to do when the backend fails (default: let requests through).
    #[must_use]
    pub fn on_failure(mut self, failure: FailurePolicy) -> Self {
        self.settings.failure = failure;
        self
    }

    /// Which headers to send.
    #[must_use]
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.settings.style = style;
        self
    }

    /// The most bytes buffered.
    #[must_use]
    pub fn max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes;
        self
    }
}

impl<S> Layer<S> for BodyRateLimitLayer {
    type Service = BodyRateLimit<S>;

    fn layer(&self, inner: S) -> BodyRateLimit<S> {
        BodyRateLimit {
            inner,
            shared: self.settings.build(),
            field: self.field.clone(),
            max_buffer: self.max_buffer,
        }
    }
}

/// The service made by [`BodyRateLimitLayer`].
#[derive(Clone)]
pub struct BodyRateLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    field: Arc<JsonBodyField>,
    max_buffer: usize,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for BodyRateLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Body + From<Bytes> + Send + 'static,
    ReqBody::Data: Send,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let (shared, field, max_buffer) =
            (self.shared.clone(), self.field.clone(), self.max_buffer);
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let limited = http_body_util::Limited::new(body, max_buffer);
            let bytes = match limited.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(error) => {
                    let too_large = error
                        .downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some();
                    return Ok(if too_large {
                        Problem::payload_too_large(Some(max_buffer)).into_response()
                    } else {
                        tracing::debug!(%error, "the request body could not be read");
                        Problem::new(http::StatusCode::BAD_REQUEST, mcp_core::code::BAD_REQUEST)
                            .with_detail("the request body could not be read")
                            .into_response()
                    });
                }
            };
            let key = field.key_of_body(&bytes).or_else(|| {
                let request = Request::from_parts(parts.clone(), ());
                field.fallback.extract(&RequestInfo::of(&request))
            });
            let key = key.unwrap_or_else(keyless);
            let request = Request::from_parts(parts, ReqBody::from(bytes));
            match decide(&shared, &key).await {
                Verdict::Pass(decision) => {
                    let mut response = inner.call(request).await?;
                    if let Some(decision) = decision {
                        shared.apply(response.headers_mut(), &decision);
                    }
                    Ok(response)
                }
                Verdict::Stop(response) => Ok(response),
            }
        })
    }
}

/// Counts failed attempts per key (the client IP by default) and, once a
/// key has used up its quota, answers `429` **before** the service runs, so
/// credentials cannot be brute-forced: the auth-failures policy.
///
/// Atomic: each attempt **reserves** one unit of the quota before the
/// service runs and is refused if none is left; once the response is known
/// the unit is kept if the attempt failed and
/// [refunded](RateLimitBackend::refund) otherwise (also when the service
/// errs, or the request is dropped before it answers). So however many
/// guesses are sent at once, at most the quota of them reach the service,
/// and at most that many attempts from one key are in flight together. The
/// refund is never waited for: it is made at once by an in-process backend
/// and from a background task over the network, so the response is not
/// delayed by it.
///
/// Only requests that can fail need a reservation: say which with
/// [`attempts`](Self::attempts) (by default every request is an attempt).
/// Any other request is only **looked at** ([`peek`](RateLimitBackend::peek),
/// nothing counted): refused while the key is locked out, never refused
/// for being one too many in flight, so a busy address without credentials
/// is not limited by the failure quota. Should one of them fail after all,
/// the failure is counted once its response is known (not atomically).
///
/// Which responses count is up to `counts`, given the response head; a
/// server counts `401`s for refused credentials, not for missing ones:
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mcp_core::ProblemCode;
/// use mcp_ratelimit::{FailureLimitLayer, InMemoryBackend, Policy, Quota};
///
/// let layer = FailureLimitLayer::new(
///     Arc::new(InMemoryBackend::new()),
///     Policy::new("auth-failures", Quota::per(30, Duration::from_secs(60)).unwrap()),
///     |status: http::StatusCode, extensions: &http::Extensions| {
///         status == 401
///             && extensions
///                 .get::<ProblemCode>()
///                 .is_none_or(|code| code.as_str() != "missing_credentials")
///     },
/// );
/// # let _ = layer;
/// ```
#[derive(Clone)]
pub struct FailureLimitLayer {
    settings: Settings,
    key: Arc<dyn KeyExtractor>,
    counts: Counts,
    attempts: Option<Attempts>,
}

impl FailureLimitLayer {
    /// Counts responses for which `counts` is true, keyed by the socket peer.
    pub fn new(
        backend: Arc<dyn RateLimitBackend>,
        policy: Policy,
        counts: impl Fn(http::StatusCode, &http::Extensions) -> bool + Send + Sync + 'static,
    ) -> Self {
        FailureLimitLayer {
            settings: Settings::new(backend, policy),
            key: Arc::new(PeerIp),
            counts: Arc::new(counts),
            attempts: None,
        }
    }

    /// Keys attempts with `key` (default: the socket peer).
    #[must_use]
    pub fn key(mut self, key: impl KeyExtractor) -> Self {
        self.key = Arc::new(key);
        self
    }

    /// Requests for which `skip` is true are neither refused nor counted.
    #[must_use]
    pub fn skip(mut self, skip: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static) -> Self {
        self.settings.skip = Some(Arc::new(skip));
        self
    }

    /// Which requests are attempts, the ones that can fail (present a
    /// credential, or log in): only they reserve a unit of the quota. The
    /// others are refused while their key is locked out and otherwise pass
    /// without being counted. Default: every request is an attempt.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mcp_ratelimit::{FailureLimitLayer, InMemoryBackend, Policy, RequestInfo};
    ///
    /// let layer = FailureLimitLayer::new(
    ///     Arc::new(InMemoryBackend::new()),
    ///     Policy::new("auth-failures", "30/60s".parse().unwrap()),
    ///     |status: http::StatusCode, _: &http::Extensions| status == 401,
    /// )
    /// .attempts(|request: &RequestInfo<'_>| {
    ///     request.headers.contains_key(http::header::AUTHORIZATION)
    ///         || request.uri.path() == "/login"
    /// });
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn attempts(
        mut self,
        attempts: impl Fn(&RequestInfo<'_>) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.attempts = Some(Arc::new(attempts));
        self
    }

    /// What to do when the backend fails (default: let requests through,
    /// uncounted).
    #[must_use]
    pub fn on_failure(mut self, failure: FailurePolicy) -> Self {
        self.settings.failure = failure;
        self
    }

    /// Which headers a `429` of this layer carries.
    #[must_use]
    pub fn headers(mut self, style: HeaderStyle) -> Self {
        self.settings.style = style;
        self
    }
}

impl<S> Layer<S> for FailureLimitLayer {
    type Service = FailureLimit<S>;

    fn layer(&self, inner: S) -> FailureLimit<S> {
        FailureLimit {
            inner,
            shared: self.settings.build(),
            key: self.key.clone(),
            counts: self.counts.clone(),
            attempts: self.attempts.clone(),
        }
    }
}

/// The service made by [`FailureLimitLayer`].
#[derive(Clone)]
pub struct FailureLimit<S> {
    inner: S,
    shared: Arc<Shared>,
    key: Arc<dyn KeyExtractor>,
    counts: Counts,
    attempts: Option<Attempts>,
}

/// A unit of a failure quota taken before the service ran: kept once the
/// attempt is known to have failed, refunded otherwise, including when the
/// request is dropped half way (so a cancelled request never costs a unit).
struct Reservation {
    shared: Arc<Shared>,
    key: RateKey,
    decider: Decider,
    armed: bool,
}

impl Reservation {
    /// The attempt failed: the unit stays used.
    fn keep(mut self) {
        self.armed = false;
        self.shared.allowed.increment(1);
    }

    /// The attempt did not fail: the unit is given back, without waiting
    /// (the drop does it: at once in process, else from a task).
    fn refund(self) {
        debug_assert!(self.armed);
        drop(self);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        // A refund that fails leaves the unit used until it refills: erring
        // on the side of limiting.
        let pending =
            match self
                .shared
                .decider(self.decider)
                .refund(&self.shared.policy, &self.key, 1)
            {
                Check::Ready(Ok(())) => false,
                Check::Ready(Err(error)) => {
                    self.shared.log_error(&error);
                    false
                }
                Check::Pending(_) => true,
            };
        // Over the network the (lazy) future borrows from here: refund from
        // a task that owns what it needs. Without a runtime the unit refills
        // on its own.
        if pending && let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let shared = self.shared.clone();
            let key = std::mem::replace(&mut self.key, keyless());
            let decider = self.decider;
            runtime.spawn(async move {
                let result = shared
                    .decider(decider)
                    .refund(&shared.policy, &key, 1)
                    .wait()
                    .await;
                if let Err(error) = result {
                    shared.log_error(&error);
                }
            });
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for FailureLimit<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Response<ResBody>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let info = RequestInfo::of(&request);
        let shared = self.shared.clone();
        let skip = shared.skip.as_ref().is_some_and(|skip| skip(&info));
        let attempt = self
            .attempts
            .as_ref()
            .is_none_or(|attempts| attempts(&info));
        let key = self.key.extract(&info).unwrap_or_else(keyless);
        let counts = self.counts.clone();
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            if skip {
                return inner.call(request).await;
            }
            if !attempt {
                // Cannot fail: only refused while locked out, never reserved.
                match peeked(&shared, &key).await {
                    Outcome::Decided(decision) if !decision.allowed => {
                        return Ok(shared.limited_response(&decision));
                    }
                    Outcome::Unavailable(_) => return Ok(shared.unavailable()),
                    Outcome::Decided(_) | Outcome::Unlimited => {}
                }
                let response = inner.call(request).await;
                if let Ok(response) = &response
                    && counts(response.status(), response.extensions())
                {
                    charge(shared, key);
                }
                return response;
            }
            // Check and count in one step: a peek first would let every
            // concurrent guess through before any of them is counted.
            let (outcome, decider) = outcome(&shared, &key).await;
            match outcome {
                Outcome::Decided(decision) if !decision.allowed => {
                    return Ok(shared.limited_response(&decision));
                }
                Outcome::Decided(_) => {}
                Outcome::Unavailable(_) => return Ok(shared.unavailable()),
                // Nothing was counted, so nothing can be kept or refunded.
                Outcome::Unlimited => return inner.call(request).await,
            }
            let reservation = Reservation {
                shared,
                key,
                decider,
                armed: true,
            };
            let response = inner.call(request).await;
            match &response {
                Ok(response) if counts(response.status(), response.extensions()) => {
                    reservation.keep();
                }
                _ => reservation.refund(),
            }
            response
        })
    }
}

/// The limiter without HTTP: for WebSocket messages and other events.
///
/// ```
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mcp_ratelimit::{InMemoryBackend, Policy, Quota, RateKey, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = RateLimiter::new(
///     Arc::new(InMemoryBackend::new()),
///     Policy::new("ws", Quota::per(1000, Duration::from_secs(60)).unwrap()),
/// );
/// let decision = limiter.check(&RateKey::text("user-1")).await.unwrap();
/// assert!(decision.allowed);
/// # }
/// ```
#[derive(Clone)]
pub struct RateLimiter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for RateLimiter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimiter")
            .field("policy", &self.shared.policy)
            .finish_non_exhaustive()
    }
}

impl RateLimiter {
    /// Limits `policy` on `backend`.
    pub fn new(backend: Arc<dyn RateLimitBackend>, policy: Policy) -> Self {
        RateLimiter {
            shared: Settings::new(backend, policy).build(),
        }
    }

    /// What to do when the backend fails (default: let events through).
    /// Applies to this limiter (and clones made from it afterwards), even if
    /// it has been cloned before: clones are independent values.
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mcp_ratelimit::{FailurePolicy, InMemoryBackend, Policy, RateLimiter};
    ///
    /// let ws = RateLimiter::new(Arc::new(InMemoryBackend::new()), Policy::new("ws", "1000/60s".parse().unwrap()));
    /// let strict = ws.clone().on_failure(FailurePolicy::Closed);
    /// # let _ = (ws, strict);
    /// ```
    #[must_use]
    pub fn on_failure(mut self, failure: FailurePolicy) -> Self {
        // Copy on write: a clone sharing the state keeps its own policy.
        Arc::make_mut(&mut self.shared).failure = failure;
        self
    }

    /// Counts one event for `key`, following the failure policy: when the
    /// backend fails, failing open admits the event (with the whole quota
    /// shown as remaining), a fallback decides in process, and failing
    /// closed returns the error, meaning "refuse". Decisions and failures
    /// are counted in the same metrics as the layers'.
    pub async fn check(&self, key: &RateKey) -> Result<Decision, BackendError> {
        let shared = &self.shared;
        match outcome(shared, key).await.0 {
            Outcome::Decided(decision) => {
                if decision.allowed {
                    shared.allowed.increment(1);
                } else {
                    shared.limited.increment(1);
                }
                Ok(decision)
            }
            Outcome::Unlimited => {
                let quota = shared.policy.quota();
                Ok(Decision {
                    allowed: true,
                    limit: quota.limit(),
                    remaining: quota.burst(),
                    reset: Duration::ZERO,
                    retry_after: None,
                })
            }
            Outcome::Unavailable(error) => Err(error),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.shared.policy
    }
}
