//! `/api/keys`: the caller's API keys (admins: anyone's).

use std::time::Duration;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use bytes::Bytes;
use mcp_apikeys::{ApiKeyError, ApiKeyRecord, KeyChanges};
use mcp_audit::Outcome;
use mcp_auth::Authenticated;
use mcp_core::{Principal, Problem, code};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ListQuery, Listed, parse_id};
use crate::AppState;
use crate::audit::Context;
use crate::extract::{Valid, validated};
use crate::schemas::{KeyCreate, KeyUpdate, Regenerate};
use crate::users::{self, Role};

/// A key record with its secret, in the one response that carries it.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WithSecret {
    #[serde(flatten)]
    record: ApiKeyRecord,
    /// The full key: shown now and never again.
    key: String,
}

/// Never the key itself.
impl std::fmt::Debug for WithSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WithSecret")
            .field("record", &self.record)
            .finish_non_exhaustive()
    }
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

/// What a caller asks to do with keys of one owner.
#[derive(Clone, Copy, Debug)]
pub enum KeyAction<'a> {
    /// Read records (never secrets): list or get.
    Read,
    /// Create a key with these scopes (`None`: unrestricted).
    Create {
        /// The scopes asked for.
        scopes: Option<&'a [String]>,
    },
    /// Change, regenerate or delete an existing key with `current` scopes,
    /// giving it `new` scopes when `Some`.
    Modify {
        /// The key's scopes now (`None`: unrestricted).
        current: Option<&'a [String]>,
        /// The scopes it is to have, when they change.
        new: Option<Option<&'a [String]>>,
    },
}

/// The one rule for every key operation, by every route (and any tool that
/// ever manages keys). A caller never reaches past its own powers:
///
/// - another user's keys need role `admin` and, when the credential is
///   restricted, scope `admin` (a non-admin gets `404`, so ids cannot be
///   probed);
/// - a restricted caller acts only on keys whose scopes are within its own,
///   never on an unrestricted key (regenerating one would hand it the
///   owner's whole role), and grants only scopes it holds;
/// - `admin` and `metrics` are granted by admins only;
/// - keys are made for local users only, never for an external subject.
pub fn authorize_key(
    state: &AppState,
    principal: &Principal,
    owner: &str,
    action: KeyAction<'_>,
) -> Result<(), Problem> {
    super::authorize_owner(state, principal, owner)?;
    match action {
        KeyAction::Read => Ok(()),
        // A key acts as a local user; an external subject is none.
        KeyAction::Create { .. } if Uuid::parse_str(owner).is_err() => Err(Problem::forbidden(
            code::FORBIDDEN,
            "API keys belong to users of this server",
        )),
        KeyAction::Create { scopes } => within(state, principal, scopes, Reach::Grant),
        KeyAction::Modify { current, new } => {
            within(state, principal, current, Reach::Touch)?;
            match new {
                Some(scopes) => within(state, principal, scopes, Reach::Grant),
                None => Ok(()),
            }
        }
    }
}

/// Whether a key's scopes are being granted, or are those of a key acted on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Reach {
    Grant,
    Touch,
}

/// `scopes` (`None`: unrestricted) are within what `principal` holds: the
/// rule of [`refusal`], answered as the contract's problem.
fn within(
    state: &AppState,
    principal: &Principal,
    scopes: Option<&[String]>,
    reach: Reach,
) -> Result<(), Problem> {
    match refusal(principal, scopes, reach) {
        None => Ok(()),
        Some(Refusal::Unrestricted) => {
            let detail = match reach {
                Reach::Grant => "a key restricted by scopes cannot create an unrestricted key",
                Reach::Touch => "a key restricted by scopes cannot act on an unrestricted key",
            };
            Err(state
                .auth
                .challenge
                .insufficient_scope(["keys:write"])
                .with_detail(detail))
        }
        Some(Refusal::AdminOnly) => Err(Problem::forbidden(
            code::FORBIDDEN,
            "the admin and metrics scopes need the admin role",
        )),
        Some(Refusal::Missing(missing)) => {
            let problem = state.auth.challenge.insufficient_scope(missing);
            Err(match reach {
                Reach::Grant => problem,
                Reach::Touch => problem.with_detail("the key has scopes the caller lacks"),
            })
        }
    }
}

