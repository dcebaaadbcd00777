//! The `mcp-server` binary as a library: configuration, database, the HTTP
//! spine and routes, and the CLI, so tests and embedders can assemble the
//! same server in-process.
//!
//! ```no_run
//! # async fn run() -> Result<(), mcp_server::StartError> {
//! use mcp_server::config::Config;
//!
//! let (config, _warnings) = Config::from_env(None)?;
//! let state = mcp_server::Services::open(config).await?;
//! // Requests of any body type: `Incoming` when served (`mcp_serve::Server`
//! // does), axum's `Body` when driven with `tower::ServiceExt::oneshot`.
//! let app = mcp_server::app::<axum::body::Body>(state);
//! # let _ = app; Ok(()) }
//! ```

/// The one dispatch over the two databases, shared with the key store.
pub use mcp_apikeys::with_pool;

pub mod agents;
pub mod api;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod extract;
pub mod health;
pub mod keys;
pub mod limits;
pub mod mcp;
pub mod oauth;
pub mod observe;
pub mod schemas;
pub mod telemetry;
pub mod users;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;
use tokio::net::TcpListener;

use crate::cli::{Cli, Command};
use crate::config::{Config, ConfigError};
use crate::db::{Database, Db, DbError};
use mcp_core::{SharedClock, SystemClock};

/// Everything a handler can reach, made once: each request's copy is one
/// `Arc` (axum clones the state for every extractor).
pub type AppState = Arc<Services>;

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Services {
    /// The database pool.
    pub db: Db,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// Authentication: authenticators, token issuer, user cache.
    pub auth: auth::Auth,
    /// Password hashing.
    pub passwords: users::Passwords,
    /// API keys.
    pub keys: Arc<mcp_apikeys::ApiKeyService>,
    /// Rate limits.
    pub limits: limits::Limits,
    /// Limits of JSON bodies.
    pub validation: mcp_validate::Limits,
    /// Cancelled when the server shuts down (ends MCP event streams and
    /// WebSocket connections).
    pub shutdown: tokio_util::sync::CancellationToken,
    /// The Prometheus exporter behind `/metrics` (`None` when the embedding
    /// program installed its own recorder).
    pub prometheus: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// The time source.
    pub clock: SharedClock,
    /// The MCP policy of the configuration, its quotas counted on the
    /// rate limits' backend.
    pub mcp_policy: mcp_endpoint::McpPolicy,
    /// Records audit events off the request path.
    pub audit: mcp_audit::Auditor,
    /// The OAuth authorization server (`None` with `MCP_OAUTH=off`).
    pub oauth: Option<oauth::OAuth>,
    /// The audit writer, flushed by [`Services::flush_audit`] at shutdown.
    pub audit_writer: std::sync::Mutex<Option<mcp_audit::AuditWriter>>,
}

/// Opens the database and applies migrations.
pub async fn open_database(config: &Config) -> Result<Db, StartError> {
    let db = Db::connect(&config.database)
        .await
        .map_err(|source| StartError::Database {
            url: config.database.url.redacted(),
            source,
        })?;
    db.migrate().await.map_err(StartError::Migrate)?;
    // Always, even with `MCP_OAUTH=off`: turning it on later finds the
    // tables, and grants of a server that had it on stay revocable.
    oauth::store(&db)
        .migrate()
        .await
        .map_err(|e| StartError::Migrate(e.into()))?;
    Ok(db)
}

impl Services {
    /// Opens the database, applies migrations and sets up authentication.
    pub async fn open(config: Config) -> Result<AppState, StartError> {
        Self::open_with_clock(config, SystemClock::shared()).await
    }

