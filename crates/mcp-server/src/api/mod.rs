//! The JSON API under `/api`.

pub mod agents;
pub mod audit;
pub mod keys;
pub mod users;

use axum::Router;
use axum::routing::{delete, get, patch, post};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use mcp_auth::{RequireLayer, Requirement};
use mcp_core::{FieldError, Principal, Problem};
use serde::Deserialize;
use tower::ServiceBuilder;
use tower_http::set_header::SetResponseHeaderLayer;
use uuid::Uuid;

use crate::AppState;

/// The `/api` routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut public = Router::new().route("/api/auth/login", post(users::login));
    if state.config.allow_registration {
        public = public.route("/api/auth/register", post(users::register));
    }
    // Login and register: the auth policy (per e-mail) inside the api
    // policy (per IP); the response shows whichever has fewer left.
    //
    // Each `route_layer` call boxes once more per route and request, so the
    // layers of a group go in as one stack.
    let public = public.route_layer(
        ServiceBuilder::new()
            .layer(no_store())
            .layer(state.limits.api_layer())
            .layer(state.limits.auth_layer()),
    );
    // Each method gets the whole guard as one stack, layered once when the
    // router is built (not `Handler::layer`, which layers on every call):
    // authentication,
    // the api limit keyed by who was authenticated, then authorization,
    // which runs before any body is read, so a caller without the scope
    // gets 403, never a 400 about a body it may not send. The `401` of a
    // handler names the scopes it needs (MCP authorization), so the
    // challenge is the handler's own.
    let guard = |requirement: Requirement| {
        let challenge = state.auth.challenge.clone().scopes(requirement.scopes());
        ServiceBuilder::new()
            .layer(no_store())
            .layer(state.auth.layer.clone().challenge(challenge.clone()))
            .layer(crate::audit::refusals_layer(state))
            .layer(state.limits.api_layer())
            .layer(RequireLayer::new(requirement).challenge(challenge))
    };
    let anyone = || guard(Requirement::default());
    let scope = |scope: &str| guard(Requirement::scope(scope));
    let admin = || guard(Requirement::role("admin").and_scope("admin"));
    let authenticated = Router::new()
        .route("/api/auth/me", get(users::me).route_layer(anyone()))
        .route(
            "/api/users",
            get(users::list)
                .route_layer(admin())
                .merge(post(users::create).route_layer(admin())),
        )
        .route(
            "/api/users/{id}",
            get(users::get)
                .route_layer(anyone())
                .merge(patch(users::update).route_layer(anyone()))
                .merge(delete(users::delete).route_layer(admin())),
        )
        .route(
            "/api/keys",
            get(keys::list)
                .route_layer(scope("keys:read"))
                .merge(post(keys::create).route_layer(scope("keys:write"))),
        )
        .route(
            "/api/keys/{id}",
            get(keys::get)
                .route_layer(scope("keys:read"))
                .merge(patch(keys::update).route_layer(scope("keys:write")))
                .merge(delete(keys::delete).route_layer(scope("keys:write"))),
        )
        .route(
            "/api/keys/{id}/regenerate",
            post(keys::regenerate).route_layer(scope("keys:write")),
        )
        .route(
            "/api/agents",
            get(agents::list)
                .route_layer(scope("agents:read"))
                .merge(post(agents::create).route_layer(scope("agents:write"))),
        )
        .route(
            "/api/agents/{id}",
            get(agents::get)
                .route_layer(scope("agents:read"))
                .merge(patch(agents::update).route_layer(scope("agents:write")))
                .merge(delete(agents::delete).route_layer(scope("agents:write"))),
        )
        .route("/api/audit", get(audit::list).route_layer(admin()));
    public.merge(authenticated)
}

/// Whether `principal` may reach what `owner` owns (keys, grants): its
/// own, or anyone's for an admin, with scope `admin` when the credential
/// is restricted. A non-admin gets `404`, so ids cannot be probed.
pub fn authorize_owner(
    state: &AppState,
    principal: &Principal,
    owner: &str,
) -> Result<(), Problem> {
    if owner == principal.subject() {
        return Ok(());
    }
    if !principal.has_role(crate::users::Role::Admin.as_str()) {
        return Err(Problem::not_found());
    }
    if !principal.has_scope("admin") {
        return Err(state
            .auth
            .challenge
            .insufficient_scope(["admin"])
            .with_detail("what another user owns needs the admin scope"));
    }
    Ok(())
}

/// Responses of the API are per caller and often secret.
pub fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(CACHE_CONTROL, HeaderValue::from_static("no-store"))
}

/// `?limit=` (default 50, at most 200) and `?cursor=` of list routes.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListQuery {
    /// A query of `limit` and `cursor` as given.
    pub fn from_parts(limit: Option<String>, cursor: Option<String>) -> Self {
        ListQuery { limit, cursor }
    }

    /// The limit and cursor, checked.
    pub fn checked(&self) -> Result<(u32, Option<Uuid>), Problem> {
        let mut errors = Vec::new();
        let limit = match self.limit.as_deref() {
            None => 50,
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=200).contains(&n) => n,
                _ => {
                    errors.push(FieldError::new(
                        "limit",
                        "range",
                        "must be a whole number from 1 to 200",
                    ));
                    50
                }
            },
        };
        let cursor = match self.cursor.as_deref() {
            None | Some("") => None,
            Some(text) => match Uuid::parse_str(text) {
                Ok(id) => Some(id),
                Err(_) => {
                    errors.push(FieldError::new(
                        "cursor",
                        "format",
                        "not a cursor from this API",
                    ));
                    None
                }
            },
        };
        if errors.is_empty() {
            Ok((limit, cursor))
        } else {
            Err(Problem::validation_failed(errors))
        }
    }
}

/// A page of a list: `{"items":[...],"nextCursor":null}`.
pub type Listed<T> = mcp_core::Page<T, Uuid>;

/// A path id; anything that is not one of our ids is simply not found.
pub fn parse_id(text: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text).map_err(|_| Problem::not_found())
}
