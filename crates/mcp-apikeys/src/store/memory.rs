use std::collections::BTreeMap;
use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::Uuid;

use super::{ApiKeyStore, KeyChanges, KeyPage, NewSecret, StoreError, StoreFuture, StoredKey};
use crate::key::KeyHash;

/// Keys in memory: for tests and for embedding in a process that keeps no
/// state. Gone when the process ends.
#[derive(Debug, Default)]
pub struct MemoryStore {
    keys: Mutex<BTreeMap<Uuid, StoredKey>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn with<T>(&self, f: impl FnOnce(&mut BTreeMap<Uuid, StoredKey>) -> T) -> T {
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut keys)
    }
}

fn ready<'a, T: Send + 'a>(value: Result<T, StoreError>) -> StoreFuture<'a, T> {
    Box::pin(std::future::ready(value))
}

impl ApiKeyStore for MemoryStore {
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()> {
        ready(self.with(|keys| {
            let taken = keys
                .values()
                .any(|k| k.record.owner == key.record.owner && k.record.name == key.record.name);
            if taken {
                return Err(StoreError::Conflict);
            }
            keys.insert(key.record.id, key);
            Ok(())
        }))
    }

    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>> {
        ready(Ok(self.with(|keys| keys.get(&id).cloned())))
    }

    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>> {
        ready(Ok(self.with(|keys| {
            keys.values()
                .find(|k| k.hash == hash || k.previous_hash == Some(hash))
                .cloned()
        })))
    }

    fn list(&self, owner: &str, limit: u32, cursor: Option<Uuid>) -> StoreFuture<'_, KeyPage> {
        let owner = owner.to_owned();
        ready(Ok(self.with(|keys| {
            let rows: Vec<_> = keys
                .values()
                .filter(|k| k.record.owner == owner && cursor.is_none_or(|c| k.record.id > c))
                .take(limit as usize + 1)
                .map(|k| k.record.clone())
                .collect();
            KeyPage::from_overfetch(rows, limit as usize, |k| k.id)
        })))
    }

    fn update(
        &self,
        id: Uuid,
        changes: KeyChanges,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        ready(self.with(|keys| {
            if let Some(name) = &changes.name {
                let owner = keys.get(&id).map(|k| k.record.owner.clone());
                let taken = keys.values().any(|k| {
                    k.record.id != id
                        && Some(&k.record.owner) == owner.as_ref()
                        && &k.record.name == name
                });
                if taken {
                    return Err(StoreError::Conflict);
                }
            }
            let key = keys.get_mut(&id).ok_or(StoreError::NotFound)?;
            let record = &mut key.record;
            if let Some(name) = changes.name {
                record.name = name;
            }
            if let Some(scopes) = changes.scopes {
                record.scopes = scopes;
            }
            if let Some(active) = changes.is_active {
                record.is_active = active;
            }
            if let Some(expires_at) = changes.expires_at {
                record.expires_at = expires_at;
            }
            record.updated_at = at;
            Ok(key.clone())
        }))
    }

    fn replace_secret(
        &self,
        id: Uuid,
        secret: NewSecret,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        ready(self.with(|keys| {
            let key = keys.get_mut(&id).ok_or(StoreError::NotFound)?;
            key.previous_hash = secret.previous_valid_until.map(|_| key.hash);
            key.previous_valid_until = secret.previous_valid_until;
            key.hash = secret.hash;
            key.record.prefix = secret.prefix;
            key.record.updated_at = at;
            Ok(key.clone())
        }))
    }

    fn delete(&self, id: Uuid) -> StoreFuture<'_, StoredKey> {
        ready(self.with(|keys| keys.remove(&id).ok_or(StoreError::NotFound)))
    }

    fn delete_owner(&self, owner: &str) -> StoreFuture<'_, Vec<StoredKey>> {
        let owner = owner.to_owned();
        ready(Ok(self.with(|keys| {
            let ids: Vec<Uuid> = keys
                .values()
                .filter(|k| k.record.owner == owner)
                .map(|k| k.record.id)
                .collect();
            ids.iter().filter_map(|id| keys.remove(id)).collect()
        })))
    }

    fn record_last_used(&self, uses: Vec<(Uuid, OffsetDateTime)>) -> StoreFuture<'_, ()> {
        self.with(|keys| {
            for (id, at) in uses {
                // Forward only, as the SQL stores do: a late batch with an
                // older time must not wind it back.
                if let Some(key) = keys.get_mut(&id)
                    && key.record.last_used.is_none_or(|seen| seen < at)
                {
                    key.record.last_used = Some(at);
                }
            }
        });
        ready(Ok(()))
    }
}
