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
//!
//! Misconfiguration is loud: a layer keyed by the socket peer on a request
//! without one ([`KeyError`]) answers `500` and logs the fix, never counting
//! every client in one bucket.
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples run as doctests (they serve an axum app).
#[cfg(all(doctest, feature = "axum"))]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod backend;
mod body_rate_limit;
mod decide;
mod failure_limit;
mod failure_policy;
mod headers;
mod key;
mod limiter;
mod quota;
mod rate_limit;

#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use backend::RedisBackend;
pub use backend::{
    BackendError, BackendFuture, Check, DecisionFuture, InMemoryBackend, RateLimitBackend,
};
pub use body_rate_limit::{BodyRateLimit, BodyRateLimitLayer};
pub use failure_limit::{FailureLimit, FailureLimitFuture, FailureLimitLayer, Lockout};
pub use failure_policy::{FailurePolicy, FailurePolicyError};
pub use headers::{HeaderStyle, HeaderStyleError};
pub use key::{
    ClientAddr, ForwardedHeader, ForwardedHeaderError, HeaderKey, JsonBodyField, KeyError,
    KeyExtractor, PeerIp, PrincipalOrIp, ProxyListError, RateKey, RequestInfo, TrustedProxyIp,
};
pub use limiter::RateLimiter;
pub use quota::{Decision, Policy, Quota, QuotaError};
pub use rate_limit::{RateLimit, RateLimitLayer, ResponseFuture};
