//! What every limiter shares: its settings, the state its services share,
//! and the one way a backend's answer becomes a decision under the failure
//! policy.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use http::Response;
use mcp_core::Problem;

use crate::backend::{BackendError, Check, RateLimitBackend};
use crate::failure_policy::FailurePolicy;
use crate::headers::{HeaderStyle, HeaderWriter};
use crate::key::{KeyError, KeyExtractor, RateKey, RequestInfo, keyless};
use crate::quota::{Decision, Policy};

pub(crate) type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
pub(crate) type Skip = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;

/// What a limiter is configured with: a plain value. A layer keeps one and
/// makes its services' [`Shared`] state from it in `Layer::layer`, so a
/// setting made on any copy, at any time before that, applies to the
/// services that copy makes, and nothing set can be lost.
#[derive(Clone)]
pub(crate) struct Settings {
    pub(crate) backend: Arc<dyn RateLimitBackend>,
    pub(crate) policy: Policy,
    pub(crate) failure: FailurePolicy,
    pub(crate) style: HeaderStyle,
    pub(crate) skip: Option<Skip>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("policy", &self.policy)
            .field("failure", &self.failure)
            .field("style", &self.style)
            .field("skip", &self.skip.is_some())
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// `backend` is kept behind one `Arc` (an `Arc` passed in is wrapped,
    /// not unwrapped: one more pointer, never a copy of the backend).
    pub(crate) fn new(backend: impl RateLimitBackend, policy: Policy) -> Settings {
        Settings {
            backend: Arc::new(backend),
            policy,
            failure: FailurePolicy::Open,
            style: HeaderStyle::default(),
            skip: None,
        }
    }

    pub(crate) fn build(&self) -> Arc<Shared> {
        Arc::new(Shared::new(self))
    }
}

/// Everything a limiter of one policy shares between its services.
#[derive(Clone)]
pub(crate) struct Shared {
    pub(crate) backend: Arc<dyn RateLimitBackend>,
    pub(crate) policy: Policy,
    pub(crate) failure: FailurePolicy,
    pub(crate) skip: Option<Skip>,
    headers: HeaderWriter,
    pub(crate) allowed: metrics::Counter,
    pub(crate) limited: metrics::Counter,
    errors: metrics::Counter,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("policy", &self.policy)
            .field("failure", &self.failure)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn new(settings: &Settings) -> Shared {
        let policy = settings.policy.clone();
        let name = policy.name().to_owned();
        Shared {
            backend: settings.backend.clone(),
            failure: settings.failure.clone(),
            skip: settings.skip.clone(),
            headers: HeaderWriter::new(settings.style, &policy),
            allowed: metrics::counter!("ratelimit_decisions_total", "policy" => name.clone(), "outcome" => "allowed"),
            limited: metrics::counter!("ratelimit_decisions_total", "policy" => name.clone(), "outcome" => "limited"),
            errors: metrics::counter!("ratelimit_backend_errors_total", "policy" => name),
            policy,
        }
    }

    /// Writes the headers of `decision` (see [`HeaderWriter::apply`]).
    pub(crate) fn apply(&self, headers: &mut http::HeaderMap, decision: &Decision) {
        self.headers.apply(headers, decision);
    }

    /// Whether `request` is left alone.
    pub(crate) fn skips(&self, request: &RequestInfo<'_>) -> bool {
        self.skip.as_ref().is_some_and(|skip| skip(request))
    }

    /// The key of `request`: the extractor's, the keyless bucket when it
    /// has none; an error when the layer is misconfigured.
    pub(crate) fn key(
        &self,
        extractor: &dyn KeyExtractor,
        request: &RequestInfo<'_>,
    ) -> Result<RateKey, KeyError> {
        Ok(extractor.extract(request)?.unwrap_or_else(keyless))
    }

