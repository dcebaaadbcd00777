//! The key lifecycle: create, list, get, update, regenerate, delete,
//! validate; with a cache in front of the store and batched `lastUsed`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mcp_core::{SharedClock, SystemClock};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::key::{ApiKeySecret, KeyHash, KeyHasher};
use crate::store::{
    ApiKeyRecord, ApiKeyStore, KeyChanges, KeyPage, NewSecret, StoreError, StoredKey,
};

/// The longest a regenerated key's old secret may keep working.
pub const MAX_GRACE_PERIOD: Duration = Duration::from_secs(7 * 24 * 3600);

/// Why a key operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApiKeyError {
    /// No such key (or, for validation: unknown, malformed or deleted).
    #[error("no such API key")]
    NotFound,
    /// The owner has a key of that name already.
    #[error("a key with this name exists")]
    Conflict,
    /// The key is past its expiry.
    #[error("the API key has expired")]
    Expired,
    /// The key is deactivated.
    #[error("the API key is inactive")]
    Inactive,
    /// A grace period over 7 days.
    #[error("the grace period is longer than 7 days")]
    GracePeriodTooLong,
    /// An expiry that does not fit in a date.
    #[error("the expiry is out of range")]
    ExpiryOutOfRange,
    /// The store failed.
    #[error(transparent)]
    Store(StoreError),
}

impl From<StoreError> for ApiKeyError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NotFound => ApiKeyError::NotFound,
            StoreError::Conflict => ApiKeyError::Conflict,
            other => ApiKeyError::Store(other),
        }
    }
}

/// What `validate` remembers of a presented key: the stored key, or that
/// there is none.
type Cached = Option<Arc<CachedKey>>;

/// A stored key in the cache, with the principal an authenticator made of it
/// (so a hit needs one cache lookup, not two). A change to the key replaces
/// the whole entry, principal included.
pub(crate) struct CachedKey {
    pub(crate) stored: StoredKey,
    pub(crate) principal: std::sync::RwLock<Option<(SystemTime, mcp_core::Principal)>>,
    /// Last accepted use, in microseconds since the epoch (0: none since
    /// the last flush). Atomic, so recording a use takes no lock.
    last_used: AtomicU64,
}

impl CachedKey {
    fn new(stored: StoredKey) -> Self {
        CachedKey {
            stored,
            principal: std::sync::RwLock::new(None),
            last_used: AtomicU64::new(0),
        }
    }
}

/// Keys and their lifecycle, over any [`ApiKeyStore`].
///
/// **Validation** hashes the presented key and looks the hash up in a cache
/// (moka) before the store: a hit costs no I/O. Unknown keys are cached too,
/// for a shorter time, so repeating a bad key does not reach the store (and a
/// key with a bad checksum never does). Deactivate, regenerate and delete
/// drop the affected entries at once in this process, and through the store's
/// notifications in others (PostgreSQL `LISTEN/NOTIFY`); the cache TTL bounds
/// how long another replica can act on a stale entry if a notification is
/// lost. Invalidation wins over lookups in flight: a lookup that read the
/// store before a change does not put what it read into the cache after it.
/// [`ApiKeyService::invalidate_owner`] drops every cached key of one owner,
/// with the principal made of it (for an owner's role change or deletion).
///
/// **`lastUsed`** is recorded in memory on each accepted use and written in
/// one batch by [`ApiKeyService::flush_last_used`] (every 10 s by the task of
/// [`ApiKeyService::start`]): the request path never writes. On shutdown,
/// [`ApiKeyService::shutdown`] lets a write in progress finish, writes the
/// last batch and stops the task.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use mcp_apikeys::{ApiKeyService, MemoryStore};
///
/// let keys = ApiKeyService::builder(Arc::new(MemoryStore::new())).build();
/// let (record, secret) = keys.create("user-1", "ci", Some(vec!["mcp".into()]), Some(30)).await.unwrap();
/// let checked = keys.validate(secret.expose()).await.unwrap();
/// assert_eq!(checked.id, record.id);
/// keys.update(record.id, mcp_apikeys::KeyChanges { is_active: Some(false), ..Default::default() }).await.unwrap();
/// assert!(keys.validate(secret.expose()).await.is_err());
/// # }
/// ```
pub struct ApiKeyService {
    store: Arc<dyn ApiKeyStore>,
    hasher: KeyHasher,
    clock: SharedClock,
    // The keys are hashes of random secrets: nothing to collide on purpose,
    // so the fast hasher (SipHash was 270 instructions of each request).
    cache: moka::sync::Cache<KeyHash, Cached, foldhash::fast::RandomState>,
    /// Keys used since the last flush. A key is pushed once per flush
    /// interval (when its `last_used` goes from 0), so the lock is rare.
    used: Mutex<Vec<Arc<CachedKey>>>,
    /// Uses that could not be written, kept for the next flush.
    unwritten: Mutex<HashMap<Uuid, OffsetDateTime>>,
    /// One flush at a time, so batches reach the store in order and
    /// `shutdown` waits for the one in progress.
    flushing: tokio::sync::Mutex<()>,
    /// Bumped by every invalidation. A lookup caches what it read only if
    /// no invalidation happened since it started: otherwise it could put
    /// back an entry that was just dropped.
    generation: AtomicU64,
    /// Set by [`ApiKeyService::shutdown`]: background tasks end.
    stop: tokio::sync::watch::Sender<bool>,
    /// How many background tasks are running.
    running: tokio::sync::watch::Sender<usize>,
    stats: CacheStats,
}