    /// [`Services::open`] with an injected clock.
    pub async fn open_with_clock(
        config: Config,
        clock: SharedClock,
    ) -> Result<AppState, StartError> {
        // Before anything registers a counter: handles taken earlier would
        // record nowhere.
        let prometheus = telemetry::prometheus();
        let limits = limits::Limits::new(&config)?;
        let config_body_limit = config.body_limit;
        let db = open_database(&config).await?;
        let keys = keys::service(&config, &db, clock.clone()).await?;
        let grants = config
            .oauth
            .enabled
            .then(|| oauth::GrantCache::new(oauth::store(&db), config.user_cache_ttl));
        let auth =
            auth::Auth::setup(&config, &db, keys.clone(), clock.clone(), grants.clone()).await?;
        let passwords = tokio::task::spawn_blocking(users::Passwords::new).await?;
        keys::bootstrap(&config, &db, &keys, &passwords, &clock).await?;
        let mcp_policy = limits.tool_quotas(config.mcp_policy.clone());
        let (audit, audit_writer) = audit::start(&config, &db);
        let oauth = grants.map(|grants| {
            oauth::OAuth::setup(
                &config,
                oauth::store(&db),
                grants,
                auth.issuer.clone(),
                audit.clone(),
                clock.clone(),
            )
        });
        Ok(Arc::new(Services {
            oauth,
            mcp_policy,
            audit,
            audit_writer: std::sync::Mutex::new(audit_writer),
            db,
            config: Arc::new(config),
            auth,
            passwords,
            keys,
            limits,
            validation: extract::limits(config_body_limit),
            shutdown: tokio_util::sync::CancellationToken::new(),
            prometheus,
            clock,
        }))
    }
}

impl Services {
    /// Writes the audit events still queued and stops the writer (at most
    /// `grace`); later events are dropped and counted.
    pub async fn flush_audit(&self, grace: std::time::Duration) {
        let writer = self
            .audit_writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        if let Some(writer) = writer {
            writer.shutdown_within(grace).await;
        }
    }
}

/// Why the server could not start or stopped with an error. Each renders as
/// one line for the terminal.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A setting is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The database cannot be opened.
    #[error("cannot open the database {url}: {source}")]
    Database {
        /// The URL, password redacted.
        url: String,
        /// Why.
        source: DbError,
    },
    /// Migrations failed.
    #[error("{0}")]
    Migrate(DbError),
    /// The listening socket cannot be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The server failed while running.
    #[error("server error: {0}")]
    Serve(std::io::Error),
    /// The signing keys cannot be used (a mismatched pair, no crypto
    /// backend).
    #[error("authentication setup failed: {0}")]
    KeyPair(#[from] mcp_auth::KeyPairError),
    /// The JWT settings do not make an authenticator.
    #[error("authentication setup failed: {0}")]
    Jwt(#[from] mcp_auth::JwtConfigError),
    /// A start-up task on the blocking pool did not finish.
    #[error("start-up task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// A command-line operation failed.
    #[error("{0}")]
    Command(String),
}

impl StartError {
    /// `2` for configuration errors (like a usage error), `1` otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => 2,
            _ => 1,
        }
    }
}

/// The routes, without the spine and without [`around_routes`].
fn routes(state: AppState) -> Router {
    let metrics = Router::new().route(
        "/metrics",
        get(observe::scrape).route_layer(
            tower::ServiceBuilder::new()
                .layer(state.auth.layer.clone())
                .layer(audit::refusals_layer(&state))
                .layer(
                    mcp_auth::RequireLayer::role("admin")
                        .and_scope("metrics")
                        .challenge(state.auth.challenge.clone()),
                ),
        ),
    );
    let mut limited = api::router(&state)
        .merge(mcp::router(&state))
        .merge(metrics);
    if let Some(metadata) = &state.auth.metadata {
        let service = metadata.clone().into_service();
        limited = limited
            .route_service("/.well-known/oauth-protected-resource", service.clone())
            .route_service("/.well-known/oauth-protected-resource/mcp", service);
    }
    if let Some(oauth) = &state.oauth {
        limited = limited.merge(oauth::router(&state, oauth));
    }
    // Health checks stay outside every limit (`around_routes` skips them).
    Router::new()
        .route("/health", get(health::health))
        .route("/health/ready", get(health::ready))
        .merge(limited)
        .with_state(state)
}

/// The whole application: routes inside the spine, ready to serve (with
/// `mcp_serve::Server`) or to drive with `tower::ServiceExt::oneshot`.
pub fn app<B>(state: AppState) -> impl mcp_serve::spine::SpineService<B>
where
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<tower::BoxError>,
{
    let settings = mcp_serve::spine::SpineSettings {
        body_limit: state.config.body_limit,
        request_timeout: state.config.request_timeout,
        guard: state.config.guard.clone(),
        cors: state.config.cors.layer(),
    };
    let around = around_routes(&state);
    mcp_serve::spine::spine_with(routes(state), settings, around)
}

