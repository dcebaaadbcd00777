//! The accept loop: HTTP/1.1 over hyper with the timeouts and caps of
//! [`ConnectionConfig`], so slow and greedy clients cannot hold the server.
//!
//! `axum::serve` gives hyper no timer and no limits: half a request head or
//! an idle keep-alive connection is held forever, and every accepted socket
//! is served. Here each connection runs in a task of its own next to a
//! small watcher of its state:
//!
//! - A request head must be whole within `header_read_timeout` of the
//!   connection opening or, on a kept-alive connection, of its first byte.
//! - A kept-alive connection with no request under way is closed after
//!   `keep_alive_timeout`. hyper's own `header_read_timeout` cannot do both:
//!   its clock starts when the previous response ends, so it would close
//!   idle connections after the (shorter) header timeout.
//! - At most `max_connections` sockets are open, at most
//!   `max_connections_per_ip` from one client (IPv6 by /56, as the rate
//!   limiter groups them). A connection over a cap gets `503` and is closed.
//!   An upgraded connection (a WebSocket) keeps its slot until it closes.
//! - A request head over `max_header_bytes` gets hyper's `431`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use mcp_ratelimit::RateKey;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::config::ConnectionConfig;

/// Refusals answered at once; past this a connection over a cap is closed
/// without a response, so a flood of refused connections stays cheap.
const MAX_REFUSALS: usize = 128;

/// Longest a refused connection is kept to read its request head and send
/// the `503`.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown` resolves, then stops
/// accepting, closes connections with nothing in flight, lets in-flight
/// requests (and upgraded connections, which the shutdown token ends) finish
/// for at most `grace`, and returns.
///
/// Handlers see the peer as [`ConnectInfo<SocketAddr>`], as with
/// `into_make_service_with_connect_info::<SocketAddr>()`.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: ConnectionConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    grace: Duration,
) -> std::io::Result<()> {
    let server = Arc::new(Server::new(app, settings));
    let stop = CancellationToken::new();
    let mut shutdown = pin!(shutdown);
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        match accepted {
            Ok((stream, peer)) => server.clone().admit(stream, peer, &stop),
            Err(error) if is_per_connection(&error) => {}
            Err(error) => {
                // Out of file descriptors or similar: retrying at once
                // would spin.
                tracing::error!(%error, "cannot accept connections; retrying in 1 s");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = &mut shutdown => break,
                }
            }
        }
    }
    drop(listener);
    stop.cancel();
    let drained = server.slots.drained();
    if tokio::time::timeout(grace, drained).await.is_err() {
        tracing::warn!(
            grace = %humantime::format_duration(grace),
            "in-flight requests still running after the shutdown timeout; closing them"
        );
    }
    Ok(())
}

/// Accept errors that concern one connection only.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

struct Server {
    app: Router,
    settings: ConnectionConfig,
    http: http1::Builder,
    slots: Arc<Slots>,
    refusals: Arc<AtomicUsize>,
}