/// Why a caller may not grant, or act on a key with, some scopes.
#[derive(Debug, PartialEq, Eq)]
enum Refusal<'a> {
    /// A restricted caller and an unrestricted key.
    Unrestricted,
    /// `admin` or `metrics` granted by a non-admin.
    AdminOnly,
    /// Every scope the caller lacks, in one answer.
    Missing(Vec<&'a str>),
}

/// The rule itself, with nothing of the server in it: whether `principal`
/// may grant `scopes` (`None`: unrestricted), or act on a key that has
/// them. The hierarchy decides what is held: `agents` may hand out
/// `agents:read`, never the reverse.
fn refusal<'a>(
    principal: &Principal,
    scopes: Option<&'a [String]>,
    reach: Reach,
) -> Option<Refusal<'a>> {
    let Some(scopes) = scopes else {
        return principal.is_restricted().then_some(Refusal::Unrestricted);
    };
    if reach == Reach::Grant
        && scopes
            .iter()
            .any(|s| matches!(s.as_str(), "admin" | "metrics"))
        && !principal.has_role(Role::Admin.as_str())
    {
        return Some(Refusal::AdminOnly);
    }
    let missing: Vec<&str> = scopes
        .iter()
        .map(String::as_str)
        .filter(|s| !principal.has_scope(s))
        .collect();
    (!missing.is_empty()).then_some(Refusal::Missing(missing))
}

/// The key `id`, if the caller may do `action` to it: records it may not
/// see are `404`, so ids cannot be probed.
async fn authorized(
    state: &AppState,
    principal: &Principal,
    id: &str,
    action: impl FnOnce(&ApiKeyRecord) -> KeyAction<'_>,
) -> Result<ApiKeyRecord, Problem> {
    let id = parse_id(id)?;
    let record = state.keys.get(id).await.map_err(key_error)?;
    authorize_key(state, principal, &record.owner, action(&record))?;
    Ok(record)
}

/// The action on an existing key, its scopes unchanged.
fn modify(record: &ApiKeyRecord) -> KeyAction<'_> {
    KeyAction::Modify {
        current: record.scopes.as_deref(),
        new: None,
    }
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
    let owner = query
        .user_id
        .unwrap_or_else(|| principal.subject().to_owned());
    authorize_key(&state, &principal, &owner, KeyAction::Read)?;
    if owner != principal.subject() {
        // The owner must exist.
        let id = Uuid::parse_str(&owner).map_err(|_| Problem::not_found())?;
        users::find(&state.db, id)
            .await?
            .ok_or_else(Problem::not_found)?;
    }
    let page = state
        .keys
        .list(&owner, limit, cursor)
        .await
        .map_err(key_error)?;
    Ok(Json(page))
}

/// `POST /api/keys` (`keys:write`): `201` with the key, shown once.
pub async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Valid(body): Valid<KeyCreate>,
) -> Result<(StatusCode, Json<WithSecret>), Problem> {
    authorize_key(
        &state,
        &principal,
        principal.subject(),
        KeyAction::Create {
            scopes: body.scopes.as_deref(),
        },
    )?;
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
    state.audit(
        &context,
        state
            .event("key.created", Outcome::Success)
            .actor(&principal)
            .target("key", record.id.to_string())
            .detail("owner", record.owner.as_str())
            .detail("scopes", serde_json::json!(record.scopes)),
    );
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
    authorized(&state, &principal, &id, |_| KeyAction::Read)
        .await
        .map(Json)
}