/// What every request meets just outside the router: brute force is
/// stopped before any credential is checked (health checks are skipped by
/// the layer itself), and `Valid<T>` reads the body limits from the
/// extension. Outside the router, not on its routes, where each would wrap
/// every route and box once more per request.
fn around_routes(
    state: &AppState,
) -> tower::layer::util::Stack<
    mcp_ratelimit::FailureLimitLayer,
    tower::layer::util::Stack<axum::Extension<mcp_validate::Limits>, tower::layer::util::Identity>,
> {
    let (audit, clock) = (state.audit.clone(), state.clock.clone());
    let lockouts =
        state
            .limits
            .failures_layer()
            .on_lockout(move |lockout: &mcp_ratelimit::Lockout| {
                let key = lockout.key.to_string();
                let mut event =
                    mcp_audit::Event::new("auth.lockout", mcp_audit::Outcome::Denied, clock.now())
                        .ip(key.strip_prefix("ip:").and_then(|ip| ip.parse().ok()))
                        .target("address", &key);
                if let Some(id) = lockout.request_id.as_ref().and_then(|v| v.to_str().ok()) {
                    event = event.request_id(id);
                }
                audit.record(event);
            });
    tower::ServiceBuilder::new()
        .layer(axum::Extension(state.validation))
        .layer(lockouts)
        .into_inner()
}

/// Runs the command line.
pub async fn run(cli: Cli) -> Result<(), StartError> {
    let (config, warnings) = Config::from_env(cli.config.as_deref())?;
    telemetry::init(&config);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(config).await,
        Command::Migrate => {
            let db = open_database(&config).await?;
            tracing::info!(database = db.kind(), "migrations applied");
            db.close().await;
            Ok(())
        }
        Command::Users(command) => cli::users(config, command).await,
        Command::Keys(command) => cli::keys(config, command).await,
        Command::Audit(command) => cli::audit(config, command).await,
    }
}

async fn serve(config: Config) -> Result<(), StartError> {
    let bind = config.bind;
    let grace = config.shutdown_timeout;
    let connections = config.connections;
    let state = Services::open(config).await?;
    let listener = TcpListener::bind(bind)
        .await
        .map_err(|source| StartError::Bind { addr: bind, source })?;
    let address = listener.local_addr().map_err(StartError::Serve)?;
    let signal = mcp_serve::spine::shutdown_signal();
    let token = state.shutdown.clone();
    let shutdown = async move {
        signal.await;
        // Long-lived MCP streams and WebSockets end, so connections close.
        token.cancel();
    };
    tracing::info!(
        %address,
        database = state.db.kind(),
        url = %state.config.database.url.redacted(),
        version = env!("CARGO_PKG_VERSION"),
        "listening"
    );
    let db = state.db.clone();
    let keys = state.keys.clone();
    let _writer = keys.start(std::time::Duration::from_secs(10));
    let eviction = state.limits.start();
    let upkeep = state.prometheus.clone().map(telemetry::start_upkeep);
    let purge = audit::start_purge(&state);
    let services = state.clone();
    let result = mcp_serve::Server::new(listener, app(state))
        .limits(connections)
        .graceful_shutdown(shutdown, grace)
        .run()
        .await;
    // Not aborted: `keys.shutdown()` below lets a lastUsed write in progress
    // finish, stops the writer, then writes the last batch.
    if let Some(eviction) = eviction {
        eviction.abort();
    }
    if let Some(upkeep) = upkeep {
        upkeep.abort();
    }
    if let Some(purge) = purge {
        purge.abort();
    }
    // What was done before the stop is on record.
    services.flush_audit(grace).await;
    telemetry::flush_traces();
    match keys.shutdown().await {
        Ok(count) => tracing::info!(keys = count, "recorded the last uses of API keys"),
        Err(error) => tracing::warn!(%error, "could not record the last uses of API keys"),
    }
    db.close().await;
    tracing::info!("stopped");
    result.map_err(StartError::Serve)
}
