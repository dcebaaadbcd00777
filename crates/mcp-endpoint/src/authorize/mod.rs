//! The authorization layer: every MCP message passes the [`McpPolicy`].

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body::Body;
use mcp_auth::{AuthError, Challenge};
use mcp_core::{Principal, Problem, code};
use tower_layer::Layer;
use tower_service::Service;

use crate::Messages;
use crate::future::ResponseFuture;
use crate::policy::{McpPolicy, Metered, Refusal};

/// Refuses MCP messages the [`McpPolicy`] does not allow for the caller
/// (the [`Principal`] an authentication layer put into the request):
/// `403 insufficient_scope` naming the scope (so a client can step up),
/// `403 forbidden` for a missing role or what the policy does not name,
/// `401` (with the [`Challenge`]) when no layer in front authenticated the
/// request.
///
/// It decides from the JSON-RPC body (at most [`max_body`](Self::max_body)
/// bytes of it), which it hands on intact, never from the `Mcp-Method` /
/// `Mcp-Name` headers (protocol 2026-07-28): those are the client's word
/// for what the body holds, and not every server checks that they agree.
/// A body that is not JSON, or not a JSON-RPC message or batch, is `400
/// malformed_json`. A message's name is where the method keeps it: a
/// tool's or prompt's `name`, a resource's `uri`, a task's `taskId`. `GET` and `DELETE`
/// (opening the event stream, closing a session) are the pseudo-method
/// `stream`.
///
/// The request body is handed on as it came, or rebuilt from the bytes it
/// read: the body type must be `From<Bytes>` (axum's `Body` is). Refusals
/// are `Problem` responses, so the response body must be `From<Bytes>` too.
///
/// ```
/// use bytes::Bytes;
/// use http::{Request, Response, StatusCode};
/// use http_body_util::Full;
/// use mcp_core::{AuthMethod, Principal};
/// use mcp_endpoint::{AuthorizeMcpLayer, McpPolicy};
/// use tower::{Layer, ServiceExt, service_fn};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let policy = McpPolicy::empty().allow("tools/call", "greet", ["greet"]);
/// let service = AuthorizeMcpLayer::new(policy).layer(service_fn(|_: Request<Full<Bytes>>| async {
///     Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::new())))
/// }));
/// let mut request = Request::post("/mcp").body(Full::new(Bytes::from_static(
///     br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"greet"}}"#,
/// ))).unwrap();
/// request
///     .extensions_mut()
///     .insert(Principal::builder("u1", AuthMethod::ApiKey).scopes(["mcp"]).build());
/// let response = service.oneshot(request).await.unwrap();
/// assert_eq!(response.status(), StatusCode::FORBIDDEN);
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct AuthorizeMcpLayer {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    policy: McpPolicy,
    challenge: Challenge,
    /// The most of a body read to find its JSON-RPC methods.
    max_body: usize,
}

/// The default bound on a body the policy reads: rmcp's own default
/// request limit.
pub const DEFAULT_MAX_BODY: usize = 4 * 1024 * 1024;

impl AuthorizeMcpLayer {
    /// Enforces `policy`.
    pub fn new(policy: McpPolicy) -> Self {
        AuthorizeMcpLayer {
            shared: Arc::new(Shared {
                policy,
                challenge: Challenge::default(),
                max_body: DEFAULT_MAX_BODY,
            }),
        }
    }

    /// Uses `challenge` in the `WWW-Authenticate` of its `401` and `403`
    /// answers (the one the authentication layer uses).
    #[must_use]
    pub fn challenge(self, challenge: impl Into<Challenge>) -> Self {
        AuthorizeMcpLayer {
            shared: Arc::new(Shared {
                policy: self.shared.policy.clone(),
                challenge: challenge.into(),
                max_body: self.shared.max_body,
            }),
        }
    }

    /// Reads at most `bytes` of a body to find its methods (default
    /// [`DEFAULT_MAX_BODY`]); a longer one is `413`, so the layer never
    /// buffers without bound even with no body limit in front. Set it to
    /// the server's body limit.
    #[must_use]
    pub fn max_body(self, bytes: usize) -> Self {
        AuthorizeMcpLayer {
            shared: Arc::new(Shared {
                policy: self.shared.policy.clone(),
                challenge: self.shared.challenge.clone(),
                max_body: bytes,
            }),
        }
    }
}

