//! The accept loop and the watcher of each connection.

use std::convert::Infallible;
use std::error::Error as StdError;
use std::fmt;
use std::future::{Future, Pending};
use std::net::SocketAddr;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower_service::Service;

use crate::ConnectionLimits;
use crate::conn::{Activity, ConnService, Io};
use crate::slots::{OverCap, RefusalSlot, Slot, Slots};

type BoxError = Box<dyn StdError + Send + Sync>;

/// Longest a refused connection is kept to read its request head and send
/// the `503`.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves a tower service (an `axum::Router`, say) on a [`TcpListener`]
/// over HTTP/1.1 with upgrades, within [`ConnectionLimits`]; see the
/// [crate docs](crate) for what each limit does.
///
/// ```no_run
/// use std::time::Duration;
///
/// use axum::{Router, routing::get};
/// use mcp_serve::Server;
///
/// # async fn run() -> std::io::Result<()> {
/// let app = Router::new().route("/", get(|| async { "hello" }));
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// # drop(stop);
/// Server::new(listener, app)
///     .graceful_shutdown(
///         async {
///             let _ = stopped.await;
///         },
///         Duration::from_secs(10),
///     )
///     .run()
///     .await
/// # }
/// ```
pub struct Server<S, F = Pending<()>> {
    listener: TcpListener,
    app: S,
    limits: ConnectionLimits,
    shutdown: F,
    grace: Duration,
}

impl<S> Server<S> {
    /// Serves `app` on `listener` with the default [`ConnectionLimits`],
    /// until the task running it is dropped.
    pub fn new(listener: TcpListener, app: S) -> Self {
        Server {
            listener,
            app,
            limits: ConnectionLimits::default(),
            shutdown: std::future::pending(),
            grace: Duration::ZERO,
        }
    }
}

impl<S, F> Server<S, F> {
    /// The timeouts and caps of client connections.
    pub fn limits(mut self, limits: impl Into<ConnectionLimits>) -> Self {
        self.limits = limits.into();
        self
    }

    /// Once `signal` resolves, stops accepting, closes connections with
    /// nothing in flight, lets in-flight requests finish for at most
    /// `grace`, and returns from [`run`](Server::run).
    ///
    /// Upgraded connections (WebSockets) are the app's to end: hyper no
    /// longer sees them, so they are only waited for. Resolve a token the
    /// app watches from `signal` to close them within `grace`.
    pub fn graceful_shutdown<G>(self, signal: G, grace: Duration) -> Server<S, G>
    where
        G: Future<Output = ()> + Send + 'static,
    {
        Server {
            listener: self.listener,
            app: self.app,
            limits: self.limits,
            shutdown: signal,
            grace,
        }
    }
}

impl<S, F> fmt::Debug for Server<S, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Server")
            .field("listener", &self.listener)
            .field("limits", &self.limits)
            .field("grace", &self.grace)
            .finish_non_exhaustive()
    }
}

