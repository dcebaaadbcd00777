//! One conformance suite, written once, run against every store: memory,
//! PostgreSQL and SQLite (the last two over real connections).
//!
//! PostgreSQL comes from `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`), one schema per test. The
//! PostgreSQL cases are ignored unless the run promises it (`CI=true` or
//! `MCP_TEST_SERVICES`, see `build/test-services.rs`), and fail when it was
//! promised and is missing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};
use std::time::Duration;

use mcp_apikeys::store::{KeyPage, NewSecret, StoreFuture, StoredKey};
use mcp_apikeys::{
    ApiKeyError, ApiKeyService, ApiKeyStore, KeyChanges, KeyHash, KeyHasher, MemoryStore, SqlStore,
};
use mcp_core::ManualClock;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

const T0: u64 = 1_800_000_000;

/// A store of a test's own, and what to clean up afterwards.
struct Fixture {
    store: Arc<dyn ApiKeyStore>,
    /// A second store on the same database (another replica).
    twin: Option<Arc<dyn ApiKeyStore>>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<mcp_testkit::PgSchema>,
}

async fn memory() -> Option<Fixture> {
    Some(Fixture {
        store: Arc::new(MemoryStore::new()),
        twin: None,
        _dir: None,
        _schema: None,
    })
}

async fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("keys.db"))
        .create_if_missing(true)
        .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
        .busy_timeout(Duration::from_secs(5));
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    let store = SqlStore::sqlite(pool);
    store.migrate().await.unwrap();
    // Idempotent.
    store.migrate().await.unwrap();
    Some(Fixture {
        store: Arc::new(store),
        twin: None,
        _dir: Some(dir),
        _schema: None,
    })
}

async fn postgres() -> Option<Fixture> {
    let schema = mcp_testkit::PgSchema::create("k").await;
    let url = mcp_testkit::postgres_url();
    let options: sqlx::postgres::PgConnectOptions = url.parse().unwrap();
    let options = options.options([("search_path", schema.name())]);
    let pool = || {
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect_with(options.clone())
    };
    let store =
        SqlStore::postgres(pool().await.unwrap()).channel(format!("keys_{}", schema.name()));
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    let twin = SqlStore::postgres(pool().await.unwrap()).channel(format!("keys_{}", schema.name()));
    Some(Fixture {
        store: Arc::new(store),
        twin: Some(Arc::new(twin)),
        _dir: None,
        _schema: Some(schema),
    })
}

fn service(store: Arc<dyn ApiKeyStore>, clock: &ManualClock) -> Arc<ApiKeyService> {
    Arc::new(
        ApiKeyService::builder(store)
            .hasher(KeyHasher::peppered(b"test pepper"))
            .clock(clock.shared())
            .build(),
    )
}

/// Defines `$name::{memory, sqlite, postgres}` running `$body(fixture)`.
macro_rules! every_store {
    ($name:ident) => {
        mod $name {

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                if let Some(f) = super::memory().await {
                    super::$name(f).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(f) = super::sqlite().await {
                    super::$name(f).await;
                }
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(test_postgres),
                ignore = "needs PostgreSQL: MCP_TEST_SERVICES=postgres (CI=true implies it)"
            )]
            async fn postgres() {
                if let Some(f) = super::postgres().await {
                    super::$name(f).await;
                }
            }
        }
    };
}