impl std::fmt::Debug for ApiKeyService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyService")
            .field("hasher", &self.hasher)
            .field("cached", &self.cache.entry_count())
            .finish_non_exhaustive()
    }
}

/// Cache hits and misses since start, for metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    hits: std::sync::atomic::AtomicU64,
    misses: std::sync::atomic::AtomicU64,
}

impl CacheStats {
    /// (hits, misses).
    pub fn get(&self) -> (u64, u64) {
        use std::sync::atomic::Ordering::Relaxed;
        (self.hits.load(Relaxed), self.misses.load(Relaxed))
    }
}

/// Builds an [`ApiKeyService`].
#[must_use]
pub struct ApiKeyServiceBuilder {
    store: Arc<dyn ApiKeyStore>,
    hasher: KeyHasher,
    clock: SharedClock,
    ttl: Duration,
    negative_ttl: Duration,
    capacity: u64,
}

impl std::fmt::Debug for ApiKeyServiceBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyServiceBuilder")
            .field("hasher", &self.hasher)
            .field("ttl", &self.ttl)
            .field("negative_ttl", &self.negative_ttl)
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl ApiKeyServiceBuilder {
    /// How keys are hashed (default SHA-256; HMAC with a pepper is better).
    pub fn hasher(mut self, hasher: KeyHasher) -> Self {
        self.hasher = hasher;
        self
    }

    /// The time source for expiry and grace periods.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How long a looked-up key is cached (60 s): the bound on a stale entry
    /// in another replica when a notification is lost.
    pub fn cache_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// How long an unknown key is cached (10 s).
    pub fn negative_ttl(mut self, ttl: Duration) -> Self {
        self.negative_ttl = ttl;
        self
    }

    /// Most keys cached (100,000).
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.capacity = capacity;
        self
    }

    /// Builds the service.
    pub fn build(self) -> ApiKeyService {
        struct Ttl {
            positive: Duration,
            negative: Duration,
        }
        impl moka::Expiry<KeyHash, Cached> for Ttl {
            fn expire_after_create(
                &self,
                _key: &KeyHash,
                value: &Cached,
                _now: Instant,
            ) -> Option<Duration> {
                Some(if value.is_some() {
                    self.positive
                } else {
                    self.negative
                })
            }
        }
        ApiKeyService {
            store: self.store,
            hasher: self.hasher,
            clock: self.clock,
            cache: moka::sync::Cache::builder()
                .max_capacity(self.capacity)
                .expire_after(Ttl {
                    positive: self.ttl,
                    negative: self.negative_ttl,
                })
                .build_with_hasher(foldhash::fast::RandomState::default()),
            used: Mutex::new(Vec::new()),
            unwritten: Mutex::new(HashMap::new()),
            flushing: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            stop: tokio::sync::watch::Sender::new(false),
            running: tokio::sync::watch::Sender::new(0),
            stats: CacheStats::default(),
        }
    }
}

impl ApiKeyService {
    /// A service over `store`: any [`ApiKeyStore`], or an `Arc` of one to
    /// keep a handle on it.
    pub fn builder(store: impl ApiKeyStore) -> ApiKeyServiceBuilder {
        ApiKeyServiceBuilder {
            store: Arc::new(store),
            hasher: KeyHasher::sha256(),
            clock: SystemClock::shared(),
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(10),
            capacity: 100_000,
        }
    }

