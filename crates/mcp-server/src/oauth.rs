//! The server as OAuth authorization server for MCP clients: `mcp-oauth`
//! over the server's database, users, token issuer, limits and audit
//! trail, and the routes that let users see and revoke their grants.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use axum::routing::get;
use mcp_audit::{Actor, Event, Outcome};
use mcp_auth::{AuthError, Authenticated, BoxFuture};
use mcp_core::Problem;
use mcp_oauth::{
    AuthorizationServer, ClientMetadataFetcher, Grant, LoginError, LoginUser, OAuthStore, Settings,
    SqlStore, StoreError, TokenEvent, UserDirectory,
};
use mcp_ratelimit::{RateKey, RateLimiter};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::api::{ListQuery, Listed, parse_id};
use crate::audit::Context;
use crate::config::Config;
use crate::db::Db;
use crate::users::Role;

/// The OAuth store on the server's database.
pub fn store(db: &Db) -> SqlStore {
    match db {
        Db::Postgres(pool) => SqlStore::postgres(pool.clone()),
        Db::Sqlite(pool) => SqlStore::sqlite(pool.clone()),
    }
}

/// Whether each grant is still live, for a bounded time: an access token
/// of a revoked grant is refused within the TTL on every replica, and at
/// once on the one that revoked it ([`GrantCache::forget`]), as
/// [`UserCache`](crate::auth::UserCache) bounds a deleted user's tokens.
#[derive(Clone, Debug)]
pub struct GrantCache {
    store: SqlStore,
    /// Grant ids come from verified tokens, never from a caller's text.
    cache: moka::sync::Cache<Uuid, bool, foldhash::fast::RandomState>,
    /// Bumped by every `forget`: a lookup that read the store before it
    /// does not cache what it read (the grant may be revoked since).
    generation: Arc<AtomicU64>,
}

impl GrantCache {
    /// Grants of `store`, each checked at most once per `ttl`.
    pub fn new(store: SqlStore, ttl: Duration) -> Self {
        GrantCache {
            store,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            generation: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Whether grant `id` exists and is not revoked.
    pub async fn live(&self, id: Uuid) -> Result<bool, AuthError> {
        if let Some(live) = self.cache.get(&id) {
            return Ok(live);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let live = self
            .store
            .grant(id)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot check the token's grant");
                AuthError::Unavailable("the grant store is unreachable".into())
            })?
            .is_some_and(|grant| grant.revoked_at.is_none());
        if self.generation.load(Ordering::SeqCst) == generation {
            self.cache.insert(id, live);
            // A `forget` between the check and the insert: undo the insert.
            if self.generation.load(Ordering::SeqCst) != generation {
                self.cache.invalidate(&id);
            }
        }
        Ok(live)
    }

    /// Grant `id` was revoked here: its tokens are refused from now on.
    pub fn forget(&self, id: Uuid) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.insert(id, false);
    }
}

/// The authorization server and what the server keeps beside it.
#[derive(Clone, Debug)]
pub struct OAuth {
    /// The rules.
    pub server: AuthorizationServer,
    /// Which grants are live.
    pub grants: GrantCache,
    /// Whether `POST /oauth/register` exists.
    pub registration: bool,
}

tokio::task_local! {
    /// The request an OAuth route is serving, for the events the
    /// authorization server reports while it runs.
    static REQUEST: (Context, Option<Actor>);
}

/// The scopes a user of `role` holds: all of them for admins; the others
/// never `admin` or `metrics`, which need the admin role anyway.
pub fn scopes_of(role: Role) -> Option<Vec<String>> {
    match role {
        Role::Admin => None,
        Role::User => Some(
            crate::auth::SCOPES
                .iter()
                .filter(|s| !matches!(**s, "admin" | "metrics"))
                .map(|s| (*s).to_owned())
                .collect(),
        ),
    }
}