impl<S> Layer<S> for AuthorizeMcpLayer {
    type Service = AuthorizeMcp<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthorizeMcp {
            inner,
            shared: self.shared.clone(),
        }
    }
}

/// The service made by [`AuthorizeMcpLayer`].
#[derive(Clone, Debug)]
pub struct AuthorizeMcp<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl Shared {
    fn refuse<B: From<Bytes>>(&self, refusal: Refusal) -> Response<B> {
        match refusal {
            Refusal::NeedsScope(scopes) => self
                .challenge
                .insufficient_scope(scopes.iter().map(String::as_str))
                .into_response(),
            Refusal::NeedsRole(role) => {
                Problem::forbidden(code::FORBIDDEN, "your role does not allow this")
                    .with_extension("role", role)
                    .into_response()
            }
            Refusal::NotAllowed => Problem::forbidden(
                code::FORBIDDEN,
                "the MCP policy does not allow this method or tool",
            )
            .into_response(),
        }
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for AuthorizeMcp<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send,
    ReqBody: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ReqBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    ResBody: Body<Data = Bytes> + From<Bytes> + Send + 'static,
    ResBody::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready is the one that gets called.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let shared = self.shared.clone();
        ResponseFuture::new(async move {
            let Some(principal) = request.extensions().get::<Principal>().cloned() else {
                return Ok(AuthError::MissingCredentials
                    .to_problem(&shared.challenge)
                    .into_response());
            };
            if request.method() != Method::POST {
                // Opening the event stream or closing a session.
                return match shared.policy.check(&principal, "stream", None) {
                    Ok(()) => inner.call(request).await,
                    Err(refusal) => Ok(shared.refuse(refusal)),
                };
            }
            let (parts, body) = request.into_parts();
            // Never buffered past the layer's own bound, whatever is in front.
            let bytes = match mcp_core::read_body(body, shared.max_body).await {
                Ok(bytes) => bytes,
                Err(problem) => return Ok(problem.into_response()),
            };
            // The body decides, never the `Mcp-Method`/`Mcp-Name` headers:
            // they are the client's word for what the body holds, and only
            // some servers check the two agree. What is not JSON-RPC is
            // refused here, not left to a server that may read it otherwise.
            let Ok(parsed) = Messages::from_slice(&bytes) else {
                return Ok(Problem::malformed_json("the body is not JSON").into_response());
            };
            if let Some(problem) = not_json_rpc(&parsed) {
                return Ok(problem.into_response());
            }
            let messages = parsed.pairs();
            for &(method, name) in &messages {
                if let Err(refusal) = shared.policy.check(&principal, method, name) {
                    tracing::info!(
                        method,
                        tool = name.unwrap_or(""),
                        "MCP message refused by policy"
                    );
                    return Ok(shared.refuse(refusal));
                }
            }
            // Quotas count only what the policy let through, every message
            // of a batch.
            match shared.policy.meter_all(&principal, &messages).await {
                Metered::Limited(limiter, decision) => return Ok(limiter.refusal(&decision)),
                Metered::Unavailable(_) => {
                    return Ok(Problem::unavailable("rate limiting is unavailable").into_response());
                }
                Metered::Unmetered | Metered::Allowed(..) => {}
            }
            let response = inner
                .call(Request::from_parts(parts, ReqBody::from(bytes)))
                .await?;
            Ok(without_echoes(response).await)
        })
    }
}

