//! `/mcp`: rmcp's Streamable HTTP service, its Host and Origin checks fed
//! from the same settings as the server's guard.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use tokio_util::sync::CancellationToken;
use tower::{Service, ServiceExt};

use super::tools::McpServer;
use crate::AppState;

/// The rmcp service for `/mcp`.
pub fn service(
    state: &AppState,
    cancel: CancellationToken,
) -> impl Service<Request<Body>, Response = Response, Error = std::convert::Infallible, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static {
    let config = &state.config;
    let base = StreamableHttpServerConfig::default()
        .with_cancellation_token(cancel)
        .with_max_request_body_bytes(config.body_limit)
        .with_sse_keep_alive(Some(Duration::from_secs(15)));
    let rmcp_config = match &config.guard {
        Some(_) => mcp_endpoint::streamable_http_config(
            base,
            &config.allowed_hosts,
            config.cors.exact_origins(),
            crate::config::origin_with_port(&config.public_url),
        ),
        // No guard: rmcp checks neither.
        None => mcp_endpoint::streamable_http_config(base, &[], None, None),
    };
    let state = state.clone();
    let mcp = StreamableHttpService::new(
        move || Ok(McpServer::new(state.clone())),
        Arc::new(LocalSessionManager::default()),
        rmcp_config,
    );
    ServiceExt::<Request<Body>>::map_response(mcp, |response| response.map(Body::new))
}
