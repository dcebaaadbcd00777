//! [`FailurePolicy`]: what a limiter does when its backend cannot decide.

use std::str::FromStr;
use std::sync::Arc;

use crate::backend::InMemoryBackend;

/// What to do when the backend cannot decide (Redis down, cap reached).
/// Always logged and counted (`ratelimit_backend_errors_total`).
///
/// Parsed from `open` or `closed` (any case), as the server's
/// `MCP_RATE_LIMIT_FAIL` setting is; a fallback needs a backend, so it is
/// built in code:
///
/// ```
/// use std::sync::Arc;
/// use mcp_ratelimit::{FailurePolicy, InMemoryBackend};
///
/// assert!(matches!("closed".parse(), Ok(FailurePolicy::Closed)));
/// assert!(matches!("Open".parse(), Ok(FailurePolicy::Open)));
/// assert_eq!(
///     "sometimes".parse::<FailurePolicy>().unwrap_err().to_string(),
///     "expected open or closed"
/// );
/// let per_replica = FailurePolicy::Fallback(Arc::new(InMemoryBackend::new()));
/// # let _ = per_replica;
/// ```
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

/// Why a [`FailurePolicy`] name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected open or closed")]
pub struct FailurePolicyError(());

impl FromStr for FailurePolicy {
    type Err = FailurePolicyError;

    /// `open` or `closed`, in any case.
    fn from_str(text: &str) -> Result<FailurePolicy, FailurePolicyError> {
        if text.eq_ignore_ascii_case("open") {
            Ok(FailurePolicy::Open)
        } else if text.eq_ignore_ascii_case("closed") {
            Ok(FailurePolicy::Closed)
        } else {
            Err(FailurePolicyError(()))
        }
    }
}