    /// The loud answer to a misconfigured key: `500 internal` (nothing of
    /// the cause in the body) and an error line naming it and its fix.
    /// Never one shared bucket for every client.
    pub(crate) fn misconfigured<B: From<Bytes>>(&self, error: &KeyError) -> Response<B> {
        tracing::error!(
            policy = self.policy.name(),
            %error,
            "rate limit misconfigured: refusing the request"
        );
        Problem::internal().into_response()
    }

    pub(crate) fn limited_response<B: From<Bytes>>(&self, decision: &Decision) -> Response<B> {
        self.limited.increment(1);
        self.refusal(decision)
    }

    /// The `429` of a refused `decision`, uncounted.
    pub(crate) fn refusal<B: From<Bytes>>(&self, decision: &Decision) -> Response<B> {
        let retry = decision.retry_after_seconds().unwrap_or(1);
        let mut response: Response<B> = Problem::rate_limited(retry)
            .with_extension("policy", self.policy.name())
            .into_response();
        self.apply(response.headers_mut(), decision);
        response
    }

    pub(crate) fn unavailable<B: From<Bytes>>(&self) -> Response<B> {
        Problem::unavailable("rate limiting is unavailable").into_response()
    }

    pub(crate) fn log_error(&self, error: &BackendError) {
        self.errors.increment(1);
        tracing::warn!(policy = self.policy.name(), %error, "rate limit backend failed");
    }
}

/// What the limiter concluded before calling the service.
pub(crate) enum Verdict<B> {
    /// Call the service; then add these headers (none when unlimited).
    Pass(Option<Decision>),
    /// Answer this instead.
    Stop(Response<B>),
}

impl<B> Verdict<B> {
    /// Calls `inner` with `request` and adds the decision's headers, or
    /// answers the refusal without calling it.
    pub(crate) async fn respond<S, R>(
        self,
        shared: &Shared,
        inner: &mut S,
        request: R,
    ) -> Result<Response<B>, S::Error>
    where
        S: tower_service::Service<R, Response = Response<B>>,
    {
        match self {
            Verdict::Pass(decision) => {
                let mut response = inner.call(request).await?;
                if let Some(decision) = decision {
                    shared.apply(response.headers_mut(), &decision);
                }
                Ok(response)
            }
            Verdict::Stop(response) => Ok(response),
        }
    }
}

/// What a backend's answer comes to under the failure policy.
pub(crate) enum Outcome {
    /// Decided, allowed or not.
    Decided(Decision),
    /// The backend failed; let the event through unlimited.
    Unlimited,
    /// The backend failed; refuse.
    Unavailable(BackendError),
}

/// Applies the failure policy to a backend's answer (logging and counting a
/// failure); `None` means "ask the fallback backend".
pub(crate) fn settle(shared: &Shared, result: Result<Decision, BackendError>) -> Option<Outcome> {
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
pub(crate) enum Decider {
    /// The backend.
    Primary,
    /// The fallback of [`FailurePolicy::Fallback`].
    Fallback,
}

impl Shared {
    pub(crate) fn decider(&self, decider: Decider) -> &dyn RateLimitBackend {
        match (decider, &self.failure) {
            (Decider::Fallback, FailurePolicy::Fallback(fallback)) => &**fallback,
            _ => &*self.backend,
        }
    }
}

/// Whether one more request for `key` would pass, without counting it,
/// following the failure policy (fallback included).
pub(crate) async fn peeked(shared: &Shared, key: &RateKey) -> Outcome {
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
pub(crate) fn charge(shared: Arc<Shared>, key: RateKey) {
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
pub(crate) async fn outcome(shared: &Shared, key: &RateKey) -> (Outcome, Decider) {
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
pub(crate) async fn fallback_outcome(shared: &Shared, key: &RateKey) -> (Outcome, Decider) {
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
pub(crate) fn verdict<B: From<Bytes>>(shared: &Shared, outcome: Outcome) -> Verdict<B> {
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
pub(crate) async fn decide<B: From<Bytes>>(shared: &Shared, key: &RateKey) -> Verdict<B> {
    verdict(shared, outcome(shared, key).await.0)
}