/// `PATCH /api/keys/{id}` (`keys:write`).
pub async fn update(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<ApiKeyRecord>, Problem> {
    // Visibility before validation, so a foreign id is 404 whatever the body.
    let record = authorized(&state, &principal, &id, modify).await?;
    let body: KeyUpdate = validated(&state.validation, &headers, body).await?;
    if let Some(scopes) = &body.scopes {
        authorize_key(
            &state,
            &principal,
            &record.owner,
            KeyAction::Modify {
                current: record.scopes.as_deref(),
                new: Some(scopes.as_deref()),
            },
        )?;
    }
    let expires_at = match body.expires_in_days {
        Some(days) => Some(state.keys.expiry_in_days(days).map_err(key_error)?),
        None => None,
    };
    let changed: Vec<&str> = [
        ("name", body.name.is_some()),
        ("scopes", body.scopes.is_some()),
        ("isActive", body.is_active.is_some()),
        ("expiresAt", expires_at.is_some()),
    ]
    .into_iter()
    .filter_map(|(field, set)| set.then_some(field))
    .collect();
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
    state.audit(
        &context,
        state
            .event("key.updated", Outcome::Success)
            .actor(&principal)
            .target("key", updated.id.to_string())
            .detail("changed", changed),
    );
    Ok(Json(updated))
}

/// `POST /api/keys/{id}/regenerate` (`keys:write`): a new secret, shown
/// once; the old one stops now or after `gracePeriodSeconds`.
pub async fn regenerate(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WithSecret>, Problem> {
    let record = authorized(&state, &principal, &id, modify).await?;
    let body: Regenerate = if body.iter().all(u8::is_ascii_whitespace) {
        Regenerate::default()
    } else {
        validated(&state.validation, &headers, body).await?
    };
    let grace = body.grace_period_seconds.map(Duration::from_secs);
    let (record, secret) = state
        .keys
        .regenerate(record.id, grace)
        .await
        .map_err(key_error)?;
    tracing::info!(key = %record.id, "API key regenerated");
    state.audit(
        &context,
        state
            .event("key.regenerated", Outcome::Success)
            .actor(&principal)
            .target("key", record.id.to_string())
            .detail("gracePeriodSeconds", grace.map(|g| g.as_secs())),
    );
    Ok(Json(WithSecret {
        record,
        key: secret.expose().to_owned(),
    }))
}

/// `DELETE /api/keys/{id}` (`keys:write`): `204`.
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let record = authorized(&state, &principal, &id, modify).await?;
    state.keys.delete(record.id).await.map_err(key_error)?;
    tracing::info!(key = %record.id, "API key deleted");
    state.audit(
        &context,
        state
            .event("key.deleted", Outcome::Success)
            .actor(&principal)
            .target("key", record.id.to_string()),
    );
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use mcp_core::{AuthMethod, scopes_grant};
    use proptest::prelude::*;

    use super::*;

    const UNIVERSE: [&str; 10] = [
        "mcp",
        "agents",
        "agents:read",
        "agents:write",
        "keys",
        "keys:read",
        "keys:write",
        "admin",
        "metrics",
        "agents:read:own",
    ];

    fn scopes() -> impl Strategy<Value = Option<Vec<String>>> {
        prop::option::weighted(
            0.85,
            prop::sample::subsequence(UNIVERSE.to_vec(), 0..5)
                .prop_map(|s| s.into_iter().map(str::to_owned).collect()),
        )
    }

    /// One key operation: which credential acts (an index into those
    /// obtained so far, 0 being the user's own login), and on what.
    #[derive(Clone, Debug)]
    enum Op {
        Create {
            by: usize,
            scopes: Option<Vec<String>>,
        },
        Update {
            by: usize,
            key: usize,
            scopes: Option<Vec<String>>,
        },
        Delete {
            by: usize,
            key: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (any::<usize>(), scopes()).prop_map(|(by, scopes)| Op::Create { by, scopes }),
            2 => (any::<usize>(), any::<usize>(), scopes())
                .prop_map(|(by, key, scopes)| Op::Update { by, key, scopes }),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(by, key)| Op::Delete { by, key }),
        ]
    }

    /// A credential of the user: its login (roles and maybe scopes) or a
    /// key, which acts with the owner's role and its own scopes.
    fn principal(role: &str, scopes: &Option<Vec<String>>) -> Principal {
        Principal::builder("user-1", AuthMethod::ApiKey)
            .role(role)
            .scope_set(scopes.as_ref().map(|s| s.iter().cloned().collect()))
            .build()
    }

    fn allowed(actor: &Principal, scopes: Option<&[String]>, reach: Reach) -> bool {
        refusal(actor, scopes, reach).is_none()
    }

    proptest! {
        /// Whatever sequence of creates, updates, regenerations and deletes
        /// a user's credentials make, no key ever holds a scope the login
        /// it started from lacks, a restricted start never yields an
        /// unrestricted key, and `admin`/`metrics` are never granted by a
        /// non-admin.
        #[test]
        fn no_sequence_of_key_operations_escalates(
            admin in any::<bool>(),
            start in scopes(),
            ops in prop::collection::vec(op(), 1..24),
        ) {
            let role = if admin { "admin" } else { "user" };
            // Index 0 is the login; the rest are keys, as they are now.
            let mut held: Vec<Option<Vec<String>>> = vec![start.clone()];
            for op in ops {
                match op {
                    Op::Create { by, scopes } => {
                        let actor = principal(role, &held[by % held.len()]);
                        if allowed(&actor, scopes.as_deref(), Reach::Grant) {
                            held.push(scopes);
                        }
                    }
                    Op::Update { by, key, scopes } if held.len() > 1 => {
                        let actor = principal(role, &held[by % held.len()]);
                        let key = 1 + key % (held.len() - 1);
                        if allowed(&actor, held[key].as_deref(), Reach::Touch)
                            && allowed(&actor, scopes.as_deref(), Reach::Grant)
                        {
                            held[key] = scopes;
                        }
                    }
                    // Deleting (or regenerating, which keeps the scopes)
                    // needs the reach over the key's scopes.
                    Op::Delete { by, key } if held.len() > 1 => {
                        let actor = principal(role, &held[by % held.len()]);
                        let key = 1 + key % (held.len() - 1);
                        if allowed(&actor, held[key].as_deref(), Reach::Touch) {
                            held.remove(key);
                        }
                    }
                    _ => {}
                }
            }
            for key in &held[1..] {
                match (&start, key) {
                    (Some(_), None) => prop_assert!(false, "a restricted login made an unrestricted key"),
                    (Some(start), Some(key)) => {
                        for scope in key {
                            prop_assert!(
                                scopes_grant(start.iter().map(String::as_str), scope),
                                "{scope} from {start:?}"
                            );
                        }
                    }
                    (None, _) => {}
                }
                if !admin {
                    prop_assert!(
                        !key.iter().flatten().any(|s| s == "admin" || s == "metrics"),
                        "{key:?}"
                    );
                }
            }
        }

        /// A refusal names every scope that is missing, and only those.
        #[test]
        fn a_refusal_names_every_missing_scope(held in scopes(), asked in prop::sample::subsequence(UNIVERSE.to_vec(), 0..6)) {
            let asked: Vec<String> = asked.into_iter().map(str::to_owned).collect();
            let actor = principal("admin", &held);
            let expected: Vec<&str> = asked.iter().map(String::as_str).filter(|s| !actor.has_scope(s)).collect();
            let got = refusal(&actor, Some(&asked), Reach::Touch);
            if expected.is_empty() {
                prop_assert_eq!(got, None);
            } else {
                prop_assert_eq!(got, Some(Refusal::Missing(expected)));
            }
        }
    }
}
