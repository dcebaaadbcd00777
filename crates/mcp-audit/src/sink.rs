//! Where events go.

use std::future::Future;
use std::io::Write;
use std::pin::Pin;

use crate::Event;

/// A boxed future of a sink.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a sink could not keep a batch.
#[derive(Debug, thiserror::Error)]
#[error("audit sink failed: {0}")]
pub struct AuditError(pub String);

/// Keeps batches of events: a database table, a log shipper's stream.
///
/// The [`Auditor`](crate::Auditor)'s writer calls it off the request path,
/// one batch at a time, in the order the events were recorded.
pub trait AuditSink: Send + Sync + 'static {
    /// Keeps `events`, all or none.
    fn write<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), AuditError>>;
}

/// JSON lines on standard output, one event per line, for a log shipper.
///
/// ```
/// use mcp_audit::{Auditor, AuditorSettings, StdoutSink};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (auditor, writer) = Auditor::start(StdoutSink, AuditorSettings::default());
/// # drop(auditor); writer.shutdown().await;
/// # }
/// ```
#[derive(Clone, Copy, Debug, Default)]
pub struct StdoutSink;

impl AuditSink for StdoutSink {
    fn write<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            let mut text = Vec::with_capacity(events.len() * 256);
            for event in events {
                serde_json::to_writer(&mut text, event).map_err(|e| AuditError(e.to_string()))?;
                text.push(b'\n');
            }
            // One write per batch, so lines of a batch are never split by
            // another writer's.
            let mut out = std::io::stdout().lock();
            out.write_all(&text)
                .and_then(|()| out.flush())
                .map_err(|e| AuditError(e.to_string()))
        })
    }
}
