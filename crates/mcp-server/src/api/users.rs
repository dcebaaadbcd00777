//! `/api/auth/*` and `/api/users/*`.

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use mcp_audit::{Actor, Outcome};
use mcp_auth::{AccessToken, Authenticated, Requirement};
use mcp_core::{Principal, Problem, code};
use serde::Serialize;
use uuid::Uuid;

use crate::AppState;
use crate::audit::Context;
use crate::extract::Valid;
use crate::schemas::{Login, UserCreate, UserUpdate};
use crate::users::{self, NewUser, Role, User, UserChanges};

use super::{ListQuery, Listed, parse_id};

/// The one password check of every login (`POST /api/auth/login` and the
/// OAuth login form, `via` naming the latter in the events): the user for
/// a good e-mail and password, `None` otherwise, in the same time for an
/// unknown e-mail and a wrong password; an `auth.login` event either way
/// (the address tried, never the password).
pub async fn check_password(
    state: &AppState,
    context: &Context,
    email: &str,
    password: impl Into<mcp_validate::Secret>,
    via: Option<&str>,
) -> Result<Option<User>, crate::db::DbError> {
    let found = users::find_by_email(&state.db, email).await?;
    let (user, hash) = match found {
        Some((user, hash)) => (Some(user), Some(hash)),
        None => (None, None),
    };
    let matched = state.passwords.verify(password, hash).await;
    let with_via = |event: mcp_audit::Event| match via {
        Some(via) => event.detail("via", via),
        None => event,
    };
    match user.filter(|_| matched) {
        Some(user) => {
            tracing::info!(user = %user.id, "login");
            state.audit(
                context,
                with_via(
                    state
                        .event("auth.login", Outcome::Success)
                        .actor_is(Actor::subject(user.id.to_string(), "password"))
                        .target("user", user.id.to_string()),
                ),
            );
            Ok(Some(user))
        }
        None => {
            state.audit(
                context,
                with_via(
                    state
                        .event("auth.login", Outcome::Denied)
                        .target("email", mcp_audit::Event::bounded(email))
                        .detail("code", code::INVALID_CREDENTIALS),
                ),
            );
            Ok(None)
        }
    }
}

/// `POST /api/auth/login`: a token for a good e-mail and password; the same
/// `401 invalid_credentials`, in the same time, for an unknown e-mail and a
/// wrong password.
pub async fn login(
    State(state): State<AppState>,
    context: Context,
    Valid(body): Valid<Login>,
) -> Result<Response, Problem> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct TokenResponse {
        access_token: String,
        token_type: &'static str,
        expires_in: u64,
    }
    let Some(user) = check_password(&state, &context, &body.email, body.password, None).await?
    else {
        return Err(Problem::unauthorized(
            code::INVALID_CREDENTIALS,
            "the e-mail address or the password is wrong",
        )
        .with_header(
            http::header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer realm=\"mcp\""),
        ));
    };
    let token = state
        .auth
        .issuer
        .issue(
            &AccessToken::new(user.id.to_string())
                .email(&user.email)
                .role(user.role.as_str()),
        )
        .map_err(|error| {
            tracing::error!(%error, "cannot sign a token");
            Problem::internal()
        })?;
    Ok(Json(TokenResponse {
        access_token: token.expose().to_owned(),
        token_type: "Bearer",
        expires_in: token.expires_in,
    })
    .into_response())
}

/// `POST /api/auth/register` (only when `MCP_ALLOW_REGISTRATION=true`): a
/// new user with role `user`, whatever the body says.
pub async fn register(
    State(state): State<AppState>,
    context: Context,
    Valid(body): Valid<UserCreate>,
) -> Result<(StatusCode, Json<User>), Problem> {
    let user = create_user(&state, body, Role::User).await?;
    state.audit(
        &context,
        state
            .event("user.created", Outcome::Success)
            .actor_is(Actor::subject(user.id.to_string(), "registration"))
            .target("user", user.id.to_string())
            .detail("role", user.role.as_str()),
    );
    Ok((StatusCode::CREATED, Json(user)))
}

async fn create_user(state: &AppState, body: UserCreate, role: Role) -> Result<User, Problem> {
    let password_hash = state.passwords.hash(body.password).await?;
    let new = NewUser {
        email: body.email,
        name: body.name,
        role,
        password_hash,
    };
    users::create(&state.db, new, users::now(state.clock.as_ref()))
        .await
        .map_err(|error| match error {
            crate::db::DbError::Conflict(_) => {
                Problem::conflict("a user with this e-mail address exists")
            }
            other => other.into(),
        })
}

