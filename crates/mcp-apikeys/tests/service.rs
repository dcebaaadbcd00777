//! The service's cache lifetimes, its `Debug` text, and how SQL failures
//! are reported.

use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "sqlite")]
use mcp_apikeys::{ApiKeyError, SqlStore, StoreError};
use mcp_apikeys::{ApiKeyService, MemoryStore};

/// A looked-up key stays cached for `cache_ttl`, an unknown one for
/// `negative_ttl`; after that the next validation asks the store again.
#[tokio::test]
async fn cached_entries_live_for_their_own_ttl() {
    let keys = ApiKeyService::builder(Arc::new(MemoryStore::new()))
        .cache_ttl(Duration::from_millis(300))
        .negative_ttl(Duration::from_secs(3600))
        .build();
    let (_, known) = keys.create("o", "k", None, None).await.unwrap();
    let unknown = mcp_apikeys::ApiKeySecret::generate();
    let misses = || keys.cache_stats().get().1;

    keys.validate(known.expose()).await.unwrap();
    assert!(keys.validate(unknown.expose()).await.is_err());
    assert_eq!(misses(), 2);
    keys.validate(known.expose()).await.unwrap();
    assert!(keys.validate(unknown.expose()).await.is_err());
    assert_eq!(misses(), 2, "both cached");
    assert_eq!(keys.cache_stats().get().0, 2);

    tokio::time::sleep(Duration::from_millis(600)).await;
    keys.validate(known.expose()).await.unwrap();
    assert_eq!(misses(), 3, "the known key's entry expired");
    assert!(keys.validate(unknown.expose()).await.is_err());
    assert_eq!(misses(), 3, "the unknown key's entry lives an hour");

    let keys = ApiKeyService::builder(Arc::new(MemoryStore::new()))
        .cache_ttl(Duration::from_secs(3600))
        .negative_ttl(Duration::from_millis(300))
        .build();
    let misses = || keys.cache_stats().get().1;
    let (_, known) = keys.create("o", "k", None, None).await.unwrap();
    keys.validate(known.expose()).await.unwrap();
    assert!(keys.validate(unknown.expose()).await.is_err());
    tokio::time::sleep(Duration::from_millis(600)).await;
    keys.validate(known.expose()).await.unwrap();
    assert_eq!(misses(), 2, "the known key's entry lives an hour");
    assert!(keys.validate(unknown.expose()).await.is_err());
    assert_eq!(misses(), 3, "the unknown key's entry expired");
}

#[tokio::test]
async fn debug_shows_the_hasher_and_the_cache_size_only() {
    let keys = ApiKeyService::builder(Arc::new(MemoryStore::new())).build();
    assert_eq!(
        format!("{keys:?}"),
        "ApiKeyService { hasher: KeyHasher { peppered: false }, cached: 0, .. }"
    );
}

#[cfg(feature = "sqlite")]
async fn sqlite_pool(dir: &tempfile::TempDir) -> sqlx::SqlitePool {
    sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("k.db"))
                .create_if_missing(true),
        )
        .await
        .unwrap()
}

#[cfg(feature = "sqlite")]
/// A database error other than a taken name is not a conflict (here: no
/// table); a closed pool is the store being unavailable.
#[tokio::test]
async fn sql_errors_are_other_or_unavailable_never_conflict() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlite_pool(&dir).await;
    // Not migrated: every statement fails in the database.
    let keys = ApiKeyService::builder(Arc::new(SqlStore::sqlite(pool.clone()))).build();
    let error = keys.create("o", "k", None, None).await.unwrap_err();
    assert!(
        matches!(error, ApiKeyError::Store(StoreError::Other(_))),
        "{error:?}"
    );

    let store = SqlStore::sqlite(pool.clone());
    store.migrate().await.unwrap();
    let keys = ApiKeyService::builder(Arc::new(store)).build();
    keys.create("o", "k", None, None).await.unwrap();
    assert!(matches!(
        keys.create("o", "k", None, None).await,
        Err(ApiKeyError::Conflict)
    ));
    pool.close().await;
    let error = keys.create("o", "k2", None, None).await.unwrap_err();
    assert!(
        matches!(error, ApiKeyError::Store(StoreError::Unavailable(_))),
        "{error:?}"
    );
}

/// `shutdown` returns only once the background task has ended (on one
/// thread, the task has run to its end before `shutdown` resumes); a task
/// started after it ends at once.
#[tokio::test]
async fn shutdown_returns_after_the_background_task_has_ended() {
    let keys = Arc::new(ApiKeyService::builder(Arc::new(MemoryStore::new())).build());
    let task = keys.start(Duration::from_secs(3600));
    tokio::task::yield_now().await;
    assert!(!task.is_finished());
    assert_eq!(keys.shutdown().await.unwrap(), 0);
    assert!(
        task.is_finished(),
        "shutdown returned before its task ended"
    );
    task.await.unwrap();

    let late = keys.start(Duration::from_secs(3600));
    tokio::time::timeout(Duration::from_secs(5), late)
        .await
        .expect("a task started after shutdown keeps running")
        .unwrap();
}

/// `invalidate` drops what the cache holds: the given hashes, or (with
/// `None`) everything; the next validation reads the store again.
#[tokio::test]
async fn invalidate_drops_the_given_hashes_or_everything() {
    let store = Arc::new(MemoryStore::new());
    let keys = ApiKeyService::builder(store.clone()).build();
    let (a, a_secret) = keys.create("o", "a", None, None).await.unwrap();
    let (b, b_secret) = keys.create("o", "b", None, None).await.unwrap();
    keys.validate(a_secret.expose()).await.unwrap();
    keys.validate(b_secret.expose()).await.unwrap();
    // Changed behind the service's back (as another replica would).
    let off = || mcp_apikeys::KeyChanges {
        is_active: Some(false),
        ..Default::default()
    };
    let at = time::OffsetDateTime::now_utc();
    use mcp_apikeys::ApiKeyStore;
    store.update(a.id, off(), at).await.unwrap();
    store.update(b.id, off(), at).await.unwrap();
    keys.validate(a_secret.expose()).await.unwrap();
    keys.validate(b_secret.expose()).await.unwrap();

    let a_hash = mcp_apikeys::KeyHasher::sha256().hash(a_secret.expose());
    keys.invalidate(Some(&[a_hash]));
    assert!(matches!(
        keys.validate(a_secret.expose()).await,
        Err(mcp_apikeys::ApiKeyError::Inactive)
    ));
    keys.validate(b_secret.expose()).await.unwrap();
    keys.invalidate(None);
    assert!(matches!(
        keys.validate(b_secret.expose()).await,
        Err(mcp_apikeys::ApiKeyError::Inactive)
    ));
}
