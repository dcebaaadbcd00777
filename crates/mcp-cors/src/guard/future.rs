//! The guard's response future.

/// Response future of [`HostOriginGuard`](super::HostOriginGuard): the
/// inner service's, or the refusal.
pub type ResponseFuture<F, B> = mcp_core::RefusalFuture<F, B>;
