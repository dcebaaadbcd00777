//! What the authorization server keeps: clients, authorization codes,
//! grants (a user's consent to a client, with its refresh-token family)
//! and refresh tokens. Secrets only ever as [`SecretHash`]es.

mod memory;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
mod sql;

use std::future::Future;
use std::pin::Pin;
use std::time::SystemTime;

use serde::Serialize;
use uuid::Uuid;

pub use memory::MemoryStore;
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use sql::SqlStore;

use crate::error::StoreError;
use crate::pkce::CodeChallenge;
use crate::secret::SecretHash;

/// A boxed future, as stores return.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A registered client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Client {
    /// `client_id`: made at registration, or the URL of a Client ID
    /// Metadata Document.
    pub id: String,
    /// The hash of its secret: `Some` for a confidential client.
    pub secret_hash: Option<SecretHash>,
    /// `client_name`, shown on the consent page.
    pub name: Option<String>,
    /// Where codes may be sent.
    pub redirect_uris: Vec<String>,
    /// When it was registered.
    pub created_at: SystemTime,
}

/// An issued authorization code, until it is exchanged (and after, to
/// recognise a replay).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeRecord {
    /// The client it was issued to.
    pub client_id: String,
    /// The user who consented.
    pub subject: String,
    /// The redirect URI of the request, which the token request repeats.
    pub redirect_uri: String,
    /// The request's PKCE challenge.
    pub challenge: CodeChallenge,
    /// What the user granted.
    pub scopes: Vec<String>,
    /// The resource the tokens are for.
    pub resource: String,
    /// The grant the exchange creates: a replayed code revokes it.
    pub grant_id: Uuid,
    /// After this the code is refused.
    pub expires_at: SystemTime,
}

/// A user's consent to a client: the refresh-token family hangs off it,
/// and revoking it revokes every token of the family.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Stable id (`DELETE /api/oauth/grants/{id}`).
    pub id: Uuid,
    /// The client.
    pub client_id: String,
    /// Its name when it was granted, if it gave one.
    pub client_name: Option<String>,
    /// The user.
    #[serde(rename = "userId")]
    pub subject: String,
    /// What was granted.
    pub scopes: Vec<String>,
    /// The resource.
    pub resource: String,
    /// When.
    #[serde(with = "unix_seconds")]
    pub created_at: SystemTime,
    /// When it was revoked (then every refresh token of it is refused).
    #[serde(with = "unix_seconds::option")]
    pub revoked_at: Option<SystemTime>,
}

/// A refresh token of a grant's family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Its family.
    pub grant_id: Uuid,
    /// After this it is refused.
    pub expires_at: SystemTime,
}

/// What taking a one-use secret (a code, a refresh token) found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Taken<T> {
    /// First use: it is now used.
    Fresh(T),
    /// It had been used before: a replay.
    Reused(T),
    /// Never issued (or purged).
    Unknown,
}

/// Where the authorization server keeps its state. Each method is one
/// atomic step: in particular [`take_code`](Self::take_code) and
/// [`take_refresh`](Self::take_refresh) must mark the secret used and
/// report whether it already was in one step, so two concurrent uses
/// cannot both be `Fresh`.
pub trait OAuthStore: Send + Sync + 'static {
    /// Adds a client (a new id) or replaces it (a refreshed metadata
    /// document).
    fn put_client(&self, client: Client) -> StoreFuture<'_, ()>;

    /// The client with `id`.
    fn client<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<Client>>;

    /// Stores an issued code.
    fn put_code(&self, hash: SecretHash, code: CodeRecord) -> StoreFuture<'_, ()>;

    /// Marks the code used, saying whether it was already.
    fn take_code(&self, hash: SecretHash) -> StoreFuture<'_, Taken<CodeRecord>>;

    /// Adds a grant.
    fn put_grant(&self, grant: Grant) -> StoreFuture<'_, ()>;

    /// The grant with `id`.
    fn grant(&self, id: Uuid) -> StoreFuture<'_, Option<Grant>>;

    /// The grants of `subject`, or every grant (`None`), oldest first.
    fn grants<'a>(&'a self, subject: Option<&'a str>) -> StoreFuture<'a, Vec<Grant>>;

    /// Revokes a grant at `at`; whether it was live until now.
    fn revoke_grant(&self, id: Uuid, at: SystemTime) -> StoreFuture<'_, bool>;

    /// Stores an issued refresh token.
    fn put_refresh(&self, hash: SecretHash, token: RefreshRecord) -> StoreFuture<'_, ()>;

    /// Marks the refresh token used, saying whether it was already.
    fn take_refresh(&self, hash: SecretHash) -> StoreFuture<'_, Taken<RefreshRecord>>;

    /// The refresh token's record without using it (for revocation).
    fn refresh(&self, hash: SecretHash) -> StoreFuture<'_, Option<RefreshRecord>>;
}

/// `SystemTime` as seconds since the epoch in the grants' JSON.
mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    use serde::Serializer;

    pub(super) fn serialize<S: Serializer>(at: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
    }

    pub(super) mod option {
        use std::time::SystemTime;

        use serde::Serializer;

        pub(crate) fn serialize<S: Serializer>(
            at: &Option<SystemTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match at {
                Some(at) => super::serialize(at, s),
                None => s.serialize_none(),
            }
        }
    }
}
