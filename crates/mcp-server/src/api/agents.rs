//! `/api/agents`: agents owned by the caller (admins: all).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use mcp_auth::Authenticated;
use mcp_core::{Principal, Problem};
use uuid::Uuid;

use super::{ListQuery, Listed, parse_id};
use crate::AppState;
use crate::agents::{self, Agent, AgentChanges, AgentStatus, NewAgent};
use crate::extract::{Valid, validated};
use crate::schemas::{AgentCreate, AgentUpdate};
use crate::users::{self, Role};

fn is_admin(principal: &Principal) -> bool {
    principal.has_role(Role::Admin.as_str())
}

/// The caller's user id: agents belong to users of this server.
fn owner(principal: &Principal) -> Result<Uuid, Problem> {
    Uuid::parse_str(principal.subject()).map_err(|_| {
        Problem::forbidden(
            mcp_core::code::FORBIDDEN,
            "agents belong to users of this server",
        )
    })
}

/// The agent `id` if the caller may see it; otherwise `404`.
async fn visible(state: &AppState, principal: &Principal, id: &str) -> Result<Agent, Problem> {
    let id = parse_id(id)?;
    let agent = agents::find(&state.db, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    if agent.owner_id.to_string() != principal.subject() && !is_admin(principal) {
        return Err(Problem::not_found());
    }
    Ok(agent)
}

/// `GET /api/agents` (`agents:read`).
pub async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<Json<Listed<Agent>>, Problem> {
    let (limit, cursor) = query.checked()?;
    let scope = if is_admin(&principal) {
        None
    } else {
        Some(owner(&principal)?)
    };
    Ok(Json(agents::list(&state.db, scope, limit, cursor).await?))
}

/// `POST /api/agents` (`agents:write`): `201`, status `active`.
pub async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Valid(body): Valid<AgentCreate>,
) -> Result<(StatusCode, Json<Agent>), Problem> {
    let owner_id = owner(&principal)?;
    // The owner must still exist (its deletion may not have reached us).
    users::find(&state.db, owner_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let agent = agents::create(
        &state.db,
        NewAgent {
            owner_id,
            name: body.name,
            kind: body.r#type,
            capabilities: body.capabilities,
            status: AgentStatus::Active,
            metadata: body.metadata,
        },
        users::now(state.clock.as_ref()),
    )
    .await?;
    tracing::info!(agent = %agent.id, owner = %agent.owner_id, "agent created");
    Ok((StatusCode::CREATED, Json(agent)))
}

/// `GET /api/agents/{id}` (`agents:read`).
pub async fn get(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<Agent>, Problem> {
    visible(&state, &principal, &id).await.map(Json)
}

/// `PATCH /api/agents/{id}` (`agents:write`).
pub async fn update(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Agent>, Problem> {
    let agent = visible(&state, &principal, &id).await?;
    let body: AgentUpdate = validated(&state.validation, &headers, body).await?;
    let changes = AgentChanges {
        name: body.name,
        kind: body.r#type,
        capabilities: body.capabilities,
        status: body.status,
        metadata: body.metadata,
    };
    agents::update(
        &state.db,
        agent.id,
        changes,
        users::now(state.clock.as_ref()),
    )
    .await?
    .map(Json)
    .ok_or_else(Problem::not_found)
}

/// `DELETE /api/agents/{id}` (`agents:write`): `204`.
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let agent = visible(&state, &principal, &id).await?;
    if !agents::delete(&state.db, agent.id).await? {
        return Err(Problem::not_found());
    }
    tracing::info!(agent = %agent.id, "agent deleted");
    Ok(StatusCode::NO_CONTENT)
}