/// Most bytes of an error answer read back to scrub it.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A `400` JSON-RPC error from the server behind, its message without the
/// values it quotes. rmcp's header checks (2026-07-28) name both sides in
/// backticks (``Mcp-Name header `x` does not match body value `y` ``): the
/// client's header values and its arguments, which may be a credential or
/// any other secret, would come back in the answer and in whatever logs
/// bodies on the way. The rule stays, the values go.
async fn without_echoes<B>(response: Response<B>) -> Response<B>
where
    B: Body<Data = Bytes> + From<Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != http::StatusCode::BAD_REQUEST || !json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = mcp_core::read_body(body, MAX_ERROR_BODY).await else {
        parts.headers.remove(http::header::CONTENT_LENGTH);
        return Response::from_parts(parts, B::from(Bytes::from_static(b"{}")));
    };
    let scrubbed = serde_json::from_slice::<serde_json::Value>(&bytes)
        .ok()
        .and_then(|mut answer| {
            let message = answer.pointer_mut("/error/message")?;
            let text = message.as_str()?;
            if !text.contains('`') {
                return None;
            }
            *message = serde_json::Value::String(unquoted(text));
            serde_json::to_vec(&answer).ok()
        });
    match scrubbed {
        Some(body) => {
            parts.headers.remove(http::header::CONTENT_LENGTH);
            Response::from_parts(parts, B::from(Bytes::from(body)))
        }
        None => Response::from_parts(parts, B::from(bytes)),
    }
}

/// `text` without its backtick-quoted spans (and the space before each).
fn unquoted(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut quoted = false;
    for c in text.chars() {
        match c {
            '`' => {
                if !quoted && out.ends_with(' ') {
                    out.pop();
                }
                quoted = !quoted;
            }
            _ if !quoted => out.push(c),
            _ => {}
        }
    }
    out
}