    fn now(&self) -> OffsetDateTime {
        micros(OffsetDateTime::from(self.clock.now()))
    }

    /// Cache hits and misses of [`validate`](Self::validate).
    pub fn cache_stats(&self) -> &CacheStats {
        &self.stats
    }

    /// A new key for `owner`. `scopes: None` is unrestricted; the key
    /// expires `expires_in_days` from now, or never. The secret is returned
    /// here and never again.
    pub async fn create(
        &self,
        owner: &str,
        name: &str,
        scopes: Option<Vec<String>>,
        expires_in_days: Option<u32>,
    ) -> Result<(ApiKeyRecord, ApiKeySecret), ApiKeyError> {
        let now = self.now();
        let expires_at = expiry(now, expires_in_days)?;
        let secret = ApiKeySecret::generate();
        let record = ApiKeyRecord {
            id: Uuid::now_v7(),
            name: name.to_owned(),
            prefix: secret.display_prefix().to_owned(),
            owner: owner.to_owned(),
            scopes,
            is_active: true,
            expires_at,
            last_used: None,
            created_at: now,
            updated_at: now,
        };
        let stored = StoredKey {
            record: record.clone(),
            hash: self.hasher.hash(secret.expose()),
            previous_hash: None,
            previous_valid_until: None,
        };
        self.store.insert(stored).await?;
        // A negative entry for this hash cannot exist unless someone guessed
        // a key before it was made; drop it anyway.
        self.drop_cached(&[self.hasher.hash(secret.expose())]);
        Ok((record, secret))
    }

    /// Keys of `owner`.
    pub async fn list(
        &self,
        owner: &str,
        limit: u32,
        cursor: Option<Uuid>,
    ) -> Result<KeyPage, ApiKeyError> {
        Ok(self.store.list(owner, limit, cursor).await?)
    }

    /// The key with `id`.
    pub async fn get(&self, id: Uuid) -> Result<ApiKeyRecord, ApiKeyError> {
        self.store
            .get(id)
            .await?
            .map(|k| k.record)
            .ok_or(ApiKeyError::NotFound)
    }

    /// Changes name, scopes, active flag or expiry; effective at once.
    pub async fn update(&self, id: Uuid, changes: KeyChanges) -> Result<ApiKeyRecord, ApiKeyError> {
        let stored = self.store.update(id, changes, self.now()).await?;
        self.forget(&stored).await;
        Ok(stored.record)
    }

    /// Sets the expiry to `days` from now (`None`: never).
    pub fn expiry_in_days(&self, days: Option<u32>) -> Result<Option<OffsetDateTime>, ApiKeyError> {
        expiry(self.now(), days)
    }

    /// A new secret. The old one stops working at once, or after `grace`
    /// (at most 7 days).
    pub async fn regenerate(
        &self,
        id: Uuid,
        grace: Option<Duration>,
    ) -> Result<(ApiKeyRecord, ApiKeySecret), ApiKeyError> {
        if grace.is_some_and(|g| g > MAX_GRACE_PERIOD) {
            return Err(ApiKeyError::GracePeriodTooLong);
        }
        let now = self.now();
        let previous_valid_until = grace
            .filter(|g| !g.is_zero())
            .map(|g| now + time::Duration::try_from(g).unwrap_or(time::Duration::ZERO));
        let before = self.store.get(id).await?.ok_or(ApiKeyError::NotFound)?;
        let secret = ApiKeySecret::generate();
        let new = NewSecret {
            hash: self.hasher.hash(secret.expose()),
            prefix: secret.display_prefix().to_owned(),
            previous_valid_until,
        };
        let stored = self.store.replace_secret(id, new, now).await?;
        self.forget(&before).await;
        self.forget(&stored).await;
        Ok((stored.record, secret))
    }

    /// Deletes the key; effective at once.
    pub async fn delete(&self, id: Uuid) -> Result<(), ApiKeyError> {
        let stored = self.store.delete(id).await?;
        self.forget(&stored).await;
        Ok(())
    }

    /// Deletes every key of `owner` (when the owner is deleted).
    pub async fn delete_owner(&self, owner: &str) -> Result<usize, ApiKeyError> {
        let deleted = self.store.delete_owner(owner).await?;
        for stored in &deleted {
            self.forget(stored).await;
        }
        Ok(deleted.len())
    }

