//! The MCP tools: they act on the caller's own data, with the same
//! ownership and scope rules as the REST API.

use mcp_core::Principal;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{
    CallToolResult, ErrorCode, ErrorData, Implementation, JsonObject, ServerCapabilities,
    ServerConfig,
};
use rmcp::service::RequestContext;
use rmcp::{RoleServer, ServerHandler, schemars, tool, tool_handler, tool_router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::AppState;
use crate::agents::{self, AgentChanges, AgentStatus, NewAgent};
use crate::users::{self, Role};

/// The MCP server: one per session (Streamable HTTP) or connection
/// (WebSocket).
#[derive(Clone, Debug)]
pub struct McpServer {
    state: AppState,
}

impl McpServer {
    /// A server for the tools; each request carries its caller.
    pub fn new(state: AppState) -> Self {
        McpServer { state }
    }

    /// The tools, made once: rmcp builds a router by validating every
    /// tool's name and schema, and a server is made for each stateless
    /// request.
    fn tools() -> &'static ToolRouter<Self> {
        static TOOLS: std::sync::OnceLock<ToolRouter<McpServer>> = std::sync::OnceLock::new();
        TOOLS.get_or_init(Self::tool_router)
    }

    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        mcp_endpoint::caller(context)
            .ok_or_else(|| ErrorData::new(ErrorCode::INVALID_REQUEST, "not authenticated", None))
    }
}

/// Why a tool call did not succeed. The MCP specification separates the
/// two: a failure of the call itself (not found, not yours, not allowed,
/// bad arguments) is a tool result with `isError: true`, which the model
/// reads and can correct; only a failure of the server is a JSON-RPC error.
enum Failure {
    /// A result with `isError: true` and this structured body.
    Tool(Value),
    /// A JSON-RPC error.
    Protocol(ErrorData),
}

impl From<ErrorData> for Failure {
    fn from(error: ErrorData) -> Self {
        Failure::Protocol(error)
    }
}

type Outcome = Result<Value, Failure>;

/// The answer of a tool: its value, a tool error, or a protocol error.
fn finish(outcome: Outcome) -> Result<CallToolResult, ErrorData> {
    match outcome {
        Ok(value) => Ok(CallToolResult::structured(value)),
        Err(Failure::Tool(body)) => Ok(CallToolResult::structured_error(body)),
        Err(Failure::Protocol(error)) => Err(error),
    }
}

fn failure(code: &str, message: &str) -> Failure {
    Failure::Tool(json!({ "code": code, "message": message }))
}

fn forbidden(scope: &str) -> Failure {
    Failure::Tool(json!({
        "code": "insufficient_scope",
        "message": format!("insufficient scope: this tool needs {scope}"),
        "scope": scope,
    }))
}

fn not_found() -> Failure {
    failure("not_found", "no such agent")
}

fn internal(error: impl std::fmt::Display) -> Failure {
    tracing::error!(%error, "MCP tool failed");
    Failure::Protocol(ErrorData::internal_error(
        "an internal error occurred",
        None,
    ))
}

/// A validation problem as a tool error: the same fields as the REST API's.
fn invalid(problem: &mcp_core::Problem) -> Failure {
    let mut body = json!({
        "code": problem.code(),
        "message": "invalid arguments",
        "errors": problem.errors(),
    });
    if let Some(truncated) = problem.extension("errorsTruncated") {
        body["errorsTruncated"] = truncated.clone();
    }
    Failure::Tool(body)
}

/// The arguments of a call as a `T`, checked like a REST body (every
/// failing field at once); wrong ones are a tool error, not a protocol one.
async fn arguments<T>(state: &AppState, arguments: JsonObject) -> Result<T, Failure>
where
    T: serde::de::DeserializeOwned + garde::Validate<Context = ()> + Send + 'static,
{
    let bytes = serde_json::to_vec(&Value::Object(arguments)).map_err(internal)?;
    // The body limit bounds the arguments; large ones are checked off the
    // async workers, as REST bodies are.
    mcp_validate::parse_blocking(bytes.into(), state.validation)
        .await
        .map_err(|problem| invalid(&problem))
}

/// The input schema of a tool taking a `T`.
fn input<T: schemars::JsonSchema + 'static>() -> std::sync::Arc<JsonObject> {
    // As rmcp's own `Parameters` does; a type without an object schema is
    // a programming error, found by the first tools/list of any test.
    rmcp::handler::server::common::schema_for_input::<T>()
        .unwrap_or_else(|error| panic!("invalid input schema: {error}"))
}

fn require(principal: &Principal, scope: &str) -> Result<(), Failure> {
    if principal.has_scope(scope) {
        Ok(())
    } else {
        Err(forbidden(scope))
    }
}

fn is_admin(principal: &Principal) -> bool {
    principal.has_role(Role::Admin.as_str())
}