impl OAuth {
    /// The authorization server of `config` (issuer `MCP_PUBLIC_URL`,
    /// resource its `/mcp`), signing with the server's own key, its events
    /// in the audit trail.
    pub fn setup(
        config: &Config,
        store: SqlStore,
        grants: GrantCache,
        tokens: mcp_auth::TokenIssuer,
        audit: mcp_audit::Auditor,
        clock: mcp_core::SharedClock,
    ) -> OAuth {
        let mut settings = Settings::new(config.public_url.clone(), config.jwt.audience.clone());
        settings.scopes = crate::auth::SCOPES
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let fetcher = if config.oauth.insecure_client_urls {
            tracing::warn!(
                "MCP_OAUTH_INSECURE_CLIENT_URLS is on: client metadata documents are fetched \
                 over http, from loopback and private addresses, with any certificate; \
                 for tests only"
            );
            ClientMetadataFetcher::insecure_for_tests(Duration::from_secs(5))
        } else {
            ClientMetadataFetcher::new()
        };
        let cache = grants.clone();
        let events_clock = clock.clone();
        let server = AuthorizationServer::new(store, tokens, settings)
            .clock(clock.clone())
            .client_metadata(fetcher.clock(clock))
            .on_event(move |event| {
                let at = events_clock.now();
                let event = match event {
                    TokenEvent::Granted(grant) => grant_event("oauth.grant", grant, at),
                    TokenEvent::Refreshed(grant) => grant_event("oauth.refresh", grant, at),
                    TokenEvent::Revoked(id) => {
                        cache.forget(*id);
                        Event::new("oauth.revoke", Outcome::Success, at)
                            .target("grant", id.to_string())
                    }
                    TokenEvent::ReplayRevoked(id) => {
                        cache.forget(*id);
                        Event::new("oauth.revoke", Outcome::Denied, at)
                            .target("grant", id.to_string())
                            .detail("reason", "replay")
                    }
                };
                let event = REQUEST
                    .try_with(|(context, actor)| {
                        let event = context.on(event.clone());
                        match actor {
                            Some(actor) => event.actor_is(actor.clone()),
                            None => event,
                        }
                    })
                    .unwrap_or(event);
                audit.record(event);
            });
        OAuth {
            server,
            grants,
            registration: config.oauth.registration,
        }
    }

    /// Revokes every grant of user `subject` (a deleted user).
    pub async fn revoke_all(&self, subject: &str) {
        let grants = match self.server.store().grants(Some(subject)).await {
            Ok(grants) => grants,
            Err(error) => {
                tracing::error!(%error, "cannot list the grants of a deleted user; their tokens are refused anyway");
                return;
            }
        };
        for grant in grants.iter().filter(|g| g.revoked_at.is_none()) {
            if let Err(error) = self.server.revoke_grant(grant.id).await {
                tracing::error!(%error, grant = %grant.id, "cannot revoke a grant of a deleted user");
            }
        }
    }
}

fn grant_event(kind: &str, grant: &Grant, at: std::time::SystemTime) -> Event {
    Event::new(kind, Outcome::Success, at)
        .actor_is(Actor::subject(grant.subject.clone(), "oauth"))
        .target("grant", grant.id.to_string())
        .detail("clientId", Event::bounded(&grant.client_id))
        .detail("scopes", grant.scopes.join(" "))
}

/// The server's users behind the login form: the same password check,
/// per-account limit (the `auth` policy, one bucket with
/// `POST /api/auth/login`) and audit events as the JSON login. Failed
/// logins answer `401`, which the auth-failures lock-out counts per
/// address like any refused credential.
struct Users {
    state: std::sync::Weak<crate::Services>,
    limiter: RateLimiter,
}

impl UserDirectory for Users {
    fn login<'a>(
        &'a self,
        email: &'a str,
        password: &'a str,
        request: &'a http::request::Parts,
    ) -> BoxFuture<'a, Result<Option<LoginUser>, LoginError>> {
        Box::pin(async move {
            let Some(state) = self.state.upgrade() else {
                return Err(LoginError::Unavailable(StoreError("shutting down".into())));
            };
            let context = Context::of(&state, &request.headers, &request.extensions);
            let email = email.trim().to_lowercase();
            let key = RateKey::text(format!("email:{email}"));
            match self.limiter.check(&key).await {
                Ok(decision) if decision.allowed => {}
                Ok(decision) => {
                    return Err(LoginError::TooManyAttempts {
                        retry_after: decision.retry_after_seconds().map(Duration::from_secs),
                    });
                }
                // Failing closed (`MCP_RATE_LIMIT_FAIL=closed`): unavailable,
                // as the JSON login's `503`.
                Err(_) => {
                    return Err(LoginError::Unavailable(StoreError(
                        "the rate-limit backend is unreachable".into(),
                    )));
                }
            }
            let user = crate::api::users::check_password(
                &state,
                &context,
                &email,
                password.to_owned(),
                Some("oauth"),
            )
            .await
            .map_err(|e| LoginError::Unavailable(StoreError(e.to_string())))?;
            let Some(user) = user else {
                return Ok(None);
            };
            Ok(Some(LoginUser {
                subject: user.id.to_string(),
                name: user.name.clone(),
                scopes: scopes_of(user.role),
            }))
        })
    }
}

/// Runs an OAuth route with its request known to the events it causes.
async fn with_request(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let context = Context::of(&state, request.headers(), request.extensions());
    REQUEST.scope((context, None), next.run(request)).await
}

