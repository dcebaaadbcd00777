//! [`RateLimiter`]: the limiter without HTTP.

use std::sync::Arc;
use std::time::Duration;

use crate::backend::{BackendError, RateLimitBackend};
use crate::decide::{Outcome, Settings, Shared, outcome};
use crate::failure_policy::FailurePolicy;
use crate::key::RateKey;
use crate::quota::{Decision, Policy};

/// The limiter without HTTP: for WebSocket messages and other events.
///
/// ```
/// use std::time::Duration;
/// use mcp_ratelimit::{InMemoryBackend, Policy, Quota, RateKey, RateLimiter};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let limiter = RateLimiter::new(
///     InMemoryBackend::new(),
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
    pub fn new(backend: impl RateLimitBackend, policy: Policy) -> Self {
        RateLimiter {
            shared: Settings::new(backend, policy).build(),
        }
    }

    /// What to do when the backend fails (default: let events through).
    /// Applies to this limiter (and clones made from it afterwards), even if
    /// it has been cloned before: clones are independent values.
    ///
    /// ```
    /// use mcp_ratelimit::{FailurePolicy, InMemoryBackend, Policy, RateLimiter};
    ///
    /// let ws = RateLimiter::new(InMemoryBackend::new(), Policy::new("ws", "1000/60s".parse().unwrap()));
    /// let strict = ws.clone().on_failure(FailurePolicy::Closed);
    /// # let _ = (ws, strict);
    /// ```
    #[must_use]
    pub fn on_failure(mut self, failure: impl Into<FailurePolicy>) -> Self {
        // Copy on write: a clone sharing the state keeps its own policy.
        Arc::make_mut(&mut self.shared).failure = failure.into();
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

    /// The HTTP answer to a refused `decision` of this limiter: `429
    /// rate_limited` naming the policy, with `Retry-After` and the
    /// rate-limit headers, as the layers answer (a decision from
    /// [`check`](Self::check) is already counted).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mcp_ratelimit::{InMemoryBackend, Policy, Quota, RateKey, RateLimiter};
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let limiter = RateLimiter::new(
    ///     InMemoryBackend::new(),
    ///     Policy::new("tool:search", Quota::per(1, Duration::from_secs(60)).unwrap()),
    /// );
    /// let key = RateKey::text("user-1");
    /// assert!(limiter.check(&key).await.unwrap().allowed);
    /// let refused = limiter.check(&key).await.unwrap();
    /// let response: http::Response<bytes::Bytes> = limiter.refusal(&refused);
    /// assert_eq!(response.status(), 429);
    /// assert!(response.headers().contains_key("retry-after"));
    /// # }
    /// ```
    pub fn refusal<B: From<bytes::Bytes>>(&self, decision: &Decision) -> http::Response<B> {
        self.shared.refusal(decision)
    }

    /// Writes the rate-limit headers of `decision` into `headers`.
    pub fn write_headers(&self, headers: &mut http::HeaderMap, decision: &Decision) {
        self.shared.apply(headers, decision);
    }
}
