//! The [`Authenticator`] for `X-API-Key` (and bearer tokens that are keys).

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use mcp_auth::{AuthError, Authenticator, BoxFuture, bearer_token};
use mcp_core::{AuthMethod, Principal};

use crate::key::KEY_PREFIX;
use crate::service::{ApiKeyError, ApiKeyService};
use crate::store::ApiKeyRecord;

/// The header API keys come in.
pub const API_KEY_HEADER: http::HeaderName = http::HeaderName::from_static("x-api-key");

/// Who a key acts for: turns a valid key into a [`Principal`].
///
/// The default, [`KeyOnly`], knows nothing of owners: the principal is the
/// owner id with the key's scopes and no roles. A server with users looks
/// the owner up (its role, whether it still exists) and answers `None` when
/// the owner is gone.
pub trait OwnerLookup: Send + Sync + 'static {
    /// The principal `key` acts as, or `None` to refuse the key.
    fn principal<'a>(
        &'a self,
        key: &'a ApiKeyRecord,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>>;
}

/// The principal of a key without owner roles.
#[derive(Clone, Copy, Debug, Default)]
pub struct KeyOnly;

impl OwnerLookup for KeyOnly {
    fn principal<'a>(
        &'a self,
        key: &'a ApiKeyRecord,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move { Ok(Some(key.principal(None))) })
    }
}

impl ApiKeyRecord {
    /// The principal this key acts as: its owner, with the key's id,
    /// scopes and expiry, and the owner's `role` when known.
    ///
    /// (The opposite direction of `mcp-ratelimit`'s keying: this makes a
    /// principal from a key; [`Principal::identity`] makes a key from a
    /// principal.)
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use mcp_apikeys::{ApiKeyService, MemoryStore};
    ///
    /// let keys = ApiKeyService::builder(MemoryStore::new()).build();
    /// let (record, _secret) = keys.create("user-1", "laptop", None, None).await.unwrap();
    /// let principal = record.principal(Some("admin"));
    /// assert_eq!(principal.subject(), "user-1");
    /// assert!(principal.has_role("admin"));
    /// assert_eq!(principal.identity(), format!("key:{}", record.id));
    /// # }
    /// ```
    pub fn principal(&self, role: Option<&str>) -> Principal {
        let builder = Principal::builder(&self.owner, AuthMethod::ApiKey)
            .key_id(self.id.to_string())
            .roles(role)
            .scope_set(self.scopes.as_ref().map(|s| s.iter().cloned().collect()));
        match self.expires_at {
            Some(at) => builder.expires_at(at.into()),
            None => builder,
        }
        .build()
    }
}

impl<O: OwnerLookup + ?Sized> OwnerLookup for Arc<O> {
    fn principal<'a>(
        &'a self,
        key: &'a ApiKeyRecord,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        (**self).principal(key)
    }
}

/// Authenticates requests by API key.
///
/// Reads `X-API-Key`, or `Authorization: Bearer mcp_...`. A bearer token
/// without the key prefix is someone else's (a JWT), and it wins over an
/// `X-API-Key` sent beside it. Unknown, malformed, inactive and deleted keys
/// all answer `invalid_api_key`; an expired key `api_key_expired`.
///
/// The principal of each key is remembered for a short time (10 s) so a hit
/// costs no owner lookup; a change to the key itself (scopes, activity,
/// expiry, secret) takes effect at once, an owner's role change at once in
/// the process that calls [`ApiKeyService::invalidate_owner`] for it and
/// within that time elsewhere.
pub struct ApiKeyAuthenticator {
    service: Arc<ApiKeyService>,
    owners: Arc<dyn OwnerLookup>,
    /// How long a principal made by `owners` is reused.
    ttl: Duration,
}

impl std::fmt::Debug for ApiKeyAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuthenticator")
            .field("service", &self.service)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl ApiKeyAuthenticator {
    /// Keys checked by `service` (an [`ApiKeyService`] or an `Arc` of one),
    /// principals made by [`KeyOnly`] and remembered for 10 s.
    ///
    /// ```
    /// use std::time::Duration;
    /// use mcp_apikeys::{ApiKeyAuthenticator, ApiKeyService, KeyOnly, MemoryStore};
    ///
    /// let keys = ApiKeyService::builder(MemoryStore::new()).build();
    /// let auth = ApiKeyAuthenticator::new(keys)
    ///     .owners(KeyOnly) // or your OwnerLookup: roles, deleted owners
    ///     .ttl(Duration::from_secs(30));
    /// # let _ = auth;
    /// ```
    pub fn new(service: impl Into<Arc<ApiKeyService>>) -> Self {
        ApiKeyAuthenticator {
            service: service.into(),
            owners: Arc::new(KeyOnly),
            ttl: Duration::from_secs(10),
        }
    }

    /// Makes principals with `owners` (any [`OwnerLookup`], or an `Arc` of
    /// one to keep a handle on it).
    #[must_use]
    pub fn owners(mut self, owners: impl OwnerLookup) -> Self {
        self.owners = Arc::new(owners);
        self
    }

    /// How long a principal made by the owner lookup is reused (10 s): the
    /// bound on an owner's role change reaching its keys in other processes.
    #[must_use]
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }
}

/// The key in `parts`, if any: a prefixed bearer token first, then
/// `X-API-Key`; a non-key bearer token means the request is not ours.
fn presented(parts: &Parts) -> Result<Option<&str>, AuthError> {
    if let Some(token) = bearer_token(parts)? {
        return Ok(token.starts_with(KEY_PREFIX).then_some(token));
    }
    let mut values = parts.headers.get_all(&API_KEY_HEADER).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::InvalidApiKey);
    }
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| AuthError::InvalidApiKey)
}

impl Authenticator for ApiKeyAuthenticator {
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            let Some(key) = presented(parts)? else {
                return Ok(None);
            };
            let (entry, now) = match self.service.validate_cached(key).await {
                Ok(found) => found,
                Err(ApiKeyError::NotFound | ApiKeyError::Inactive) => {
                    return Err(AuthError::InvalidApiKey);
                }
                Err(ApiKeyError::Expired) => return Err(AuthError::ApiKeyExpired),
                Err(error) => {
                    tracing::warn!(%error, "cannot validate an API key");
                    return Err(AuthError::Unavailable(
                        "the key store is unreachable".into(),
                    ));
                }
            };
            {
                let slot = entry.principal.read().unwrap_or_else(|p| p.into_inner());
                if let Some((made, principal)) = slot.as_ref()
                    && now.duration_since(*made).is_ok_and(|age| age < self.ttl)
                {
                    return Ok(Some(principal.clone()));
                }
            }
            match self.owners.principal(&entry.stored.record).await? {
                Some(principal) => {
                    *entry.principal.write().unwrap_or_else(|p| p.into_inner()) =
                        Some((now, principal.clone()));
                    Ok(Some(principal))
                }
                None => Err(AuthError::InvalidApiKey),
            }
        })
    }
}
