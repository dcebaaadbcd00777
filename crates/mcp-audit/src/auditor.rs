//! The recorder and its writer: events are queued without waiting and
//! written in batches by one task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::{AuditSink, Event};

/// How the [`Auditor`] queues and writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditorSettings {
    /// Most events waiting to be written (10,000); past it, events are
    /// dropped and counted, never waited for.
    pub capacity: usize,
    /// Most events in one write (64). Larger batches cost the database no
    /// less per event, and one write of 500 (265 KB, about 10 ms of
    /// PostgreSQL's time) arrived as a burst that, on a machine whose cores
    /// the database shares, stalled everything else for as long: the
    /// server's `tools/call` p99 went from 3.6-4.5 ms to 5.9-6.4 ms.
    pub batch: usize,
    /// How long the writer waits for more events once one arrived, so a
    /// busy server writes one batch per interval instead of one per event
    /// (200 ms).
    pub linger: Duration,
}

impl Default for AuditorSettings {
    fn default() -> Self {
        AuditorSettings {
            capacity: 10_000,
            batch: 64,
            linger: Duration::from_millis(200),
        }
    }
}

/// Records audit events without ever making a request wait: each event is
/// queued, and one background task writes what is queued to the
/// [`AuditSink`] in batches. A full queue drops the event, counts it
/// (`audit_events_dropped_total`) and logs a warning (at most one per
/// thousand drops). Cheap to clone; [`Auditor::off`] records nothing.
///
/// ```
/// use std::time::SystemTime;
/// use mcp_audit::{AuditError, AuditSink, Auditor, AuditorSettings, BoxFuture, Event, Outcome};
///
/// struct Print;
/// impl AuditSink for Print {
///     fn write<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), AuditError>> {
///         Box::pin(async move {
///             for event in events { println!("{}", event.kind); }
///             Ok(())
///         })
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (auditor, writer) = Auditor::start(Print, AuditorSettings::default());
/// auditor.record(Event::new("auth.login", Outcome::Success, SystemTime::now()));
/// // On shutdown: what is queued is written, then the writer stops.
/// writer.shutdown().await;
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct Auditor {
    inner: Option<Arc<Inner>>,
}

#[derive(Debug)]
struct Inner {
    queue: mpsc::Sender<Event>,
    dropped: AtomicU64,
    dropped_total: metrics::Counter,
    recorded_total: metrics::Counter,
}

/// The writer task of an [`Auditor`]: [`shutdown`](Self::shutdown) writes
/// what is queued and stops it.
#[derive(Debug)]
pub struct AuditWriter {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Auditor {
    /// Records nothing.
    pub fn off() -> Auditor {
        Auditor { inner: None }
    }

    /// Starts the writer of `sink` on the current tokio runtime.
    pub fn start(sink: impl AuditSink, settings: AuditorSettings) -> (Auditor, AuditWriter) {
        let (queue, events) = mpsc::channel(settings.capacity.max(1));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(write_loop(Box::new(sink), events, stopped, settings));
        let auditor = Auditor {
            inner: Some(Arc::new(Inner {
                queue,
                dropped: AtomicU64::new(0),
                dropped_total: metrics::counter!("audit_events_dropped_total"),
                recorded_total: metrics::counter!("audit_events_total"),
            })),
        };
        (auditor, AuditWriter { stop, task })
    }

    /// Whether events are recorded.
    pub fn is_on(&self) -> bool {
        self.inner.is_some()
    }

    /// Queues `event`; never waits. A full queue (or a stopped writer)
    /// drops it and counts the drop.
    pub fn record(&self, event: Event) {
        let Some(inner) = &self.inner else { return };
        match inner.queue.try_send(event) {
            Ok(()) => inner.recorded_total.increment(1),
            Err(_) => {
                inner.dropped_total.increment(1);
                let dropped = inner.dropped.fetch_add(1, Ordering::Relaxed);
                if dropped % 1000 == 0 {
                    tracing::warn!(
                        dropped = dropped + 1,
                        "audit queue full or closed: events dropped"
                    );
                }
            }
        }
    }
}

impl AuditWriter {
    /// Writes every event queued so far, then stops the writer.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        if let Err(error) = self.task.await {
            tracing::error!(%error, "the audit writer failed");
        }
    }

    /// [`shutdown`](Self::shutdown), waiting at most `grace`.
    pub async fn shutdown_within(self, grace: Duration) {
        if tokio::time::timeout(grace, self.shutdown()).await.is_err() {
            tracing::warn!("audit events still unwritten at shutdown");
        }
    }
}

