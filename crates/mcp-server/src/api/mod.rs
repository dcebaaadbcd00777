//! The JSON API under `/api`.

pub mod users;

use axum::Router;
use axum::routing::{get, post};
use http::HeaderValue;
use http::header::CACHE_CONTROL;
use mcp_core::{FieldError, Problem};
use serde::{Deserialize, Serialize};
use tower_http::set_header::SetResponseHeaderLayer;
use uuid::Uuid;

use crate::AppState;

/// The `/api` routes.
pub fn router(state: &AppState) -> Router<AppState> {
    let mut public = Router::new().route("/api/auth/login", post(users::login));
    if state.config.allow_registration {
        public = public.route("/api/auth/register", post(users::register));
    }
    let authenticated = Router::new()
        .route("/api/auth/me", get(users::me))
        .route("/api/users", get(users::list).post(users::create))
        .route(
            "/api/users/{id}",
            get(users::get).patch(users::update).delete(users::delete),
        )
        .route_layer(state.auth.layer.clone());
    public
        .merge(authenticated)
        // Responses of the API are per caller and often secret.
        .layer(SetResponseHeaderLayer::if_not_present(
            CACHE_CONTROL,
            HeaderValue::from_static("no-store"),
        ))
}

/// `?limit=` (default 50, at most 200) and `?cursor=` of list routes.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    limit: Option<String>,
    cursor: Option<String>,
}

impl ListQuery {
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
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Listed<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

impl<T> Listed<T> {
    /// A page.
    pub fn new(items: Vec<T>, next_cursor: Option<Uuid>) -> Self {
        Listed {
            items,
            next_cursor: next_cursor.map(|c| c.to_string()),
        }
    }
}

/// A path id; anything that is not one of our ids is simply not found.
pub fn parse_id(text: &str) -> Result<Uuid, Problem> {
    Uuid::parse_str(text).map_err(|_| Problem::not_found())
}
