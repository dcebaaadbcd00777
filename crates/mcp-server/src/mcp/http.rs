//! `/mcp`: rmcp's Streamable HTTP service, its Host and Origin checks fed
//! from the same settings as the server's guard.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http_body_util::BodyExt;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tokio_util::task::{TaskTracker, task_tracker::TaskTrackerToken};
use tower::Service;

use super::tools::McpServer;
use crate::AppState;

/// The rmcp service for `/mcp`. When `shutdown` is cancelled, rmcp's own
/// token (which ends its long-lived streams, and answers whatever it is
/// still handling with a `500`) is cancelled only once every request but
/// the standalone `GET` streams has been answered: a call in flight at
/// SIGTERM finishes.
pub fn service(
    state: &AppState,
    shutdown: CancellationToken,
) -> impl Service<Request<Body>, Response = Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let config = &state.config;
    let in_flight = InFlight::new(shutdown);
    let base = StreamableHttpServerConfig::default()
        .with_cancellation_token(in_flight.inner.streams.clone())
        .with_max_request_body_bytes(config.body_limit)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let rmcp_config = match &config.guard {
        Some(_) => mcp_endpoint::streamable_http_config(
            base,
            &config.allowed_hosts,
            config.cors.exact_origins(),
            crate::config::origin_with_port(&config.public_url),
        ),
        // No guard: rmcp checks neither.
        None => mcp_endpoint::streamable_http_config(base, &[], None, None),
    };
    let state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        rmcp_config,
    );
    Drained {
        inner: Shared(Arc::new(mcp)),
        in_flight,
    }
}

/// rmcp's service behind one `Arc`. Every layer in front of `/mcp` clones
/// the service it wraps for each request (tower's way), and a clone of
/// rmcp's service copies its whole configuration (the host and origin
/// lists): eight copies and four drops per `tools/call`, 11,000 of its
/// 254,000 instructions. Its `handle` borrows, so nothing is copied here.
#[derive(Clone)]
struct Shared(Arc<StreamableHttpService<McpServer, LocalSessionManager>>);

impl Service<Request<Body>> for Shared {
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mcp = self.0.clone();
        Box::pin(async move { Ok(mcp.handle(request).await.map(Body::new)) })
    }
}

/// rmcp behind the count of its requests in flight ([`InFlight`]).
#[derive(Clone)]
struct Drained<S> {
    inner: S,
    in_flight: InFlight,
}

impl<S> Service<Request<Body>> for Drained<S>
where
    S: Service<Request<Body>, Response = Response, Error = std::convert::Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures_util::future::BoxFuture<'static, Result<Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        // Once rmcp is cancelled it answers `500` to anything: a request
        // that arrives after that, on a connection not yet closed, is told
        // to come back (the connection closes with the answer).
        if self.in_flight.inner.streams.is_cancelled() {
            let mut response = axum::response::IntoResponse::into_response(
                mcp_core::Problem::unavailable("the server is shutting down"),
            );
            let headers = response.headers_mut();
            headers.insert(
                ::http::header::CONNECTION,
                ::http::HeaderValue::from_static("close"),
            );
            headers.insert(
                ::http::header::RETRY_AFTER,
                ::http::HeaderValue::from_static("1"),
            );
            return Box::pin(std::future::ready(Ok(response)));
        }
        let guard = (request.method() != ::http::Method::GET).then(|| self.in_flight.enter());
        let answer = self.inner.call(request);
        Box::pin(async move {
            let Ok(response) = answer.await;
            Ok(match guard {
                // Answered when its body has been sent (or dropped).
                Some(guard) => response.map(|body| {
                    Body::new(body.map_frame(move |frame| {
                        let _ = &guard;
                        frame
                    }))
                }),
                None => response,
            })
        })
    }
}

/// Requests to rmcp not yet answered (tokio-util's `TaskTracker`, its
/// tokens held until each answer is sent), and the token that ends rmcp's
/// streams once none is left after the shutdown began.
#[derive(Clone)]
struct InFlight {
    inner: Arc<InFlightInner>,
}

struct InFlightInner {
    answering: TaskTracker,
    shutdown: CancellationToken,
    streams: CancellationToken,
    watching: AtomicBool,
}

impl InFlight {
    fn new(shutdown: CancellationToken) -> InFlight {
        InFlight {
            inner: Arc::new(InFlightInner {
                answering: TaskTracker::new(),
                shutdown,
                streams: CancellationToken::new(),
                watching: AtomicBool::new(false),
            }),
        }
    }

    /// One request in flight, until the token is dropped.
    fn enter(&self) -> TaskTrackerToken {
        // The watcher starts with the first request (inside the runtime):
        // with no request ever made there is no stream to end.
        if !self.inner.watching.swap(true, Ordering::AcqRel) {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                inner.shutdown.cancelled().await;
                inner.answering.close();
                inner.answering.wait().await;
                inner.streams.cancel();
            });
        }
        self.inner.answering.token()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use tokio::sync::Semaphore;
    use tower::ServiceExt;

    use super::*;

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    /// A call in flight at shutdown holds rmcp's token until its answer is
    /// gone; a long-lived `GET` stream does not; a call after that is told
    /// to come back, never handed to a cancelled rmcp.
    #[tokio::test]
    async fn rmcp_is_cancelled_once_the_calls_in_flight_are_answered() {
        let shutdown = CancellationToken::new();
        let gate = Arc::new(Semaphore::new(0));
        let opened = gate.clone();
        let inner = tower::service_fn(move |request: Request<Body>| {
            let gate = opened.clone();
            async move {
                if request.method() == ::http::Method::GET {
                    // An event stream: it never ends by itself.
                    std::future::pending::<()>().await;
                }
                gate.acquire().await.expect("gate").forget();
                Ok::<_, Infallible>(Response::new(Body::from("answer")))
            }
        });
        let in_flight = InFlight::new(shutdown.clone());
        let streams = in_flight.inner.streams.clone();
        let drained = Drained { inner, in_flight };
        let post = || Request::post("/mcp").body(Body::empty()).expect("request");
        let _stream = tokio::spawn(
            drained
                .clone()
                .oneshot(Request::get("/mcp").body(Body::empty()).expect("request")),
        );
        let call = tokio::spawn(drained.clone().oneshot(post()));
        settle().await;
        shutdown.cancel();
        settle().await;
        assert!(!streams.is_cancelled(), "a call is still in flight");
        gate.add_permits(1);
        let Ok(answer) = call.await.expect("the call");
        settle().await;
        assert!(!streams.is_cancelled(), "its answer is not sent yet");
        let body = answer.into_body().collect().await.expect("body").to_bytes();
        assert_eq!(&body[..], b"answer");
        settle().await;
        assert!(streams.is_cancelled(), "nothing in flight but the stream");
        let Ok(late) = drained.clone().oneshot(post()).await;
        assert_eq!(late.status(), 503);
        assert_eq!(late.headers()["connection"], "close");
    }
}
