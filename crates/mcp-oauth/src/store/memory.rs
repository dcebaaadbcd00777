//! [`MemoryStore`]: the store for tests and single-process servers that
//! may forget their grants on restart.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use uuid::Uuid;

use super::{Client, CodeRecord, Grant, OAuthStore, RefreshRecord, StoreFuture, Taken};
use crate::secret::SecretHash;

/// Everything in a mutex-guarded map; cloning shares it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_oauth::{MemoryStore, OAuthStore};
///
/// let store = MemoryStore::new();
/// assert!(store.client("unknown").await.unwrap().is_none());
/// # }
/// ```
#[derive(Clone, Debug, Default)]
pub struct MemoryStore(Arc<Mutex<State>>);

#[derive(Debug, Default)]
struct State {
    clients: HashMap<String, Client>,
    /// Codes and whether each was used.
    codes: HashMap<SecretHash, (CodeRecord, bool)>,
    grants: HashMap<Uuid, Grant>,
    refresh: HashMap<SecretHash, (RefreshRecord, bool)>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

fn take<T: Clone>(slot: Option<&mut (T, bool)>) -> Taken<T> {
    match slot {
        None => Taken::Unknown,
        Some((record, used)) if *used => Taken::Reused(record.clone()),
        Some((record, used)) => {
            *used = true;
            Taken::Fresh(record.clone())
        }
    }
}

impl OAuthStore for MemoryStore {
    fn put_client(&self, client: Client) -> StoreFuture<'_, ()> {
        self.state().clients.insert(client.id.clone(), client);
        Box::pin(async { Ok(()) })
    }

    fn client<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Client>> {
        let found = self.state().clients.get(id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn put_code(&self, hash: SecretHash, code: CodeRecord) -> StoreFuture<'_, ()> {
        self.state().codes.insert(hash, (code, false));
        Box::pin(async { Ok(()) })
    }

    fn take_code(&self, hash: SecretHash) -> StoreFuture<'_, Taken<CodeRecord>> {
        let taken = take(self.state().codes.get_mut(&hash));
        Box::pin(async move { Ok(taken) })
    }

    fn put_grant(&self, grant: Grant) -> StoreFuture<'_, ()> {
        self.state().grants.insert(grant.id, grant);
        Box::pin(async { Ok(()) })
    }

    fn grant(&self, id: Uuid) -> StoreFuture<'_, Option<Grant>> {
        let found = self.state().grants.get(&id).cloned();
        Box::pin(async move { Ok(found) })
    }

    fn grants<'a>(&'a self, subject: Option<&'a str>) -> StoreFuture<'a, Vec<Grant>> {
        let mut found: Vec<Grant> = self
            .state()
            .grants
            .values()
            .filter(|g| subject.is_none_or(|s| g.subject == s))
            .cloned()
            .collect();
        found.sort_by_key(|g| (g.created_at, g.id));
        Box::pin(async move { Ok(found) })
    }

    fn revoke_grant(&self, id: Uuid, at: SystemTime) -> StoreFuture<'_, bool> {
        let revoked = match self.state().grants.get_mut(&id) {
            Some(grant) if grant.revoked_at.is_none() => {
                grant.revoked_at = Some(at);
                true
            }
            _ => false,
        };
        Box::pin(async move { Ok(revoked) })
    }

    fn put_refresh(&self, hash: SecretHash, token: RefreshRecord) -> StoreFuture<'_, ()> {
        self.state().refresh.insert(hash, (token, false));
        Box::pin(async { Ok(()) })
    }

    fn take_refresh(&self, hash: SecretHash) -> StoreFuture<'_, Taken<RefreshRecord>> {
        let taken = take(self.state().refresh.get_mut(&hash));
        Box::pin(async move { Ok(taken) })
    }

    fn refresh(&self, hash: SecretHash) -> StoreFuture<'_, Option<RefreshRecord>> {
        let found = self.state().refresh.get(&hash).map(|(r, _)| r.clone());
        Box::pin(async move { Ok(found) })
    }
}
