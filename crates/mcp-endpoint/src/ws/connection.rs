//! One WebSocket connection: the transport loop between the socket and
//! rmcp.

use std::time::{Duration, SystemTime};

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, close_code};
use futures::{SinkExt, StreamExt};
use mcp_auth::AuthError;
use mcp_core::Principal;
use mcp_ratelimit::{RateKey, RateLimiter};
use rmcp::model::GetExtensions;
use rmcp::service::{RoleServer, RxJsonRpcMessage, TxJsonRpcMessage};
use rmcp::{Service, ServiceExt};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{FORBIDDEN, RATE_LIMITED, Settings};
use crate::Messages;
use crate::policy::{Metered, Refusal};

/// How long a closing connection waits for the client's Close.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// How one connection ended, for the close frame.
struct Close {
    code: u16,
    reason: &'static str,
}

pub(super) struct Connection {
    settings: Settings,
    principal: Principal,
    /// The upgrade's credential headers, checked again while open.
    credentials: http::request::Parts,
    /// The upgrade's head without them, in every request's extensions.
    head: http::request::Parts,
    /// Refused messages in the current window of the quota's period.
    refused: u32,
    window_start: Option<Instant>,
}

impl Connection {
    pub(super) fn new(
        settings: Settings,
        principal: Principal,
        credentials: http::request::Parts,
        head: http::request::Parts,
    ) -> Self {
        Connection {
            settings,
            principal,
            credentials,
            head,
            refused: 0,
            window_start: None,
        }
    }

    pub(super) async fn run<H>(mut self, socket: WebSocket, server: H)
    where
        H: Service<RoleServer> + Send + 'static,
    {
        let (mut socket_tx, mut socket_rx) = socket.split();
        // rmcp runs on a pair of channels; this loop is the transport.
        let (mut to_server, server_rx) =
            futures::channel::mpsc::channel::<RxJsonRpcMessage<RoleServer>>(16);
        let (server_tx, mut from_server) =
            futures::channel::mpsc::channel::<TxJsonRpcMessage<RoleServer>>(16);
        let cancel = self.settings.shutdown.child_token();
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
        let limiter = self.settings.limiter.clone();
        let key = RateKey::text(self.principal.identity());
        let idle_timeout = self.settings.idle_timeout;
        let mut ping = tokio::time::interval(self.settings.ping_interval);
        ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ping.reset();
        // Pongs the server asked for are free; unasked ones are metered.
        let mut owed_pongs: u32 = 0;
        let mut last_heard = Instant::now();
        // Credentials are checked again as often as the caches that answer
        // for them forget, and end at their expiry.
        let mut recheck = tokio::time::interval(self.settings.recheck_interval);
        recheck.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        recheck.reset();
        let expiry = expiry_deadline(self.principal.expires_at(), self.settings.clock.now());
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
                    let metered = match &limiter {
                        Some(limiter) => self.meter(limiter, &key).await,
                        None => FrameMetered::Allowed,
                    };
                    if let FrameMetered::Close(close) = metered {
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
                    match self.receive(metered, text.as_str()).await {
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
        let auth = self.settings.auth.as_ref()?;
        match auth.authenticate(&self.credentials).await {
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

    /// Passes one frame through the rate limit.
    async fn meter(&mut self, limiter: &RateLimiter, key: &RateKey) -> FrameMetered {
        match limiter.check(key).await {
            Ok(decision) if decision.allowed => FrameMetered::Allowed,
            Ok(decision) => {
                if self.abusive(limiter) {
                    tracing::warn!("closing a WebSocket that kept sending past its quota");
                    return FrameMetered::Close(Close {
                        code: close_code::POLICY,
                        reason: "rate limit exceeded",
                    });
                }
                FrameMetered::Limited(decision.retry_after_seconds().unwrap_or(1))
            }
            Err(_) => FrameMetered::Unavailable,
        }
    }

    /// Decides what to do with one text frame, given its metering.
    async fn receive(&mut self, metered: FrameMetered, text: &str) -> Step {
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => return Step::Answer(error(&Value::Null, -32700, "parse error", None)),
        };
        let id = value.get("id").cloned().unwrap_or(Value::Null);
        match metered {
            FrameMetered::Allowed => {}
            FrameMetered::Limited(retry) => {
                return answer_requests(&id, || {
                    error(
                        &id,
                        RATE_LIMITED,
                        "rate limited",
                        Some(json!({ "retryAfter": retry })),
                    )
                });
            }
            FrameMetered::Unavailable | FrameMetered::Close(_) => {
                return answer_requests(&id, || {
                    error(&id, -32603, "rate limiting is unavailable", None)
                });
            }
        }
        let messages = Messages::from_value(&value);
        let messages = messages.pairs();
        for &(method, name) in &messages {
            if let Err(refusal) = self.settings.policy.check(&self.principal, method, name) {
                tracing::info!(
                    method,
                    tool = name.unwrap_or(""),
                    "MCP message refused by policy"
                );
                if let Some(hook) = &self.settings.on_refusal {
                    (hook.0)(&super::WsRefusal {
                        principal: &self.principal,
                        head: &self.head,
                        method,
                        name,
                        refusal: &refusal,
                    });
                }
                let data = match refusal {
                    Refusal::NeedsScope(scopes) => json!({
                        "code": "insufficient_scope",
                        "scope": scopes.join(" "),
                        "requiredScopes": scopes,
                    }),
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
        match self
            .settings
            .policy
            .meter_all(&self.principal, &messages)
            .await
        {
            Metered::Unmetered | Metered::Allowed(..) => {}
            Metered::Limited(limiter, decision) => {
                let retry = decision.retry_after_seconds().unwrap_or(1);
                let policy = limiter.policy().name();
                return answer_requests(&id, || {
                    error(
                        &id,
                        RATE_LIMITED,
                        "rate limited",
                        Some(json!({ "retryAfter": retry, "policy": policy })),
                    )
                });
            }
            Metered::Unavailable(_) => {
                return answer_requests(&id, || {
                    error(&id, -32603, "rate limiting is unavailable", None)
                });
            }
        }
        match serde_json::from_value::<RxJsonRpcMessage<RoleServer>>(value) {
            Ok(mut message) => {
                // Where `caller` finds it, as over Streamable HTTP.
                match &mut message {
                    RxJsonRpcMessage::<RoleServer>::Request(request) => {
                        let extensions = request.request.extensions_mut();
                        extensions.insert(self.principal.clone());
                        extensions.insert(self.head.clone());
                    }
                    RxJsonRpcMessage::<RoleServer>::Notification(notification) => {
                        notification
                            .notification
                            .extensions_mut()
                            .insert(self.principal.clone());
                    }
                    _ => {}
                }
                Step::Forward(Box::new(message))
            }
            Err(_) => answer_requests(&id, || error(&id, -32600, "invalid request", None)),
        }
    }

    /// Counts a refused message; true once a connection has had more
    /// messages refused within one period of the quota than the quota
    /// itself admits: it is not backing off.
    fn abusive(&mut self, limiter: &RateLimiter) -> bool {
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

/// What the rate limit said of one frame.
enum FrameMetered {
    Allowed,
    /// Refused; retry after this many seconds.
    Limited(u64),
    /// The limiter could not decide.
    Unavailable,
    /// Refused, and the connection is not backing off.
    Close(Close),
}

/// The tokio deadline of a credential's expiry, `expires_at`, as seen at
/// `now` (from the endpoint's clock); `None` when it never expires.
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
