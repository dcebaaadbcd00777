//! `/mcp`: rmcp's Streamable HTTP service behind the stack, with per-tool
//! authorization and sessions bound to the principal that opened them.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::Method;
use http::header::HeaderName;
use mcp_auth::Challenge;
use mcp_core::{Principal, Problem, code};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::policy::{McpPolicy, Refusal, messages};
use super::tools::McpServer;
use crate::AppState;

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const MCP_METHOD: HeaderName = HeaderName::from_static("mcp-method");
const MCP_NAME: HeaderName = HeaderName::from_static("mcp-name");

/// Protocol versions from which `Mcp-Method`/`Mcp-Name` carry the routing
/// information (and rmcp checks them against the body).
const STANDARD_HEADER_VERSIONS: &[&str] = &["2026-07-28"];

/// The rmcp service for `/mcp`, its Host and Origin checks fed from the same
/// settings as the server's guard.
pub fn service(
    state: &AppState,
    cancel: CancellationToken,
) -> impl Service<Request<Body>, Response = Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let config = &state.config;
    let mut rmcp_config = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel)
        .with_max_request_body_bytes(config.body_limit)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    match &config.guard {
        Some(_) => {
            rmcp_config = rmcp_config.with_allowed_hosts(config.allowed_hosts.clone());
            match config.cors.exact_origins() {
                // Origins the guard allows: ours and the CORS list, with
                // explicit ports as rmcp wants them.
                Some(mut origins) => {
                    origins.extend(crate::config::origin_with_port(&config.public_url));
                    rmcp_config = rmcp_config
                        .with_allowed_origins(origins)
                        .enforce_origin_validation();
                }
                // `*` or wildcard subdomains: rmcp cannot express them; the
                // guard in front of it checks every Origin already.
                None => rmcp_config = rmcp_config.disable_allowed_origins(),
            }
        }
        None => {
            rmcp_config = rmcp_config
                .disable_allowed_hosts()
                .disable_allowed_origins();
        }
    }
    let state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        rmcp_config,
    );
    ServiceExt::<Request<Body>>::map_response(mcp, |response| response.map(Body::new))
}

/// Refuses MCP messages the [`McpPolicy`] does not allow for the caller:
/// `403 insufficient_scope` naming the scope (so a client can step up) or
/// `403 forbidden` for what the policy does not name. With `Mcp-Method` /
/// `Mcp-Name` headers (protocol 2026-07-28) it decides without reading the
/// body; otherwise it reads the JSON-RPC body (within the body limit, which
/// the spine enforces) and hands it on intact.
#[derive(Clone)]
pub struct Authorize {
    policy: Arc<McpPolicy>,
    challenge: Challenge,
}

impl Authorize {
    /// Enforces `policy`.
    pub fn new(policy: McpPolicy, challenge: Challenge) -> Self {
        Authorize {
            policy: Arc::new(policy),
            challenge,
        }
    }

