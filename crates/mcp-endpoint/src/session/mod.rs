//! Session binding: an MCP session belongs to the principal that opened it.

use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderName;
use http::{Method, Request, Response};
use mcp_core::{Principal, Problem};
use tower_layer::Layer;
use tower_service::Service;

use crate::future::ResponseFuture;

/// The header that carries an MCP session id.
pub const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");

/// Binds each MCP session to the principal that opened it: a session id
/// presented by anyone else is `404 not_found`, as an unknown one is, so
/// session ids can be neither probed nor hijacked.
///
/// The owner is [`Principal::identity`] of the request that got a new
/// `Mcp-Session-Id` back; a successful `DELETE` forgets it. An id this layer
/// does not know (never issued behind it, or forgotten) is refused before
/// the server sees it: put it behind authentication and in front of the MCP
/// server, with a time to idle longer than the server keeps a session.
/// A request without a [`Principal`] (no authentication in front) is a
/// misconfiguration: `500`, and an error in the log.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use mcp_core::{AuthMethod, Principal};
/// use mcp_endpoint::SessionBindingLayer;
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let service = SessionBindingLayer::new().layer(service_fn(|_: Request<()>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::<Bytes>::default()))
/// }));
/// let mut request = Request::post("/mcp").header("mcp-session-id", "forged").body(()).unwrap();
/// request.extensions_mut().insert(Principal::builder("u1", AuthMethod::Jwt).build());
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::NOT_FOUND);
/// # }
/// ```
#[derive(Clone)]
pub struct SessionBindingLayer {
    capacity: u64,
    time_to_idle: Duration,
    owners: moka::sync::Cache<String, String>,
}

impl std::fmt::Debug for SessionBindingLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBindingLayer")
            .field("capacity", &self.capacity)
            .field("time_to_idle", &self.time_to_idle)
            .finish_non_exhaustive()
    }
}

fn owners(capacity: u64, time_to_idle: Duration) -> moka::sync::Cache<String, String> {
    moka::sync::Cache::builder()
        .max_capacity(capacity)
        .time_to_idle(time_to_idle)
        .build()
}

impl Default for SessionBindingLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionBindingLayer {
    /// At most a million sessions, each remembered for two hours idle
    /// (longer than rmcp keeps an idle session).
    pub fn new() -> Self {
        let capacity = 1_000_000;
        let time_to_idle = Duration::from_secs(2 * 3600);
        SessionBindingLayer {
            capacity,
            time_to_idle,
            owners: owners(capacity, time_to_idle),
        }
    }

    /// Remembers at most `capacity` sessions (the least used are
    /// forgotten, and then refused).
    #[must_use]
    pub fn capacity(self, capacity: u64) -> Self {
        SessionBindingLayer {
            capacity,
            owners: owners(capacity, self.time_to_idle),
            ..self
        }
    }

    /// Forgets a session unused for `time_to_idle`.
    #[must_use]
    pub fn time_to_idle(self, time_to_idle: Duration) -> Self {
        SessionBindingLayer {
            time_to_idle,
            owners: owners(self.capacity, time_to_idle),
            ..self
        }
    }
}

impl<S> Layer<S> for SessionBindingLayer {
    type Service = SessionBinding<S>;

    /// Every service made by one layer (and its clones) shares one table of
    /// owners.
    fn layer(&self, inner: S) -> Self::Service {
        SessionBinding {
            inner,
            owners: self.owners.clone(),
        }
    }
}

