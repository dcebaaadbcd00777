//! Where the counting happens: [`RateLimitBackend`], the in-process
//! [`InMemoryBackend`] on governor and (feature `redis`) the shared
//! `RedisBackend`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::key::RateKey;
use crate::quota::{Decision, Policy};

mod memory;
#[cfg(feature = "redis")]
mod redis;

pub use memory::InMemoryBackend;
#[cfg(feature = "redis")]
pub use redis::RedisBackend;

/// A boxed future of a backend's answer.
pub type BackendFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, BackendError>> + Send + 'a>>;

/// A boxed future of a decision.
pub type DecisionFuture<'a> = BackendFuture<'a, Decision>;

/// A backend's answer now (in process) or later (over the network), so the
/// in-process path allocates nothing: a [`Decision`] for
/// [`check`](RateLimitBackend::check) and [`peek`](RateLimitBackend::peek),
/// `()` for [`refund`](RateLimitBackend::refund).
pub enum Check<'a, T = Decision> {
    /// Answered.
    Ready(Result<T, BackendError>),
    /// Being answered.
    Pending(BackendFuture<'a, T>),
}

impl<T: fmt::Debug> fmt::Debug for Check<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Check::Ready(answer) => f.debug_tuple("Ready").field(answer).finish(),
            Check::Pending(_) => f.write_str("Pending(..)"),
        }
    }
}

impl<T> Check<'_, T> {
    /// Waits for the answer.
    pub async fn wait(self) -> Result<T, BackendError> {
        match self {
            Check::Ready(answer) => answer,
            Check::Pending(future) => future.await,
        }
    }
}

impl Check<'_> {
    /// Waits for the decision.
    pub async fn decision(self) -> Result<Decision, BackendError> {
        self.wait().await
    }
}

/// Why a backend could not decide.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackendError {
    /// The backend (Redis) is unreachable or failed.
    #[error("rate limit backend unavailable: {0}")]
    Unavailable(String),
}

/// Counts requests per key under a [`Policy`].
pub trait RateLimitBackend: Send + Sync + 'static {
    /// Counts `cost` requests for `key` and decides.
    fn check<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a>;

    /// Decides whether one more request for `key` would pass, without
    /// counting it.
    fn peek<'a>(&'a self, policy: &'a Policy, key: &'a RateKey) -> Check<'a>;

    /// Gives back `cost` requests that an allowed [`check`](Self::check)
    /// counted for `key`, atomically: the way to reserve first and decide
    /// afterwards whether the request counts ([`FailureLimitLayer`] reserves
    /// an attempt before the service runs and refunds it unless the attempt
    /// failed). A bucket never ends up fuller than full: in GCRA terms the
    /// theoretical arrival time moves back by `cost` emission intervals, and
    /// any time not after now means a full bucket.
    ///
    /// [`FailureLimitLayer`]: crate::FailureLimitLayer
    fn refund<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a, ()>;
}

impl<B: RateLimitBackend + ?Sized> RateLimitBackend for Arc<B> {
    fn check<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a> {
        (**self).check(policy, key, cost)
    }

    fn peek<'a>(&'a self, policy: &'a Policy, key: &'a RateKey) -> Check<'a> {
        (**self).peek(policy, key)
    }

    fn refund<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a, ()> {
        (**self).refund(policy, key, cost)
    }
}
