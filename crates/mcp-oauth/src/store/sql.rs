//! PostgreSQL and SQLite stores over sqlx, with the crate's own migrations.

use std::borrow::Cow;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sqlx::migrate::Migrator;
use uuid::Uuid;

use super::{Client, CodeRecord, Grant, OAuthStore, RefreshRecord, StoreFuture, Taken};
use crate::error::StoreError;
use crate::pkce::CodeChallenge;
use crate::secret::SecretHash;

#[cfg(feature = "postgres")]
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
#[cfg(feature = "sqlite")]
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// This crate's migration history, apart from the application's own.
const MIGRATIONS_TABLE: &str = "_mcp_oauth_migrations";

#[derive(Clone, Debug)]
enum Pool {
    #[cfg(feature = "postgres")]
    Postgres(sqlx::PgPool),
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::SqlitePool),
}

/// Runs `$body` with `$pool` bound to the concrete pool: one SQL text
/// (`$1` parameters, `RETURNING`) serves both databases.
macro_rules! on_pool {
    ($store:expr, |$pool:ident| $body:expr) => {
        match &$store.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres($pool) => $body,
            #[cfg(feature = "sqlite")]
            Pool::Sqlite($pool) => $body,
        }
    };
}

/// The authorization server's state in PostgreSQL (feature `postgres`) or
/// SQLite (feature `sqlite`): tables `oauth_clients`, `oauth_codes`,
/// `oauth_grants` and `oauth_refresh_tokens`, made by
/// [`migrate`](Self::migrate). Taking a code or a refresh token is one
/// `UPDATE ... RETURNING` that counts its uses, so two concurrent uses
/// cannot both be the first.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// let store = mcp_oauth::SqlStore::postgres(pool);
/// store.migrate().await?;
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: Pool,
}

fn micros(at: SystemTime) -> i64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn time(micros: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

fn store_error(error: sqlx::Error) -> StoreError {
    StoreError(error.to_string())
}

fn hash(bytes: &[u8]) -> Result<SecretHash, StoreError> {
    let bytes: [u8; 32] = bytes
        .try_into()
        .map_err(|_| StoreError("a stored hash is not 32 bytes".into()))?;
    Ok(SecretHash::from_bytes(bytes))
}

fn list(json: &str) -> Result<Vec<String>, StoreError> {
    serde_json::from_str(json).map_err(|e| StoreError(format!("a stored list: {e}")))
}

fn json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

type ClientRow = (String, Option<Vec<u8>>, Option<String>, String, i64);
type CodeRow = (
    String,
    String,
    String,
    String,
    String,
    String,
    Uuid,
    i64,
    i32,
);
type GrantRow = (
    Uuid,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
    Option<i64>,
);
type RefreshRow = (Uuid, i64, i32);

const GRANT_COLUMNS: &str =
    "id, client_id, client_name, subject, scopes, resource, created_at, revoked_at";

fn grant(row: GrantRow) -> Result<Grant, StoreError> {
    let (id, client_id, client_name, subject, scopes, resource, created_at, revoked_at) = row;
    Ok(Grant {
        id,
        client_id,
        client_name,
        subject,
        scopes: list(&scopes)?,
        resource,
        created_at: time(created_at),
        revoked_at: revoked_at.map(time),
    })
}

fn taken<T>(uses: i32, record: T) -> Taken<T> {
    if uses == 1 {
        Taken::Fresh(record)
    } else {
        Taken::Reused(record)
    }
}

impl SqlStore {
    /// A store on a PostgreSQL pool.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        SqlStore {
            pool: Pool::Postgres(pool),
        }
    }

    /// A store on an SQLite pool.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        SqlStore {
            pool: Pool::Sqlite(pool),
        }
    }

    /// Creates or updates the tables, with the crate's own migration
    /// history (`_mcp_oauth_migrations`) beside the application's.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        on_pool!(self, |pool| {
            let base = match &self.pool {
                #[cfg(feature = "postgres")]
                Pool::Postgres(_) => &POSTGRES,
                #[cfg(feature = "sqlite")]
                Pool::Sqlite(_) => &SQLITE,
            };
            let migrator = Migrator {
                migrations: base.migrations.clone(),
                ignore_missing: base.ignore_missing,
                locking: base.locking,
                no_tx: base.no_tx,
                table_name: Cow::Borrowed(MIGRATIONS_TABLE),
                create_schemas: base.create_schemas.clone(),
            };
            migrator.run(pool).await
        })
    }
}

