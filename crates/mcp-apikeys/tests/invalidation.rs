//! Invalidation wins over lookups in flight: a key revoked while a lookup
//! of it is between the store read and the cache insert stays revoked, and
//! an owner's role change reaches the cached principals of its keys at once.
//!
//! The interleavings are forced with [`Notify`], never with sleeps: the
//! store (or the owner lookup) parks the lookup after its read until the
//! test has made its change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::Request;
use mcp_apikeys::store::{KeyPage, NewSecret, StoreFuture, StoredKey};
use mcp_apikeys::{
    ApiKeyAuthenticator, ApiKeyError, ApiKeyRecord, ApiKeyService, ApiKeyStore, KeyChanges,
    KeyHash, MemoryStore, OwnerLookup,
};
use mcp_auth::{AuthError, Authenticator, BoxFuture};
use mcp_core::Principal;
use time::OffsetDateTime;
use tokio::sync::Notify;
use uuid::Uuid;

/// Parks the next lookup after it has read the store, until released.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    /// Told when a lookup has read and is parked.
    parked: Notify,
    /// Releases the parked lookup.
    release: Notify,
}

impl Gate {
    fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    async fn pass(&self) {
        if self.armed.swap(false, Ordering::SeqCst) {
            self.parked.notify_one();
            self.release.notified().await;
        }
    }
}

/// A memory store whose `find_by_hash` stops at the [`Gate`] after reading.
#[derive(Default)]
struct SlowFind {
    inner: MemoryStore,
    gate: Gate,
}

impl ApiKeyStore for SlowFind {
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()> {
        self.inner.insert(key)
    }
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>> {
        self.inner.get(id)
    }
    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>> {
        Box::pin(async move {
            let found = self.inner.find_by_hash(hash).await;
            self.gate.pass().await;
            found
        })
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
        self.inner.record_last_used(uses)
    }
}

/// What the revocation under test does to the key.
#[derive(Clone, Copy, Debug)]
enum Revoke {
    Deactivate,
    Delete,
    Regenerate,
    /// Another replica changed it and notified this one.
    Notified,
}

