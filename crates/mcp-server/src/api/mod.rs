//! The JSON API under `/api`.

pub mod agents;
pub mod audit;
pub mod keys;
pub mod users;

use axum::Router;
use axum::handler::Handler;
use axum::routing::{get, post};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use mcp_auth::RequireLayer;
use mcp_core::{FieldError, Problem};
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
    // Authorization runs as a layer, before any body is read: a caller
    // without the scope gets 403, never a 400 about a body it may not send.
    let challenge = state.auth.challenge.clone();
    let scope = |scope: &str| RequireLayer::scope(scope).challenge(challenge.clone());
    let admin = RequireLayer::role("admin")
        .and_scope("admin")
        .challenge(challenge.clone());
    let authenticated = Router::new()
        .route("/api/auth/me", get(users::me))
        .route(
            "/api/users",
            get(users::list.layer(admin.clone())).post(users::create.layer(admin.clone())),
        )
        .route(
            "/api/users/{id}",
            get(users::get)
                .patch(users::update)
                .delete(users::delete.layer(admin)),
        )
        .route(
            "/api/keys",
            get(keys::list.layer(scope("keys:read"))).post(keys::create.layer(scope("keys:write"))),
        )
        .route(
            "/api/keys/{id}",
            get(keys::get.layer(scope("keys:read")))
                .patch(keys::update.layer(scope("keys:write")))
                .delete(keys::delete.layer(scope("keys:write"))),
        )
        .route(
            "/api/keys/{id}/regenerate",
            post(keys::regenerate.layer(scope("keys:write"))),
        )
        .route(
            "/api/agents",
            get(agents::list.layer(scope("agents:read")))
                .post(agents::create.layer(scope("agents:write"))),
        )
        .route(
            "/api/agents/{id}",
            get(agents::get.layer(scope("agents:read")))
                .patch(agents::update.layer(scope("agents:write")))
                .delete(agents::delete.layer(scope("agents:write"))),
        )
        // Authentication, then the api limit keyed by who was authenticated,
        // then (per handler) authorization.
        .route(
            "/api/audit",
            get(audit::list.layer(
                RequireLayer::role("admin")
                    .and_scope("admin")
                    .challenge(challenge.clone()),
            )),
        )
        .route_layer(
            ServiceBuilder::new()
                .layer(no_store())
                .layer(state.auth.layer.clone())
                .layer(crate::audit::refusals_layer(state))
                .layer(state.limits.api_layer()),
        );
    public.merge(authenticated)
}

/// Responses of the API are per caller and often secret.
fn no_store() -> SetResponseHeaderLayer<HeaderValue> {
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
