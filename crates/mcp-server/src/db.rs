//! The database: one pool, PostgreSQL or SQLite, chosen by `DATABASE_URL`.
//!
//! Queries are written once, in SQL both databases accept (`$1` parameters,
//! `ON CONFLICT`, `RETURNING`), and compiled for each pool by [`with_pool!`](crate::with_pool).

use std::str::FromStr;
use std::time::Duration;

use mcp_core::Problem;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};

use crate::config::{DatabaseConfig, DatabaseUrl};

static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");
static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");

/// A connection pool to the server's database: the one pool type of
/// `mcp-apikeys`, shared with the key store, with its one dispatch
/// ([`with_pool!`](crate::with_pool)).
pub use mcp_apikeys::SqlPool as Db;

use crate::with_pool;

/// Why a database operation failed.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The database cannot be reached (connection refused, pool timed out).
    #[error("database unreachable: {0}")]
    Unavailable(#[source] sqlx::Error),
    /// A unique constraint refused the write.
    #[error("duplicate value: {0}")]
    Conflict(#[source] sqlx::Error),
    /// Any other database error.
    #[error("database error: {0}")]
    Query(#[source] sqlx::Error),
    /// Migrations could not be applied.
    #[error("migrations failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
}

impl From<sqlx::Error> for DbError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => DbError::Unavailable(error),
            sqlx::Error::Database(db) if db.is_unique_violation() => DbError::Conflict(error),
            _ => DbError::Query(error),
        }
    }
}

impl From<DbError> for Problem {
    /// `503 unavailable` when unreachable, `409 conflict` for a duplicate,
    /// otherwise `500 internal`; the cause is logged, never sent.
    fn from(error: DbError) -> Self {
        match error {
            DbError::Unavailable(_) => {
                tracing::warn!(error = %error, "database unavailable");
                Problem::unavailable("the database is unreachable")
            }
            DbError::Conflict(_) => Problem::conflict("a resource with these values exists"),
            DbError::Query(_) | DbError::Migrate(_) => {
                tracing::error!(error = %error, "database error");
                Problem::internal()
            }
        }
    }
}

/// What the server does with its database beyond its tables: open it,
/// migrate it, check it, keep a few settings, report its pool.
pub trait Database: Sized {
    /// Opens the pool (creating an SQLite file if missing) and checks that
    /// the database answers.
    fn connect(config: &DatabaseConfig) -> impl Future<Output = Result<Self, DbError>> + Send;
    /// Applies pending migrations (safe to run from several replicas at
    /// once on PostgreSQL: the migrator takes an advisory lock).
    fn migrate(&self) -> impl Future<Output = Result<(), DbError>> + Send;
    /// One round trip: `SELECT 1`.
    fn ping(&self) -> impl Future<Output = Result<(), DbError>> + Send;
    /// A server-wide setting, if set.
    fn setting(&self, key: &str) -> impl Future<Output = Result<Option<String>, DbError>> + Send;
    /// Stores `value` under `key` unless a value is there already, and
    /// returns the value that is kept. Replicas racing to initialise the
    /// same setting all end up with the first one written.
    fn setting_or_insert(
        &self,
        key: &str,
        value: &str,
    ) -> impl Future<Output = Result<String, DbError>> + Send;
    /// How many connections are open, idle and allowed.
    fn pool_usage(&self) -> PoolUsage;
}

impl Database for Db {
    /// Opens the pool (creating an SQLite file if missing) and checks that
    /// the database answers.
    async fn connect(config: &DatabaseConfig) -> Result<Db, DbError> {
        match &config.url {
            DatabaseUrl::Sqlite(url) => {
                let options = SqliteConnectOptions::from_str(url)?
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .foreign_keys(true)
                    .busy_timeout(Duration::from_secs(5));
                // Each connection to an in-memory database is a database of its
                // own, so such a pool must hold exactly one, forever.
                let in_memory = url.contains(":memory:") || url.contains("mode=memory");
                let pool = if in_memory {
                    SqlitePoolOptions::new()
                        .max_connections(1)
                        .idle_timeout(None)
                        .max_lifetime(None)
                } else {
                    SqlitePoolOptions::new().max_connections(config.max_connections)
                }
                .acquire_timeout(config.acquire_timeout)
                .connect_with(options)
                .await?;
                Ok(Db::Sqlite(pool))
            }
            DatabaseUrl::Postgres(url) => {
                let options = PgConnectOptions::from_str(url)?;
                let pool = PgPoolOptions::new()
                    .max_connections(config.max_connections)
                    .acquire_timeout(config.acquire_timeout)
                    .connect_with(options)
                    .await?;
                Ok(Db::Postgres(pool))
            }
        }
    }

    /// Applies pending migrations (safe to run from several replicas at once
    /// on PostgreSQL: the migrator takes an advisory lock).
    async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Db::Postgres(pool) => POSTGRES_MIGRATIONS.run(pool).await?,
            Db::Sqlite(pool) => SQLITE_MIGRATIONS.run(pool).await?,
        }
        Ok(())
    }

    /// One round trip: `SELECT 1`.
    async fn ping(&self) -> Result<(), DbError> {
        with_pool!(self, |pool| sqlx::query("SELECT 1")
            .execute(pool)
            .await
            .map(|_| ()))?;
        Ok(())
    }

    /// A server-wide setting, if set.
    async fn setting(&self, key: &str) -> Result<Option<String>, DbError> {
        let value = with_pool!(self, |pool| {
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_optional(pool)
                .await
        })?;
        Ok(value)
    }

    /// Stores `value` under `key` unless a value is there already, and
    /// returns the value that is kept. Replicas racing to initialise the same
    /// setting all end up with the first one written.
    async fn setting_or_insert(&self, key: &str, value: &str) -> Result<String, DbError> {
        let kept = with_pool!(self, |pool| {
            sqlx::query(
                "INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            )
            .bind(key)
            .bind(value)
            .execute(pool)
            .await?;
            sqlx::query_scalar::<_, String>("SELECT value FROM settings WHERE key = $1")
                .bind(key)
                .fetch_one(pool)
                .await
        })?;
        Ok(kept)
    }

    fn pool_usage(&self) -> PoolUsage {
        with_pool!(self, |pool| PoolUsage {
            open: pool.size(),
            idle: pool.num_idle(),
            max: pool.options().get_max_connections(),
        })
    }
}

/// Connections of a pool, for metrics.
#[derive(Clone, Copy, Debug)]
pub struct PoolUsage {
    /// Open connections.
    pub open: u32,
    /// Open and idle.
    pub idle: usize,
    /// The most the pool opens.
    pub max: u32,
}
