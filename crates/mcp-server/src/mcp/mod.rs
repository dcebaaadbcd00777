//! The MCP endpoint: tools over Streamable HTTP (`/mcp`) and WebSocket
//! (`/ws`), behind the whole stack; what secures it is `mcp-endpoint`'s.

pub mod http;
pub mod tools;
pub mod ws;

pub use tools::McpServer;

use ::http::HeaderValue;
use ::http::header::CACHE_CONTROL;
use axum::Router;
use mcp_auth::RequireLayer;
use mcp_endpoint::{AuthorizeMcpLayer, McpPolicy, SessionBindingLayer};
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;

use crate::AppState;

/// The server's tools: every message needs `mcp`; reading agents
/// `agents:read`, changing them `agents:write`. Nothing else.
///
/// ```
/// use mcp_core::{AuthMethod, Principal};
/// use mcp_endpoint::Refusal;
///
/// let policy = mcp_server::mcp::policy();
/// let key = Principal::builder("u1", AuthMethod::ApiKey).role("user").scopes(["mcp"]).build();
/// assert_eq!(policy.check(&key, "tools/call", Some("whoami")), Ok(()));
/// assert_eq!(
///     policy.check(&key, "tools/call", Some("create_agent")),
///     Err(Refusal::NeedsScope(vec!["mcp".into(), "agents:write".into()]))
/// );
/// assert_eq!(policy.check(&key, "tools/call", Some("rm_rf")), Err(Refusal::NotAllowed));
/// ```
pub fn policy() -> McpPolicy {
    // `BASE_SCOPES` on every rule.
    McpPolicy::empty()
        .allow("initialize", "*", ["mcp"])
        .allow("ping", "*", ["mcp"])
        .allow("notifications/*", "*", ["mcp"])
        .allow("response", "*", ["mcp"])
        .allow("stream", "*", ["mcp"])
        .allow("tools/list", "*", ["mcp"])
        .allow("server/discover", "*", ["mcp"])
        .allow("tools/call", "whoami", ["mcp"])
        .allow("tools/call", "list_agents", ["mcp", "agents:read"])
        .allow("tools/call", "get_agent", ["mcp", "agents:read"])
        .allow("tools/call", "create_agent", ["mcp", "agents:write"])
        .allow("tools/call", "update_agent_status", ["mcp", "agents:write"])
}

/// What every MCP message needs, whatever its rule: rules of the
/// configuration file get it too.
pub const BASE_SCOPES: &[&str] = &["mcp"];

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
        .layer(state.auth.layer.clone().challenge(challenge(state)))
        .layer(crate::audit::refusals_layer(state))
        .layer(state.limits.api_layer())
        .layer(RequireLayer::scope("mcp").challenge(challenge(state)))
        .layer(
            AuthorizeMcpLayer::new(state.mcp_policy.clone())
                .challenge(challenge(state))
                .max_body(state.config.body_limit),
        )
        .layer(SessionBindingLayer::new())
        .service(http::service(state, state.shutdown.clone()));
    Router::new()
        .route_service("/mcp", stack)
        .merge(ws::router(state))
}

/// The MCP endpoints' challenge: a `401` names the scopes every message
/// needs, so a client asks for them on its first authorization.
pub fn challenge(state: &AppState) -> mcp_auth::Challenge {
    state
        .auth
        .challenge
        .clone()
        .scopes(BASE_SCOPES.iter().copied())
}

#[cfg(test)]
mod tests {
    use mcp_core::{AuthMethod, Principal};
    use mcp_endpoint::Refusal;

    #[test]
    fn unrestricted_principals_have_every_scope_of_their_role() {
        let session = Principal::builder("u", AuthMethod::Jwt)
            .role("user")
            .build();
        assert_eq!(
            super::policy().check(&session, "tools/call", Some("create_agent")),
            Ok(())
        );
        let empty = Principal::builder("u", AuthMethod::ApiKey)
            .scopes(Vec::<String>::new())
            .build();
        assert_eq!(
            super::policy().check(&empty, "initialize", None),
            Err(Refusal::NeedsScope(vec!["mcp".into()]))
        );
    }
}