impl Server {
    fn new(app: Router, settings: ConnectionConfig) -> Server {
        let mut http = http1::Builder::new();
        http.max_header_size(settings.max_header_bytes)
            // The watcher times heads, see the module docs.
            .header_read_timeout(None);
        Server {
            app,
            settings,
            http,
            slots: Arc::new(Slots::new(&settings)),
            refusals: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn admit(self: Arc<Self>, stream: TcpStream, peer: SocketAddr, stop: &CancellationToken) {
        // Responses are written whole; Nagle would only delay the last
        // segment of each.
        let _ = stream.set_nodelay(true);
        match self.slots.acquire(peer.ip()) {
            Ok(slot) => {
                let stop = stop.child_token();
                tokio::spawn(async move { self.connection(stream, peer, slot, stop).await });
            }
            Err(over) => self.refuse(stream, peer, over),
        }
    }

    async fn connection(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        slot: Slot,
        stop: CancellationToken,
    ) {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Io {
            stream,
            activity: activity.clone(),
            _slot: slot,
        });
        let service = ConnService {
            app: self.app.clone(),
            peer,
            activity: activity.clone(),
        };
        let mut conn = pin!(self.http.serve_connection(io, service).with_upgrades());
        let mut stopping = false;
        loop {
            let changed = activity.changed.notified();
            let deadline = activity.deadline(&self.settings);
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        // The client's doing (a bad head, a reset): not ours
                        // to report above debug.
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = changed => {}
                () = sleep_until(deadline) => {
                    if activity.expired(&self.settings) {
                        tracing::debug!(%peer, "closing a connection with no whole request in time");
                        // Nothing is in flight, so there is nothing to
                        // finish: dropping the connection closes it.
                        return;
                    }
                }
                () = stop.cancelled(), if !stopping => {
                    if activity.is_idle() {
                        return;
                    }
                    stopping = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }

    fn refuse(&self, stream: TcpStream, peer: SocketAddr, over: OverCap) {
        metrics::counter!("http_connections_refused_total", "reason" => over.reason()).increment(1);
        tracing::debug!(%peer, reason = over.reason(), "refusing a connection over a cap");
        let Some(refusal) = RefusalSlot::take(&self.refusals) else {
            // Too many refusals at once: closing is the cheapest answer.
            return;
        };
        let mut http = self.http.clone();
        http.keep_alive(false);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |_request: Request<Incoming>| {
                std::future::ready(Ok::<_, Infallible>(over.response()))
            });
            let conn = http.serve_connection(TokioIo::new(stream), service);
            let _ = tokio::time::timeout(REFUSAL_TIMEOUT, conn).await;
            drop(refusal);
        });
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// Which cap a refused connection is over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OverCap {
    Total,
    PerIp,
}

impl OverCap {
    fn reason(self) -> &'static str {
        match self {
            OverCap::Total => "max_connections",
            OverCap::PerIp => "max_connections_per_ip",
        }
    }

    fn response(self) -> Response<Body> {
        let detail = match self {
            OverCap::Total => "the server has too many open connections; retry later",
            OverCap::PerIp => "too many open connections from this address; retry later",
        };
        let mut response = mcp_core::Problem::unavailable(detail).into_response::<Body>();
        response.headers_mut().insert(
            http::header::RETRY_AFTER,
            http::HeaderValue::from_static("1"),
        );
        response
    }
}

/// One of the [`MAX_REFUSALS`] refusals under way.
struct RefusalSlot(Arc<AtomicUsize>);

impl RefusalSlot {
    fn take(count: &Arc<AtomicUsize>) -> Option<RefusalSlot> {
        count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_REFUSALS).then_some(n + 1)
            })
            .ok()
            .map(|_| RefusalSlot(count.clone()))
    }
}

impl Drop for RefusalSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections, in total and by client.
struct Slots {
    max_total: usize,
    max_per_ip: usize,
    open: Mutex<Open>,
    /// Signalled when the last connection closes.
    empty: Notify,
}

#[derive(Default)]
struct Open {
    total: usize,
    by_client: HashMap<RateKey, usize>,
}

