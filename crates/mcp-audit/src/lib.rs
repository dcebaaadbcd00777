//! An audit trail for MCP servers: who did what, when, from where, with
//! which request id, and how it ended.
//!
//! - [`Event`]: one event (`auth.login`, `key.created`, `authz.denied`,
//!   `mcp.tool_call`, ...), built by the code that acts; never a secret.
//! - [`Auditor`]: records events without making a request wait; one task
//!   writes them in batches to an [`AuditSink`] (a database table of
//!   yours, or [`StdoutSink`]'s JSON lines for a log shipper) and flushes
//!   at shutdown.
//! - [`AuditRefusalsLayer`]: an `authz.denied` event for every `403`
//!   behind authentication.
//!
//! ```
//! use std::time::SystemTime;
//! use mcp_audit::{AuditRefusalsLayer, Auditor, AuditorSettings, Event, Outcome, StdoutSink};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let (auditor, writer) = Auditor::start(StdoutSink, AuditorSettings::default());
//! let refusals = AuditRefusalsLayer::new(auditor.clone());
//! auditor.record(
//!     Event::new("auth.login", Outcome::Denied, SystemTime::now()).detail("reason", "invalid_credentials"),
//! );
//! # let _ = refusals;
//! writer.shutdown().await;
//! # }
//! ```

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod auditor;
mod event;
mod layer;
mod sink;

pub use auditor::{AuditWriter, Auditor, AuditorSettings};
pub use event::{Actor, Event, Outcome, Target};
pub use layer::{AuditFuture, AuditRefusals, AuditRefusalsLayer, ClientIp, peer_ip};
pub use sink::{AuditError, AuditSink, BoxFuture, StdoutSink};

/// The request-id header an event's `requestId` is read from.
pub use mcp_core::REQUEST_ID;