async fn lifecycle(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);

    let (record, secret) = keys
        .create(
            "owner-1",
            "ci",
            Some(vec!["mcp".into(), "keys:read".into()]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(record.owner, "owner-1");
    assert_eq!(record.name, "ci");
    assert_eq!(record.prefix, &secret.expose()[..12]);
    assert!(record.is_active);
    assert_eq!(record.expires_at, None);
    assert_eq!(record.last_used, None);

    // Get, list, validate.
    assert_eq!(keys.get(record.id).await.unwrap(), record);
    let page = keys.list("owner-1", 50, None).await.unwrap();
    assert_eq!(page.items, vec![record.clone()]);
    assert_eq!(page.next_cursor, None);
    assert!(
        keys.list("owner-2", 50, None)
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let valid = keys.validate(secret.expose()).await.unwrap();
    assert_eq!(valid.id, record.id);
    assert_eq!(valid.scopes, Some(vec!["mcp".into(), "keys:read".into()]));

    // Update: name, scopes to unrestricted, deactivate, reactivate.
    let updated = keys
        .update(
            record.id,
            KeyChanges {
                name: Some("ci-2".into()),
                scopes: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.name, "ci-2");
    assert_eq!(updated.scopes, None);
    assert_eq!(keys.validate(secret.expose()).await.unwrap().scopes, None);
    keys.update(
        record.id,
        KeyChanges {
            is_active: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert!(matches!(
        keys.validate(secret.expose()).await,
        Err(ApiKeyError::Inactive)
    ));
    keys.update(
        record.id,
        KeyChanges {
            is_active: Some(true),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    keys.validate(secret.expose()).await.unwrap();

    // lastUsed is recorded in a batch, not by validate itself.
    assert_eq!(keys.get(record.id).await.unwrap().last_used, None);
    assert_eq!(keys.flush_last_used().await.unwrap(), 1);
    assert!(keys.get(record.id).await.unwrap().last_used.is_some());
    assert_eq!(keys.flush_last_used().await.unwrap(), 0);

    // Delete takes effect at once, cache or not.
    keys.delete(record.id).await.unwrap();
    assert!(matches!(
        keys.validate(secret.expose()).await,
        Err(ApiKeyError::NotFound)
    ));
    assert!(matches!(
        keys.get(record.id).await,
        Err(ApiKeyError::NotFound)
    ));
    assert!(matches!(
        keys.delete(record.id).await,
        Err(ApiKeyError::NotFound)
    ));
    assert!(matches!(
        keys.update(record.id, KeyChanges::default()).await,
        Err(ApiKeyError::NotFound)
    ));
}
every_store!(lifecycle);

async fn duplicate_names_conflict_exactly_once(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let (a, b) = tokio::join!(
        keys.create("owner-1", "same", None, None),
        keys.create("owner-1", "same", None, None)
    );
    let conflicts = [&a, &b]
        .iter()
        .filter(|r| matches!(r, Err(ApiKeyError::Conflict)))
        .count();
    let created = [&a, &b].iter().filter(|r| r.is_ok()).count();
    assert_eq!((created, conflicts), (1, 1), "{a:?} {b:?}");
    // Another owner may use the name; renaming onto a taken name conflicts.
    keys.create("owner-2", "same", None, None).await.unwrap();
    let (other, _) = keys.create("owner-1", "other", None, None).await.unwrap();
    assert!(matches!(
        keys.update(
            other.id,
            KeyChanges {
                name: Some("same".into()),
                ..Default::default()
            }
        )
        .await,
        Err(ApiKeyError::Conflict)
    ));
}
every_store!(duplicate_names_conflict_exactly_once);

async fn expiry_follows_the_clock(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let (record, secret) = keys.create("o", "short", None, Some(1)).await.unwrap();
    let expected = time::OffsetDateTime::from_unix_timestamp(T0 as i64 + 86_400).unwrap();
    assert_eq!(record.expires_at, Some(expected));
    clock.advance(Duration::from_secs(86_399));
    keys.validate(secret.expose()).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        keys.validate(secret.expose()).await,
        Err(ApiKeyError::Expired)
    ));
    // Extending the expiry revives it; clearing it makes it permanent.
    keys.update(
        record.id,
        KeyChanges {
            expires_at: Some(keys.expiry_in_days(Some(2)).unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    keys.validate(secret.expose()).await.unwrap();
    keys.update(
        record.id,
        KeyChanges {
            expires_at: Some(None),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    clock.advance(Duration::from_secs(10 * 365 * 86_400));
    keys.validate(secret.expose()).await.unwrap();
}
every_store!(expiry_follows_the_clock);

async fn regenerate_now_or_after_a_grace_period(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let (record, old) = keys.create("o", "k", None, None).await.unwrap();
    keys.validate(old.expose()).await.unwrap();

    let (renewed, new) = keys.regenerate(record.id, None).await.unwrap();
    assert_eq!(renewed.id, record.id);
    assert_ne!(renewed.prefix, record.prefix);
    assert!(matches!(
        keys.validate(old.expose()).await,
        Err(ApiKeyError::NotFound)
    ));
    keys.validate(new.expose()).await.unwrap();

    let (_, newer) = keys
        .regenerate(record.id, Some(Duration::from_secs(3600)))
        .await
        .unwrap();
    keys.validate(newer.expose()).await.unwrap();
    keys.validate(new.expose()).await.unwrap();
    clock.advance(Duration::from_secs(3599));
    keys.validate(new.expose()).await.unwrap();
    clock.advance(Duration::from_secs(1));
    assert!(matches!(
        keys.validate(new.expose()).await,
        Err(ApiKeyError::NotFound)
    ));
    keys.validate(newer.expose()).await.unwrap();
    // The oldest secret is gone for good.
    assert!(keys.validate(old.expose()).await.is_err());

    assert!(matches!(
        keys.regenerate(record.id, Some(Duration::from_secs(7 * 86_400 + 1)))
            .await,
        Err(ApiKeyError::GracePeriodTooLong)
    ));
    assert!(matches!(
        keys.regenerate(uuid::Uuid::now_v7(), None).await,
        Err(ApiKeyError::NotFound)
    ));
}
every_store!(regenerate_now_or_after_a_grace_period);

async fn unknown_keys_are_cached_negatively_and_bad_checksums_never_looked_up(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let (_, secret) = keys.create("o", "k", None, None).await.unwrap();
    keys.delete(keys.list("o", 1, None).await.unwrap().items[0].id)
        .await
        .unwrap();
    let before = keys.cache_stats().get();
    for _ in 0..10 {
        assert!(keys.validate(secret.expose()).await.is_err());
    }
    let after = keys.cache_stats().get();
    assert_eq!(
        after.1 - before.1,
        1,
        "one store lookup, then the negative entry"
    );
    let mut typo = secret.expose().to_owned();
    typo.replace_range(20..21, if &typo[20..21] == "a" { "b" } else { "a" });
    for _ in 0..10 {
        assert!(matches!(
            keys.validate(&typo).await,
            Err(ApiKeyError::NotFound)
        ));
    }
    assert_eq!(
        keys.cache_stats().get(),
        after,
        "no lookup for a bad checksum"
    );
}
every_store!(unknown_keys_are_cached_negatively_and_bad_checksums_never_looked_up);

async fn pages_and_owner_deletion(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let mut secrets = Vec::new();
    for i in 0..5 {
        secrets.push(
            keys.create("o", &format!("k{i}"), None, None)
                .await
                .unwrap()
                .1,
        );
    }
    keys.create("other", "k0", None, None).await.unwrap();
    let first = keys.list("o", 2, None).await.unwrap();
    assert_eq!(first.items.len(), 2);
    let second = keys.list("o", 2, first.next_cursor).await.unwrap();
    let third = keys.list("o", 2, second.next_cursor).await.unwrap();
    assert_eq!(third.items.len(), 1);
    assert_eq!(third.next_cursor, None);
    let names: Vec<String> = [first.items, second.items, third.items]
        .concat()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(names, ["k0", "k1", "k2", "k3", "k4"]);

    keys.validate(secrets[0].expose()).await.unwrap();
    assert_eq!(keys.delete_owner("o").await.unwrap(), 5);
    for secret in &secrets {
        assert!(keys.validate(secret.expose()).await.is_err());
    }
    assert_eq!(keys.list("other", 10, None).await.unwrap().items.len(), 1);
}
every_store!(pages_and_owner_deletion);

/// The instant `T0 + nanos`, as the clock gives it.
fn at_nanos(nanos: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(T0) + Duration::from_nanos(nanos)
}

/// `T0 + micros` as a date.
fn date_micros(micros: i128) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(T0) * 1_000_000_000 + micros * 1_000)
        .unwrap()
}

/// Times are kept to the microsecond (what databases keep), cut, not
/// rounded: a key made at T0 + 0.123456789 s is created at T0 + 123456 µs,
/// and reads back from the store equal. `lastUsed` is the latest accepted
/// use since the last flush, to the microsecond.
async fn times_are_microseconds_and_last_used_is_the_latest_use(f: Fixture) {
    let clock = ManualClock::new(at_nanos(123_456_789));
    let keys = service(f.store.clone(), &clock);
    let (record, secret) = keys.create("o", "k", None, Some(1)).await.unwrap();
    assert_eq!(record.created_at, date_micros(123_456));
    assert_eq!(record.updated_at, date_micros(123_456));
    assert_eq!(
        record.expires_at,
        Some(date_micros(123_456 + 86_400_000_000))
    );
    assert_eq!(keys.get(record.id).await.unwrap(), record);

    // Two uses before a flush: the later one is written.
    clock.set(at_nanos(1_000_000_999));
    keys.validate(secret.expose()).await.unwrap();
    clock.set(at_nanos(2_500_001_999));
    keys.validate(secret.expose()).await.unwrap();
    assert_eq!(keys.flush_last_used().await.unwrap(), 1);
    assert_eq!(
        keys.get(record.id).await.unwrap().last_used,
        Some(date_micros(2_500_001))
    );
    // Nothing used since: nothing written, nothing changed.
    assert_eq!(keys.flush_last_used().await.unwrap(), 0);
    clock.set(at_nanos(7_000_000_000));
    keys.validate(secret.expose()).await.unwrap();
    assert_eq!(keys.flush_last_used().await.unwrap(), 1);
    assert_eq!(
        keys.get(record.id).await.unwrap().last_used,
        Some(date_micros(7_000_000))
    );

    // An update is stamped to the microsecond too.
    clock.set(at_nanos(9_999_999_999));
    let updated = keys
        .update(
            record.id,
            KeyChanges {
                name: Some("k2".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(updated.updated_at, date_micros(9_999_999));
    assert_eq!(updated.created_at, record.created_at);
    assert_eq!(keys.get(record.id).await.unwrap(), updated);
}
every_store!(times_are_microseconds_and_last_used_is_the_latest_use);

/// `lastUsed` only moves forward: a batch that arrives late (another
/// replica's, or one retried after a failed write) with an older time does
/// not wind it back, in every store.
async fn last_used_never_moves_back(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let (record, _) = keys.create("o", "k", None, None).await.unwrap();
    let later = date_micros(5_000_000);
    let earlier = date_micros(2_000_000);
    f.store
        .record_last_used(vec![(record.id, later)])
        .await
        .unwrap();
    f.store
        .record_last_used(vec![(record.id, earlier)])
        .await
        .unwrap();
    assert_eq!(keys.get(record.id).await.unwrap().last_used, Some(later));
}
every_store!(last_used_never_moves_back);

/// `expiry_in_days(n)` is exactly n × 24 h from now; `None` is never. A key
/// is expired from its `expires_at` on: valid 1 µs before, expired at it.
async fn expiry_in_days_is_exact_and_expiry_starts_at_expires_at(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    assert_eq!(keys.expiry_in_days(None).unwrap(), None);
    assert_eq!(
        keys.expiry_in_days(Some(2)).unwrap(),
        Some(date_micros(2 * 86_400_000_000))
    );
    assert_eq!(keys.expiry_in_days(Some(0)).unwrap(), Some(date_micros(0)));
    let (record, secret) = keys.create("o", "k", None, None).await.unwrap();
    keys.update(
        record.id,
        KeyChanges {
            expires_at: Some(keys.expiry_in_days(Some(3)).unwrap()),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        keys.get(record.id).await.unwrap().expires_at,
        Some(date_micros(3 * 86_400_000_000))
    );
    clock.set(at_nanos(3 * 86_400_000_000_000 - 1_000));
    keys.validate(secret.expose()).await.unwrap();
    clock.set(at_nanos(3 * 86_400_000_000_000));
    assert!(matches!(
        keys.validate(secret.expose()).await,
        Err(ApiKeyError::Expired)
    ));
    // A key made to expire in 0 days is expired at once.
    let (_, now_secret) = keys.create("o", "zero", None, Some(0)).await.unwrap();
    assert!(matches!(
        keys.validate(now_secret.expose()).await,
        Err(ApiKeyError::Expired)
    ));
}
every_store!(expiry_in_days_is_exact_and_expiry_starts_at_expires_at);

/// The longest grace period, exactly 7 days, is allowed: the old secret
/// works until T0 + 7 d - 1 µs and not at T0 + 7 d. A zero grace period is
/// none at all.
async fn a_grace_period_of_exactly_seven_days(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    assert_eq!(mcp_apikeys::MAX_GRACE_PERIOD, Duration::from_secs(604_800));
    let (record, old) = keys.create("o", "k", None, None).await.unwrap();
    let (_, new) = keys
        .regenerate(record.id, Some(Duration::from_secs(7 * 86_400)))
        .await
        .unwrap();
    let stored = f.store.get(record.id).await.unwrap().unwrap();
    assert_eq!(
        stored.previous_valid_until,
        Some(date_micros(7 * 86_400_000_000))
    );
    clock.set(at_nanos(7 * 86_400_000_000_000 - 1_000));
    assert_eq!(keys.validate(old.expose()).await.unwrap().id, record.id);
    clock.set(at_nanos(7 * 86_400_000_000_000));
    assert!(matches!(
        keys.validate(old.expose()).await,
        Err(ApiKeyError::NotFound)
    ));
    keys.validate(new.expose()).await.unwrap();

    let (_, newer) = keys
        .regenerate(record.id, Some(Duration::ZERO))
        .await
        .unwrap();
    assert!(matches!(
        keys.validate(new.expose()).await,
        Err(ApiKeyError::NotFound)
    ));
    keys.validate(newer.expose()).await.unwrap();
}
every_store!(a_grace_period_of_exactly_seven_days);

/// A page that ends exactly at the last key has no cursor; a cursor past
/// every key gives an empty page.
async fn a_page_ending_at_the_last_key_has_no_cursor(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            keys.create("o", &format!("k{i}"), None, None)
                .await
                .unwrap()
                .0
                .id,
        );
    }
    let all = keys.list("o", 3, None).await.unwrap();
    assert_eq!(all.items.iter().map(|k| k.id).collect::<Vec<_>>(), ids);
    assert_eq!(all.next_cursor, None);
    let first = keys.list("o", 2, None).await.unwrap();
    assert_eq!(first.next_cursor, Some(ids[1]));
    let rest = keys.list("o", 1, Some(ids[1])).await.unwrap();
    assert_eq!(
        rest.items.iter().map(|k| k.id).collect::<Vec<_>>(),
        [ids[2]]
    );
    assert_eq!(rest.next_cursor, None);
    let after = keys.list("o", 10, Some(ids[2])).await.unwrap();
    assert!(after.items.is_empty());
    assert_eq!(after.next_cursor, None);
}
every_store!(a_page_ending_at_the_last_key_has_no_cursor);

/// A name is taken only by another key of the same owner: a key may be
/// renamed to its own name or to a name another owner uses, not to the name
/// of its owner's other key.
async fn renaming_conflicts_only_with_another_key_of_the_same_owner(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let keys = service(f.store.clone(), &clock);
    let (a, _) = keys.create("o", "a", None, None).await.unwrap();
    keys.create("o", "b", None, None).await.unwrap();
    let (c, _) = keys.create("p", "c", None, None).await.unwrap();
    let rename = |name: &str| KeyChanges {
        name: Some(name.to_owned()),
        ..Default::default()
    };
    assert_eq!(keys.update(a.id, rename("a")).await.unwrap().name, "a");
    assert_eq!(keys.update(a.id, rename("c")).await.unwrap().name, "c");
    assert!(matches!(
        keys.update(a.id, rename("b")).await,
        Err(ApiKeyError::Conflict)
    ));
    assert_eq!(keys.get(a.id).await.unwrap().name, "c");
    assert_eq!(keys.update(c.id, rename("b")).await.unwrap().name, "b");
    let names = |owner: &'static str| {
        let keys = keys.clone();
        async move {
            let mut names: Vec<String> = keys
                .list(owner, 10, None)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|k| k.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(names("o").await, ["b", "c"]);
    assert_eq!(names("p").await, ["b"]);
}
every_store!(renaming_conflicts_only_with_another_key_of_the_same_owner);

/// A store whose next `record_last_used` stops, before writing, until the
/// test releases it: a flush caught in the middle.
struct HeldWrites {
    inner: Arc<dyn ApiKeyStore>,
    armed: AtomicBool,
    /// Told when a write has started and is held.
    held: Notify,
    release: Notify,
}

impl HeldWrites {
    fn new(inner: Arc<dyn ApiKeyStore>) -> Arc<Self> {
        Arc::new(HeldWrites {
            inner,
            armed: AtomicBool::new(false),
            held: Notify::new(),
            release: Notify::new(),
        })
    }
}

impl ApiKeyStore for HeldWrites {
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()> {
        self.inner.insert(key)
    }
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>> {
        self.inner.get(id)
    }
    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>> {
        self.inner.find_by_hash(hash)
    }
    fn list(&self, owner: &str, limit: u32, cursor: Option<Uuid>) -> StoreFuture<'_, KeyPage> {
        self.inner.list(owner, limit, cursor)
    }
    fn update(&self, id: Uuid, c: KeyChanges, at: OffsetDateTime) -> StoreFuture<'_, StoredKey> {
        self.inner.update(id, c, at)
    }
    fn replace_secret(
        &self,
        id: Uuid,
        s: NewSecret,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        self.inner.replace_secret(id, s, at)
    }
    fn delete(&self, id: Uuid) -> StoreFuture<'_, StoredKey> {
        self.inner.delete(id)
    }
    fn delete_owner(&self, owner: &str) -> StoreFuture<'_, Vec<StoredKey>> {
        self.inner.delete_owner(owner)
    }
    fn record_last_used(&self, uses: Vec<(Uuid, OffsetDateTime)>) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            if self.armed.swap(false, AtomicOrdering::SeqCst) {
                self.held.notify_one();
                self.release.notified().await;
            }
            self.inner.record_last_used(uses).await
        })
    }
    fn notify(&self, hashes: &[KeyHash]) -> StoreFuture<'_, ()> {
        self.inner.notify(hashes)
    }
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<mcp_apikeys::Invalidation>> {
        self.inner.subscribe()
    }
}

/// The background writer aborted in the middle of a write (what stopping
/// it by its handle does) loses nothing: the final flush writes that batch.
async fn an_aborted_flush_loses_no_use(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let store = HeldWrites::new(f.store.clone());
    let keys = service(store.clone(), &clock);
    let (record, secret) = keys.create("o", "k", None, None).await.unwrap();
    keys.validate(secret.expose()).await.unwrap();

    store.armed.store(true, AtomicOrdering::SeqCst);
    // The first tick is immediate: the writer takes the batch and is held.
    let writer = keys.start(Duration::from_secs(3600));
    store.held.notified().await;
    writer.abort();
    assert!(writer.await.unwrap_err().is_cancelled());

    keys.flush_last_used().await.unwrap();
    assert!(
        keys.get(record.id).await.unwrap().last_used.is_some(),
        "the use in the aborted batch was lost"
    );
}
every_store!(an_aborted_flush_loses_no_use);

/// `shutdown` lets a write in progress finish, writes what was used since,
/// and stops the background writer.
async fn shutdown_writes_every_pending_use_and_stops_the_writer(f: Fixture) {
    let clock = ManualClock::at_unix(T0);
    let store = HeldWrites::new(f.store.clone());
    let keys = service(store.clone(), &clock);
    let (first, first_secret) = keys.create("o", "first", None, None).await.unwrap();
    let (second, second_secret) = keys.create("o", "second", None, None).await.unwrap();
    let (idle, _) = keys.create("o", "idle", None, None).await.unwrap();
    keys.validate(first_secret.expose()).await.unwrap();

    store.armed.store(true, AtomicOrdering::SeqCst);
    let writer = keys.start(Duration::from_secs(3600));
    // The writer holds `first` in a write that has not reached the store.
    store.held.notified().await;
    // A use after the writer took its batch: only the final flush has it.
    clock.advance(Duration::from_secs(5));
    keys.validate(second_secret.expose()).await.unwrap();

    let shutdown = tokio::spawn({
        let keys = keys.clone();
        async move { keys.shutdown().await }
    });
    store.release.notify_one();
    shutdown.await.unwrap().unwrap();

    let at = |secs: u64| Some(time::OffsetDateTime::from_unix_timestamp(secs as i64).unwrap());
    assert_eq!(keys.get(first.id).await.unwrap().last_used, at(T0));
    assert_eq!(keys.get(second.id).await.unwrap().last_used, at(T0 + 5));
    assert_eq!(keys.get(idle.id).await.unwrap().last_used, None);
    // The writer has stopped: its task ends without being aborted.
    tokio::time::timeout(Duration::from_secs(1), writer)
        .await
        .expect("the background writer is still running after shutdown")
        .unwrap();
}
every_store!(shutdown_writes_every_pending_use_and_stops_the_writer);

/// Polls `b` until validating `secret` gives `expected`, for at most `within`.
async fn until_b_sees(
    b: &ApiKeyService,
    secret: &str,
    expected: fn(&Result<mcp_apikeys::ApiKeyRecord, ApiKeyError>) -> bool,
    within: Duration,
) -> bool {
    let deadline = std::time::Instant::now() + within;
    loop {
        let seen = b.validate(secret).await;
        if expected(&seen) {
            return true;
        }
        if std::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Two replicas on one PostgreSQL: a key deactivated, deleted, regenerated
/// or removed with its owner through one stops working in the other's
/// cache by NOTIFY (the cache TTL is an hour: only a notification can do it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_postgres),
    ignore = "needs PostgreSQL: MCP_TEST_SERVICES=postgres (CI=true implies it)"
)]
async fn replicas_follow_each_other_by_notify() {
    let Some(f) = postgres().await else {
        return;
    };
    let clock = ManualClock::at_unix(T0);
    let a = service(f.store.clone(), &clock);
    let b = service(f.twin.clone().unwrap(), &clock);
    let _a_task = a.start(Duration::from_secs(3600));
    let _b_task = b.start(Duration::from_secs(3600));
    let inactive = |r: &Result<_, ApiKeyError>| matches!(r, Err(ApiKeyError::Inactive));
    let unknown = |r: &Result<_, ApiKeyError>| matches!(r, Err(ApiKeyError::NotFound));
    let valid = |r: &Result<_, ApiKeyError>| r.is_ok();
    let deactivate = KeyChanges {
        is_active: Some(false),
        ..Default::default()
    };

    // Readiness without a fixed sleep: b's listener tells b to forget
    // everything once, when it starts. Until a change made through a has
    // reached b once, that start may still be ahead; after it, only a
    // notification can carry a change.
    let mut ready = false;
    for probe in 0..50 {
        let (record, secret) = a
            .create("probe", &format!("p{probe}"), None, None)
            .await
            .unwrap();
        b.validate(secret.expose()).await.unwrap();
        a.update(record.id, deactivate.clone()).await.unwrap();
        if until_b_sees(&b, secret.expose(), inactive, Duration::from_millis(200)).await {
            ready = true;
            break;
        }
    }
    assert!(ready, "b's listener never started");

    let (deactivated, d_secret) = a.create("o", "deactivated", None, None).await.unwrap();
    let (deleted, x_secret) = a.create("o", "deleted", None, None).await.unwrap();
    let (regenerated, r_secret) = a.create("o", "regenerated", None, None).await.unwrap();
    let (_, owned_secret) = a.create("gone", "owned", None, None).await.unwrap();
    for secret in [&d_secret, &x_secret, &r_secret, &owned_secret] {
        b.validate(secret.expose()).await.unwrap();
        b.validate(secret.expose()).await.unwrap();
    }
    let (hits, _) = b.cache_stats().get();
    assert!(hits >= 4, "b answers these keys from its cache now");

    a.update(deactivated.id, deactivate.clone()).await.unwrap();
    assert!(
        until_b_sees(&b, d_secret.expose(), inactive, Duration::from_secs(5)).await,
        "b never heard of the deactivation"
    );
    a.delete(deleted.id).await.unwrap();
    assert!(
        until_b_sees(&b, x_secret.expose(), unknown, Duration::from_secs(5)).await,
        "b never heard of the deletion"
    );
    let (_, new_secret) = a.regenerate(regenerated.id, None).await.unwrap();
    assert!(
        until_b_sees(&b, r_secret.expose(), unknown, Duration::from_secs(5)).await,
        "b never heard of the regeneration"
    );
    assert!(valid(&b.validate(new_secret.expose()).await));
    assert_eq!(a.delete_owner("gone").await.unwrap(), 1);
    assert!(
        until_b_sees(&b, owned_secret.expose(), unknown, Duration::from_secs(5)).await,
        "b never heard of the owner's deletion"
    );
}