impl Slots {
    fn new(settings: &ConnectionConfig) -> Slots {
        Slots {
            max_total: settings.max_connections,
            max_per_ip: settings.max_connections_per_ip,
            open: Mutex::new(Open::default()),
            empty: Notify::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Open> {
        // Nothing panics while the lock is held; the counts stay whole.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Slot, OverCap> {
        let key = RateKey::ip(ip);
        let mut open = self.lock();
        if open.total >= self.max_total {
            return Err(OverCap::Total);
        }
        let mine = open.by_client.entry(key.clone()).or_insert(0);
        if *mine >= self.max_per_ip {
            return Err(OverCap::PerIp);
        }
        *mine += 1;
        open.total += 1;
        Ok(Slot {
            slots: self.clone(),
            key,
        })
    }

    fn release(&self, key: &RateKey) {
        let mut open = self.lock();
        open.total = open.total.saturating_sub(1);
        if let Some(mine) = open.by_client.get_mut(key) {
            *mine -= 1;
            if *mine == 0 {
                // Keeps the map as small as the set of clients connected.
                open.by_client.remove(key);
            }
        }
        if open.total == 0 {
            self.empty.notify_waiters();
        }
    }

    /// Resolves once no connection is open.
    async fn drained(&self) {
        loop {
            let mut empty = pin!(self.empty.notified());
            // Registered before the check, so a release in between is seen.
            empty.as_mut().enable();
            if self.lock().total == 0 {
                return;
            }
            empty.await;
        }
    }
}

/// A connection's place in [`Slots`], given back when the socket closes.
struct Slot {
    slots: Arc<Slots>,
    key: RateKey,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.slots.release(&self.key);
    }
}

/// What one connection is doing, for its watcher.
struct Activity {
    phase: Mutex<Phase>,
    /// Signalled on every change of `phase`, so the watcher re-reads its
    /// deadline.
    changed: Notify,
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
    fn new() -> Activity {
        Activity {
            phase: Mutex::new(Phase {
                in_flight: 0,
                idle_since: Instant::now(),
                first_byte: None,
                kept_alive: false,
            }),
            changed: Notify::new(),
            awaiting_first_byte: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Phase> {
        // Nothing panics while the lock is held.
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// When the connection is to be closed unless something changes; `None`
    /// while a request is in flight.
    fn deadline(&self, settings: &ConnectionConfig) -> Option<Instant> {
        let phase = self.lock();
        if phase.in_flight > 0 {
            return None;
        }
        Some(match (phase.kept_alive, phase.first_byte) {
            (false, _) => phase.idle_since + settings.header_read_timeout,
            (true, Some(first_byte)) => first_byte + settings.header_read_timeout,
            (true, None) => phase.idle_since + settings.keep_alive_timeout,
        })
    }

    fn expired(&self, settings: &ConnectionConfig) -> bool {
        self.deadline(settings)
            .is_some_and(|deadline| deadline <= Instant::now())
    }

    fn is_idle(&self) -> bool {
        self.lock().in_flight == 0
    }

    fn request_started(&self) {
        self.awaiting_first_byte.store(false, Ordering::Relaxed);
        self.lock().in_flight += 1;
        self.changed.notify_one();
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
        self.changed.notify_one();
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
        self.changed.notify_one();
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
struct Io {
    stream: TcpStream,
    activity: Arc<Activity>,
    _slot: Slot,
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
struct ConnService {
    app: Router,
    peer: SocketAddr,
    activity: Arc<Activity>,
}

type ResponseFuture = Pin<Box<dyn Future<Output = Result<Response<Tracked>, Infallible>> + Send>>;

impl hyper::service::Service<Request<Incoming>> for ConnService {
    type Response = Response<Tracked>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, mut request: Request<Incoming>) -> Self::Future {
        let in_flight = InFlight::start(&self.activity);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        let response = self.app.clone().oneshot(request);
        Box::pin(async move {
            response.await.map(|response| {
                response.map(|body| Tracked {
                    body,
                    _in_flight: in_flight,
                })
            })
        })
    }
}

/// A response body that keeps its request [`InFlight`] until hyper has sent
/// it whole (or given up on it) and drops it.
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
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
    use super::*;
    use axum::routing::get;

    fn settings() -> ConnectionConfig {
        ConnectionConfig::default()
    }

    #[test]
    fn slots_count_per_client_and_in_total() {
        let slots = Arc::new(Slots::new(&ConnectionConfig {
            max_connections: 3,
            max_connections_per_ip: 2,
            ..settings()
        }));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.acquire(a).unwrap();
        let _second = slots.acquire(a).unwrap();
        assert_eq!(slots.acquire(a).err(), Some(OverCap::PerIp));
        let _third = slots.acquire(b).unwrap();
        assert_eq!(slots.acquire(b).err(), Some(OverCap::Total));
        drop(first);
        assert!(slots.acquire(a).is_ok());
    }

    #[test]
    fn ipv6_clients_are_grouped_by_56() {
        let slots = Arc::new(Slots::new(&ConnectionConfig {
            max_connections_per_ip: 1,
            ..settings()
        }));
        let _one = slots.acquire("2001:db8:0:1::1".parse().unwrap()).unwrap();
        assert_eq!(
            slots.acquire("2001:db8:0:ff::2".parse().unwrap()).err(),
            Some(OverCap::PerIp)
        );
        assert!(slots.acquire("2001:db8:0:100::1".parse().unwrap()).is_ok());
    }

    #[test]
    fn released_clients_leave_the_map() {
        let slots = Arc::new(Slots::new(&settings()));
        let slot = slots.acquire("192.0.2.1".parse().unwrap()).unwrap();
        assert_eq!(slots.lock().by_client.len(), 1);
        drop(slot);
        assert_eq!(slots.lock().by_client.len(), 0);
        assert_eq!(slots.lock().total, 0);
    }

    #[test]
    fn refusals_are_bounded() {
        let count = Arc::new(AtomicUsize::new(0));
        let held: Vec<_> = (0..MAX_REFUSALS)
            .map(|_| RefusalSlot::take(&count).unwrap())
            .collect();
        assert!(RefusalSlot::take(&count).is_none());
        drop(held);
        assert!(RefusalSlot::take(&count).is_some());
    }

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
        let settings = settings();
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
        let quick = ConnectionConfig {
            header_read_timeout: Duration::from_millis(10),
            ..settings
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(activity.expired(&quick));
    }

    async fn start(
        app: Router,
        grace: Duration,
    ) -> (
        SocketAddr,
        tokio::sync::oneshot::Sender<()>,
        tokio::task::JoinHandle<std::io::Result<()>>,
    ) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(
            listener,
            app,
            settings(),
            async move {
                let _ = stop_rx.await;
            },
            grace,
        ));
        (addr, stop_tx, server)
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let app = Router::new().route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        );
        let (addr, stop, server) = start(app, Duration::from_secs(1)).await;
        let peer = reqwest::get(format!("http://{addr}/peer"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(peer.starts_with("127.0.0.1:"), "{peer}");
        stop.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_lets_in_flight_requests_finish() {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<()>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let started = Arc::new(Mutex::new(Some(started_tx)));
        let release = Arc::new(tokio::sync::Mutex::new(Some(release_rx)));
        let app = Router::new().route(
            "/slow",
            get(move || {
                let started = started.clone();
                let release = release.clone();
                async move {
                    if let Some(tx) = started.lock().unwrap().take() {
                        let _ = tx.send(());
                    }
                    if let Some(rx) = release.lock().await.take() {
                        let _ = rx.await;
                    }
                    "finished"
                }
            }),
        );
        let (addr, stop, server) = start(app, Duration::from_secs(10)).await;
        let in_flight = tokio::spawn(reqwest::get(format!("http://{addr}/slow")));
        started_rx.await.unwrap();
        stop.send(()).unwrap();
        // New connections are refused once shutdown has begun (soon, not at
        // once: the loop sees the signal on its next turn). A bounded poll,
        // not a guess of how long that takes.
        let deadline = Instant::now() + Duration::from_secs(5);
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "still accepting 5 s after shutdown began"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        release_tx.send(()).unwrap();
        let response = in_flight.await.unwrap().unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.text().await.unwrap(), "finished");
        server.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn shutdown_gives_up_after_the_grace_period() {
        let (started_tx, mut started_rx) = tokio::sync::mpsc::channel::<()>(1);
        let app = Router::new().route(
            "/forever",
            get(move || {
                let started = started_tx.clone();
                async move {
                    let _ = started.send(()).await;
                    std::future::pending::<&'static str>().await
                }
            }),
        );
        let (addr, stop, server) = start(app, Duration::from_millis(100)).await;
        let _in_flight = tokio::spawn(reqwest::get(format!("http://{addr}/forever")));
        // In flight for certain before the signal, not after a guessed sleep.
        started_rx.recv().await.unwrap();
        stop.send(()).unwrap();
        tokio::time::timeout(Duration::from_secs(5), server)
            .await
            .expect("serve returned after the grace period")
            .unwrap()
            .unwrap();
    }
}
