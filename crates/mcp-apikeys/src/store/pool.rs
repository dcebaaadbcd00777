//! One pool type for PostgreSQL and SQLite, and the one dispatch over it.

/// A connection pool to PostgreSQL (feature `postgres`) or SQLite (feature
/// `sqlite`): what [`SqlStore`](crate::SqlStore) runs on, and what an
/// application that keeps its own tables beside the keys can share.
/// [`with_pool!`](crate::with_pool) runs one piece of code, one SQL text, on
/// whichever it is.
#[derive(Clone, Debug)]
pub enum SqlPool {
    /// PostgreSQL.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(sqlx::PgPool),
    /// SQLite.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(sqlx::SqlitePool),
}

impl SqlPool {
    /// `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self {
            #[cfg(feature = "postgres")]
            SqlPool::Postgres(_) => "postgres",
            #[cfg(feature = "sqlite")]
            SqlPool::Sqlite(_) => "sqlite",
        }
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        crate::with_pool!(self, |pool| pool.close().await);
    }
}

// The macro is written once per combination of drivers: a `#[cfg]` inside an
// exported macro would be evaluated in the calling crate, against its
// features, not ours.

/// Runs `$body` with `$pool` bound to the concrete pool of a
/// [`SqlPool`](crate::SqlPool): the body is compiled once per database, so
/// one SQL text (`$1` parameters, `ON CONFLICT`, `RETURNING`) serves both.
///
/// ```no_run
/// # async fn run(db: mcp_apikeys::SqlPool) -> Result<(), sqlx::Error> {
/// let one: i32 = mcp_apikeys::with_pool!(&db, |pool| {
///     sqlx::query_scalar("SELECT 1").fetch_one(pool).await
/// })?;
/// # Ok(()) }
/// ```
#[cfg(all(feature = "postgres", feature = "sqlite"))]
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::SqlPool::Postgres($pool) => $body,
            $crate::SqlPool::Sqlite($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the PostgreSQL pool of a
/// [`SqlPool`](crate::SqlPool) (the only driver enabled).
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::SqlPool::Postgres($pool) => $body,
        }
    };
}

/// Runs `$body` with `$pool` bound to the SQLite pool of a
/// [`SqlPool`](crate::SqlPool) (the only driver enabled).
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
#[macro_export]
macro_rules! with_pool {
    ($db:expr, |$pool:ident| $body:expr) => {
        match $db {
            $crate::SqlPool::Sqlite($pool) => $body,
        }
    };
}
