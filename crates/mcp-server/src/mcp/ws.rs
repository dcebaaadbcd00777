//! `/ws`: the same MCP server over WebSocket, one JSON-RPC message per text
//! frame.
//!
//! Credentials are checked at the upgrade by the same authentication as
//! every route: `Authorization` or `X-API-Key`, or, for browsers (which
//! cannot set headers on a WebSocket), the subprotocol `bearer.<token>`
//! offered beside `mcp` (never the query string, which ends up in logs).
//! They are checked again for the connection's whole life: it is closed
//! with 1008 when the credential expires, and within the user cache's TTL
//! of a revocation, a deletion or a role change. Every frame passes the ws
//! rate limit, and each message the MCP policy, before it reaches the
//! tools; one user holds at most a configured number of connections.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{SinkExt, StreamExt};
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use http::{HeaderMap, HeaderName, HeaderValue};
use mcp_auth::{AuthError, RequireLayer};
use mcp_core::{Principal, Problem};
use rmcp::ServiceExt;
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use serde_json::{Value, json};
use tokio::time::Instant;
use tower::ServiceBuilder;

use super::McpServer;
use super::policy::{McpPolicy, Refusal, messages};
use crate::AppState;
use crate::observe::WS_CONNECTIONS;

/// JSON-RPC error code of a message refused by the ws rate limit.
pub const RATE_LIMITED: i64 = -32029;
/// JSON-RPC error code of a message the MCP policy refuses.
pub const FORBIDDEN: i64 = -32003;
/// How long a closing connection waits for the client's Close.
const CLOSE_GRACE: std::time::Duration = std::time::Duration::from_secs(1);
/// The subprotocol the server speaks.
pub const SUBPROTOCOL: &str = "mcp";
/// Prefix of the subprotocol that carries a browser's token.
pub const TOKEN_SUBPROTOCOL_PREFIX: &str = "bearer.";

/// The headers that carry credentials, kept to check them again.
const API_KEY: HeaderName = HeaderName::from_static("x-api-key");
/// The shortest time between two checks of a connection's credentials.
const MIN_RECHECK: Duration = Duration::from_millis(100);

/// `GET /ws`, behind authentication and scope `mcp`.
pub fn router(state: &AppState) -> Router<AppState> {
    let stack = ServiceBuilder::new()
        .layer(middleware::from_fn(token_from_subprotocol))
        .layer(state.auth.layer.clone())
        // Each upgrade starts an MCP server: the api quota pays for it.
        .layer(state.limits.api_layer())
        .layer(RequireLayer::scope("mcp").challenge(state.auth.challenge.clone()));
    let slots = Slots::new(
        state.config.ws_max_connections_per_principal,
        &state.config.public_url,
    );
    Router::new().route(
        "/ws",
        get(upgrade).route_layer(stack).layer(Extension(slots)),
    )
}

/// Open connections per user, capped: one credential (or many keys of one
/// user) cannot hold the server's connections.
#[derive(Clone)]
struct Slots {
    max: usize,
    /// This server's own token issuer: its subjects are local users.
    own_issuer: Arc<str>,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One taken slot; dropping it frees it.
struct Slot {
    slots: Slots,
    who: String,
}

impl Slots {
    fn new(max: usize, own_issuer: &str) -> Self {
        Slots {
            max,
            own_issuer: own_issuer.into(),
            open: Arc::default(),
        }
    }

    /// Who counts as one user: a local user whichever of their keys and
    /// tokens they use; an external subject per issuer (it is not a local
    /// user, whatever its `sub`).
    fn who(&self, principal: &Principal) -> String {
        match principal.issuer() {
            Some(issuer) if issuer != &*self.own_issuer => {
                format!("{issuer}\n{}", principal.subject())
            }
            _ => principal.subject().to_owned(),
        }
    }

    fn take(&self, principal: &Principal) -> Option<Slot> {
        let who = self.who(principal);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(who.clone()).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(Slot {
            slots: self.clone(),
            who,
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.who) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.who);
            }
        }
    }
}

/// The credentials of the upgrade request, to authenticate them again.
fn credentials(headers: &HeaderMap) -> http::request::Parts {
    let (mut parts, ()) = http::Request::new(()).into_parts();
    for name in [AUTHORIZATION, API_KEY] {
        if let Some(value) = headers.get(&name) {
            let mut value = value.clone();
            value.set_sensitive(true);
            parts.headers.insert(name, value);
        }
    }
    parts
}