    async fn forget(&self, stored: &StoredKey) {
        let mut hashes = vec![stored.hash];
        hashes.extend(stored.previous_hash);
        self.drop_cached(&hashes);
        if let Err(error) = self.store.notify(&hashes).await {
            tracing::warn!(%error, "cannot notify other replicas of a key change; they follow within the cache TTL");
        }
    }

    /// Drops the cached entries of `hashes` (from another replica's
    /// notification), or everything.
    pub fn invalidate(&self, hashes: Option<&[KeyHash]>) {
        match hashes {
            Some(hashes) => self.drop_cached(hashes),
            None => {
                self.generation.fetch_add(1, Ordering::SeqCst);
                self.cache.invalidate_all();
            }
        }
    }

    /// Drops every cached key of `owner`, and so the principals made of
    /// them: call it when the owner's role changes or the owner is deleted,
    /// so that its keys act with the new role (or not at all) at once in
    /// this process. Other processes follow within their caches' TTLs.
    ///
    /// Walks the whole cache: meant for rare events such as role changes.
    pub fn invalidate_owner(&self, owner: &str) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for (hash, cached) in &self.cache {
            if cached
                .as_ref()
                .is_some_and(|key| key.stored.record.owner == owner)
            {
                self.cache.invalidate(&*hash);
            }
        }
    }

    /// Drops the entries of `hashes`, after moving the generation on so that
    /// no lookup already in flight puts them back.
    fn drop_cached(&self, hashes: &[KeyHash]) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        for hash in hashes {
            self.cache.invalidate(hash);
        }
    }

    /// Checks a presented key: the record when it may be used.
    ///
    /// Malformed, unknown, deleted and replaced keys are
    /// [`ApiKeyError::NotFound`]; a deactivated one [`ApiKeyError::Inactive`];
    /// an expired one [`ApiKeyError::Expired`]. Callers should answer the
    /// first two alike.
    pub async fn validate(&self, presented: &str) -> Result<ApiKeyRecord, ApiKeyError> {
        self.validate_cached(presented)
            .await
            .map(|(k, _)| k.stored.record.clone())
    }

    /// [`validate`](Self::validate) without copying the record.
    pub(crate) async fn validate_cached(
        &self,
        presented: &str,
    ) -> Result<(Arc<CachedKey>, SystemTime), ApiKeyError> {
        if !ApiKeySecret::looks_valid(presented) {
            return Err(ApiKeyError::NotFound);
        }
        let hash = self.hasher.hash(presented);
        let cached = match self.cache.get(&hash) {
            Some(cached) => {
                self.stats
                    .hits
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                cached
            }
            None => {
                self.stats
                    .misses
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let generation = self.generation.load(Ordering::SeqCst);
                let found = self
                    .store
                    .find_by_hash(hash)
                    .await?
                    .map(|stored| Arc::new(CachedKey::new(stored)));
                if self.generation.load(Ordering::SeqCst) == generation {
                    self.cache.insert(hash, found.clone());
                    // An invalidation between the check and the insert
                    // would be undone by the insert: look again, and drop
                    // the entry if one came. (One after this second look
                    // drops the entry itself.)
                    if self.generation.load(Ordering::SeqCst) != generation {
                        self.cache.invalidate(&hash);
                    }
                }
                found
            }
        };
        let entry = cached.ok_or(ApiKeyError::NotFound)?;
        let stored = &entry.stored;
        let now = self.clock.now();
        if stored.hash != hash {
            // The previous secret of a regenerated key, in its grace period.
            let in_grace = stored
                .previous_valid_until
                .is_some_and(|until| now < SystemTime::from(until));
            if !in_grace {
                return Err(ApiKeyError::NotFound);
            }
        }
        if !stored.record.is_active {
            return Err(ApiKeyError::Inactive);
        }
        if stored
            .record
            .expires_at
            .is_some_and(|at| now >= SystemTime::from(at))
        {
            return Err(ApiKeyError::Expired);
        }
        let micros = now.duration_since(UNIX_EPOCH).map_or(1, |d| {
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1)
        });
        if entry.last_used.swap(micros, Ordering::AcqRel) == 0 {
            self.used
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(entry.clone());
        }
        Ok((entry, now))
    }

    /// Writes the recorded uses in one batch; returns how many.
    ///
    /// Cancel-safe: a flush dropped before its write completed (its task
    /// aborted) keeps the batch for the next one.
    pub async fn flush_last_used(&self) -> Result<usize, ApiKeyError> {
        let _one_at_a_time = self.flushing.lock().await;
        let used = std::mem::take(&mut *self.used.lock().unwrap_or_else(|p| p.into_inner()));
        let mut batch: HashMap<Uuid, OffsetDateTime> =
            std::mem::take(&mut *self.unwritten.lock().unwrap_or_else(|p| p.into_inner()));
        for entry in used {
            // Reset to 0 so the next use queues the key again.
            let micros = entry.last_used.swap(0, Ordering::AcqRel);
            let Ok(at) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
            else {
                continue;
            };
            let slot = batch.entry(entry.stored.record.id).or_insert(at);
            *slot = (*slot).max(at);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        let count = batch.len();
        let rows: Vec<(Uuid, OffsetDateTime)> = batch.into_iter().collect();
        // Until the write has succeeded, the batch goes back to `unwritten`
        // when this future ends: by an error, or by being dropped mid-write.
        let mut requeue = Requeue {
            into: &self.unwritten,
            rows: rows.clone(),
        };
        self.store.record_last_used(rows).await?;
        requeue.rows.clear();
        Ok(count)
    }

    /// Flush, then stop: waits for a write in progress, stops the tasks of
    /// [`start`](Self::start), and writes the uses recorded since (the last
    /// batch). Returns how many keys the last batch held. Tasks started
    /// after this end at once.
    pub async fn shutdown(&self) -> Result<usize, ApiKeyError> {
        self.stop.send_replace(true);
        let mut running = self.running.subscribe();
        // The sender lives in `self`, so this only returns at zero.
        let _ = running.wait_for(|tasks| *tasks == 0).await;
        self.flush_last_used().await
    }

    /// Starts the background work: flush `lastUsed` every `interval`, and
    /// follow the store's change notifications. Stop it with
    /// [`shutdown`](Self::shutdown), which also writes the last batch.
    /// (Aborting the handle loses nothing either, but then call
    /// [`flush_last_used`](Self::flush_last_used) once more.)
    pub fn start(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let mut changes = self.store.subscribe();
        let mut stop = self.stop.subscribe();
        // Counted before the task runs, so a `shutdown` right after this
        // waits for it; uncounted when the task ends or is dropped.
        self.running.send_modify(|tasks| *tasks += 1);
        let running = Running(self.clone());
        tokio::spawn(async move {
            let service = &running.0;
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    biased;
                    // Map the answer away: it holds a lock guard that must
                    // not live on across the other branches' awaits.
                    () = async { let _ = stop.wait_for(|stopped| *stopped).await; } => break,
                    _ = tick.tick() => {
                        if let Err(error) = service.flush_last_used().await {
                            tracing::warn!(%error, "cannot record lastUsed; will retry");
                        }
                    }
                    change = async {
                        match changes.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => match change {
                        Some(crate::store::Invalidation::Keys(hashes)) => service.invalidate(Some(&hashes)),
                        Some(crate::store::Invalidation::All) => service.invalidate(None),
                        None => changes = None,
                    }
                }
            }
        })
    }
}

