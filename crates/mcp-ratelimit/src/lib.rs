//! Exact GCRA rate limiting for MCP servers, in process or across replicas.
//!
//! - [`Quota`]: "N per period" (`100/60s`), never an interval between
//!   requests; [`Policy`]: a named quota.
//! - Backends behind [`RateLimitBackend`]: [`InMemoryBackend`] (GCRA on
//!   governor, idle keys evicted, a hard cap on tracked keys) and
//!   [`RedisBackend`] (feature `redis`: the same GCRA as one atomic Redis
//!   script, Redis's clock, automatic reconnection).
//! - Layers: [`RateLimitLayer`] (keyed by a [`KeyExtractor`]),
//!   [`BodyRateLimitLayer`] (keyed by a JSON body field, body handed on
//!   intact), [`FailureLimitLayer`] (counts failed attempts and refuses
//!   before the service runs), each with a [`FailurePolicy`] for a failing
//!   backend.
//! - Keys: [`PeerIp`], [`TrustedProxyIp`], [`PrincipalOrIp`], [`HeaderKey`],
//!   [`JsonBodyField`], or any closure; IPv6 grouped by /56.
//! - [`RateLimiter`]: the same decisions without HTTP (WebSocket messages).
//!
//! Decisions are counted with the `metrics` crate
//! (`ratelimit_decisions_total{policy,outcome}`,
//! `ratelimit_backend_errors_total{policy}`); install the recorder before
//! building layers.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod backend;
mod key;
mod layer;
mod quota;
#[cfg(feature = "redis")]
mod redis_backend;

pub use backend::{BackendError, Check, DecisionFuture, InMemoryBackend, RateLimitBackend};
pub use key::{
    ClientAddr, ForwardedHeader, ForwardedHeaderError, HeaderKey, JsonBodyField, KeyExtractor,
    PeerIp, PrincipalOrIp, RateKey, RequestInfo, TrustedProxyIp, principal_key,
};
pub use layer::{
    BodyRateLimit, BodyRateLimitLayer, FailureLimit, FailureLimitLayer, FailurePolicy, HeaderStyle,
    RateLimit, RateLimitLayer, RateLimiter, ResponseFuture,
};
pub use quota::{Decision, Policy, Quota, QuotaError};
#[cfg(feature = "redis")]
pub use redis_backend::RedisBackend;