/// `400 validation_failed` listing every item of `body` that is not a
/// JSON-RPC 2.0 request, notification or response (`jsonrpc: "2.0"` with a
/// string `method`, or an `id` with a `result` or an `error`); an empty
/// batch or a bare value is not one either. Such bodies are refused here,
/// never left to a server that may read them otherwise than the policy did.
fn not_json_rpc(body: &Messages<'_>) -> Option<Problem> {
    let errors: Vec<_> = body
        .not_json_rpc()
        .into_iter()
        .map(|field| {
            mcp_core::FieldError::new(
                field,
                "json_rpc",
                "expected a JSON-RPC 2.0 request, notification or response",
            )
        })
        .collect();
    (!errors.is_empty()).then(|| Problem::validation_failed(errors))
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use http::StatusCode;
    use http_body_util::{BodyExt, Full};
    use mcp_core::AuthMethod;
    use tower::{ServiceExt, service_fn};

    use super::*;

    fn service() -> impl Service<
        Request<Full<Bytes>>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future: Send,
    > + Clone {
        let policy = McpPolicy::empty()
            .allow("stream", "*", ["mcp"])
            .allow("tools/call", "greet", ["mcp"])
            .allow("tools/call", "admin", ["mcp", "admin"]);
        AuthorizeMcpLayer::new(policy).layer(service_fn(|request: Request<Full<Bytes>>| async {
            // Echoes the body: it must arrive intact.
            let body = request.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(Full::new(body)))
        }))
    }

    fn request(
        method: Method,
        body: &'static str,
        scopes: Option<&[&str]>,
    ) -> Request<Full<Bytes>> {
        let mut request = Request::builder()
            .method(method)
            .uri("/mcp")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        if let Some(scopes) = scopes {
            request.extensions_mut().insert(
                Principal::builder("u1", AuthMethod::ApiKey)
                    .scopes(scopes.iter().copied())
                    .build(),
            );
        }
        request
    }

    async fn body(response: Response<Full<Bytes>>) -> serde_json::Value {
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap_or_default()
    }

    /// A server behind that quotes what the client sent (as rmcp's header
    /// checks do) has the quotes taken out; other answers pass untouched.
    #[tokio::test]
    async fn quoted_values_never_come_back() {
        let quoting = AuthorizeMcpLayer::new(McpPolicy::empty().allow("tools/call", "greet", ["mcp"]))
            .layer(service_fn(|_: Request<Full<Bytes>>| async {
                let body = r#"{"jsonrpc":"2.0","id":1,"error":{"code":-32020,"message":"Mcp-Method header `tools/call: mcp_secret` does not match body method `tools/call`"}}"#;
                Ok::<_, Infallible>(
                    Response::builder()
                        .status(400)
                        .header("content-type", "application/json")
                        .header("content-length", body.len())
                        .body(Full::new(Bytes::from_static(body.as_bytes())))
                        .unwrap(),
                )
            }));
        let response = quoting
            .oneshot(request(Method::POST, GREET, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::BAD_REQUEST);
        assert!(response.headers().get("content-length").is_none());
        let answer = body(response).await;
        assert_eq!(
            answer["error"]["message"],
            "Mcp-Method header does not match body method"
        );
        assert_eq!(answer["error"]["code"], -32020);
        assert_eq!(unquoted("a `b` c `d`"), "a c");
        assert_eq!(unquoted("ab`c`d"), "abd");
        assert_eq!(unquoted("no quotes"), "no quotes");
        assert_eq!(unquoted("open `never closed"), "open");
        // A long message (up to 64 KiB is read back) is scrubbed too; an
        // answer that is not a `400` is the server's to give as it is.
        let long = format!("{} `mcp_secret`", "x".repeat(4000));
        for (status, scrubbed) in [(400, true), (200, false)] {
            let message = long.clone();
            let answering = AuthorizeMcpLayer::new(
                McpPolicy::empty().allow("tools/call", "greet", ["mcp"]),
            )
            .layer(service_fn(move |_: Request<Full<Bytes>>| {
                let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "error": {"code": -32020, "message": message.clone()}});
                async move {
                    Ok::<_, Infallible>(
                        Response::builder()
                            .status(status)
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from(body.to_string())))
                            .unwrap(),
                    )
                }
            }));
            let response = answering
                .oneshot(request(Method::POST, GREET, Some(&["mcp"])))
                .await
                .unwrap();
            let text = body(response).await["error"]["message"].to_string();
            assert_eq!(!text.contains("mcp_secret"), scrubbed, "{status}");
            assert!(text.contains(&"x".repeat(4000)), "the rule itself is kept");
        }
        // What was allowed and answered comes back intact.
        let ok = service()
            .oneshot(request(Method::POST, GREET, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(body(ok).await["params"]["name"], "greet");
    }

    const GREET: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"greet"}}"#;
    const ADMIN: &str =
        r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"admin"}}"#;

    #[tokio::test]
    async fn decides_from_the_body_and_hands_it_on_intact() {
        let ok = service()
            .oneshot(request(Method::POST, GREET, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        assert_eq!(body(ok).await["params"]["name"], "greet");

        let refused = service()
            .oneshot(request(Method::POST, ADMIN, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(refused).await["code"], "insufficient_scope");

        let unnamed = service()
            .oneshot(request(
                Method::POST,
                r#"{"jsonrpc":"2.0","id":1,"method":"resources/list"}"#,
                Some(&["mcp"]),
            ))
            .await
            .unwrap();
        assert_eq!(unnamed.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(unnamed).await["code"], "forbidden");
    }

    /// With no body limit in front, the layer bounds what it buffers: a
    /// body one byte over `max_body` is `413` and never reaches the service.
    /// By default a body up to rmcp's own limit (4 MiB) is read; one over
    /// it is refused.
    #[tokio::test]
    async fn the_default_bound_is_rmcps_4_mib() {
        let call = |padding: usize| {
            let body = format!(
                r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"greet","pad":"{}"}}}}"#,
                "x".repeat(padding)
            );
            request(
                Method::POST,
                Box::leak(body.into_boxed_str()),
                Some(&["mcp"]),
            )
        };
        let fits = service().oneshot(call(3 * 1024 * 1024)).await.unwrap();
        assert_eq!(fits.status(), StatusCode::OK);
        let over = service().oneshot(call(4 * 1024 * 1024)).await.unwrap();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
    }

    /// Readiness is the inner service's: a service that cannot take a
    /// request is not made to look ready.
    #[tokio::test]
    async fn readiness_is_the_inner_services() {
        #[derive(Clone)]
        struct Broken;
        impl Service<Request<Full<Bytes>>> for Broken {
            type Response = Response<Full<Bytes>>;
            type Error = &'static str;
            type Future = std::future::Ready<Result<Self::Response, &'static str>>;
            fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
                Poll::Ready(Err("overloaded"))
            }
            fn call(&mut self, _: Request<Full<Bytes>>) -> Self::Future {
                std::future::ready(Err("called"))
            }
        }
        let mut service = AuthorizeMcpLayer::new(McpPolicy::empty()).layer(Broken);
        let ready = std::future::poll_fn(|cx| service.poll_ready(cx)).await;
        assert_eq!(ready, Err("overloaded"));
    }

    #[tokio::test]
    async fn never_buffers_past_its_own_bound() {
        let policy = McpPolicy::empty().allow("tools/call", "greet", ["mcp"]);
        let reached = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = reached.clone();
        let service = AuthorizeMcpLayer::new(policy)
            .max_body(GREET.len())
            .layer(service_fn(move |_: Request<Full<Bytes>>| {
                seen.store(true, std::sync::atomic::Ordering::SeqCst);
                async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::new()))) }
            }));
        let fits = service
            .clone()
            .oneshot(request(Method::POST, GREET, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(fits.status(), StatusCode::OK);
        reached.store(false, std::sync::atomic::Ordering::SeqCst);
        let padded: &'static str = Box::leak(format!("{GREET} ").into_boxed_str());
        let over = service
            .oneshot(request(Method::POST, padded, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(over.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(body(over).await["code"], "payload_too_large");
        assert!(!reached.load(std::sync::atomic::Ordering::SeqCst));
    }

    /// The headers are the client's word; the body decides. A request
    /// whose headers name an allowed tool but whose body calls another is
    /// judged by its body, and what is not JSON-RPC is refused here.
    #[tokio::test]
    async fn the_body_decides_not_the_headers() {
        let mut headed = request(Method::POST, ADMIN, Some(&["mcp"]));
        for (name, value) in [
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "greet"),
        ] {
            headed.headers_mut().insert(name, value.parse().unwrap());
        }
        let refused = service().oneshot(headed).await.unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
        assert_eq!(body(refused).await["code"], "insufficient_scope");

        let refused = service()
            .oneshot(request(Method::POST, "not json", Some(&["mcp", "admin"])))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        assert_eq!(body(refused).await["code"], "malformed_json");
        for (garbage, field) in [
            ("[]", ""),
            ("42", ""),
            (r#"{"jsonrpc":"2.0"}"#, ""),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, ""),
            (r#"{"jsonrpc":"2.0","id":1}"#, ""),
            (r#"{"method":"tools/call","params":{"name":"greet"}}"#, ""),
            (r#"[{"jsonrpc":"2.0","method":"ping"},{"id":1}]"#, "[1]"),
        ] {
            let refused = service()
                .oneshot(request(Method::POST, garbage, Some(&["mcp", "admin"])))
                .await
                .unwrap();
            assert_eq!(refused.status(), StatusCode::BAD_REQUEST, "{garbage}");
            let problem = body(refused).await;
            assert_eq!(problem["code"], "validation_failed", "{garbage}");
            assert_eq!(problem["errors"][0]["field"], field, "{garbage}");
        }
        // A response (to a server's request) is a message too.
        let response = r#"{"jsonrpc":"2.0","id":3,"result":{}}"#;
        let policy = McpPolicy::empty().allow("response", "*", ["mcp"]);
        let echo =
            AuthorizeMcpLayer::new(policy).layer(service_fn(|_: Request<Full<Bytes>>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
            }));
        let answered = echo
            .oneshot(request(Method::POST, response, Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(answered.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn streams_are_the_pseudo_method_stream() {
        let ok = service()
            .oneshot(request(Method::GET, "", Some(&["mcp"])))
            .await
            .unwrap();
        assert_eq!(ok.status(), StatusCode::OK);
        let refused = service()
            .oneshot(request(Method::DELETE, "", Some(&[])))
            .await
            .unwrap();
        assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    }

    /// No authentication in front is a `401`, never a pass.
    #[tokio::test]
    async fn without_a_principal_it_answers_401() {
        let response = service()
            .oneshot(request(Method::POST, GREET, None))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        assert!(
            response
                .headers()
                .contains_key(http::header::WWW_AUTHENTICATE)
        );
    }
}
