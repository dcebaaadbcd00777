//! [`RateLimitLayer`]: limits requests per key under one policy.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::backend::RateLimitBackend;
use crate::decide::Settings;
use crate::failure_policy::FailurePolicy;
use crate::headers::HeaderStyle;
use crate::key::{KeyExtractor, PeerIp, RequestInfo};
use crate::quota::Policy;

mod future;
mod service;

pub use future::ResponseFuture;
pub use service::RateLimit;

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
/// use std::time::Duration;
/// use http::{Request, Response};
/// use mcp_ratelimit::{InMemoryBackend, Policy, Quota, RateLimitLayer, RateKey};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = Policy::new("api", Quota::per(1, Duration::from_secs(60)).unwrap());
/// let layer = RateLimitLayer::new(InMemoryBackend::new(), policy)
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
/// use mcp_ratelimit::{FailurePolicy, InMemoryBackend, Policy, RateLimitLayer};
///
/// let api = RateLimitLayer::new(InMemoryBackend::new(), Policy::new("api", "100/60s".parse().unwrap()));
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
    pub fn new(backend: impl RateLimitBackend, policy: Policy) -> Self {
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
    pub fn on_failure(mut self, failure: impl Into<FailurePolicy>) -> Self {
        self.settings.failure = failure.into();
        self
    }

    /// Which headers to send.
    #[must_use]
    pub fn headers(mut self, style: impl Into<HeaderStyle>) -> Self {
        self.settings.style = style.into();
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

impl fmt::Debug for RateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimitLayer")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
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