/// The service made by [`SessionBindingLayer`].
#[derive(Clone)]
pub struct SessionBinding<S> {
    inner: S,
    owners: moka::sync::Cache<String, String>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for SessionBinding<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionBinding")
            .field("inner", &self.inner)
            .field("sessions", &self.owners.entry_count())
            .finish()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for SessionBinding<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Send + 'static,
    ResBody: From<Bytes> + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let owners = self.owners.clone();
        let Some(principal) = request.extensions().get::<Principal>().cloned() else {
            // Without a caller no session can have an owner: every session
            // would be refused, or (worse) shared by all anonymous callers.
            tracing::error!(
                "SessionBinding reached without a Principal: put an authentication layer \
                 (mcp_auth::AuthLayer, required mode) in front of it"
            );
            return ResponseFuture::new(async { Ok(Problem::internal().into_response()) });
        };
        let presented = request
            .headers()
            .get(&SESSION_ID)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Fail closed: an id this map does not know (never issued here, or
        // forgotten) is refused as well as a foreign one; the server never
        // decides on a session whose owner we cannot name.
        if let Some(session) = &presented
            && Some(principal.identity()) != owners.get(session)
        {
            tracing::warn!("MCP session presented that is unknown or another principal's");
            return ResponseFuture::new(async {
                Ok(Problem::not_found()
                    .with_detail("no such session")
                    .into_response())
            });
        }
        let closing = request.method() == Method::DELETE;
        ResponseFuture::new(async move {
            let response = inner.call(request).await?;
            match (&presented, response.headers().get(&SESSION_ID)) {
                // A new session: remember who opened it.
                (None, Some(created)) => {
                    if let Ok(created) = created.to_str() {
                        owners.insert(created.to_owned(), principal.identity());
                    }
                }
                (Some(session), _) if closing && response.status().is_success() => {
                    owners.invalidate(session);
                }
                _ => {}
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http::StatusCode;
    use mcp_core::AuthMethod;
    use tower::{ServiceExt, service_fn};

    use super::*;

    /// Stands for rmcp: it answers any session id it is shown (as rmcp does
    /// for sessions it knows), and opens `s-1` when none is presented.
    fn app(
        layer: SessionBindingLayer,
        reached: Arc<AtomicUsize>,
    ) -> impl Service<Request<()>, Response = Response<Bytes>, Error = Infallible, Future: Send> + Clone
    {
        layer.layer(service_fn(move |request: Request<()>| {
            let reached = reached.clone();
            async move {
                reached.fetch_add(1, Ordering::SeqCst);
                let mut response = Response::new(Bytes::new());
                if !request.headers().contains_key(&SESSION_ID) {
                    response
                        .headers_mut()
                        .insert(SESSION_ID, http::HeaderValue::from_static("s-1"));
                }
                Ok::<_, Infallible>(response)
            }
        }))
    }

    fn request(who: &str, session: Option<&str>) -> Request<()> {
        let mut request = Request::post("/mcp").body(()).unwrap();
        request
            .extensions_mut()
            .insert(Principal::builder(who, AuthMethod::Jwt).build());
        if let Some(session) = session {
            request
                .headers_mut()
                .insert(SESSION_ID, http::HeaderValue::from_str(session).unwrap());
        }
        request
    }

    #[tokio::test]
    async fn a_session_id_the_binding_does_not_know_never_reaches_rmcp() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(SessionBindingLayer::new(), reached.clone());
        let response = app
            .clone()
            .oneshot(request("alice", Some("forged")))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
        assert_eq!(reached.load(Ordering::SeqCst), 0, "rmcp was asked");

        // A session opened here works for its owner only.
        let opened = app.clone().oneshot(request("alice", None)).await.unwrap();
        assert_eq!(opened.headers()[&SESSION_ID], "s-1");
        let own = app
            .clone()
            .oneshot(request("alice", Some("s-1")))
            .await
            .unwrap();
        assert_eq!(own.status(), StatusCode::OK);
        let foreign = app
            .clone()
            .oneshot(request("mallory", Some("s-1")))
            .await
            .unwrap();
        assert_eq!(foreign.status(), StatusCode::NOT_FOUND);
        assert_eq!(reached.load(Ordering::SeqCst), 2);
    }

    /// A successful `DELETE` frees the id (it is then unknown, `404`); a
    /// refused one keeps it bound to its owner.
    #[tokio::test]
    async fn only_a_successful_close_forgets_the_session() {
        let status = Arc::new(std::sync::Mutex::new(StatusCode::OK));
        let answer = status.clone();
        let app = SessionBindingLayer::new().layer(service_fn(move |request: Request<()>| {
            let status = *answer.lock().unwrap();
            async move {
                let mut response = Response::new(Bytes::new());
                if !request.headers().contains_key(&SESSION_ID) {
                    response
                        .headers_mut()
                        .insert(SESSION_ID, http::HeaderValue::from_static("s-1"));
                } else {
                    *response.status_mut() = status;
                }
                Ok::<_, Infallible>(response)
            }
        }));
        let delete = || {
            let mut request = request("alice", Some("s-1"));
            *request.method_mut() = http::Method::DELETE;
            request
        };
        app.clone().oneshot(request("alice", None)).await.unwrap();
        *status.lock().unwrap() = StatusCode::BAD_REQUEST;
        assert_eq!(app.clone().oneshot(delete()).await.unwrap().status(), 400);
        *status.lock().unwrap() = StatusCode::OK;
        let own = app
            .clone()
            .oneshot(request("alice", Some("s-1")))
            .await
            .unwrap();
        assert_eq!(
            own.status(),
            StatusCode::OK,
            "a refused close forgot the session"
        );
        assert_eq!(app.clone().oneshot(delete()).await.unwrap().status(), 200);
        let after = app.oneshot(request("alice", Some("s-1"))).await.unwrap();
        assert_eq!(after.status(), StatusCode::NOT_FOUND);
    }

    /// No authentication in front is a loud `500`, never a session every
    /// anonymous caller shares.
    #[tokio::test]
    async fn without_a_principal_it_answers_500() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(SessionBindingLayer::new(), reached.clone());
        let response = app
            .oneshot(Request::post("/mcp").body(()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        let body: serde_json::Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["code"], "internal");
        assert_eq!(reached.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn a_closed_session_is_forgotten() {
        let reached = Arc::new(AtomicUsize::new(0));
        let app = app(SessionBindingLayer::new(), reached);
        app.clone().oneshot(request("alice", None)).await.unwrap();
        let mut close = request("alice", Some("s-1"));
        *close.method_mut() = Method::DELETE;
        assert_eq!(
            app.clone().oneshot(close).await.unwrap().status(),
            StatusCode::OK
        );
        let after = app.oneshot(request("alice", Some("s-1"))).await.unwrap();
        assert_eq!(after.status(), StatusCode::NOT_FOUND);
    }
}
