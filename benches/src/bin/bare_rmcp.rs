//! The MCP ceiling of `benches/load`: rmcp's Streamable HTTP service with
//! the server's `whoami` tool, on a bare axum router: no authentication,
//! no policy, no session binding, no spine.
//!
//! `bare_rmcp [ADDR]` (default `127.0.0.1:0`) prints `listening on ADDR`.

use std::sync::Arc;

use axum::serve::ListenerExt;

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CallToolResult, ErrorData, Implementation, ServerCapabilities, ServerConfig};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{ServerHandler, tool, tool_handler, tool_router};
use serde_json::json;

/// The server, made for each stateless request; its tools are made once
/// (as the server's are), so the ceiling is the best rmcp does.
#[derive(Clone, Debug)]
struct Bare;

#[tool_router]
impl Bare {
    fn tools() -> &'static ToolRouter<Self> {
        static TOOLS: std::sync::OnceLock<ToolRouter<Bare>> = std::sync::OnceLock::new();
        TOOLS.get_or_init(Self::tool_router)
    }

    /// The same answer as the server's `whoami`, from constants.
    #[tool(description = "Who is calling: subject, auth method, roles, scopes, key id.")]
    async fn whoami(&self) -> Result<CallToolResult, ErrorData> {
        Ok(CallToolResult::structured(json!({
            "subject": "0190d8a4-7c5e-7a51-9a7e-3f0a3c2b1d00",
            "authMethod": "api_key",
            "roles": ["user"],
            "scopes": ["mcp"],
            "keyId": "0190d8a4-7c5e-7a51-9a7e-3f0a3c2b1d01",
        })))
    }
}

#[tool_handler(router = Self::tools())]
impl ServerHandler for Bare {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("bare-rmcp", "1"))
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:0".to_owned());
    let mcp = StreamableHttpService::new(
        || Ok(Bare),
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let app = axum::Router::new().route_service("/mcp", mcp);
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    // As the server does: a streamed answer must not wait on Nagle.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(listener, app).await
}
