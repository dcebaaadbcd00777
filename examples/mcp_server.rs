//! An `rmcp` server of your own whose tools are secured by API keys kept in
//! PostgreSQL: the key store's migrations, authentication, scope `mcp`, a
//! per-tool policy and sessions bound to their caller (`mcp-endpoint`), and
//! tools that see who called them.
//!
//! ```sh
//! # DATABASE_URL defaults to postgres://postgres@127.0.0.1:5432/test
//! cargo run -p mcp-examples --example mcp_server
//! # it prints an API key; any MCP client can now connect with it:
//! curl -i -H "X-API-Key: $KEY" -H 'accept: application/json, text/event-stream' \
//!      -H 'content-type: application/json' http://127.0.0.1:3001/mcp \
//!      -d '{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"curl","version":"1"}}}'
//! ```

use std::sync::Arc;

use axum::Router;
use mcp_apikeys::{ApiKeyAuthenticator, ApiKeyService, SqlStore};
use mcp_auth::{AuthLayer, RequireLayer};
use mcp_core::Principal;
use mcp_endpoint::{AuthorizeMcpLayer, McpPolicy, SessionBindingLayer};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{ErrorData, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use tower::ServiceBuilder;

/// The tools.
#[derive(Clone)]
struct Greeter {
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, schemars::JsonSchema)]
struct GreetArgs {
    /// Whom to greet.
    name: String,
}

/// The caller, put into the request by the authentication layer.
fn caller(context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
    mcp_endpoint::caller(context)
        .ok_or_else(|| ErrorData::invalid_request("not authenticated", None))
}

/// Every message needs scope `mcp`; `greet` also needs `greet`. What the
/// policy does not name is refused.
fn policy() -> McpPolicy {
    McpPolicy::empty()
        .allow("initialize", "*", ["mcp"])
        .allow("ping", "*", ["mcp"])
        .allow("notifications/*", "*", ["mcp"])
        .allow("response", "*", ["mcp"])
        .allow("stream", "*", ["mcp"])
        .allow("tools/list", "*", ["mcp"])
        .allow("tools/call", "whoami", ["mcp"])
        .allow("tools/call", "greet", ["mcp", "greet"])
}

#[tool_router]
impl Greeter {
    fn new() -> Self {
        Greeter {
            tool_router: Self::tool_router(),
        }
    }

    #[tool(description = "Greets someone, signed by the caller's key.")]
    async fn greet(
        &self,
        Parameters(GreetArgs { name }): Parameters<GreetArgs>,
        context: RequestContext<RoleServer>,
    ) -> Result<String, ErrorData> {
        let principal = caller(&context)?;
        Ok(format!(
            "hello {name}, from {} (key {})",
            principal.subject(),
            principal.key_id().unwrap_or("-")
        ))
    }

    #[tool(description = "Who is calling.")]
    async fn whoami(&self, context: RequestContext<RoleServer>) -> Result<String, ErrorData> {
        Ok(caller(&context)?.subject().to_owned())
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Greeter {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("greeter", "1.0"))
    }
}

/// `/mcp`: API keys from `keys`, scope `mcp`, the per-tool policy, sessions
/// bound to their caller, then rmcp.
fn app(keys: Arc<ApiKeyService>) -> Router {
    let mcp = StreamableHttpService::new(
        || Ok(Greeter::new()),
        Arc::new(LocalSessionManager::default()),
        // rmcp's DNS-rebinding defence: loopback hosts only (its default).
        StreamableHttpServerConfig::default(),
    );
    let stack = ServiceBuilder::new()
        .layer(AuthLayer::new(ApiKeyAuthenticator::new(keys)))
        .layer(RequireLayer::scope("mcp"))
        .layer(AuthorizeMcpLayer::new(policy()))
        .layer(SessionBindingLayer::new())
        // The layers answer with axum bodies; so must rmcp.
        .map_response(|response: http::Response<_>| response.map(axum::body::Body::new))
        .service(mcp);
    Router::new().route_service("/mcp", stack)
}

