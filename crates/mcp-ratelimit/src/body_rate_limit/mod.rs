//! [`BodyRateLimitLayer`]: limits requests keyed by a field of their JSON
//! body.

use std::fmt;
use std::sync::Arc;

use tower_layer::Layer;

use crate::backend::RateLimitBackend;
use crate::decide::Settings;
use crate::failure_policy::FailurePolicy;
use crate::headers::HeaderStyle;
use crate::key::JsonBodyField;
use crate::quota::Policy;

mod service;

pub use service::BodyRateLimit;

/// Like [`RateLimitLayer`](crate::RateLimitLayer), keyed by a field of the JSON body (the login
/// policy keys on the e-mail address).
///
/// The body is buffered, up to `max_buffer` bytes (64 KiB by default; a
/// larger body is refused `413`), read for the field, and handed on to the
/// service intact. Put it inside the server's body limit.
///
/// ```
/// use mcp_ratelimit::{BodyRateLimitLayer, FailurePolicy, InMemoryBackend, JsonBodyField, PeerIp, Policy};
///
/// let login = BodyRateLimitLayer::new(
///     InMemoryBackend::new(),
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
    pub fn new(backend: impl RateLimitBackend, policy: Policy, field: JsonBodyField) -> Self {
        BodyRateLimitLayer {
            settings: Settings::new(backend, policy),
            field: Arc::new(field),
            max_buffer: 64 * 1024,
        }
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

    /// The most bytes buffered.
    #[must_use]
    pub fn max_buffer(mut self, bytes: usize) -> Self {
        self.max_buffer = bytes;
        self
    }
}

impl fmt::Debug for BodyRateLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BodyRateLimitLayer")
            .field("settings", &self.settings)
            .field("field", &self.field)
            .field("max_buffer", &self.max_buffer)
            .finish()
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
