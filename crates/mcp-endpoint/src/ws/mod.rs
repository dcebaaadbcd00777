//! MCP over WebSocket, one JSON-RPC message per text frame.

mod connection;
mod slots;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use http::HeaderMap;
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use mcp_auth::AuthLayer;
use mcp_core::{Principal, Problem, SharedClock, SystemClock};
use mcp_ratelimit::RateLimiter;
use rmcp::{RoleServer, Service};
use tokio_util::sync::CancellationToken;

use crate::McpPolicy;
use connection::Connection;
use slots::Slots;

/// JSON-RPC error code of a message refused by the per-message rate limit.
pub const RATE_LIMITED: i64 = -32029;
/// JSON-RPC error code of a message the MCP policy refuses.
pub const FORBIDDEN: i64 = -32003;
/// The subprotocol the endpoint speaks.
pub const SUBPROTOCOL: &str = "mcp";
/// The gauge of open connections, unless [`WebSocketEndpoint::gauge`] names
/// another.
pub const WS_CONNECTIONS: &str = "mcp_ws_connections";

/// The shortest time between two checks of a connection's credentials.
const MIN_RECHECK: Duration = Duration::from_millis(100);

/// The headers that carry credentials, kept to check them again.
const CREDENTIALS: [http::HeaderName; 3] = [
    AUTHORIZATION,
    http::HeaderName::from_static("x-api-key"),
    SEC_WEBSOCKET_PROTOCOL,
];

/// An MCP server over WebSocket: `GET` upgrades, one JSON-RPC message per
/// text frame, each through the [`McpPolicy`] (`-32003` with the missing
/// scope or role) and, when set, a per-message [`RateLimiter`] (`-32029`
/// with `retryAfter`; a connection that keeps sending past its quota is
/// closed with 1008).
///
/// Put authentication in front (an [`AuthLayer`] whose chain has a
/// [`SubprotocolBearer`](crate::SubprotocolBearer) for browsers); a request
/// that reaches it without a [`Principal`] is a misconfiguration, answered
/// `500` and logged. Give the same `AuthLayer` to [`recheck`](Self::recheck)
/// and the credentials are checked again for the connection's whole life:
/// it is closed with 1008 when they are revoked or their roles or scopes
/// change; without it only their expiry closes it.
///
/// `factory` makes the MCP server of each connection, for its principal;
/// the principal is also in every request's extensions, where
/// [`caller`](crate::caller) finds it, and so is the upgrade request's
/// head (`http::request::Parts`, its credential and cookie headers
/// removed), where rmcp's Streamable HTTP puts each POST's: a tool reads
/// the connection's request id and client address the same way on both.
///
/// ```
/// use axum::Router;
/// use mcp_endpoint::{McpPolicy, WebSocketEndpoint};
/// use rmcp::handler::server::ServerHandler;
///
/// #[derive(Clone)]
/// struct Tools;
/// impl ServerHandler for Tools {}
///
/// let endpoint = WebSocketEndpoint::new(|_principal| Tools)
///     .policy(McpPolicy::empty().allow("*", "*", ["mcp"]))
///     .max_message_size(64 * 1024)
///     .max_connections_per_principal(4);
/// // Authentication goes in front, e.g. `.route_layer(auth_layer)`.
/// let app: Router = Router::new().route("/ws", endpoint.method_router());
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub struct WebSocketEndpoint<F> {
    factory: Arc<F>,
    settings: Settings,
    slots: Slots,
}

impl<F> Clone for WebSocketEndpoint<F> {
    fn clone(&self) -> Self {
        WebSocketEndpoint {
            factory: self.factory.clone(),
            settings: self.settings.clone(),
            slots: self.slots.clone(),
        }
    }
}

impl<F> std::fmt::Debug for WebSocketEndpoint<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebSocketEndpoint")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

/// A message an open connection refused by its policy: what
/// [`WebSocketEndpoint::on_refusal`] is told, for an audit trail (an HTTP
/// refusal is a `403` a layer can see; this one is a JSON-RPC error inside
/// a connection, seen by nothing else).
#[derive(Debug)]
#[non_exhaustive]
pub struct WsRefusal<'a> {
    /// Who sent it.
    pub principal: &'a Principal,
    /// The upgrade request's head, its credential and cookie headers
    /// removed: its request id and the client's address.
    pub head: &'a http::request::Parts,
    /// The JSON-RPC method (`response` for a message without one).
    pub method: &'a str,
    /// The tool's (or prompt's, resource's) name, when the method has one.
    pub name: Option<&'a str>,
    /// Why.
    pub refusal: &'a crate::Refusal,
}