/// Moves a `bearer.<token>` subprotocol into `Authorization` when the
/// request carries no credentials of its own, so the one authentication
/// path checks it.
async fn token_from_subprotocol(mut request: Request, next: Next) -> Response {
    let headers = request.headers();
    if !headers.contains_key(AUTHORIZATION) && !headers.contains_key("x-api-key") {
        let token = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .find_map(|p| p.trim().strip_prefix(TOKEN_SUBPROTOCOL_PREFIX))
            .and_then(|token| HeaderValue::from_str(&format!("Bearer {token}")).ok());
        if let Some(mut value) = token {
            value.set_sensitive(true);
            request.headers_mut().insert(AUTHORIZATION, value);
        }
    }
    next.run(request).await
}

async fn upgrade(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Extension(slots): Extension<Slots>,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    let Some(slot) = slots.take(&principal) else {
        tracing::warn!("WebSocket refused: too many connections for one user");
        return Problem::rate_limited(1)
            .with_detail("too many WebSocket connections for this user")
            .into_response();
    };
    let credentials = credentials(&headers);
    let limit = state.config.body_limit;
    ws.protocols([SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            metrics::gauge!(WS_CONNECTIONS).increment(1.0);
            Connection::new(state, principal, credentials)
                .run(socket)
                .await;
            metrics::gauge!(WS_CONNECTIONS).decrement(1.0);
            drop(slot);
        })
        .into_response()
}

/// How one connection ended, for the close frame.
struct Close {
    code: u16,
    reason: &'static str,
}

struct Connection {
    state: AppState,
    principal: Principal,
    /// The upgrade's credential headers, checked again while open.
    credentials: http::request::Parts,
    policy: McpPolicy,
    /// Refused messages in the current window of the ws quota's period.
    refused: u32,
    window_start: Option<Instant>,
}

impl Connection {
    fn new(state: AppState, principal: Principal, credentials: http::request::Parts) -> Self {
        Connection {
            state,
            principal,
            credentials,
            policy: McpPolicy::default(),
            refused: 0,
            window_start: None,
        }
    }

