//! Agents: records and their storage on either database.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Db, DbError};
use crate::with_pool;
use rmcp::schemars;

/// Whether an agent is in service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum AgentStatus {
    /// In service (the default).
    Active,
    /// Out of service.
    Inactive,
    /// Failing.
    Error,
}

impl AgentStatus {
    fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Inactive => "inactive",
            AgentStatus::Error => "error",
        }
    }

    fn parse(text: &str) -> Result<AgentStatus, DbError> {
        match text {
            "active" => Ok(AgentStatus::Active),
            "inactive" => Ok(AgentStatus::Inactive),
            "error" => Ok(AgentStatus::Error),
            _ => Err(DbError::Query(sqlx::Error::Decode(
                format!("unknown agent status {text:?}").into(),
            ))),
        }
    }
}

/// An agent as the API shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// Stable id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// What kind of agent.
    #[serde(rename = "type")]
    pub kind: String,
    /// What it can do.
    pub capabilities: Vec<String>,
    /// Whether it is in service.
    pub status: AgentStatus,
    /// Free-form data.
    pub metadata: Map<String, Value>,
    /// The user it belongs to.
    pub owner_id: Uuid,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct AgentRow {
    id: Uuid,
    owner_id: Uuid,
    name: String,
    #[sqlx(rename = "type")]
    kind: String,
    capabilities: Json<Vec<String>>,
    status: String,
    metadata: Json<Map<String, Value>>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl AgentRow {
    fn into_agent(self) -> Result<Agent, DbError> {
        Ok(Agent {
            id: self.id,
            name: self.name,
            kind: self.kind,
            capabilities: self.capabilities.0,
            status: AgentStatus::parse(&self.status)?,
            metadata: self.metadata.0,
            owner_id: self.owner_id,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

const COLUMNS: &str =
    "id, owner_id, name, type, capabilities, status, metadata, created_at, updated_at";

/// A new agent.
#[derive(Debug)]
pub struct NewAgent {
    /// Owner.
    pub owner_id: Uuid,
    /// Name.
    pub name: String,
    /// Kind.
    pub kind: String,
    /// Capabilities.
    pub capabilities: Vec<String>,
    /// Status.
    pub status: AgentStatus,
    /// Metadata.
    pub metadata: Map<String, Value>,
}

/// Changes to an agent; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct AgentChanges {
    /// New name.
    pub name: Option<String>,
    /// New kind.
    pub kind: Option<String>,
    /// New capabilities.
    pub capabilities: Option<Vec<String>>,
    /// New status.
    pub status: Option<AgentStatus>,
    /// New metadata (replaces the old).
    pub metadata: Option<Map<String, Value>>,
}

/// Creates an agent.
pub async fn create(db: &Db, new: NewAgent, at: OffsetDateTime) -> Result<Agent, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
            "INSERT INTO agents ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             RETURNING {COLUMNS}"
        )))
        .bind(Uuid::now_v7())
        .bind(new.owner_id)
        .bind(&new.name)
        .bind(&new.kind)
        .bind(Json(&new.capabilities))
        .bind(new.status.as_str())
        .bind(Json(&new.metadata))
        .bind(at)
        .fetch_one(pool)
        .await
    })?;
    row.into_agent()
}

/// The agent with `id`.
pub async fn find(db: &Db, id: Uuid) -> Result<Option<Agent>, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM agents WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    })?;
    row.map(AgentRow::into_agent).transpose()
}

/// Up to `limit` agents after `cursor`, oldest first; of `owner`, or all.
pub async fn list(
    db: &Db,
    owner: Option<Uuid>,
    limit: u32,
    cursor: Option<Uuid>,
) -> Result<mcp_core::Page<Agent, Uuid>, DbError> {
    let fetch = i64::from(limit) + 1;
    // A nil cursor sorts before every v7 id.
    let after = cursor.unwrap_or(Uuid::nil());
    let rows = with_pool!(db, |pool| {
        match owner {
            Some(owner) => {
                sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM agents WHERE owner_id = $1 AND id > $2 \
                     ORDER BY id LIMIT $3"
                )))
                .bind(owner)
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await
            }
            None => {
                sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM agents WHERE id > $1 ORDER BY id LIMIT $2"
                )))
                .bind(after)
                .bind(fetch)
                .fetch_all(pool)
                .await
            }
        }
    })?;
    let agents = rows
        .into_iter()
        .map(AgentRow::into_agent)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(mcp_core::Page::from_overfetch(
        agents,
        limit as usize,
        |a| a.id,
    ))
}

/// Applies `changes`; `None` when there is no such agent.
pub async fn update(
    db: &Db,
    id: Uuid,
    changes: AgentChanges,
    at: OffsetDateTime,
) -> Result<Option<Agent>, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, AgentRow>(sqlx::AssertSqlSafe(format!(
            "UPDATE agents SET \
               name = COALESCE($2, name), \
               type = COALESCE($3, type), \
               capabilities = CASE WHEN $4 THEN $5 ELSE capabilities END, \
               status = COALESCE($6, status), \
               metadata = CASE WHEN $7 THEN $8 ELSE metadata END, \
               updated_at = $9 \
             WHERE id = $1 RETURNING {COLUMNS}"
        )))
        .bind(id)
        .bind(changes.name.as_deref())
        .bind(changes.kind.as_deref())
        .bind(changes.capabilities.is_some())
        .bind(Json(changes.capabilities.clone().unwrap_or_default()))
        .bind(changes.status.map(AgentStatus::as_str))
        .bind(changes.metadata.is_some())
        .bind(Json(changes.metadata.clone().unwrap_or_default()))
        .bind(at)
        .fetch_optional(pool)
        .await
    })?;
    row.map(AgentRow::into_agent).transpose()
}

/// Deletes the agent; `false` when there was none.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool, DbError> {
    let affected = with_pool!(db, |pool| {
        sqlx::query("DELETE FROM agents WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(affected > 0)
}
