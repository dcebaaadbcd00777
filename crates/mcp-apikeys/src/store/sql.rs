//! PostgreSQL and SQLite stores over sqlx, with the crate's own migrations.

use std::borrow::Cow;

use sqlx::migrate::Migrator;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use super::{
    ApiKeyRecord, ApiKeyStore, Invalidation, KeyChanges, KeyPage, NewSecret, StoreError,
    StoreFuture, StoredKey,
};
use crate::key::KeyHash;

#[cfg(feature = "postgres")]
static POSTGRES: Migrator = sqlx::migrate!("./migrations/postgres");
#[cfg(feature = "sqlite")]
static SQLITE: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The table that records this crate's migrations, apart from the
/// application's own `_sqlx_migrations`.
pub(crate) const MIGRATIONS_TABLE: &str = "_mcp_apikeys_migrations";

use super::pool::SqlPool;
use super::pool::SqlPool as Pool;

/// API keys in PostgreSQL (feature `postgres`) or SQLite (feature
/// `sqlite`), in a table `api_keys` created by [`SqlStore::migrate`].
///
/// On PostgreSQL, changes are announced with `NOTIFY` on a channel
/// (`mcp_api_keys` by default) and followed with `LISTEN`, so every replica's
/// cache drops a changed key at once.
///
/// ```no_run
/// # async fn run(pool: sqlx::PgPool) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use mcp_apikeys::{ApiKeyService, SqlStore};
///
/// let store = SqlStore::postgres(pool);
/// store.migrate().await?;
/// let keys = Arc::new(ApiKeyService::builder(store).build());
/// let _background = keys.start(std::time::Duration::from_secs(10));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
pub struct SqlStore {
    pool: Pool,
    channel: Cow<'static, str>,
}

#[derive(sqlx::FromRow)]
struct KeyRow {
    id: Uuid,
    owner: String,
    name: String,
    prefix: String,
    hash: Vec<u8>,
    previous_hash: Option<Vec<u8>>,
    previous_valid_until: Option<OffsetDateTime>,
    scopes: Option<Json<Vec<String>>>,
    is_active: bool,
    expires_at: Option<OffsetDateTime>,
    last_used: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

const COLUMNS: &str = "id, owner, name, prefix, hash, previous_hash, previous_valid_until, \
                       scopes, is_active, expires_at, last_used, created_at, updated_at";

impl KeyRow {
    fn into_stored(self) -> Result<StoredKey, StoreError> {
        let hash = KeyHash::from_slice(&self.hash)
            .ok_or_else(|| StoreError::Other("a stored hash is not 32 bytes".into()))?;
        Ok(StoredKey {
            record: ApiKeyRecord {
                id: self.id,
                name: self.name,
                prefix: self.prefix,
                owner: self.owner,
                scopes: self.scopes.map(|Json(s)| s),
                is_active: self.is_active,
                expires_at: self.expires_at,
                last_used: self.last_used,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            hash,
            previous_hash: self.previous_hash.as_deref().and_then(KeyHash::from_slice),
            previous_valid_until: self.previous_valid_until,
        })
    }
}

fn store_error(error: sqlx::Error) -> StoreError {
    match &error {
        sqlx::Error::Database(db) if db.is_unique_violation() => StoreError::Conflict,
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(error.to_string()),
        _ => StoreError::Other(error.to_string()),
    }
}

fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    // Only our own constant fragments are ever formatted into statements.
    sqlx::AssertSqlSafe(text)
}

impl SqlStore {
    /// A store on a PostgreSQL pool.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    pub fn postgres(pool: sqlx::PgPool) -> Self {
        SqlStore {
            pool: Pool::Postgres(pool),
            channel: Cow::Borrowed("mcp_api_keys"),
        }
    }