async fn write_loop(
    sink: Box<dyn AuditSink>,
    mut events: mpsc::Receiver<Event>,
    mut stopped: oneshot::Receiver<()>,
    settings: AuditorSettings,
) {
    let batch = settings.batch.max(1);
    let mut buffer = Vec::with_capacity(batch);
    // A dropped handle is not a shutdown: the writer goes on until the
    // queue's senders are gone.
    let mut can_stop = true;
    loop {
        tokio::select! {
            // Under load several events wait: one write takes them all
            // (up to `batch`).
            received = events.recv_many(&mut buffer, batch) => {
                if received == 0 {
                    return;
                }
                // More arrive while the first waits: one write for them all.
                let _ = tokio::time::timeout(settings.linger, async {
                    loop {
                        let room = batch.saturating_sub(buffer.len());
                        if room == 0 || events.recv_many(&mut buffer, room).await == 0 {
                            break;
                        }
                    }
                })
                .await;
                write(&*sink, &mut buffer).await;
            }
            stop = &mut stopped, if can_stop => {
                if stop.is_err() {
                    can_stop = false;
                    continue;
                }
                events.close();
                while events.recv_many(&mut buffer, batch).await > 0 {
                    write(&*sink, &mut buffer).await;
                }
                return;
            }
        }
    }
}

async fn write(sink: &dyn AuditSink, buffer: &mut Vec<Event>) {
    if let Err(error) = sink.write(buffer).await {
        metrics::counter!("audit_write_errors_total").increment(1);
        tracing::warn!(%error, events = buffer.len(), "audit events could not be written");
    }
    buffer.clear();
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;
    use std::time::SystemTime;

    use super::*;
    use crate::{AuditError, BoxFuture, Outcome};

    /// Keeps batches; blocks each write until a permit is given.
    #[derive(Clone)]
    struct Kept {
        batches: Arc<Mutex<Vec<Vec<String>>>>,
        gate: Arc<tokio::sync::Semaphore>,
    }

    impl Kept {
        fn new() -> Kept {
            Kept {
                batches: Arc::default(),
                gate: Arc::new(tokio::sync::Semaphore::new(0)),
            }
        }
    }

    impl AuditSink for Kept {
        fn write<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), AuditError>> {
            Box::pin(async move {
                self.gate.acquire().await.expect("gate").forget();
                let kinds = events.iter().map(|e| e.kind.clone()).collect();
                self.batches.lock().unwrap().push(kinds);
                Ok(())
            })
        }
    }

    fn event(kind: &str) -> Event {
        Event::new(kind, Outcome::Success, SystemTime::now())
    }

    /// A full queue drops the newest event at once, never waits; what
    /// was queued is written in batches, in order, and all of it at
    /// shutdown.
    #[tokio::test]
    async fn a_full_queue_drops_and_shutdown_flushes() {
        let sink = Kept::new();
        let (auditor, writer) = Auditor::start(
            sink.clone(),
            AuditorSettings {
                capacity: 3,
                batch: 2,
                linger: Duration::ZERO,
            },
        );
        // The first event is taken by the writer, which then waits at the
        // gate: the queue holds three more, the fifth is dropped.
        auditor.record(event("e0"));
        tokio::task::yield_now().await;
        for kind in ["e1", "e2", "e3", "dropped"] {
            auditor.record(event(kind));
        }
        assert_eq!(
            auditor
                .inner
                .as_ref()
                .unwrap()
                .dropped
                .load(Ordering::Relaxed),
            1
        );
        sink.gate.add_permits(100);
        writer.shutdown().await;
        let batches = sink.batches.lock().unwrap().clone();
        let all: Vec<String> = batches.iter().flatten().cloned().collect();
        assert_eq!(all, ["e0", "e1", "e2", "e3"]);
        assert!(batches.iter().all(|b| b.len() <= 2), "{batches:?}");
        // Recording after shutdown neither waits nor panics.
        auditor.record(event("late"));
    }

    #[tokio::test]
    async fn off_records_nothing() {
        let auditor = Auditor::off();
        assert!(!auditor.is_on());
        auditor.record(event("x"));
    }
}