/// `GET /api/auth/me`: serialised from the cached user and the principal
/// as they are (borrowed, nothing copied).
pub async fn me(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
) -> Result<Response, Problem> {
    let user = match Uuid::parse_str(principal.subject()) {
        // From the user cache authentication just filled: no query.
        Ok(id) => state
            .auth
            .users
            .user(id)
            .await
            .map_err(|e| e.to_problem(&state.auth.challenge))?,
        Err(_) => None,
    };
    let me = match &user {
        Some(user) => Me {
            id: MeId::User(user.id),
            email: Some(&user.email),
            name: Some(&user.name),
            role: user.role.as_str(),
            auth_method: principal.auth_method().as_str(),
            scopes: principal.scopes(),
            key_id: principal.key_id(),
        },
        // A user of an external issuer: what its token says.
        None => Me {
            id: MeId::External(principal.subject()),
            email: principal.email(),
            name: None,
            role: principal
                .roles()
                .iter()
                .next()
                .map_or(Role::User.as_str(), String::as_str),
            auth_method: principal.auth_method().as_str(),
            scopes: principal.scopes(),
            key_id: principal.key_id(),
        },
    };
    // Serialised into a buffer of the body's usual size: axum's `Json`
    // starts at 128 bytes and writes through `BytesMut`'s writer, and its
    // growth and per-call overhead were a tenth of this route's handler.
    let mut body = Vec::with_capacity(ME_CAPACITY);
    serde_json::to_writer(&mut body, &me).map_err(|error| {
        tracing::error!(%error, "cannot serialise /me");
        Problem::internal()
    })?;
    Ok((
        [(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

/// Room for a `/me` body with a long name and a few scopes.
const ME_CAPACITY: usize = 384;

/// The body of `GET /api/auth/me`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Me<'a> {
    id: MeId<'a>,
    email: Option<&'a str>,
    name: Option<&'a str>,
    role: &'a str,
    auth_method: &'a str,
    /// `null` when unrestricted.
    scopes: Option<&'a std::collections::BTreeSet<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_id: Option<&'a str>,
}

/// A user of this server (its UUID) or of an external issuer (its subject).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum MeId<'a> {
    User(Uuid),
    External(&'a str),
}

/// Admin routes need role `admin`, and scope `admin` when restricted.
fn admin(state: &AppState, principal: &Principal) -> Result<(), Problem> {
    Requirement::role(Role::Admin.as_str())
        .and_scope("admin")
        .check(Some(principal), &state.auth.challenge)
}

/// Self-service (read, rename, change one's own password) needs an
/// unrestricted principal: a scoped key is for the API it was scoped to.
fn self_service(state: &AppState, principal: &Principal) -> Result<(), Problem> {
    if principal.is_restricted() {
        return Err(state.auth.challenge.insufficient_scope(["admin"]));
    }
    Ok(())
}

/// A restricted credential administers users, but cannot turn itself into
/// an unrestricted one: it may not make admins (who log in unrestricted)
/// nor set another user's password (then log in as them). The same rule as
/// for keys: never hand out more than one holds.
fn may_grant(
    principal: &Principal,
    role: Option<Role>,
    sets_others_password: bool,
) -> Result<(), Problem> {
    if principal.is_restricted() && (role == Some(Role::Admin) || sets_others_password) {
        return Err(Problem::forbidden(
            code::FORBIDDEN,
            "a restricted credential cannot make admins or set another user's password",
        ));
    }
    Ok(())
}

fn is_admin(principal: &Principal) -> bool {
    principal.has_role(Role::Admin.as_str()) && principal.has_scope("admin")
}

/// `GET /api/users` (admin).
pub async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<ListQuery>,
) -> Result<Json<Listed<User>>, Problem> {
    admin(&state, &principal)?;
    let (limit, cursor) = query.checked()?;
    let page = users::list(&state.db, limit, cursor).await?;
    Ok(Json(page))
}

/// `POST /api/users` (admin).
pub async fn create(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Valid(body): Valid<UserCreate>,
) -> Result<(StatusCode, Json<User>), Problem> {
    admin(&state, &principal)?;
    let role = body.role.unwrap_or(Role::User);
    may_grant(&principal, Some(role), false)?;
    let user = create_user(&state, body, role).await?;
    state.audit(
        &context,
        state
            .event("user.created", Outcome::Success)
            .actor(&principal)
            .target("user", user.id.to_string())
            .detail("role", user.role.as_str()),
    );
    Ok((StatusCode::CREATED, Json(user)))
}

/// `GET /api/users/{id}`: admins any, users themselves; anyone else `404`.
pub async fn get(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Path(id): Path<String>,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    let own = principal.subject() == id.to_string();
    if !is_admin(&principal) {
        if !own {
            return Err(Problem::not_found());
        }
        self_service(&state, &principal)?;
    }
    users::find(&state.db, id)
        .await?
        .map(Json)
        .ok_or_else(Problem::not_found)
}

/// `PATCH /api/users/{id}`: admins change anything but their own role;
/// users rename themselves and change their own password (with
/// `currentPassword`).
pub async fn update(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Path(id): Path<String>,
    headers: http::HeaderMap,
    body: bytes::Bytes,
) -> Result<Json<User>, Problem> {
    let id = parse_id(&id)?;
    let own = principal.subject() == id.to_string();
    let admin = is_admin(&principal);
    if !admin {
        if !own {
            return Err(Problem::not_found());
        }
        self_service(&state, &principal)?;
    }
    let body: UserUpdate = crate::extract::validated(&state.validation, &headers, body).await?;
    if !admin && body.email.is_some() {
        return Err(Problem::forbidden(
            code::FORBIDDEN,
            "only an admin can change an e-mail address",
        ));
    }
    may_grant(&principal, body.role, !own && body.password.is_some())?;
    if own && body.role.is_some() {
        return Err(Problem::forbidden(
            code::FORBIDDEN,
            "you cannot change your own role",
        ));
    }
    if own && body.password.is_some() {
        let current = body.current_password.clone().ok_or_else(|| {
            Problem::validation_failed(vec![mcp_core::FieldError::new(
                "currentPassword",
                "required",
                "needed to change your own password",
            )])
        })?;
        let hash = users::password_hash(&state.db, id).await?;
        if !state.passwords.verify(current, hash).await {
            // A 401, so the auth-failure lockout counts the guess.
            return Err(Problem::unauthorized(
                code::INVALID_CREDENTIALS,
                "the current password is wrong",
            ));
        }
    }
    let password_hash = match body.password {
        Some(password) => Some(state.passwords.hash(password).await?),
        None => None,
    };
    // What changed, by name; a role change names both roles.
    let mut changed = Vec::new();
    for (field, set) in [
        ("email", body.email.is_some()),
        ("name", body.name.is_some()),
        ("role", body.role.is_some()),
        ("password", password_hash.is_some()),
    ] {
        if set {
            changed.push(field);
        }
    }
    let previous_role = match body.role {
        Some(_) => users::find(&state.db, id).await?.map(|user| user.role),
        None => None,
    };
    let changes = UserChanges {
        email: body.email,
        name: body.name,
        role: body.role,
        password_hash,
    };
    let updated = users::update(&state.db, id, changes, users::now(state.clock.as_ref()))
        .await
        .map_err(|error| match error {
            crate::db::DbError::Conflict(_) => {
                Problem::conflict("a user with this e-mail address exists")
            }
            other => other.into(),
        })?
        .ok_or_else(Problem::not_found)?;
    state.auth.users.forget(id).await;
    let mut event = state
        .event("user.updated", Outcome::Success)
        .actor(&principal)
        .target("user", id.to_string())
        .detail("changed", changed);
    if let Some(from) = previous_role.filter(|from| *from != updated.role) {
        event = event.detail(
            "role",
            serde_json::json!({"from": from.as_str(), "to": updated.role.as_str()}),
        );
    }
    state.audit(&context, event);
    Ok(Json(updated))
}

/// `DELETE /api/users/{id}` (admin; not oneself): `204`.
pub async fn delete(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    admin(&state, &principal)?;
    let id = parse_id(&id)?;
    if principal.subject() == id.to_string() {
        return Err(Problem::forbidden(
            code::FORBIDDEN,
            "you cannot delete yourself",
        ));
    }
    if !users::delete(&state.db, id).await? {
        return Err(Problem::not_found());
    }
    state.auth.users.forget(id).await;
    state.audit(
        &context,
        state
            .event("user.deleted", Outcome::Success)
            .actor(&principal)
            .target("user", id.to_string()),
    );
    // The user's keys and grants go with them.
    if let Err(error) = state.keys.delete_owner(&id.to_string()).await {
        tracing::error!(%error, user = %id, "cannot delete the keys of a deleted user; they are refused anyway");
    }
    if let Some(oauth) = &state.oauth {
        oauth.revoke_all(&id.to_string()).await;
    }
    Ok(StatusCode::NO_CONTENT)
}