/// The hook of [`WebSocketEndpoint::on_refusal`].
#[derive(Clone)]
struct RefusalHook(Arc<dyn Fn(&WsRefusal<'_>) + Send + Sync>);

impl std::fmt::Debug for RefusalHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefusalHook")
    }
}

#[derive(Clone, Debug)]
struct Settings {
    max_message_size: usize,
    ping_interval: Duration,
    idle_timeout: Duration,
    recheck_interval: Duration,
    policy: Arc<McpPolicy>,
    limiter: Option<RateLimiter>,
    shutdown: CancellationToken,
    auth: Option<AuthLayer>,
    clock: SharedClock,
    gauge: Arc<str>,
    on_refusal: Option<RefusalHook>,
}

impl<F, H> WebSocketEndpoint<F>
where
    F: Fn(Principal) -> H + Send + Sync + 'static,
    H: Service<RoleServer> + Send + 'static,
{
    /// Serves the MCP server `factory` makes for each connection's
    /// principal. Defaults: messages up to 1 MiB, a ping every 30 s, closed
    /// after 90 s without a frame, 8 connections per user, an empty policy
    /// (which refuses every message: set [`policy`](Self::policy)), no rate
    /// limit, the system clock.
    pub fn new(factory: F) -> Self {
        WebSocketEndpoint {
            factory: Arc::new(factory),
            settings: Settings {
                max_message_size: 1 << 20,
                ping_interval: Duration::from_secs(30),
                idle_timeout: Duration::from_secs(90),
                recheck_interval: Duration::from_secs(60),
                policy: Arc::new(McpPolicy::empty()),
                limiter: None,
                shutdown: CancellationToken::new(),
                auth: None,
                clock: SystemClock::shared(),
                gauge: WS_CONNECTIONS.into(),
                on_refusal: None,
            },
            slots: Slots::new(8),
        }
    }

    /// The largest message (and frame) a client may send; larger closes
    /// the connection with 1009.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.settings.max_message_size = bytes;
        self
    }

    /// How often the endpoint pings; each ping also checks the idle
    /// timeout.
    #[must_use]
    pub fn ping_interval(mut self, interval: Duration) -> Self {
        self.settings.ping_interval = interval;
        self
    }

    /// Closes (1001) a connection that sent nothing for this long; also the
    /// time each write has before a client that does not read is dropped.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.settings.idle_timeout = timeout;
        self
    }

    /// How often [`recheck`](Self::recheck) runs: as often as the caches
    /// that answer for credentials forget (at least every 100 ms).
    #[must_use]
    pub fn recheck_interval(mut self, interval: Duration) -> Self {
        self.settings.recheck_interval = interval.max(MIN_RECHECK);
        self
    }

    /// Checks each connection's credentials again with `auth` (the
    /// authentication in front of the endpoint).
    #[must_use]
    pub fn recheck(mut self, auth: AuthLayer) -> Self {
        self.settings.auth = Some(auth);
        self
    }

    /// How many connections one user may hold open; more are `429`.
    #[must_use]
    pub fn max_connections_per_principal(mut self, max: usize) -> Self {
        self.slots = self.slots.max(max);
        self
    }

    /// The issuer of this server's own tokens: its subjects are local users,
    /// one user whichever key or token they connect with. A subject of
    /// another issuer counts per issuer.
    #[must_use]
    pub fn own_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.slots = self.slots.own_issuer(issuer.into());
        self
    }

    /// The policy every message passes.
    #[must_use]
    pub fn policy(mut self, policy: McpPolicy) -> Self {
        self.settings.policy = Arc::new(policy);
        self
    }

    /// Meters every frame a client sends (pings and garbage included) with
    /// `limiter`, keyed by [`Principal::identity`].
    #[must_use]
    pub fn rate_limit(mut self, limiter: RateLimiter) -> Self {
        self.settings.limiter = Some(limiter);
        self
    }

    /// Closes every connection (1001) when `token` is cancelled.
    #[must_use]
    pub fn shutdown(mut self, token: CancellationToken) -> Self {
        self.settings.shutdown = token;
        self
    }

    /// The clock credentials' expiry is measured by.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.settings.clock = clock;
        self
    }

    /// The name of the gauge of open connections.
    #[must_use]
    pub fn gauge(mut self, name: impl Into<String>) -> Self {
        self.settings.gauge = name.into().into();
        self
    }

    /// Calls `hook` for every message the policy refuses on an open
    /// connection (after its error is decided, before it is sent), with
    /// who sent it and the upgrade's head: where an audit trail records the
    /// refusals no HTTP layer sees. The hook runs on the connection's task:
    /// keep it quick (a channel send, not a database write).
    #[must_use]
    pub fn on_refusal(mut self, hook: impl Fn(&WsRefusal<'_>) + Send + Sync + 'static) -> Self {
        self.settings.on_refusal = Some(RefusalHook(Arc::new(hook)));
        self
    }

    /// A `GET` route that upgrades. Without [`recheck`](Self::recheck) it
    /// says once, as a warning, that open connections keep their
    /// credentials until these expire (a revoked key stays connected).
    pub fn method_router<S>(self) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        if self.settings.auth.is_none() {
            tracing::warn!(
                "WebSocketEndpoint without recheck(auth): a connection's credentials are \
                 never checked again, so a revoked key or deleted user stays connected \
                 until its credential expires"
            );
        }
        axum::routing::get(move |request: axum::extract::Request| {
            let endpoint = self.clone();
            async move { endpoint.upgrade(request).await }
        })
    }

    /// Upgrades `request` (authenticated in front) to an MCP connection.
    pub async fn upgrade(&self, request: axum::extract::Request) -> Response {
        let (mut parts, _body) = request.into_parts();
        let Some(principal) = parts.extensions.get::<Principal>().cloned() else {
            tracing::error!(
                "WebSocketEndpoint reached without a Principal: put an authentication layer \
                 (mcp_auth::AuthLayer) in front of it"
            );
            return Problem::internal().into_response();
        };
        let ws = match WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
            Ok(ws) => ws,
            Err(rejection) => return rejection.into_response(),
        };
        let Some(slot) = self.slots.take(&principal) else {
            tracing::warn!("WebSocket refused: too many connections for one user");
            return Problem::rate_limited(1)
                .with_detail("too many WebSocket connections for this user")
                .into_response();
        };
        let credentials = credentials(&parts.headers);
        let head = head(&parts);
        let settings = self.settings.clone();
        let server = (self.factory)(principal.clone());
        let limit = settings.max_message_size;
        ws.protocols([SUBPROTOCOL])
            .max_message_size(limit)
            .max_frame_size(limit)
            .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
            .on_upgrade(move |socket| async move {
                let gauge = settings.gauge.clone();
                metrics::gauge!(gauge.to_string()).increment(1.0);
                Connection::new(settings, principal, credentials, head)
                    .run(socket, server)
                    .await;
                metrics::gauge!(gauge.to_string()).decrement(1.0);
                drop(slot);
            })
            .into_response()
    }
}