/// A background task of the service, counted while it exists.
struct Running(Arc<ApiKeyService>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0
            .running
            .send_modify(|tasks| *tasks = tasks.saturating_sub(1));
    }
}

/// A batch of uses not yet written: merged back into `into` when dropped,
/// unless emptied after the write succeeded.
struct Requeue<'a> {
    into: &'a Mutex<HashMap<Uuid, OffsetDateTime>>,
    rows: Vec<(Uuid, OffsetDateTime)>,
}

impl Drop for Requeue<'_> {
    fn drop(&mut self) {
        if self.rows.is_empty() {
            return;
        }
        let mut unwritten = self.into.lock().unwrap_or_else(|p| p.into_inner());
        for (id, at) in self.rows.drain(..) {
            let slot = unwritten.entry(id).or_insert(at);
            *slot = (*slot).max(at);
        }
    }
}

/// Databases keep microseconds; so do we, so what is written reads back equal.
fn micros(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1_000 * 1_000)
        .unwrap_or(at)
}

fn expiry(now: OffsetDateTime, days: Option<u32>) -> Result<Option<OffsetDateTime>, ApiKeyError> {
    days.map(|d| {
        now.checked_add(time::Duration::days(i64::from(d)))
            .ok_or(ApiKeyError::ExpiryOutOfRange)
    })
    .transpose()
}
