//! One connection: what it is doing, seen through its socket and the
//! requests it serves, so its watcher knows when to close it.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tower_service::Service;

use crate::ConnectionLimits;
use crate::slots::Slot;

/// What one connection is doing, for its watcher.
pub(crate) struct Activity {
    phase: Mutex<Phase>,
    /// Set while idle between requests, so that only the first byte of the
    /// next head takes the lock.
    awaiting_first_byte: AtomicBool,
}

struct Phase {
    /// Requests whose response has not been sent whole.
    in_flight: usize,
    /// Since when nothing has been in flight (or since the connection
    /// opened).
    idle_since: Instant,
    /// When the first byte after `idle_since` arrived, on a kept-alive
    /// connection.
    first_byte: Option<Instant>,
    /// Whether a response has been sent, so the connection is now kept alive.
    kept_alive: bool,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase {
                in_flight: 0,
                idle_since: Instant::now(),
                first_byte: None,
                kept_alive: false,
            }),
            awaiting_first_byte: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        // Nothing panics while the lock is held.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed unless something changes; `None`
    /// while a request is in flight.
    pub(crate) fn deadline(&self, limits: &ConnectionLimits) -> Option<Instant> {
        let phase = self.lock();
        if phase.in_flight > 0 {
            return None;
        }
        Some(match (phase.kept_alive, phase.first_byte) {
            (false, _) => phase.idle_since + limits.header_read_timeout,
            (true, Some(first_byte)) => first_byte + limits.header_read_timeout,
            (true, None) => phase.idle_since + limits.keep_alive_timeout,
        })
    }

    pub(crate) fn expired(&self, limits: &ConnectionLimits) -> bool {
        self.deadline(limits)
            .is_some_and(|deadline| deadline <= Instant::now())
    }

    pub(crate) fn is_idle(&self) -> bool {
        self.lock().in_flight == 0
    }

    fn request_started(&self) {
        self.awaiting_first_byte.store(false, Ordering::Relaxed);
        self.lock().in_flight += 1;
    }

    fn request_finished(&self) {
        {
            let mut phase = self.lock();
            phase.in_flight = phase.in_flight.saturating_sub(1);
            if phase.in_flight == 0 {
                phase.idle_since = Instant::now();
                phase.first_byte = None;
                phase.kept_alive = true;
                self.awaiting_first_byte.store(true, Ordering::Relaxed);
            }
        }
    }

    fn bytes_read(&self) {
        if !self.awaiting_first_byte.swap(false, Ordering::Relaxed) {
            return;
        }
        {
            let mut phase = self.lock();
            if phase.in_flight == 0 && phase.first_byte.is_none() {
                phase.first_byte = Some(Instant::now());
            }
        }
    }
}

/// A request counted in [`Activity`] from its head until its response body
/// is sent whole or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: &Arc<Activity>) -> InFlight {
        activity.request_started();
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

/// The socket, telling [`Activity`] when bytes arrive and holding the
/// connection's [`Slot`] for as long as the socket lives, upgraded or not.
pub(crate) struct Io {
    pub(crate) stream: TcpStream,
    pub(crate) activity: Arc<Activity>,
    pub(crate) _slot: Slot,
}

impl AsyncRead for Io {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.bytes_read();
        }
        result
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// The app for one connection: adds the peer address and counts requests.
#[derive(Clone)]
pub(crate) struct ConnService<S> {
    pub(crate) app: S,
    pub(crate) peer: SocketAddr,
    pub(crate) activity: Arc<Activity>,
}

impl<S, B> hyper::service::Service<Request<Incoming>> for ConnService<S>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: 'static,
{
    type Response = Response<Tracked<B>>;
    type Error = S::Error;
    type Future = ConnFuture<S, Request<Incoming>>;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity);
        request.extensions_mut().insert(self.peer);
        #[cfg(feature = "axum")]
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(self.peer));
        // The clone is the one made ready and called, as tower's `oneshot`.
        ConnFuture {
            state: State::Ready {
                app: self.app.clone(),
                request: Some(request),
            },
            in_flight: Some(in_flight),
        }
    }
}

pin_project_lite::pin_project! {
    /// Makes the app ready, calls it, and ties the response body to the
    /// request's [`InFlight`]: a named future, so no box per request.
    pub(crate) struct ConnFuture<S: Service<R>, R> {
        #[pin]
        state: State<S, R>,
        in_flight: Option<InFlight>,
    }
}

pin_project_lite::pin_project! {
    #[project = StateProj]
    enum State<S: Service<R>, R> {
        Ready { app: S, request: Option<R> },
        Called { #[pin] future: S::Future },
    }
}

impl<S, R, B> Future for ConnFuture<S, R>
where
    S: Service<R, Response = Response<B>>,
{
    type Output = Result<Response<Tracked<B>>, S::Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Ready { app, request } => {
                    std::task::ready!(app.poll_ready(cx))?;
                    let Some(request) = request.take() else {
                        // Polled again after it answered: never by hyper.
                        return Poll::Pending;
                    };
                    let future = app.call(request);
                    this.state.set(State::Called { future });
                }
                StateProj::Called { future } => {
                    let response = std::task::ready!(future.poll(cx))?;
                    let in_flight = this.in_flight.take();
                    return Poll::Ready(Ok(response.map(|body| Tracked {
                        body,
                        _in_flight: in_flight,
                    })));
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request [`InFlight`] until hyper has
    /// sent it whole (or given up on it) and drops it.
    pub(crate) struct Tracked<B> {
        #[pin]
        body: B,
        _in_flight: Option<InFlight>,
    }
}

impl<B> http_body::Body for Tracked<B>
where
    B: http_body::Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Asserts `deadline` is `after` from some instant in `[from, to]`.
    fn assert_within(deadline: Option<Instant>, from: Instant, to: Instant, after: Duration) {
        let deadline = deadline.expect("a deadline");
        assert!(
            from + after <= deadline && deadline <= to + after,
            "{deadline:?} is not {after:?} after [{from:?}, {to:?}]"
        );
    }

    #[tokio::test]
    async fn deadlines_follow_the_connection() {
        let settings = ConnectionLimits::default();
        let (head, idle) = (settings.header_read_timeout, settings.keep_alive_timeout);
        let before = Instant::now();
        let activity = Arc::new(Activity::new());
        let opened = Instant::now();
        // A fresh connection has the header timeout, first byte or not.
        activity.bytes_read();
        assert_within(activity.deadline(&settings), before, opened, head);
        let request = InFlight::start(&activity);
        assert_eq!(activity.deadline(&settings), None);
        let before = Instant::now();
        drop(request);
        let finished = Instant::now();
        // Kept alive and idle: the keep-alive timeout.
        assert_within(activity.deadline(&settings), before, finished, idle);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let before = Instant::now();
        activity.bytes_read();
        let first_byte = Instant::now();
        // The next head has begun: the header timeout from its first byte.
        let deadline = activity.deadline(&settings);
        assert_within(deadline, before, first_byte, head);
        // Later bytes of the same head do not push the deadline.
        tokio::time::sleep(Duration::from_millis(5)).await;
        activity.bytes_read();
        assert_eq!(activity.deadline(&settings), deadline);
        assert!(!activity.expired(&settings));
        // Until the deadline passes.
        let quick = ConnectionLimits {
            header_read_timeout: Duration::from_millis(10),
            ..settings
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(activity.expired(&quick));
    }
}
