//! [`FailureLimitLayer`]: counts failed attempts and refuses before the
//! service runs once a key has used up its quota.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::backend::RateLimitBackend;
use crate::decide::Settings;
use crate::failure_policy::FailurePolicy;
use crate::headers::HeaderStyle;
use crate::key::{KeyExtractor, PeerIp, RateKey, RequestInfo};
use crate::quota::Policy;

mod service;

pub use service::{FailureLimit, ResponseFuture as FailureLimitFuture};

type Attempts = Arc<dyn Fn(&RequestInfo<'_>) -> bool + Send + Sync>;
type Counts = Arc<dyn Fn(http::StatusCode, &http::Extensions) -> bool + Send + Sync>;

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
/// use std::time::Duration;
/// use mcp_core::ProblemCode;
/// use mcp_ratelimit::{FailureLimitLayer, InMemoryBackend, Policy, Quota};
///
/// let layer = FailureLimitLayer::new(
///     InMemoryBackend::new(),
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
    on_lockout: Option<OnLockout>,
}

/// Told of each lock-out as it happens.
pub(crate) type OnLockout = Arc<dyn Fn(&Lockout) + Send + Sync>;

/// A key that has just been locked out: the failed attempt that took the
/// last unit of its quota (told once per lock-out, not per refusal).
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Lockout {
    /// The key (`ip:203.0.113.7`).
    pub key: RateKey,
    /// The failed request's `X-Request-Id`, if it had one.
    pub request_id: Option<http::HeaderValue>,
}

impl FailureLimitLayer {
    /// Counts responses for which `counts` is true, keyed by the socket peer.
    pub fn new(
        backend: impl RateLimitBackend,
        policy: Policy,
        counts: impl Fn(http::StatusCode, &http::Extensions) -> bool + Send + Sync + 'static,
    ) -> Self {
        FailureLimitLayer {
            settings: Settings::new(backend, policy),
            key: Arc::new(PeerIp),
            counts: Arc::new(counts),
            attempts: None,
            on_lockout: None,
        }
    }

    /// Calls `on_lockout` when a failed attempt locks its key out (for an
    /// audit trail): once per lock-out, from the request that caused it.
    ///
    /// ```
    /// use mcp_ratelimit::{FailureLimitLayer, InMemoryBackend, Lockout, Policy};
    ///
    /// let layer = FailureLimitLayer::new(
    ///     InMemoryBackend::new(),
    ///     Policy::new("auth-failures", "30/60s".parse().unwrap()),
    ///     |status: http::StatusCode, _: &http::Extensions| status == 401,
    /// )
    /// .on_lockout(|lockout: &Lockout| tracing::warn!(key = %lockout.key, "locked out"));
    /// # let _ = layer;
    /// ```
    #[must_use]
    pub fn on_lockout(mut self, on_lockout: impl Fn(&Lockout) + Send + Sync + 'static) -> Self {
        self.on_lockout = Some(Arc::new(on_lockout));
        self
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
    /// use mcp_ratelimit::{FailureLimitLayer, InMemoryBackend, Policy, RequestInfo};
    ///
    /// let layer = FailureLimitLayer::new(
    ///     InMemoryBackend::new(),
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
    pub fn on_failure(mut self, failure: impl Into<FailurePolicy>) -> Self {
        self.settings.failure = failure.into();
        self
    }

    /// Which headers a `429` of this layer carries.
    #[must_use]
    pub fn headers(mut self, style: impl Into<HeaderStyle>) -> Self {
        self.settings.style = style.into();
        self
    }
}

impl fmt::Debug for FailureLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureLimitLayer")
            .field("settings", &self.settings)
            .field("attempts", &self.attempts.is_some())
            .finish_non_exhaustive()
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
            on_lockout: self.on_lockout.clone(),
        }
    }
}