/// The key store on `pool`, its table created or updated.
async fn key_service(pool: sqlx::PgPool) -> Arc<ApiKeyService> {
    let store = SqlStore::postgres(pool);
    store.migrate().await.expect("api_keys migrations");
    Arc::new(ApiKeyService::builder(store).build())
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let pool = sqlx::PgPool::connect(&url)
        .await
        .map_err(std::io::Error::other)?;
    let keys = key_service(pool).await;
    let (_, key) = keys
        .create(
            "example-user",
            "mcp example",
            Some(vec!["mcp".into(), "greet".into()]),
            Some(1),
        )
        .await
        .map_err(std::io::Error::other)?;
    eprintln!(
        "API key (scopes mcp, greet; expires in a day): {}",
        key.expose()
    );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:3001").await?;
    eprintln!("MCP endpoint: http://{}/mcp", listener.local_addr()?);
    axum::serve(listener, app(keys))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::ServiceExt;
    use rmcp::model::{CallToolRequestParams, ClientCapabilities, ClientConfig, ProtocolVersion};
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use sqlx::postgres::PgPoolOptions;

    /// A pool on a schema of its own (dropped with the schema value, also
    /// when the test fails).
    async fn test_pool() -> (sqlx::PgPool, mcp_testkit::PgSchema) {
        let schema = mcp_testkit::PgSchema::create("example_mcp").await;
        let options: sqlx::postgres::PgConnectOptions =
            mcp_testkit::postgres_url().parse().unwrap();
        let pool = PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.options([("search_path", schema.name())]))
            .await
            .unwrap();
        (pool, schema)
    }

    #[tokio::test]
    #[cfg_attr(
        not(test_postgres),
        ignore = "needs PostgreSQL: MCP_TEST_SERVICES=postgres (CI=true implies it)"
    )]
    async fn a_real_client_calls_a_tool_with_a_key_from_postgres() {
        let (pool, _schema) = test_pool().await;
        let keys = key_service(pool.clone()).await;
        let (record, key) = keys
            .create(
                "user-1",
                "client",
                Some(vec!["mcp".into(), "greet".into()]),
                None,
            )
            .await
            .unwrap();
        let (_, no_mcp) = keys
            .create("user-1", "other", Some(vec![]), None)
            .await
            .unwrap();
        let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM api_keys")
            .fetch_one(&pool)
            .await
            .unwrap();
        let (_, narrow) = keys
            .create("user-2", "narrow", Some(vec!["mcp".into()]), None)
            .await
            .unwrap();
        assert_eq!(stored, 2, "the keys live in PostgreSQL");

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!(
            "http://127.0.0.1:{}/mcp",
            listener.local_addr().unwrap().port()
        );
        let served = app(keys.clone());
        tokio::spawn(async move { axum::serve(listener, served).await });

        let connect = |key: Option<String>| {
            let mut config = StreamableHttpClientTransportConfig::with_uri(url.clone());
            if let Some(key) = key {
                config = config.custom_headers(
                    [(
                        http::HeaderName::from_static("x-api-key"),
                        http::HeaderValue::from_str(&key).unwrap(),
                    )]
                    .into(),
                );
            }
            ClientConfig::new(
                ClientCapabilities::default(),
                Implementation::new("test", "1"),
            )
            .with_protocol_version(ProtocolVersion::LATEST_WITH_INITIALIZE)
            .serve(StreamableHttpClientTransport::from_config(config))
        };
        let client = connect(Some(key.expose().to_owned()))
            .await
            .expect("initialize");
        let mut tools: Vec<_> = client
            .list_all_tools()
            .await
            .unwrap()
            .into_iter()
            .map(|tool| tool.name.to_string())
            .collect();
        tools.sort();
        assert_eq!(tools, ["greet", "whoami"]);
        let result = client
            .call_tool(
                CallToolRequestParams::new("greet").with_arguments(
                    serde_json::json!({"name": "ada"})
                        .as_object()
                        .unwrap()
                        .clone(),
                ),
            )
            .await
            .unwrap();
        let text = serde_json::to_value(&result.content).unwrap()[0]["text"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(text, format!("hello ada, from user-1 (key {})", record.id));
        client.cancel().await.unwrap();

        // The per-tool policy: a key without scope `greet` may call
        // `whoami`, and `greet` is refused with 403 naming the scope.
        let narrow_client = connect(Some(narrow.expose().to_owned()))
            .await
            .expect("initialize with the narrow key");
        let whoami = narrow_client
            .call_tool(CallToolRequestParams::new("whoami"))
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(&whoami.content).unwrap()[0]["text"],
            "user-2"
        );
        assert!(
            narrow_client
                .call_tool(
                    CallToolRequestParams::new("greet").with_arguments(
                        serde_json::json!({"name": "ada"})
                            .as_object()
                            .unwrap()
                            .clone()
                    )
                )
                .await
                .is_err(),
            "greet without its scope"
        );
        narrow_client.cancel().await.unwrap();
        let http = reqwest::Client::new();
        let post = |key: &str, session: Option<&str>, body: serde_json::Value| {
            let mut request = http
                .post(&url)
                .header("x-api-key", key)
                .header("accept", "application/json, text/event-stream")
                .json(&body);
            if let Some(session) = session {
                request = request.header("mcp-session-id", session);
            }
            request.send()
        };
        let initialize = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                       "clientInfo": {"name": "raw", "version": "1"}}
        });
        let opened = post(narrow.expose(), None, initialize).await.unwrap();
        assert_eq!(opened.status(), 200);
        let session = opened.headers()["mcp-session-id"]
            .to_str()
            .unwrap()
            .to_owned();
        let greet = serde_json::json!({
            "jsonrpc": "2.0", "id": 2, "method": "tools/call",
            "params": {"name": "greet", "arguments": {"name": "ada"}}
        });
        let refused = post(narrow.expose(), Some(&session), greet.clone())
            .await
            .unwrap();
        assert_eq!(refused.status(), 403, "greet needs scope greet");
        let problem: serde_json::Value = refused.json().await.unwrap();
        assert_eq!(problem["code"], "insufficient_scope");

        // Session binding: another principal presenting that session id
        // gets 404, as for a session that does not exist.
        let hijack = post(key.expose(), Some(&session), greet).await.unwrap();
        assert_eq!(hijack.status(), 404, "another principal's session");

        // The client's error names the refusal: rmcp maps 401 to "Auth
        // required" and 403 insufficient_scope to "Insufficient scope".
        let refusal = |result: Result<_, rmcp::service::ClientInitializeError>| {
            let Err(error) = result else {
                panic!("the connection was accepted");
            };
            let mut text = error.to_string();
            let mut source = std::error::Error::source(&error);
            while let Some(cause) = source {
                text.push_str(" | ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            text
        };
        let no_key = refusal(connect(None).await);
        assert!(
            no_key.contains("Auth required"),
            "no key: 401, got {no_key}"
        );
        let no_scope = refusal(connect(Some(no_mcp.expose().to_owned())).await);
        assert!(
            no_scope.contains("Insufficient scope"),
            "a key without scope mcp: 403, got {no_scope}"
        );
        let revoked = keys.delete(record.id).await;
        assert!(revoked.is_ok());
        let deleted = refusal(connect(Some(key.expose().to_owned())).await);
        assert!(
            deleted.contains("Auth required"),
            "a deleted key stops working at once (401), got {deleted}"
        );
        pool.close().await;
    }
}
