//! `/ws`: the same MCP server over WebSocket, one JSON-RPC message per text
//! frame.
//!
//! Credentials are checked once, at the upgrade, by the same authentication
//! as every route: `Authorization` or `X-API-Key`, or, for browsers (which
//! cannot set headers on a WebSocket), the subprotocol `bearer.<token>`
//! offered beside `mcp` (never the query string, which ends up in logs).
//! Each message then passes the ws rate limit and the MCP policy before it
//! reaches the tools.

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures::{SinkExt, StreamExt};
use http::HeaderValue;
use http::header::{AUTHORIZATION, SEC_WEBSOCKET_PROTOCOL};
use mcp_auth::RequireLayer;
use mcp_core::Principal;
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

/// `GET /ws`, behind authentication and scope `mcp`.
pub fn router(state: &AppState) -> Router<AppState> {
    let stack = ServiceBuilder::new()
        .layer(middleware::from_fn(token_from_subprotocol))
        .layer(state.auth.layer.clone())
        .layer(RequireLayer::scope("mcp").with_challenge(state.auth.challenge.clone()));
    Router::new().route("/ws", get(upgrade).route_layer(stack))
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
    ws: WebSocketUpgrade,
) -> Response {
    let limit = state.config.body_limit;
    ws.protocols([SUBPROTOCOL])
        .max_message_size(limit)
        .max_frame_size(limit)
        .on_failed_upgrade(|error| tracing::debug!(%error, "WebSocket upgrade failed"))
        .on_upgrade(move |socket| async move {
            metrics::gauge!(WS_CONNECTIONS).increment(1.0);
            Connection::new(state, principal).run(socket).await;
            metrics::gauge!(WS_CONNECTIONS).decrement(1.0);
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
    policy: McpPolicy,
    /// Refused messages in the current window of the ws quota's period.
    refused: u32,
    window_start: Option<Instant>,
}

impl Connection {
    fn new(state: AppState, principal: Principal) -> Self {
        Connection {
            state,
            principal,
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
        let mut last_heard = Instant::now();
        let close = loop {
            tokio::select! {
                () = cancel.cancelled() => {
                    break Close { code: close_code::AWAY, reason: "server shutting down" };
                }
                incoming = socket_rx.next() => {
                    let message = match incoming {
                        None => break Close { code: close_code::NORMAL, reason: "" },
                        Some(Err(error)) => break read_error(error),
                        Some(Ok(message)) => message,
                    };
                    last_heard = Instant::now();
                    let text = match message {
                        Message::Text(text) => text,
                        Message::Binary(_) => break Close {
                            code: close_code::UNSUPPORTED,
                            reason: "JSON-RPC text frames only",
                        },
                        Message::Close(_) => break Close { code: close_code::NORMAL, reason: "" },
                        Message::Ping(_) | Message::Pong(_) => continue,
                    };
                    match self.receive(&limiter, &key, text.as_str()).await {
                        Step::Forward(message) => {
                            if to_server.send(*message).await.is_err() {
                                break Close { code: close_code::NORMAL, reason: "" };
                            }
                        }
                        Step::Answer(answer) => {
                            if socket_tx.send(Message::Text(answer)).await.is_err() {
                                break Close { code: close_code::NORMAL, reason: "" };
                            }
                        }
                        Step::Ignore => {}
                        Step::Close(close) => break close,
                    }
                }
                outgoing = from_server.next() => {
                    let Some(message) = outgoing else {
                        break Close { code: close_code::NORMAL, reason: "" };
                    };
                    let Ok(text) = serde_json::to_string(&message) else {
                        tracing::error!("an MCP message could not be serialized");
                        continue;
                    };
                    if socket_tx.send(Message::Text(text.into())).await.is_err() {
                        break Close { code: close_code::NORMAL, reason: "" };
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() >= idle_timeout {
                        break Close { code: close_code::AWAY, reason: "idle timeout" };
                    }
                    if socket_tx.send(Message::Ping(Default::default())).await.is_err() {
                        break Close { code: close_code::NORMAL, reason: "" };
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
        let _ = socket_tx
            .send(Message::Close(Some(CloseFrame {
                code: close.code,
                reason: Utf8Bytes::from_static(close.reason),
            })))
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
        cancel.cancel();
        drop(to_server);
        let _ = server_task.await;
    }

    /// Decides what to do with one text frame.
    async fn receive(
        &mut self,
        limiter: &mcp_ratelimit::RateLimiter,
        key: &mcp_ratelimit::RateKey,
        text: &str,
    ) -> Step {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => return Step::Answer(error(&Value::Null, -32700, "parse error", None)),
        };
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        match limiter.check(key).await {
            Ok(decision) if decision.allowed => {}
            Ok(decision) => {
                if self.abusive(limiter) {
                    tracing::warn!("closing a WebSocket that kept sending past its quota");
                    return Step::Close(Close {
                        code: close_code::POLICY,
                        reason: "rate limit exceeded",
                    });
                }
                let retry = decision.retry_after_seconds().unwrap_or(1);
                return answer_requests(&id, || {
                    error(
                        &id,
                        RATE_LIMITED,
                        "rate limited",
                        Some(json!({ "retryAfter": retry })),
                    )
                });
            }
            Err(_) => {
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

enum Step {
    Forward(Box<RxJsonRpcMessage<RoleServer>>),
    Answer(Utf8Bytes),
    Ignore,
    Close(Close),
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