/// A lookup reads the key, the key is revoked, the lookup goes on to fill
/// the cache: the next validation must refuse the key.
async fn revoked_during_a_lookup_stays_revoked(revoke: Revoke) {
    let store = Arc::new(SlowFind::default());
    let keys = Arc::new(ApiKeyService::builder(store.clone()).build());
    let (record, secret) = keys.create("user-1", "k", None, None).await.unwrap();
    let presented = secret.expose().to_owned();

    store.gate.arm();
    let lookup = tokio::spawn({
        let (keys, presented) = (keys.clone(), presented.clone());
        async move { keys.validate(&presented).await.map(|r| r.id) }
    });
    // The lookup has read the active key and waits before caching it.
    store.gate.parked.notified().await;
    match revoke {
        Revoke::Deactivate => {
            keys.update(
                record.id,
                KeyChanges {
                    is_active: Some(false),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        }
        Revoke::Delete => keys.delete(record.id).await.unwrap(),
        Revoke::Regenerate => {
            keys.regenerate(record.id, None).await.unwrap();
        }
        Revoke::Notified => {
            // The change lands in the store behind this replica's back...
            store
                .inner
                .update(
                    record.id,
                    KeyChanges {
                        is_active: Some(false),
                        ..Default::default()
                    },
                    OffsetDateTime::now_utc(),
                )
                .await
                .unwrap();
            // ...and its notification arrives.
            keys.invalidate(None);
        }
    }
    store.gate.release.notify_one();
    // Concurrent with the revocation, so either answer is acceptable.
    let _ = lookup.await.unwrap();

    let after = keys.validate(&presented).await;
    let expected = match revoke {
        Revoke::Deactivate | Revoke::Notified => matches!(after, Err(ApiKeyError::Inactive)),
        Revoke::Delete | Revoke::Regenerate => matches!(after, Err(ApiKeyError::NotFound)),
    };
    assert!(
        expected,
        "{revoke:?}: the key is accepted after its revocation: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deactivated_during_a_lookup_stays_refused() {
    revoked_during_a_lookup_stays_revoked(Revoke::Deactivate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_deleted_during_a_lookup_stays_refused() {
    revoked_during_a_lookup_stays_revoked(Revoke::Delete).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_replaced_during_a_lookup_stays_refused() {
    revoked_during_a_lookup_stays_revoked(Revoke::Regenerate).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notification_during_a_lookup_wins() {
    revoked_during_a_lookup_stays_revoked(Revoke::Notified).await;
}

/// Owners whose role the test changes; the lookup can be parked after it
/// has read the role.
#[derive(Default)]
struct Roles {
    role: Mutex<&'static str>,
    gate: Gate,
}

impl OwnerLookup for Roles {
    fn principal<'a>(
        &'a self,
        key: &'a ApiKeyRecord,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            let role = *self.role.lock().unwrap();
            self.gate.pass().await;
            Ok(Some(key.principal(Some(role))))
        })
    }
}

async fn role_of(auth: &ApiKeyAuthenticator, key: &str) -> Vec<String> {
    let parts = Request::get("/")
        .header("x-api-key", key)
        .body(())
        .unwrap()
        .into_parts()
        .0;
    let principal = auth.authenticate(&parts).await.unwrap().unwrap();
    principal.roles().iter().cloned().collect()
}

/// The principal of a key is remembered for an hour here; a role change
/// made on this replica reaches it at once through `invalidate_owner`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_reaches_cached_key_principals_at_once() {
    let keys = Arc::new(ApiKeyService::builder(Arc::new(MemoryStore::new())).build());
    let (_, first) = keys.create("user-1", "a", None, None).await.unwrap();
    let (_, second) = keys.create("user-1", "b", None, None).await.unwrap();
    let (_, other) = keys.create("user-2", "c", None, None).await.unwrap();
    let roles = Arc::new(Roles::default());
    *roles.role.lock().unwrap() = "admin";
    let auth = ApiKeyAuthenticator::new(keys.clone())
        .owners(roles.clone())
        .ttl(Duration::from_secs(3600));
    for key in [&first, &second, &other] {
        assert_eq!(role_of(&auth, key.expose()).await, ["admin"]);
    }

    *roles.role.lock().unwrap() = "user";
    keys.invalidate_owner("user-1");
    assert_eq!(role_of(&auth, first.expose()).await, ["user"]);
    assert_eq!(role_of(&auth, second.expose()).await, ["user"]);
    // Another owner's keys keep their cached principal.
    assert_eq!(role_of(&auth, other.expose()).await, ["admin"]);
}

/// A principal being made from the old role while the role changes is not
/// the one remembered afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_change_during_an_owner_lookup_wins() {
    let keys = Arc::new(ApiKeyService::builder(Arc::new(MemoryStore::new())).build());
    let (_, secret) = keys.create("user-1", "a", None, None).await.unwrap();
    let roles = Arc::new(Roles::default());
    *roles.role.lock().unwrap() = "admin";
    let auth = Arc::new(
        ApiKeyAuthenticator::new(keys.clone())
            .owners(roles.clone())
            .ttl(Duration::from_secs(3600)),
    );
    // Cached key, no principal yet: the next request makes one.
    keys.validate(secret.expose()).await.unwrap();

    roles.gate.arm();
    let in_flight = tokio::spawn({
        let (auth, key) = (auth.clone(), secret.expose().to_owned());
        async move { role_of(&auth, &key).await }
    });
    roles.gate.parked.notified().await;
    *roles.role.lock().unwrap() = "user";
    keys.invalidate_owner("user-1");
    roles.gate.release.notify_one();
    let _ = in_flight.await.unwrap();

    assert_eq!(role_of(&auth, secret.expose()).await, ["user"]);
}
