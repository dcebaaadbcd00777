//! Where key records live: the [`ApiKeyStore`] trait and its stores.

mod memory;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod pool;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

pub use memory::MemoryStore;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use pool::SqlPool;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use sql::SqlStore;

use crate::key::KeyHash;

/// A boxed future, as stores return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A key as stored and shown: never the secret, never the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRecord {
    /// Stable id.
    pub id: Uuid,
    /// Unique per owner.
    pub name: String,
    /// The first characters of the key, to recognise it.
    pub prefix: String,
    /// Who the key acts for (a user id).
    #[serde(rename = "userId")]
    pub owner: String,
    /// `None`: unrestricted within the owner's role.
    pub scopes: Option<Vec<String>>,
    /// Deactivated keys are refused like unknown ones.
    pub is_active: bool,
    /// After this the key is refused as expired.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Last accepted use (recorded in batches, so up to a flush behind).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_used: Option<OffsetDateTime>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A stored key with what only the store and the service see.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    /// The record.
    pub record: ApiKeyRecord,
    /// Hash of the current secret.
    pub hash: KeyHash,
    /// Hash of the previous secret, still accepted until
    /// `previous_valid_until` after a regeneration with a grace period.
    pub previous_hash: Option<KeyHash>,
    /// End of the grace period.
    pub previous_valid_until: Option<OffsetDateTime>,
}

/// Changes to a key; `None` leaves a field alone.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyChanges {
    /// New name.
    pub name: Option<String>,
    /// New scopes (`Some(None)`: unrestricted).
    pub scopes: Option<Option<Vec<String>>>,
    /// Activate or deactivate.
    pub is_active: Option<bool>,
    /// New expiry (`Some(None)`: never).
    pub expires_at: Option<Option<OffsetDateTime>>,
}

/// A new secret for a key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSecret {
    /// Hash of the new secret.
    pub hash: KeyHash,
    /// Its display prefix.
    pub prefix: String,
    /// Until when the old secret still works (`None`: not at all).
    pub previous_valid_until: Option<OffsetDateTime>,
}

/// A page of keys, oldest first, with the id to pass as the next cursor
/// when there are more.
pub type KeyPage = mcp_core::Page<ApiKeyRecord, Uuid>;

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such key.
    #[error("no such key")]
    NotFound,
    /// The owner has a key of that name already.
    #[error("a key with this name exists for this owner")]
    Conflict,
    /// The store cannot be reached.
    #[error("the key store is unreachable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("key store error: {0}")]
    Other(String),
}

/// Storage of API keys. Lookups by hash are one indexed query.
///
/// Every store passes the same conformance suite
/// (`tests/conformance.rs`), run against each of them.
pub trait ApiKeyStore: Send + Sync + 'static {
    /// Stores a new key; [`StoreError::Conflict`] when the owner has one of
    /// that name.
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()>;

    /// The key with `id`.
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>>;

    /// The key whose current or (still-valid) previous secret hashes to
    /// `hash`.
    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>>;

    /// Up to `limit` keys of `owner` after `cursor`, oldest first.
    fn list(&self, owner: &str, limit: u32, cursor: Option<Uuid>) -> StoreFuture<'_, KeyPage>;

    /// Applies `changes` at `at`; the updated key.
    fn update(
        &self,
        id: Uuid,
        changes: KeyChanges,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey>;

    /// Replaces the secret at `at`; the updated key.
    fn replace_secret(
        &self,
        id: Uuid,
        secret: NewSecret,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey>;

    /// Deletes the key; the deleted key.
    fn delete(&self, id: Uuid) -> StoreFuture<'_, StoredKey>;

    /// Deletes every key of `owner`; the deleted keys.
    fn delete_owner(&self, owner: &str) -> StoreFuture<'_, Vec<StoredKey>>;

    /// Records last uses, one batch in one round trip.
    fn record_last_used(&self, uses: Vec<(Uuid, OffsetDateTime)>) -> StoreFuture<'_, ()>;

    /// Tells other processes sharing this store that the keys with these
    /// hashes changed. A no-op where nothing else can share the store.
    fn notify(&self, hashes: &[KeyHash]) -> StoreFuture<'_, ()> {
        let _ = hashes;
        Box::pin(std::future::ready(Ok(())))
    }

    /// Changes made by other processes, as [`notify`](Self::notify) sent
    /// them; `None` where there are none to follow.
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Invalidation>> {
        None
    }
}

/// A shared store is a store: `ApiKeyService::builder(store.clone())` keeps
/// a handle on it.
impl<S: ApiKeyStore + ?Sized> ApiKeyStore for Arc<S> {
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()> {
        (**self).insert(key)
    }
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>> {
        (**self).get(id)
    }
    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>> {
        (**self).find_by_hash(hash)
    }
    fn list(&self, owner: &str, limit: u32, cursor: Option<Uuid>) -> StoreFuture<'_, KeyPage> {
        (**self).list(owner, limit, cursor)
    }
    fn update(
        &self,
        id: Uuid,
        changes: KeyChanges,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        (**self).update(id, changes, at)
    }
    fn replace_secret(
        &self,
        id: Uuid,
        secret: NewSecret,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        (**self).replace_secret(id, secret, at)
    }
    fn delete(&self, id: Uuid) -> StoreFuture<'_, StoredKey> {
        (**self).delete(id)
    }
    fn delete_owner(&self, owner: &str) -> StoreFuture<'_, Vec<StoredKey>> {
        (**self).delete_owner(owner)
    }
    fn record_last_used(&self, uses: Vec<(Uuid, OffsetDateTime)>) -> StoreFuture<'_, ()> {
        (**self).record_last_used(uses)
    }
    fn notify(&self, hashes: &[KeyHash]) -> StoreFuture<'_, ()> {
        (**self).notify(hashes)
    }
    fn subscribe(&self) -> Option<tokio::sync::mpsc::Receiver<Invalidation>> {
        (**self).subscribe()
    }
}

/// A change made elsewhere.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invalidation {
    /// These keys changed.
    Keys(Vec<KeyHash>),
    /// Anything may have changed (notifications were lost).
    All,
}