/// The upgrade request's head without its credentials: every request
/// message's context carries it, as rmcp's Streamable HTTP carries each
/// POST's, so a tool finds the request id and the client's address of the
/// connection where it finds them over HTTP.
fn head(parts: &http::request::Parts) -> http::request::Parts {
    let mut head = parts.clone();
    for name in CREDENTIALS {
        head.headers.remove(&name);
    }
    head.headers.remove(http::header::COOKIE);
    head
}

/// The credentials of the upgrade request, to authenticate them again.
fn credentials(headers: &HeaderMap) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    for name in CREDENTIALS {
        for value in headers.get_all(&name) {
            let mut value = value.clone();
            value.set_sensitive(true);
            parts.headers.append(name.clone(), value);
        }
    }
    parts
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use http::{Request, StatusCode};
    use mcp_core::AuthMethod;
    use rmcp::handler::server::ServerHandler;
    use tower::ServiceExt;

    use super::*;

    #[derive(Clone)]
    struct Tools;
    impl ServerHandler for Tools {}

    fn app() -> Router {
        Router::new().route("/ws", WebSocketEndpoint::new(|_| Tools).method_router())
    }

    /// No authentication in front is a loud `500`, never an anonymous
    /// connection.
    #[tokio::test]
    async fn without_a_principal_it_answers_500() {
        let response = app()
            .oneshot(Request::get("/ws").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[tokio::test]
    async fn a_request_that_is_no_upgrade_is_refused() {
        let mut request = Request::get("/ws").body(Body::empty()).unwrap();
        request
            .extensions_mut()
            .insert(Principal::builder("u1", AuthMethod::Jwt).build());
        let response = app().oneshot(request).await.unwrap();
        assert!(response.status().is_client_error(), "{}", response.status());
    }

    #[test]
    fn credentials_kept_for_the_recheck_are_sensitive() {
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, "Bearer t".parse().unwrap());
        headers.insert(SEC_WEBSOCKET_PROTOCOL, "mcp, bearer.t".parse().unwrap());
        headers.insert("cookie", "c=1".parse().unwrap());
        let kept = credentials(&headers);
        assert_eq!(kept.headers.len(), 2);
        assert!(kept.headers.values().all(http::HeaderValue::is_sensitive));
    }
}