impl OAuthStore for SqlStore {
    fn put_client(&self, client: Client) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let secret = client.secret_hash.map(|h| h.as_bytes().to_vec());
            let uris = json(&client.redirect_uris);
            on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO oauth_clients (id, secret_hash, name, redirect_uris, created_at) \
                     VALUES ($1, $2, $3, $4, $5) \
                     ON CONFLICT (id) DO UPDATE SET secret_hash = $2, name = $3, redirect_uris = $4",
                )
                .bind(&client.id)
                .bind(&secret)
                .bind(&client.name)
                .bind(&uris)
                .bind(micros(client.created_at))
                .execute(pool)
                .await
                .map(|_| ())
            })
            .map_err(store_error)?;
            Ok(())
        })
    }

    fn client<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Client>> {
        Box::pin(async move {
            let row: Option<ClientRow> = on_pool!(self, |pool| {
                sqlx::query_as(
                    "SELECT id, secret_hash, name, redirect_uris, created_at \
                     FROM oauth_clients WHERE id = $1",
                )
                .bind(id)
                .fetch_optional(pool)
                .await
            })
            .map_err(store_error)?;
            row.map(|(id, secret, name, uris, created_at)| {
                Ok(Client {
                    id,
                    secret_hash: secret.as_deref().map(hash).transpose()?,
                    name,
                    redirect_uris: list(&uris)?,
                    created_at: time(created_at),
                })
            })
            .transpose()
        })
    }

    fn put_code(&self, hash: SecretHash, code: CodeRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let scopes = json(&code.scopes);
            on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO oauth_codes (hash, client_id, subject, redirect_uri, challenge, \
                     scopes, resource, grant_id, expires_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                )
                .bind(hash.as_bytes().as_slice())
                .bind(&code.client_id)
                .bind(&code.subject)
                .bind(&code.redirect_uri)
                .bind(code.challenge.as_str())
                .bind(&scopes)
                .bind(&code.resource)
                .bind(code.grant_id)
                .bind(micros(code.expires_at))
                .execute(pool)
                .await
                .map(|_| ())
            })
            .map_err(store_error)?;
            Ok(())
        })
    }

    fn take_code(&self, hash: SecretHash) -> StoreFuture<'_, Taken<CodeRecord>> {
        Box::pin(async move {
            let row: Option<CodeRow> = on_pool!(self, |pool| {
                sqlx::query_as(
                    "UPDATE oauth_codes SET uses = uses + 1 WHERE hash = $1 \
                     RETURNING client_id, subject, redirect_uri, challenge, scopes, resource, \
                     grant_id, expires_at, uses",
                )
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(pool)
                .await
            })
            .map_err(store_error)?;
            let Some((
                client_id,
                subject,
                redirect_uri,
                challenge,
                scopes,
                resource,
                grant_id,
                expires_at,
                uses,
            )) = row
            else {
                return Ok(Taken::Unknown);
            };
            let record = CodeRecord {
                client_id,
                subject,
                redirect_uri,
                challenge: CodeChallenge::from_stored(challenge),
                scopes: list(&scopes)?,
                resource,
                grant_id,
                expires_at: time(expires_at),
            };
            Ok(taken(uses, record))
        })
    }

    fn put_grant(&self, grant: Grant) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let scopes = json(&grant.scopes);
            on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO oauth_grants (id, client_id, client_name, subject, scopes, \
                     resource, created_at, revoked_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                )
                .bind(grant.id)
                .bind(&grant.client_id)
                .bind(&grant.client_name)
                .bind(&grant.subject)
                .bind(&scopes)
                .bind(&grant.resource)
                .bind(micros(grant.created_at))
                .bind(grant.revoked_at.map(micros))
                .execute(pool)
                .await
                .map(|_| ())
            })
            .map_err(store_error)?;
            Ok(())
        })
    }

    fn grant(&self, id: Uuid) -> StoreFuture<'_, Option<Grant>> {
        Box::pin(async move {
            let row: Option<GrantRow> = on_pool!(self, |pool| {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {GRANT_COLUMNS} FROM oauth_grants WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(pool)
                .await
            })
            .map_err(store_error)?;
            row.map(grant).transpose()
        })
    }

    fn grants<'a>(&'a self, subject: Option<&'a str>) -> StoreFuture<'a, Vec<Grant>> {
        Box::pin(async move {
            let rows: Vec<GrantRow> = on_pool!(self, |pool| {
                sqlx::query_as(sqlx::AssertSqlSafe(format!(
                    "SELECT {GRANT_COLUMNS} FROM oauth_grants \
                     WHERE $1 IS NULL OR subject = $1 ORDER BY created_at, id"
                )))
                .bind(subject)
                .fetch_all(pool)
                .await
            })
            .map_err(store_error)?;
            rows.into_iter().map(grant).collect()
        })
    }

    fn revoke_grant(&self, id: Uuid, at: SystemTime) -> StoreFuture<'_, bool> {
        Box::pin(async move {
            let done = on_pool!(self, |pool| {
                sqlx::query(
                    "UPDATE oauth_grants SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(id)
                .bind(micros(at))
                .execute(pool)
                .await
                .map(|r| r.rows_affected())
            })
            .map_err(store_error)?;
            Ok(done == 1)
        })
    }

    fn put_refresh(&self, hash: SecretHash, token: RefreshRecord) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            on_pool!(self, |pool| {
                sqlx::query(
                    "INSERT INTO oauth_refresh_tokens (hash, grant_id, expires_at) VALUES ($1, $2, $3)",
                )
                .bind(hash.as_bytes().as_slice())
                .bind(token.grant_id)
                .bind(micros(token.expires_at))
                .execute(pool)
                .await
                .map(|_| ())
            })
            .map_err(store_error)?;
            Ok(())
        })
    }

    fn take_refresh(&self, hash: SecretHash) -> StoreFuture<'_, Taken<RefreshRecord>> {
        Box::pin(async move {
            let row: Option<RefreshRow> = on_pool!(self, |pool| {
                sqlx::query_as(
                    "UPDATE oauth_refresh_tokens SET uses = uses + 1 WHERE hash = $1 \
                     RETURNING grant_id, expires_at, uses",
                )
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(pool)
                .await
            })
            .map_err(store_error)?;
            Ok(match row {
                None => Taken::Unknown,
                Some((grant_id, expires_at, uses)) => taken(
                    uses,
                    RefreshRecord {
                        grant_id,
                        expires_at: time(expires_at),
                    },
                ),
            })
        })
    }

    fn refresh(&self, hash: SecretHash) -> StoreFuture<'_, Option<RefreshRecord>> {
        Box::pin(async move {
            let row: Option<RefreshRow> = on_pool!(self, |pool| {
                sqlx::query_as(
                    "SELECT grant_id, expires_at, uses FROM oauth_refresh_tokens WHERE hash = $1",
                )
                .bind(hash.as_bytes().as_slice())
                .fetch_optional(pool)
                .await
            })
            .map_err(store_error)?;
            Ok(row.map(|(grant_id, expires_at, _)| RefreshRecord {
                grant_id,
                expires_at: time(expires_at),
            }))
        })
    }
}