    /// A store on an SQLite pool.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    pub fn sqlite(pool: sqlx::SqlitePool) -> Self {
        SqlStore {
            pool: Pool::Sqlite(pool),
            channel: Cow::Borrowed("mcp_api_keys"),
        }
    }

    /// A store on `pool`, whichever database it is.
    pub fn new(pool: SqlPool) -> Self {
        SqlStore {
            pool,
            channel: Cow::Borrowed("mcp_api_keys"),
        }
    }

    /// The PostgreSQL notification channel (for deployments that share a
    /// database between unrelated servers).
    #[must_use]
    pub fn channel(mut self, channel: impl Into<Cow<'static, str>>) -> Self {
        self.channel = channel.into();
        self
    }

    /// Creates or updates the `api_keys` table. The crate keeps its own
    /// migration history (`_mcp_apikeys_migrations`), so it sits beside the
    /// application's migrations without clashing.
    pub async fn migrate(&self) -> Result<(), sqlx::migrate::MigrateError> {
        crate::with_pool!(&self.pool, |pool| {
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

    async fn one(
        &self,
        statement: String,
        bind: Binds<'_>,
    ) -> Result<Option<StoredKey>, StoreError> {
        let row = crate::with_pool!(&self.pool, |pool| {
            bind.apply(sqlx::query_as::<_, KeyRow>(sql(statement)))
                .fetch_optional(pool)
                .await
        })
        .map_err(store_error)?;
        row.map(KeyRow::into_stored).transpose()
    }

    async fn many(&self, statement: String, bind: Binds<'_>) -> Result<Vec<StoredKey>, StoreError> {
        let rows = crate::with_pool!(&self.pool, |pool| {
            bind.apply(sqlx::query_as::<_, KeyRow>(sql(statement)))
                .fetch_all(pool)
                .await
        })
        .map_err(store_error)?;
        rows.into_iter().map(KeyRow::into_stored).collect()
    }
}

/// Parameters of a statement, bound the same way for either database.
enum Param<'a> {
    Id(Uuid),
    Text(Option<&'a str>),
    Bytes(Option<&'a [u8]>),
    Time(Option<OffsetDateTime>),
    Bool(Option<bool>),
    Scopes(Option<Json<&'a Vec<String>>>),
    Int(i64),
}

struct Binds<'a>(Vec<Param<'a>>);

impl<'a> Binds<'a> {
    fn apply<'q, DB, O>(
        self,
        mut query: sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>,
    ) -> sqlx::query::QueryAs<'q, DB, O, <DB as sqlx::Database>::Arguments>
    where
        'a: 'q,
        DB: sqlx::Database,
        Uuid: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<&'a str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<&'a [u8]>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<OffsetDateTime>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<bool>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        Option<Json<&'a Vec<String>>>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
        i64: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    {
        for param in self.0 {
            query = match param {
                Param::Id(v) => query.bind(v),
                Param::Text(v) => query.bind(v),
                Param::Bytes(v) => query.bind(v),
                Param::Time(v) => query.bind(v),
                Param::Bool(v) => query.bind(v),
                Param::Scopes(v) => query.bind(v),
                Param::Int(v) => query.bind(v),
            };
        }
        query
    }
}

impl ApiKeyStore for SqlStore {
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            let r = &key.record;
            let statement = format!(
                "INSERT INTO api_keys ({COLUMNS}) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 RETURNING {COLUMNS}"
            );
            self.one(
                statement,
                Binds(vec![
                    Param::Id(r.id),
                    Param::Text(Some(&r.owner)),
                    Param::Text(Some(&r.name)),
                    Param::Text(Some(&r.prefix)),
                    Param::Bytes(Some(key.hash.as_bytes())),
                    Param::Bytes(key.previous_hash.as_ref().map(KeyHash::as_bytes)),
                    Param::Time(key.previous_valid_until),
                    Param::Scopes(r.scopes.as_ref().map(Json)),
                    Param::Bool(Some(r.is_active)),
                    Param::Time(r.expires_at),
                    Param::Time(r.last_used),
                    Param::Time(Some(r.created_at)),
                    Param::Time(Some(r.updated_at)),
                ]),
            )
            .await?;
            Ok(())
        })
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>> {
        Box::pin(async move {
            self.one(
                format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1"),
                Binds(vec![Param::Id(id)]),
            )
            .await
        })
    }

    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>> {
        Box::pin(async move {
            self.one(
                format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1 OR previous_hash = $1"),
                Binds(vec![Param::Bytes(Some(hash.as_bytes()))]),
            )
            .await
        })
    }

    fn list(&self, owner: &str, limit: u32, cursor: Option<Uuid>) -> StoreFuture<'_, KeyPage> {
        let owner = owner.to_owned();
        Box::pin(async move {
            let fetch = i64::from(limit) + 1;
            let keys = match cursor {
                Some(cursor) => {
                    self.many(
                        format!(
                            "SELECT {COLUMNS} FROM api_keys WHERE owner = $1 AND id > $2 \
                             ORDER BY id LIMIT $3"
                        ),
                        Binds(vec![
                            Param::Text(Some(&owner)),
                            Param::Id(cursor),
                            Param::Int(fetch),
                        ]),
                    )
                    .await?
                }
                None => {
                    self.many(
                        format!(
                            "SELECT {COLUMNS} FROM api_keys WHERE owner = $1 ORDER BY id LIMIT $2"
                        ),
                        Binds(vec![Param::Text(Some(&owner)), Param::Int(fetch)]),
                    )
                    .await?
                }
            };
            let rows: Vec<ApiKeyRecord> = keys.into_iter().map(|k| k.record).collect();
            Ok(KeyPage::from_overfetch(rows, limit as usize, |k| k.id))
        })
    }

    fn update(
        &self,
        id: Uuid,
        changes: KeyChanges,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        Box::pin(async move {
            let statement = format!(
                "UPDATE api_keys SET \
                   name = COALESCE($2, name), \
                   scopes = CASE WHEN $3 THEN $4 ELSE scopes END, \
                   is_active = COALESCE($5, is_active), \
                   expires_at = CASE WHEN $6 THEN $7 ELSE expires_at END, \
                   updated_at = $8 \
                 WHERE id = $1 RETURNING {COLUMNS}"
            );
            let scopes = changes.scopes.as_ref();
            self.one(
                statement,
                Binds(vec![
                    Param::Id(id),
                    Param::Text(changes.name.as_deref()),
                    Param::Bool(Some(scopes.is_some())),
                    Param::Scopes(scopes.and_then(|s| s.as_ref()).map(Json)),
                    Param::Bool(changes.is_active),
                    Param::Bool(Some(changes.expires_at.is_some())),
                    Param::Time(changes.expires_at.flatten()),
                    Param::Time(Some(at)),
                ]),
            )
            .await?
            .ok_or(StoreError::NotFound)
        })
    }

    fn replace_secret(
        &self,
        id: Uuid,
        secret: NewSecret,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        Box::pin(async move {
            // On the right-hand side `hash` is still the old value.
            let statement = format!(
                "UPDATE api_keys SET \
                   previous_hash = CASE WHEN $4 THEN hash ELSE NULL END, \
                   previous_valid_until = $5, \
                   hash = $2, prefix = $3, updated_at = $6 \
                 WHERE id = $1 RETURNING {COLUMNS}"
            );
            self.one(
                statement,
                Binds(vec![
                    Param::Id(id),
                    Param::Bytes(Some(secret.hash.as_bytes())),
                    Param::Text(Some(&secret.prefix)),
                    Param::Bool(Some(secret.previous_valid_until.is_some())),
                    Param::Time(secret.previous_valid_until),
                    Param::Time(Some(at)),
                ]),
            )
            .await?
            .ok_or(StoreError::NotFound)
        })
    }

    fn delete(&self, id: Uuid) -> StoreFuture<'_, StoredKey> {
        Box::pin(async move {
            self.one(
                format!("DELETE FROM api_keys WHERE id = $1 RETURNING {COLUMNS}"),
                Binds(vec![Param::Id(id)]),
            )
            .await?
            .ok_or(StoreError::NotFound)
        })
    }

    fn delete_owner(&self, owner: &str) -> StoreFuture<'_, Vec<StoredKey>> {
        let owner = owner.to_owned();
        Box::pin(async move {
            self.many(
                format!("DELETE FROM api_keys WHERE owner = $1 RETURNING {COLUMNS}"),
                Binds(vec![Param::Text(Some(&owner))]),
            )
            .await
        })
    }

    fn record_last_used(&self, uses: Vec<(Uuid, OffsetDateTime)>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            match &self.pool {
                #[cfg(feature = "postgres")]
                Pool::Postgres(pool) => {
                    let (ids, times): (Vec<Uuid>, Vec<OffsetDateTime>) = uses.into_iter().unzip();
                    sqlx::query(
                        "UPDATE api_keys AS k SET last_used = v.at \
                         FROM UNNEST($1::uuid[], $2::timestamptz[]) AS v(id, at) \
                         WHERE k.id = v.id AND (k.last_used IS NULL OR k.last_used < v.at)",
                    )
                    .bind(ids)
                    .bind(times)
                    .execute(pool)
                    .await
                    .map_err(store_error)?;
                }
                #[cfg(feature = "sqlite")]
                Pool::Sqlite(pool) => {
                    // In-process: one transaction is the batch.
                    let mut tx = pool.begin().await.map_err(store_error)?;
                    for (id, at) in uses {
                        sqlx::query(
                            "UPDATE api_keys SET last_used = $2 \
                             WHERE id = $1 AND (last_used IS NULL OR last_used < $2)",
                        )
                        .bind(id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await
                        .map_err(store_error)?;
                    }
                    tx.commit().await.map_err(store_error)?;
                }
            }
            Ok(())
        })
    }

    fn notify(&self, hashes: &[KeyHash]) -> StoreFuture<'_, ()> {
        let payloads: Vec<String> = hashes
            .chunks(100)
            .map(|chunk| {
                chunk
                    .iter()
                    .map(|h| {
                        h.as_bytes()
                            .iter()
                            .map(|b| format!("{b:02x}"))
                            .collect::<String>()
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .collect();
        Box::pin(async move {
            match &self.pool {
                #[cfg(feature = "postgres")]
                Pool::Postgres(pool) => {
                    for payload in payloads {
                        sqlx::query("SELECT pg_notify($1, $2)")
                            .bind(self.channel.as_ref())
                            .bind(payload)
                            .execute(pool)
                            .await
                            .map_err(store_error)?;
                    }
                    Ok(())
                }
                #[cfg(feature = "sqlite")]
                Pool::Sqlite(_) => {
                    let _ = payloads;
                    Ok(())
                }
            }
        })
    }

    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Invalidation>> {
        match &self.pool {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pool) => Some(listen(pool.clone(), self.channel.to_string())),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(_) => None,
        }
    }
}

/// Follows the channel; after a lost connection (notifications may have
/// been missed) it reports [`Invalidation::All`].
#[cfg(feature = "postgres")]
fn listen(pool: sqlx::PgPool, channel: String) -> tokio::sync::mpsc::Receiver<Invalidation> {
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(error) => {
                    tracing::warn!(%error, "cannot LISTEN for key changes; retrying");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                    continue;
                }
            };
            if let Err(error) = listener.listen(&channel).await {
                tracing::warn!(%error, "cannot LISTEN for key changes; retrying");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                continue;
            }
            // Whatever happened while not listening is unknown.
            if tx.send(Invalidation::All).await.is_err() {
                return;
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        let hashes = notification
                            .payload()
                            .split(',')
                            .filter_map(parse_hex_hash)
                            .collect();
                        if tx.send(Invalidation::Keys(hashes)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => {
                        if tx.send(Invalidation::All).await.is_err() {
                            return;
                        }
                    }
                    Err(error) => {
                        tracing::warn!(%error, "lost the key-change listener; reconnecting");
                        break;
                    }
                }
            }
        }
    });
    rx
}

#[cfg(feature = "postgres")]
fn parse_hex_hash(text: &str) -> Option<KeyHash> {
    if text.len() != 64 {
        return None;
    }
    let mut bytes = [0u8; 32];
    for (i, byte) in bytes.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(KeyHash(bytes))
}