    fn refuse(&self, refusal: Refusal) -> Response {
        match refusal {
            Refusal::NeedsScope(scope) => self.challenge.insufficient_scope(&scope).into_response(),
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

/// The middleware of [`Authorize`].
pub async fn authorize(State(layer): State<Authorize>, request: Request, next: Next) -> Response {
    let Some(principal) = request.extensions().get::<Principal>().cloned() else {
        return mcp_auth::AuthError::MissingCredentials
            .to_problem(&layer.challenge)
            .into_response();
    };
    if request.method() != Method::POST {
        // Opening the event stream or closing a session.
        return match layer.policy.check(&principal, "stream", None) {
            Ok(()) => next.run(request).await,
            Err(refusal) => layer.refuse(refusal),
        };
    }
    let version = request
        .headers()
        .get(&PROTOCOL_VERSION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if STANDARD_HEADER_VERSIONS.contains(&version)
        && let Some(method) = request
            .headers()
            .get(&MCP_METHOD)
            .and_then(|v| v.to_str().ok())
    {
        // rmcp rejects a request whose headers disagree with its body.
        let name = request
            .headers()
            .get(&MCP_NAME)
            .and_then(|v| v.to_str().ok());
        return match layer.policy.check(&principal, method, name) {
            Ok(()) => next.run(request).await,
            Err(refusal) => layer.refuse(refusal),
        };
    }
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => bytes,
        Err(_) => return Problem::payload_too_large(None).into_response(),
    };
    // A body that does not parse is left to rmcp, which answers it.
    let parsed = serde_json::from_slice::<serde_json::Value>(&bytes).unwrap_or_default();
    for (method, name) in messages(&parsed) {
        if let Err(refusal) = layer.policy.check(&principal, method, name) {
            tracing::info!(
                method,
                tool = name.unwrap_or(""),
                "MCP message refused by policy"
            );
            return layer.refuse(refusal);
        }
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// Binds each MCP session to the principal that opened it: a session id
/// presented by anyone else is `404 not_found`, as an unknown one would be,
/// so session ids cannot be probed or hijacked.
#[derive(Clone)]
pub struct Sessions {
    owners: moka::sync::Cache<String, String>,
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            owners: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                // Longer than rmcp keeps an idle session.
                .time_to_idle(Duration::from_secs(2 * 3600))
                .build(),
        }
    }
}

/// Who a principal is, for session ownership: its API key, else its issuer
/// and subject.
fn identity(principal: &Principal) -> String {
    mcp_ratelimit::principal_key(principal).to_string()
}

/// The middleware of [`Sessions`].
pub async fn bind_sessions(
    State(sessions): State<Sessions>,
    request: Request,
    next: Next,
) -> Response {
    let principal = request.extensions().get::<Principal>().cloned();
    let presented = request
        .headers()
        .get(&SESSION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // Fail closed: an id this map does not know (never issued here, or
    // forgotten) is refused as well as a foreign one; rmcp never decides
    // on a session whose owner we cannot name.
    if let Some(session) = &presented
        && principal.as_ref().map(identity) != sessions.owners.get(session)
    {
        tracing::warn!("MCP session presented that is unknown or another principal's");
        return Problem::not_found()
            .with_detail("no such session")
            .into_response();
    }
    let closing = request.method() == Method::DELETE;
    let response = next.run(request).await;
    match (&presented, response.headers().get(&SESSION_ID)) {
        // A new session: remember who opened it.
        (None, Some(created)) => {
            // Identity is worked out only here and for presented ids,
            // not on every request.
            if let (Ok(created), Some(principal)) = (created.to_str(), &principal) {
                sessions
                    .owners
                    .insert(created.to_owned(), identity(principal));
            }
        }
        (Some(session), _) if closing && response.status().is_success() => {
            sessions.owners.invalidate(session);
        }
        _ => {}
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::routing::any;
    use http::StatusCode;
    use mcp_core::AuthMethod;
    use tower::ServiceExt;

    use super::*;

    /// Stands for rmcp: it answers any session id it is shown (as rmcp does
    /// for sessions it knows), and opens `s-1` when none is presented.
    fn app(sessions: Sessions, reached: Arc<AtomicUsize>) -> Router {
        Router::new()
            .route(
                "/mcp",
                any(move |request: Request| {
                    let reached = reached.clone();
                    async move {
                        reached.fetch_add(1, Ordering::SeqCst);
                        let mut response = Response::new(Body::empty());
                        if !request.headers().contains_key(&SESSION_ID) {
                            response
                                .headers_mut()
                                .insert(SESSION_ID, http::HeaderValue::from_static("s-1"));
                        }
                        response
                    }
                }),
            )
            .layer(axum::middleware::from_fn_with_state(
                sessions,
                bind_sessions,
            ))
    }

    fn request(who: &str, session: Option<&str>) -> Request {
        let mut request = Request::post("/mcp").body(Body::empty()).unwrap();
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
        let app = app(Sessions::default(), reached.clone());
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
}