impl<S, B, F> Server<S, F>
where
    S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<BoxError> + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
    F: Future<Output = ()>,
{
    /// Accepts and serves connections until the shutdown signal, then
    /// drains them as [`graceful_shutdown`](Server::graceful_shutdown)
    /// says.
    ///
    /// # Errors
    ///
    /// None today: accept errors are logged and retried, since one client
    /// (or a brief lack of file descriptors) must not stop the server. The
    /// `Result` leaves room for errors that end serving.
    pub async fn run(self) -> std::io::Result<()> {
        let Server {
            listener,
            app,
            limits,
            shutdown,
            grace,
        } = self;
        let acceptor = Arc::new(Acceptor::new(limits));
        let stop = CancellationToken::new();
        let mut shutdown = pin!(shutdown);
        loop {
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                () = &mut shutdown => break,
            };
            match accepted {
                Ok((stream, peer)) => acceptor.admit(stream, peer, &app, &stop),
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
        let drained = acceptor.slots.drained();
        if tokio::time::timeout(grace, drained).await.is_err() {
            tracing::warn!(
                grace = %humantime::format_duration(grace),
                "in-flight requests still running after the shutdown timeout; closing them"
            );
        }
        Ok(())
    }
}

/// Accept errors that concern one connection only.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// What every connection shares: the limits, hyper's settings, the caps.
struct Acceptor {
    limits: ConnectionLimits,
    http: http1::Builder,
    slots: Arc<Slots>,
    refusals: Arc<AtomicUsize>,
}

impl Acceptor {
    fn new(limits: ConnectionLimits) -> Acceptor {
        let mut http = http1::Builder::new();
        http.max_header_size(limits.max_header_bytes)
            // The watcher times heads, see the crate docs.
            .header_read_timeout(None);
        Acceptor {
            limits,
            http,
            slots: Arc::new(Slots::new(&limits)),
            refusals: Arc::new(AtomicUsize::new(0)),
        }
    }

    fn admit<S, B>(
        self: &Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        app: &S,
        stop: &CancellationToken,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Responses are written whole; Nagle would only delay the last
        // segment of each.
        let _ = stream.set_nodelay(true);
        match self.slots.acquire(peer.ip()) {
            Ok(slot) => {
                let this = self.clone();
                let app = app.clone();
                let stop = stop.child_token();
                tokio::spawn(async move { this.connection(stream, peer, app, slot, stop).await });
            }
            Err(over) => self.refuse(stream, peer, over),
        }
    }

    async fn connection<S, B>(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        app: S,
        slot: Slot,
        stop: CancellationToken,
    ) where
        S: Service<Request<Incoming>, Response = Response<B>> + Clone + Send + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError> + 'static,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        let activity = Arc::new(Activity::new());
        let io = TokioIo::new(Io {
            stream,
            activity: activity.clone(),
            _slot: slot,
        });
        let service = ConnService {
            app,
            peer,
            activity: activity.clone(),
        };
        let mut conn = pin!(self.http.serve_connection(io, service).with_upgrades());
        let mut cancelled = pin!(stop.cancelled());
        // The watcher is never told of a change: it wakes at the deadline
        // it knew, or sooner, and looks again. Every deadline set after it
        // looked is at least the shortest timeout away, so waking at most
        // that long after each look is never late, and a request costs the
        // watcher nothing (no wake, no timer reset).
        let check_every = self
            .limits
            .header_read_timeout
            .min(self.limits.keep_alive_timeout);
        let mut wake = pin!(tokio::time::sleep_until(next_look(
            activity.deadline(&self.limits),
            check_every
        )));
        let mut stopping = false;
        loop {
            tokio::select! {
                result = conn.as_mut() => {
                    if let Err(error) = result {
                        // The client's doing (a bad head, a reset): not ours
                        // to report above debug.
                        tracing::debug!(%peer, %error, "connection ended with an error");
                    }
                    return;
                }
                () = wake.as_mut() => {
                    if activity.expired(&self.limits) {
                        tracing::debug!(%peer, "closing a connection with no whole request in time");
                        // Nothing is in flight, so there is nothing to
                        // finish: dropping the connection closes it.
                        return;
                    }
                    let next = next_look(activity.deadline(&self.limits), check_every);
                    wake.as_mut().reset(next);
                }
                () = cancelled.as_mut(), if !stopping => {
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

/// When the watcher looks next: at the deadline, or after `check_every`
/// if that is sooner or there is none (a request in flight).
fn next_look(deadline: Option<Instant>, check_every: std::time::Duration) -> Instant {
    let soonest = Instant::now() + check_every;
    deadline.map_or(soonest, |deadline| deadline.min(soonest))
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use axum::Router;
    use axum::routing::get;

    use super::*;

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
        let server = Server::new(listener, app)
            .limits(ConnectionLimits::default())
            .graceful_shutdown(
                async move {
                    let _ = stop_rx.await;
                },
                grace,
            );
        (addr, stop_tx, tokio::spawn(server.run()))
    }

    #[tokio::test]
    async fn handlers_see_the_peer_address() {
        let app = Router::new().route(
            "/peer",
            get(|axum::Extension(peer): axum::Extension<SocketAddr>| async move { peer.to_string() }),
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

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn axum_handlers_see_connect_info() {
        use axum::extract::ConnectInfo;
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

    /// Any tower service is served, not only a router.
    #[tokio::test]
    async fn serves_a_plain_tower_service() {
        let app = PeerEcho;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            Server::new(listener, app)
                .graceful_shutdown(
                    async move {
                        let _ = stop_rx.await;
                    },
                    Duration::from_secs(1),
                )
                .run(),
        );
        let body = reqwest::get(format!("http://{addr}/"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(body.starts_with("peer 127.0.0.1:"), "{body}");
        stop_tx.send(()).unwrap();
        server.await.unwrap().unwrap();
    }

    /// A hand-written service answering with the peer it was given.
    #[derive(Clone)]
    struct PeerEcho;

    impl Service<Request<Incoming>> for PeerEcho {
        type Response = Response<http_body_util::Full<Bytes>>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Self::Response, Infallible>>;

        fn poll_ready(
            &mut self,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn call(&mut self, request: Request<Incoming>) -> Self::Future {
            let peer = request
                .extensions()
                .get::<SocketAddr>()
                .map_or_else(|| "none".to_owned(), ToString::to_string);
            std::future::ready(Ok(Response::new(format!("peer {peer}").into())))
        }
    }
}
