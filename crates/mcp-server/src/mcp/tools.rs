//! The MCP tools: they act on the caller's own data, with the same
//! ownership and scope rules as the REST API.

use mcp_core::Principal;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{
    CallToolResult, ErrorCode, ErrorData, Implementation, ServerCapabilities, ServerConfig,
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
#[derive(Clone)]
pub struct McpServer {
    state: AppState,
    /// The caller of a WebSocket connection; HTTP requests carry theirs.
    connection: Option<Principal>,
    tool_router: ToolRouter<Self>,
}

impl McpServer {
    /// A server for HTTP requests (each carries its principal).
    pub fn new(state: AppState) -> Self {
        McpServer {
            state,
            connection: None,
            tool_router: Self::tool_router(),
        }
    }

    /// A server for one WebSocket connection authenticated as `principal`.
    pub fn for_connection(state: AppState, principal: Principal) -> Self {
        McpServer {
            state,
            connection: Some(principal),
            tool_router: Self::tool_router(),
        }
    }

    fn principal(&self, context: &RequestContext<RoleServer>) -> Result<Principal, ErrorData> {
        context
            .extensions
            .get::<http::request::Parts>()
            .and_then(|parts| parts.extensions.get::<Principal>().cloned())
            .or_else(|| self.connection.clone())
            .ok_or_else(|| ErrorData::new(ErrorCode::INVALID_REQUEST, "not authenticated", None))
    }
}

fn forbidden(scope: &str) -> ErrorData {
    ErrorData::new(
        ErrorCode::INVALID_REQUEST,
        format!("insufficient scope: this tool needs {scope}"),
        Some(json!({"code": "insufficient_scope", "scope": scope})),
    )
}

fn not_found() -> ErrorData {
    ErrorData::new(
        ErrorCode::RESOURCE_NOT_FOUND,
        "no such agent",
        Some(json!({"code": "not_found"})),
    )
}

fn internal(error: impl std::fmt::Display) -> ErrorData {
    tracing::error!(%error, "MCP tool failed");
    ErrorData::internal_error("an internal error occurred", None)
}

fn require(principal: &Principal, scope: &str) -> Result<(), ErrorData> {
    if principal.has_scope(scope) {
        Ok(())
    } else {
        Err(forbidden(scope))
    }
}

fn is_admin(principal: &Principal) -> bool {
    principal.has_role(Role::Admin.as_str())
}

fn owner(principal: &Principal) -> Result<Uuid, ErrorData> {
    Uuid::parse_str(principal.subject()).map_err(|_| {
        ErrorData::new(
            ErrorCode::INVALID_REQUEST,
            "agents belong to users of this server",
            Some(json!({"code": "forbidden"})),
        )
    })
}

fn result(value: Value) -> CallToolResult {
    CallToolResult::structured(value)
}

/// Parameters of `get_agent`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct AgentId {
    /// The agent's id.
    pub id: String,
}

/// Parameters of `create_agent`.
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
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub struct UpdateStatus {
    /// The agent's id.
    pub id: String,
    /// `active`, `inactive` or `error`.
    pub status: String,
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
        Ok(result(json!({
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
        require(&principal, "agents:read")?;
        let scope = if is_admin(&principal) {
            None
        } else {
            Some(owner(&principal)?)
        };
        let (items, _) = agents::list(&self.state.db, scope, 200, None)
            .await
            .map_err(internal)?;
        Ok(result(json!({ "items": items })))
    }

    /// One agent.
    #[tool(description = "Get one of the caller's agents by id. Needs agents:read.")]
    async fn get_agent(
        &self,
        Parameters(AgentId { id }): Parameters<AgentId>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        require(&principal, "agents:read")?;
        let agent = self.visible(&principal, &id).await?;
        Ok(result(serde_json::to_value(agent).map_err(internal)?))
    }

    /// A new agent.
    #[tool(description = "Create an agent owned by the caller. Needs agents:write.")]
    async fn create_agent(
        &self,
        Parameters(body): Parameters<CreateAgent>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        require(&principal, "agents:write")?;
        let owner_id = owner(&principal)?;
        // The same schema as POST /api/agents.
        let raw = json!({
            "name": body.name, "type": body.r#type,
            "capabilities": body.capabilities, "metadata": body.metadata,
        });
        let checked: crate::schemas::AgentCreate =
            crate::extract::parse(raw.to_string().as_bytes()).map_err(|problem| {
                ErrorData::invalid_params(
                    "invalid agent",
                    Some(json!({"code": problem.code(), "errors": problem.errors()})),
                )
            })?;
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
        Ok(result(serde_json::to_value(agent).map_err(internal)?))
    }

    /// Change an agent's status.
    #[tool(
        description = "Set the status (active, inactive, error) of one of the caller's agents. Needs agents:write."
    )]
    async fn update_agent_status(
        &self,
        Parameters(UpdateStatus { id, status }): Parameters<UpdateStatus>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let principal = self.principal(&context)?;
        require(&principal, "agents:write")?;
        let status = match status.as_str() {
            "active" => AgentStatus::Active,
            "inactive" => AgentStatus::Inactive,
            "error" => AgentStatus::Error,
            _ => {
                return Err(ErrorData::invalid_params(
                    "status must be active, inactive or error",
                    Some(json!({"code": "validation_failed"})),
                ));
            }
        };
        let agent = self.visible(&principal, &id).await?;
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
        Ok(result(serde_json::to_value(agent).map_err(internal)?))
    }
}

impl McpServer {
    async fn visible(&self, principal: &Principal, id: &str) -> Result<agents::Agent, ErrorData> {
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

#[tool_handler(router = self.tool_router)]
impl ServerHandler for McpServer {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("mcp-server", env!("CARGO_PKG_VERSION")))
            .with_instructions(
                "Tools on the caller's own agents. Each call is authorized by the \
                 caller's scopes: agents:read to read, agents:write to change.",
            )
    }
}
