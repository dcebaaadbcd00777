//! The MCP endpoint: tools over Streamable HTTP (`/mcp`) and WebSocket
//! (`/ws`), behind the whole stack.

pub mod http;
pub mod policy;
pub mod tools;
pub mod ws;

pub use tools::McpServer;

use ::http::HeaderValue;
use ::http::header::CACHE_CONTROL;
use axum::Router;
use axum::middleware;
use mcp_auth::RequireLayer;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

/// `/mcp`: authentication, the api rate limit, scope `mcp`, the per-tool
/// policy, session binding, then rmcp.
pub fn router(state: &AppState) -> Router<AppState> {
    let stack = ServiceBuilder::new()
        // Over rmcp's `no-cache` on event streams: nothing from `/mcp` may
        // be stored.
        .layer(SetResponseHeaderLayer::overriding(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
        .layer(state.auth.layer.clone())
        .layer(state.limits.api_layer())
        .layer(RequireLayer::scope("mcp").challenge(state.auth.challenge.clone()))
        .layer(middleware::from_fn_with_state(
            http::Authorize::new(policy::McpPolicy::default(), state.auth.challenge.clone()),
            http::authorize,
        ))
        .layer(middleware::from_fn_with_state(
            http::Sessions::default(),
            http::bind_sessions,
        ))
        .service(http::service(state, state.shutdown.child_token()));
    Router::new()
        .route_service("/mcp", stack)
        .merge(ws::router(state))
}
