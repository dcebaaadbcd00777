//! `GET /api/audit`: the audit trail (admin; scope `admin` when
//! restricted), oldest first, with the list routes' cursor pagination.

use axum::Json;
use axum::extract::{Query, State};
use mcp_audit::Event;
use mcp_core::Problem;

use super::Listed;
use crate::AppState;
use crate::audit::{self, AuditQuery};

/// `GET /api/audit?type=&subject=&since=&until=&limit=&cursor=`.
pub async fn list(
    State(state): State<AppState>,
    Query(query): Query<AuditQuery>,
) -> Result<Json<Listed<Event>>, Problem> {
    let (filter, limit, cursor) = query.checked()?;
    Ok(Json(audit::list(&state.db, &filter, limit, cursor).await?))
}