/// The authorization server's routes: metadata, authorize pages, token,
/// registration (its own limit, the `auth` policy per address) and
/// revocation, each under the api limit per address.
pub fn router(state: &AppState, oauth: &OAuth) -> Router<AppState> {
    let users = Users {
        state: Arc::downgrade(state),
        limiter: state.limits.login_limiter(),
    };
    mcp_oauth::router(oauth.server.clone(), oauth.registration)
        .merge(mcp_oauth::authorize_pages(oauth.server.clone(), users))
        .route_layer(
            tower::ServiceBuilder::new()
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    with_request,
                ))
                .layer(state.limits.api_layer())
                .layer(state.limits.registration_layer()),
        )
        .merge(grants_router(state))
}

fn grants_router(state: &AppState) -> Router<AppState> {
    let guard = |scope: &str| {
        let requirement = mcp_auth::Requirement::scope(scope);
        let challenge = state.auth.challenge.clone().scopes(requirement.scopes());
        tower::ServiceBuilder::new()
            .layer(crate::api::no_store())
            .layer(state.auth.layer.clone().challenge(challenge.clone()))
            .layer(crate::audit::refusals_layer(state))
            .layer(state.limits.api_layer())
            .layer(mcp_auth::RequireLayer::new(requirement).challenge(challenge))
    };
    Router::new()
        .route(
            "/api/oauth/grants",
            get(list).route_layer(guard("keys:read")),
        )
        .route(
            "/api/oauth/grants/{id}",
            axum::routing::delete(revoke).route_layer(guard("keys:write")),
        )
}

/// A grant as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantView {
    id: Uuid,
    client_id: String,
    client_name: Option<String>,
    user_id: String,
    scopes: Vec<String>,
    resource: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<Grant> for GrantView {
    fn from(grant: Grant) -> Self {
        GrantView {
            id: grant.id,
            client_id: grant.client_id,
            client_name: grant.client_name,
            user_id: grant.subject,
            scopes: grant.scopes,
            resource: grant.resource,
            created_at: grant.created_at.into(),
        }
    }
}

/// `?userId=` (admins), `?limit=`, `?cursor=`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrantsQuery {
    user_id: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

fn oauth_of(state: &AppState) -> Result<&OAuth, Problem> {
    state.oauth.as_ref().ok_or_else(Problem::not_found)
}

fn store_problem(error: StoreError) -> Problem {
    tracing::warn!(%error, "the OAuth store failed");
    Problem::unavailable("the database is unreachable")
}

/// `GET /api/oauth/grants` (`keys:read`): the caller's live grants, oldest
/// first; an admin may ask for another user's (`?userId=`).
pub async fn list(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    Query(query): Query<GrantsQuery>,
) -> Result<axum::Json<Listed<GrantView>>, Problem> {
    let oauth = oauth_of(&state)?;
    let (limit, cursor) = ListQuery::from_parts(query.limit, query.cursor).checked()?;
    let owner = query
        .user_id
        .unwrap_or_else(|| principal.subject().to_owned());
    crate::api::authorize_owner(&state, &principal, &owner)?;
    let grants = oauth
        .server
        .store()
        .grants(Some(&owner))
        .await
        .map_err(store_problem)?;
    let rows: Vec<GrantView> = grants
        .into_iter()
        .filter(|g| g.revoked_at.is_none() && cursor.is_none_or(|after| g.id > after))
        .take(limit as usize + 1)
        .map(GrantView::from)
        .collect();
    Ok(axum::Json(Listed::from_overfetch(
        rows,
        limit as usize,
        |g| g.id,
    )))
}

/// `DELETE /api/oauth/grants/{id}` (`keys:write`): `204`; the grant's
/// refresh tokens stop at once, its access tokens here at once and on
/// other replicas within the user cache's TTL. Another user's grant is
/// `404` unless the caller is an admin.
pub async fn revoke(
    State(state): State<AppState>,
    Authenticated(principal): Authenticated,
    context: Context,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    let oauth = oauth_of(&state)?;
    let id = parse_id(&id)?;
    let grant = oauth
        .server
        .store()
        .grant(id)
        .await
        .map_err(store_problem)?
        .filter(|g| g.revoked_at.is_none())
        .ok_or_else(Problem::not_found)?;
    crate::api::authorize_owner(&state, &principal, &grant.subject)?;
    let actor = Actor::of(&principal);
    REQUEST
        .scope((context, Some(actor)), oauth.server.revoke_grant(id))
        .await
        .map_err(store_problem)?;
    Ok(StatusCode::NO_CONTENT)
}