    async fn run(mut self, socket: WebSocket) {
        let (mut socket_tx, mut socket_rx) = socket.split();
        // rmcp runs on a pair of channels; this loop is the transport.
        let (mut to_server, server_rx) =
            futures::channel::mpsc::channel::<RxJsonRpcMessage<RoleServer>>(16);
        let (server_tx, mut from_server) =
            futures::channel::mpsc::channel::<TxJsonRpcMessage<RoleServer>>(16);
        let server = McpServer::for_connection(self.state.clone(), self.principal.clone());
        let cancel = self.state.shutdown.child_token();
        let server_cancel = cancel.clone();
        let server_task = tokio::spawn(async move {
            match server
                .serve_with_ct((server_tx, server_rx), server_cancel)
                .await
            {
                Ok(running) => {
                    let _ = running.waiting().await;
                }
                Err(error) => tracing::debug!(%error, "MCP session over WebSocket did not start"),
            }
        });
        let limiter = self.state.limits.ws_limiter().clone();
        let key = mcp_ratelimit::principal_key(&self.principal);
        let idle_timeout = self.state.config.ws_idle_timeout;
        let mut ping = tokio::time::interval(self.state.config.ws_ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        // Pongs the server asked for are free; unasked ones are metered.
        let mut owed_pongs: u32 = 0;
        let mut last_heard = Instant::now();
        // Credentials are checked again as often as the caches that answer
        // for them forget (the user cache's TTL), and end at their expiry.
        let mut recheck = tokio::time::interval(self.state.config.user_cache_ttl.max(MIN_RECHECK));
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.reset();
        let expiry = expiry_deadline(self.principal.expires_at(), self.state.clock.now());
        let expired = async move {
            match expiry {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(expired);
        // A client that stops reading must not stall the loop: every write
        // has the idle timeout to complete, or the connection is dropped.
        let send_timeout = idle_timeout;
        let close = loop {
            // Biased: shutdown, expiry and revocation win over traffic, and
            // the server's answers over new requests.
            tokio::select! {
                biased;
                () = cancel.cancelled() => {
                    break Close { code: close_code::AWAY, reason: "server shutting down" };
                }
                () = &mut expired => {
                    break Close { code: close_code::POLICY, reason: "credentials expired" };
                }
                _ = recheck.tick() => {
                    if let Some(close) = self.still_valid().await {
                        break close;
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= idle_timeout {
                        break Close { code: close_code::AWAY, reason: "idle timeout" };
                    }
                    if let Err(close) = send(&mut socket_tx, Message::Ping(Default::default()), send_timeout).await {
                        break close;
                    }
                    // A client may answer only the latest ping (RFC 6455
                    // 5.5.3), so at most one is owed at a time.
                    owed_pongs = 1;
                }
                outgoing = from_server.next() => {
                    let Some(message) = outgoing else {
                        break Close { code: close_code::NORMAL, reason: "" };
                    };
                    let Ok(text) = serde_json::to_string(&message) else {
                        tracing::error!("an MCP message could not be serialized");
                        continue;
                    };
                    if let Err(close) = send(&mut socket_tx, Message::Text(text.into()), send_timeout).await {
                        break close;
                    }
                }
                incoming = socket_rx.next() => {
                    let message = match incoming {
                        None => break Close { code: close_code::NORMAL, reason: "" },
                        Some(Err(error)) => break read_error(error),
                        Some(Ok(message)) => message,
                    };
                    last_heard = Instant::now();
                    match message {
                        Message::Close(_) => break Close { code: close_code::NORMAL, reason: "" },
                        Message::Pong(_) if owed_pongs > 0 => {
                            owed_pongs -= 1;
                            continue;
                        }
                        _ => {}
                    }
                    // Every frame is metered, pings and garbage included:
                    // the quota is on what a client makes the server do.
                    let metered = self.meter(&limiter, &key).await;
                    if let Metered::Close(close) = metered {
                        break close;
                    }
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Binary(_) => break Close {
                            code: close_code::UNSUPPORTED,
                            reason: "JSON-RPC text frames only",
                        },
                        _ => continue,
                    };
                    match self.receive(metered, text.as_str()) {
                        Step::Forward(message) => {
                            match tokio::time::timeout(send_timeout, to_server.send(*message)).await {
                                Ok(Ok(())) => {}
                                Ok(Err(_)) => break Close { code: close_code::NORMAL, reason: "" },
                                Err(_) => break STALLED,
                            }
                        }
                        Step::Answer(answer) => {
                            if let Err(close) = send(&mut socket_tx, Message::Text(answer), send_timeout).await {
                                break close;
                            }
                        }
                        Step::Ignore => {}
                    }
                }
            }
        };
        if close.code != close_code::NORMAL || !close.reason.is_empty() {
            tracing::info!(
                code = close.code,
                reason = close.reason,
                "closing WebSocket"
            );
        }
        // The tools stop first, so nothing more is produced for a client
        // that is going away.
        cancel.cancel();
        let _ = tokio::time::timeout(
            CLOSE_GRACE,
            socket_tx.send(Message::Close(Some(CloseFrame {
                code: close.code,
                reason: Utf8Bytes::from_static(close.reason),
            }))),
        )
        .await;
        // The closing handshake: wait (briefly) for the client's Close, so
        // frames still in flight are not answered with a reset that would
        // discard our close frame before the client reads it.
        let _ = tokio::time::timeout(CLOSE_GRACE, async {
            while let Some(Ok(message)) = socket_rx.next().await {
                if matches!(message, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
        drop(to_server);
        let _ = server_task.await;
    }

    /// Checks the connection's credentials again: `Some` closes it when
    /// they were revoked, the user is gone, or their role or scopes
    /// changed (the tools were set up for the old ones). An authentication
    /// store that cannot answer keeps the connection for the next check.
    async fn still_valid(&self) -> Option<Close> {
        match self.state.auth.layer.authenticate(&self.credentials).await {
            Ok(Some(now))
                if now.roles() == self.principal.roles()
                    && now.scopes() == self.principal.scopes() =>
            {
                None
            }
            Ok(Some(_)) => Some(Close {
                code: close_code::POLICY,
                reason: "credentials changed",
            }),
            Err(AuthError::Unavailable(_)) => {
                tracing::warn!("cannot check a WebSocket's credentials again; keeping it");
                None
            }
            Ok(None) | Err(_) => {
                tracing::info!("closing a WebSocket whose credentials are no longer valid");
                Some(Close {
                    code: close_code::POLICY,
                    reason: "credentials no longer valid",
                })
            }
        }
    }

    /// Passes one frame through the ws rate limit.
    async fn meter(
        &mut self,
        limiter: &mcp_ratelimit::RateLimiter,
        key: &mcp_ratelimit::RateKey,
    ) -> Metered {
        match limiter.check(key).await {
            Ok(decision) if decision.allowed => Metered::Allowed,
            Ok(decision) => {
                if self.abusive(limiter) {
                    tracing::warn!("closing a WebSocket that kept sending past its quota");
                    return Metered::Close(Close {
                        code: close_code::POLICY,
                        reason: "rate limit exceeded",
                    });
                }
                Metered::Limited(decision.retry_after_seconds().unwrap_or(1))
            }
            Err(_) => Metered::Unavailable,
        }
    }

    /// Decides what to do with one text frame, given its metering.
    fn receive(&mut self, metered: Metered, text: &str) -> Step {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => return Step::Answer(error(&Value::Null, -32700, "parse error", None)),
        };
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        match metered {
            Metered::Allowed => {}
            Metered::Limited(retry) => {
                return answer_requests(&id, || {
                    error(
                        &id,
                        RATE_LIMITED,
                        "rate limited",
                        Some(json!({ "retryAfter": retry })),
                    )
                });
            }
            Metered::Unavailable | Metered::Close(_) => {
                return answer_requests(&id, || {
                    error(&id, -32603, "rate limiting is unavailable", None)
                });
            }
        }
        for (method, name) in messages(&value) {
            match self.policy.check(&self.principal, method, name) {
                Ok(()) => {}
                Err(refusal) => {
                    tracing::info!(
                        method,
                        tool = name.unwrap_or(""),
                        "MCP message refused by policy"
                    );
                    let data = match refusal {
                        Refusal::NeedsScope(scope) => {
                            json!({"code": "insufficient_scope", "scope": scope})
                        }
                        Refusal::NeedsRole(role) => json!({"code": "forbidden", "role": role}),
                        Refusal::NotAllowed => json!({"code": "forbidden"}),
                    };
                    return answer_requests(&id, || {
                        error(
                            &id,
                            FORBIDDEN,
                            "the MCP policy does not allow this",
                            Some(data),
                        )
                    });
                }
            }
        }
        match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
            Ok(message) => Step::Forward(Box::new(message)),
            Err(_) => answer_requests(&id, || error(&id, -32600, "invalid request", None)),
        }
    }

    /// Counts a refused message; true once a connection has had more
    /// messages refused within one period of the quota than the quota
    /// itself admits: it is not backing off.
    fn abusive(&mut self, limiter: &mcp_ratelimit::RateLimiter) -> bool {
        let quota = limiter.policy().quota();
        let now = Instant::now();
        match self.window_start {
            Some(start) if now.duration_since(start) < quota.period() => self.refused += 1,
            _ => {
                self.window_start = Some(now);
                self.refused = 1;
            }
        }
        self.refused > quota.burst()
    }
}

/// A message over the size limit is 1009; anything else that breaks the
/// stream is a protocol error.
fn read_error(error: axum::Error) -> Close {
    let error = error.into_inner();
    match error.downcast_ref::<tungstenite::Error>() {
        Some(tungstenite::Error::Capacity(_)) => Close {
            code: close_code::SIZE,
            reason: "message too big",
        },
        _ => {
            tracing::debug!(%error, "WebSocket read failed");
            Close {
                code: close_code::PROTOCOL,
                reason: "",
            }
        }
    }
}

/// A client that does not read what it is sent.
const STALLED: Close = Close {
    code: close_code::POLICY,
    reason: "not reading",
};

/// Sends `message`, within `limit`: a client that does not read is closed.
async fn send(
    socket: &mut futures::stream::SplitSink<WebSocket, Message>,
    message: Message,
    limit: Duration,
) -> Result<(), Close> {
    match tokio::time::timeout(limit, socket.send(message)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(_)) => Err(Close {
            code: close_code::NORMAL,
            reason: "",
        }),
        Err(_) => {
            tracing::info!("closing a WebSocket whose client stopped reading");
            Err(STALLED)
        }
    }
}

/// What the ws rate limit said of one frame.
enum Metered {
    Allowed,
    /// Refused; retry after this many seconds.
    Limited(u64),
    /// The limiter could not decide.
    Unavailable,
    /// Refused, and the connection is not backing off.
    Close(Close),
}

/// The tokio deadline of a credential's expiry, `expires_at`, as seen at
/// `now` (from the server's clock); `None` when it never expires.
fn expiry_deadline(expires_at: Option<SystemTime>, now: SystemTime) -> Option<Instant> {
    let left = expires_at?.duration_since(now).unwrap_or(Duration::ZERO);
    // An expiry too far away for the timer is as good as none.
    Instant::now().checked_add(left)
}

enum Step {
    Forward(Box<RxJsonRpcMessage<RoleServer>>),
    Answer(Utf8Bytes),
    Ignore,
}

/// Requests get an answer; notifications and responses (no id) cannot.
fn answer_requests(id: &Value, answer: impl FnOnce() -> Utf8Bytes) -> Step {
    if id.is_null() {
        Step::Ignore
    } else {
        Step::Answer(answer())
    }
}

fn error(id: &Value, code: i64, message: &str, data: Option<Value>) -> Utf8Bytes {
    let mut error = json!({ "code": code, "message": message });
    if let Some(data) = data {
        error["data"] = data;
    }
    json!({ "jsonrpc": "2.0", "id": id, "error": error })
        .to_string()
        .into()
}
