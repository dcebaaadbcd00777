//! `/api/keys`: the caller's API keys (admins: anyone's).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use mcp_apikeys::{ApiKeyError, ApiKeyRecord, KeyChanges};
use mcp_auth::Authenticated;
use mcp_core::{Principal, Problem, code};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ListQuery, Listed, parse_id};
use crate::AppState;
use crate::extract::{Valid, validated};
use crate::schemas::{KeyCreate, KeyUpdate, Regenerate};
use crate::users::{self, Role};

fn is_admin(principal: &Principal) -> bool {
    principal.has_role(Role::Admin.as_str())
}

/// A key record with its secret, in the one response that carries it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WithSecret {
    #[serde(flatten)]
    record: ApiKeyRecord,
    /// The full key: shown now and never again.
    key: String,
}

fn key_error(error: ApiKeyError) -> Problem {
    match error {
        ApiKeyError::NotFound => Problem::not_found(),
        ApiKeyError::Conflict => Problem::conflict("you have a key with this name"),
        ApiKeyError::GracePeriodTooLong => {
            Problem::validation_failed(vec![mcp_core::FieldError::new(
                "gracePeriodSeconds",
                "range",
                "at most 604800 (7 days)",
            )])
        }
        other => {
            tracing::error!(error = %other, "API key store error");
            match other {
                ApiKeyError::Store(mcp_apikeys::StoreError::Unavailable(_)) => {
                    Problem::unavailable("the database is unreachable")
                }
                _ => Problem::internal(),
            }
        }
    }
}

/// The key `id` if the caller may see it (its owner, or an admin);
/// otherwise `404`, so ids cannot be probed.
async fn visible(
    state: &AppState,
    principal: &Principal,
    id: &str,
) -> Result<ApiKeyRecord, Problem> {
    let id = parse_id(id)?;
    let record = state.keys.get(id).await.map_err(key_error)?;
    if record.owner != principal.subject() && !is_admin(principal) {
        return Err(Problem::not_found());
    }
    Ok(record)
}

/// A restricted caller may hand out only scopes it holds, and never an
/// unrestricted key; `admin` and `metrics` need the admin role.
fn check_grant(
    state: &AppState,
    principal: &Principal,
    scopes: Option<&[String]>,
) -> Result<(), Problem> {
    match scopes {
        None if principal.is_restricted() => {
            return Err(state
                .auth
                .challenge
                .insufficient_scope("keys:write")
                .with_detail("a key restricted by scopes cannot create an unrestricted key"));
        }
        None => {}
        Some(scopes) => {
            for scope in scopes {
                if matches!(scope.as_str(), "admin" | "metrics") && !is_admin(principal) {
                    return Err(Problem::forbidden(
                        code::FORBIDDEN,
                        "the admin and metrics scopes need the admin role",
                    ));
                }
                if !principal.has_scope(scope) {
                    return Err(state.auth.challenge.insufficient_scope(scope));
                }
            }
        }
    }
    Ok(())
}

/// `?userId=` of `GET /api/keys`, with the list parameters.
#[derive(Debug, Deserialize)]
pub struct KeysQuery {
    #[serde(rename = "userId")]
    user_id: Option<String>,
    #[serde(flatten)]
    list: ListQuery,
}

/// `GET /api/keys` (`keys:read`).
pub async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<KeysQuery>,
) -> Result<Json<Listed<ApiKeyRecord>>, Problem> {
    let (limit, cursor) = query.list.checked()?;
    let owner = match query.user_id.as_deref() {
        None => principal.subject().to_owned(),
        Some(user) if user == principal.subject() => user.to_owned(),
        Some(user) if is_admin(&principal) => {
            // The owner must exist.
            let id = Uuid::parse_str(user).map_err(|_| Problem::not_found())?;
            users::find(&state.db, id)
                .await?
                .ok_or_else(Problem::not_found)?;
            user.to_owned()
        }
        Some(_) => return Err(Problem::not_found()),
    };
    let page = state
        .keys
        .list(&owner, limit, cursor)
        .await
        .map_err(key_error)?;
    Ok(Json(Listed::new(page.items, page.next_cursor)))
}

/// `POST /api/keys` (`keys:write`): `201` with the key, shown once.
pub async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Valid(body): Valid<KeyCreate>,
) -> Result<(StatusCode, Json<WithSecret>), Problem> {
    check_grant(&state, &principal, body.scopes.as_deref())?;
    let (record, secret) = state
        .keys
        .create(
            principal.subject(),
            &body.name,
            body.scopes,
            body.expires_in_days,
        )
        .await
        .map_err(key_error)?;
    tracing::info!(key = %record.id, owner = %record.owner, "API key created");
    Ok((
        StatusCode::CREATED,
        Json(WithSecret {
            record,
            key: secret.expose().to_owned(),
        }),
    ))
}

/// `GET /api/keys/{id}` (`keys:read`): never the secret.
pub async fn get(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<ApiKeyRecord>, Problem> {
    visible(&state, &principal, &id).await.map(Json)
}

/// `PATCH /api/keys/{id}` (`keys:write`).
pub async fn update(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ApiKeyRecord>, Problem> {
    let record = visible(&state, &principal, &id).await?;
    let body: KeyUpdate = validated(&state.validation, &headers, &body)?;
    if let Some(scopes) = &body.scopes {
        check_grant(&state, &principal, scopes.as_deref())?;
    }
    let expires_at = match body.expires_in_days {
        Some(days) => Some(state.keys.expiry_in_days(days).map_err(key_error)?),
        None => None,
    };
    let changes = KeyChanges {
        name: body.name,
        scopes: body.scopes,
        is_active: body.is_active,
        expires_at,
    };
    let updated = state
        .keys
        .update(record.id, changes)
        .await
        .map_err(key_error)?;
    tracing::info!(key = %updated.id, "API key updated");
    Ok(Json(updated))
}

/// `POST /api/keys/{id}/regenerate` (`keys:write`): a new secret, shown
/// once; the old one stops now or after `gracePeriodSeconds`.
pub async fn regenerate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WithSecret>, Problem> {
    let record = visible(&state, &principal, &id).await?;
    let body: Regenerate = if body.iter().all(u8::is_ascii_whitespace) {
        Regenerate::default()
    } else {
        validated(&state.validation, &headers, &body)?
    };
    let grace = body.grace_period_seconds.map(Duration::from_secs);
    let (record, secret) = state
        .keys
        .regenerate(record.id, grace)
        .await
        .map_err(key_error)?;
    tracing::info!(key = %record.id, "API key regenerated");
    Ok(Json(WithSecret {
        record,
        key: secret.expose().to_owned(),
    }))
}

/// `DELETE /api/keys/{id}` (`keys:write`): `204`.
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let record = visible(&state, &principal, &id).await?;
    state.keys.delete(record.id).await.map_err(key_error)?;
    tracing::info!(key = %record.id, "API key deleted");
    Ok(StatusCode::NO_CONTENT)
}
