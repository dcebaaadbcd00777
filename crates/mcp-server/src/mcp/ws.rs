//! `/ws`: the same MCP server over WebSocket, one JSON-RPC message per text
//! frame, served by `mcp_endpoint::WebSocketEndpoint`.
//!
//! Credentials are checked at the upgrade by the same authentication as
//! every route: `Authorization` or `X-API-Key`, or, for browsers (which
//! cannot set headers on a WebSocket), the subprotocol `bearer.<token>`
//! offered beside `mcp`. They are checked again for the connection's whole
//! life: it is closed with 1008 when the credential expires, and within the
//! user cache's TTL of a revocation, a deletion or a role change. Every
//! frame passes the ws rate limit, and each message the MCP policy, before
//! it reaches the tools; one user holds at most a configured number of
//! connections.

use axum::Router;
use mcp_auth::{AuthLayer, RequireLayer};
use mcp_endpoint::{SubprotocolBearer, WebSocketEndpoint};
use tower::ServiceBuilder;

pub use mcp_endpoint::{FORBIDDEN, RATE_LIMITED, SUBPROTOCOL, TOKEN_SUBPROTOCOL_PREFIX};

use super::McpServer;
use crate::AppState;
use crate::observe::WS_CONNECTIONS;

/// `GET /ws`, behind authentication and scope `mcp`.
pub fn router(state: &AppState) -> Router<AppState> {
    let layer = &state.auth.layer;
    // The subprotocol's token only for a request without credentials of
    // its own; then the chain as on every route.
    let auth = AuthLayer::new(SubprotocolBearer::new(layer.clone()))
        .or(layer.clone())
        .challenge(super::challenge(state));
    let stack = ServiceBuilder::new()
        .layer(auth.clone())
        .layer(crate::audit::refusals_layer(state))
        // Each upgrade starts an MCP server: the api quota pays for it.
        .layer(state.limits.api_layer())
        .layer(RequireLayer::scope("mcp").challenge(super::challenge(state)));
    let config = &state.config;
    let tools = state.clone();
    let endpoint = WebSocketEndpoint::new(move |_| McpServer::new(tools.clone()))
        .policy(state.mcp_policy.clone())
        .max_message_size(config.body_limit)
        .ping_interval(config.ws_ping_interval)
        .idle_timeout(config.ws_idle_timeout)
        // As often as the caches that answer for credentials forget.
        .recheck(auth)
        .recheck_interval(config.user_cache_ttl)
        .max_connections_per_principal(config.ws_max_connections_per_principal)
        .own_issuer(config.public_url.clone())
        .rate_limit(state.limits.ws_limiter().clone())
        .shutdown(state.shutdown.clone())
        .clock(state.clock.clone())
        .gauge(WS_CONNECTIONS)
        .on_refusal(refusal_recorder(state));
    Router::new().route("/ws", endpoint.method_router().route_layer(stack))
}

/// A message refused on an open connection is an `authz.denied` event, as
/// a `403` is over HTTP: the upgrade's request id and address, the route,
/// the refused method and tool.
fn refusal_recorder(
    state: &AppState,
) -> impl Fn(&mcp_endpoint::WsRefusal<'_>) + Send + Sync + 'static {
    let state = state.clone();
    move |refused| {
        if !state.audit.is_on() {
            return;
        }
        let context =
            crate::audit::Context::of(&state, &refused.head.headers, &refused.head.extensions);
        let code = match refused.refusal {
            mcp_endpoint::Refusal::NeedsScope(_) => "insufficient_scope",
            _ => "forbidden",
        };
        let mut event = state
            .event("authz.denied", mcp_audit::Outcome::Denied)
            .actor(refused.principal)
            .target("route", "GET /ws")
            .detail("code", code)
            .detail("method", mcp_audit::Event::bounded(refused.method));
        if let Some(name) = refused.name {
            event = event.detail("tool", mcp_audit::Event::bounded(name));
        }
        state.audit(&context, event);
    }
}