fn owner(principal: &Principal) -> Result<Uuid, Failure> {
    Uuid::parse_str(principal.subject())
        .map_err(|_| failure("forbidden", "agents belong to users of this server"))
}

/// Parameters of `get_agent`.
#[derive(Debug, Deserialize, schemars::JsonSchema, garde::Validate)]
pub struct AgentId {
    /// The agent's id.
    #[garde(skip)]
    pub id: String,
}

/// Parameters of `create_agent` (the schema shown to clients; the call is
/// checked against the REST API's `AgentCreate`).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct CreateAgent {
    /// Display name.
    pub name: String,
    /// What kind of agent.
    pub r#type: String,
    /// What it can do.
    #[serde(default)]
    pub capabilities: Vec<String>,
    /// Free-form data.
    #[serde(default)]
    pub metadata: serde_json::Map<String, Value>,
}

/// Parameters of `update_agent_status`.
#[derive(Debug, Deserialize, schemars::JsonSchema, garde::Validate)]
pub struct UpdateStatus {
    /// The agent's id.
    #[garde(skip)]
    pub id: String,
    /// `active`, `inactive` or `error`.
    #[garde(skip)]
    pub status: AgentStatus,
}

#[tool_router]
impl McpServer {
    /// Who is calling.
    #[tool(
        description = "Who is calling: subject, authentication method, roles and scopes (null when unrestricted)."
    )]
    async fn whoami(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        finish(Ok(json!({
            "subject": principal.subject(),
            "authMethod": principal.auth_method().as_str(),
            "roles": principal.roles(),
            "scopes": principal.scopes(),
            "keyId": principal.key_id(),
        })))
    }

    /// The caller's agents.
    #[tool(description = "List the caller's agents (all agents for an admin). Needs agents:read.")]
    async fn list_agents(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        finish(self.list(&principal).await)
    }

    /// One agent.
    #[tool(
        description = "Get one of the caller's agents by id. Needs agents:read.",
        input_schema = input::<AgentId>()
    )]
    async fn get_agent(
        &self,
        args: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        finish(self.get(&principal, args).await)
    }

    /// A new agent.
    #[tool(
        description = "Create an agent owned by the caller. Needs agents:write.",
        input_schema = input::<CreateAgent>()
    )]
    async fn create_agent(
        &self,
        args: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        finish(self.create(&principal, args).await)
    }

    /// Change an agent's status.
    #[tool(
        description = "Set the status (active, inactive, error) of one of the caller's agents. Needs agents:write.",
        input_schema = input::<UpdateStatus>()
    )]
    async fn update_agent_status(
        &self,
        args: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        finish(self.set_status(&principal, args).await)
    }
}

impl McpServer {
    async fn list(&self, principal: &Principal) -> Outcome {
        require(principal, "agents:read")?;
        let scope = if is_admin(principal) {
            None
        } else {
            Some(owner(principal)?)
        };
        let items = agents::list(&self.state.db, scope, 200, None)
            .await
            .map_err(internal)?
            .items;
        Ok(json!({ "items": items }))
    }

    async fn get(&self, principal: &Principal, args: JsonObject) -> Outcome {
        require(principal, "agents:read")?;
        let AgentId { id } = arguments(&self.state, args).await?;
        let agent = self.visible(principal, &id).await?;
        serde_json::to_value(agent).map_err(internal)
    }

    async fn create(&self, principal: &Principal, args: JsonObject) -> Outcome {
        require(principal, "agents:write")?;
        let owner_id = owner(principal)?;
        // The same schema as POST /api/agents.
        let checked: crate::schemas::AgentCreate = arguments(&self.state, args).await?;
        let agent = agents::create(
            &self.state.db,
            NewAgent {
                owner_id,
                name: checked.name,
                kind: checked.r#type,
                capabilities: checked.capabilities,
                status: AgentStatus::Active,
                metadata: checked.metadata,
            },
            users::now(self.state.clock.as_ref()),
        )
        .await
        .map_err(internal)?;
        serde_json::to_value(agent).map_err(internal)
    }

    async fn set_status(&self, principal: &Principal, args: JsonObject) -> Outcome {
        require(principal, "agents:write")?;
        let UpdateStatus { id, status } = arguments(&self.state, args).await?;
        let agent = self.visible(principal, &id).await?;
        let changes = AgentChanges {
            status: Some(status),
            ..AgentChanges::default()
        };
        let agent = agents::update(
            &self.state.db,
            agent.id,
            changes,
            users::now(self.state.clock.as_ref()),
        )
        .await
        .map_err(internal)?
        .ok_or_else(not_found)?;
        serde_json::to_value(agent).map_err(internal)
    }

    async fn visible(&self, principal: &Principal, id: &str) -> Result<agents::Agent, Failure> {
        let id = Uuid::parse_str(id).map_err(|_| not_found())?;
        let agent = agents::find(&self.state.db, id)
            .await
            .map_err(internal)?
            .ok_or_else(not_found)?;
        if agent.owner_id.to_string() != principal.subject() && !is_admin(principal) {
            return Err(not_found());
        }
        Ok(agent)
    }
}

/// Most argument names one `mcp.tool_call` event keeps.
const ARGUMENT_NAMES_MAX: usize = 50;

impl McpServer {
    /// The `mcp.tool_call` event of one call: the tool, how it ended, how
    /// long it took, and the names of its arguments, never their values.
    fn audit_call(
        &self,
        context: &crate::audit::Context,
        principal: Option<&Principal>,
        tool: &str,
        argument_names: Vec<String>,
        started: std::time::Instant,
        result: &Result<rmcp::model::CallToolResponse, ErrorData>,
    ) {
        use mcp_audit::Outcome;
        let outcome = match result {
            Ok(rmcp::model::CallToolResponse::Complete(result))
                if result.is_error == Some(true) =>
            {
                let code = result
                    .structured_content
                    .as_ref()
                    .and_then(|c| c.get("code"))
                    .and_then(Value::as_str);
                match code {
                    Some("forbidden" | "insufficient_scope" | "not_found") => Outcome::Denied,
                    _ => Outcome::Error,
                }
            }
            Ok(_) => Outcome::Success,
            Err(_) => Outcome::Error,
        };
        let latency = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let mut event = self
            .state
            .event("mcp.tool_call", outcome)
            .target("tool", tool)
            .detail("tool", mcp_audit::Event::bounded(tool))
            .detail("latencyMs", latency)
            .detail("argumentNames", argument_names);
        if let Some(principal) = principal {
            event = event.actor(principal);
        }
        self.state.audit(context, event);
    }
}

#[tool_handler(router = Self::tools())]
impl ServerHandler for McpServer {
    /// Runs the tool and records the call in the audit trail.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, ErrorData> {
        let started = std::time::Instant::now();
        let headers = context
            .extensions
            .get::<http::request::Parts>()
            .map(|parts| &parts.headers);
        let request_id = headers
            .and_then(|h| h.get(mcp_audit::REQUEST_ID))
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        // A span of its own, continuing the client's trace: its
        // `_meta.traceparent`, else its HTTP request's (rmcp runs the call
        // on a task of its own, outside the request's span).
        // Only when traces are exported: a span per call costs a slot and
        // its formatted fields in every subscriber that logs at info.
        let span = if crate::telemetry::exporting() {
            use tracing_opentelemetry::OpenTelemetrySpanExt;
            let span =
                tracing::info_span!("tool_call", tool = %request.name, request_id = %request_id);
            // rmcp moves a request's `_meta` into its context.
            let meta = request
                .meta
                .as_ref()
                .and_then(|meta| meta.get_traceparent())
                .or_else(|| context.meta.get_traceparent());
            let _ = span.set_parent(crate::telemetry::tool_call_parent(meta, headers));
            span
        } else {
            tracing::Span::none()
        };
        let audited = self.state.audit.is_on().then(|| {
            let names = request
                .arguments
                .as_ref()
                .map(|arguments| {
                    arguments
                        .keys()
                        .take(ARGUMENT_NAMES_MAX)
                        .map(|name| mcp_audit::Event::bounded(name))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            let where_from = context
                .extensions
                .get::<http::request::Parts>()
                .map(|parts| {
                    crate::audit::Context::of(&self.state, &parts.headers, &parts.extensions)
                })
                .unwrap_or_default();
            (
                request.name.to_string(),
                names,
                where_from,
                mcp_endpoint::caller(&context),
            )
        });
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let result = tracing::Instrument::instrument(Self::tools().call(call), span).await;
        if let Some((tool, names, where_from, principal)) = audited {
            self.audit_call(
                &where_from,
                principal.as_ref(),
                &tool,
                names,
                started,
                &result,
            );
        }
        result
    }

    /// Only the tools the policy lets this caller call (the same check that
    /// refuses the call), on every protocol version and transport; a
    /// listing that differs per caller is private to its caller.
    async fn list_tools(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListToolsResult, ErrorData> {
        let principal = self.principal(&context)?;
        let policy = &self.state.mcp_policy;
        let tools = Self::tools()
            .list_all()
            .into_iter()
            .filter(|tool| policy.may_call_tool(&principal, &tool.name))
            .collect();
        let hints = context
            .protocol_version()
            .is_some_and(|version| version >= rmcp::model::ProtocolVersion::V_2026_07_28);
        Ok(rmcp::model::ListToolsResult {
            result_type: Some(rmcp::model::ResultType::COMPLETE),
            tools,
            meta: None,
            next_cursor: None,
            ttl_ms: hints.then_some(0),
            cache_scope: hints.then_some(rmcp::model::CacheScope::Private),
        })
    }

    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-server", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools on the caller's own agents. Each call is authorized by the \
                 caller's scopes: agents:read to read, agents:write to change.",
            )
    }
}
