//! API keys for MCP servers.
//!
//! - **Format**: `mcp_` + 43 base62 characters (32 random bytes) + a
//!   6-character base62 CRC32 of those 43 (GitHub's scheme), so a scanner
//!   can find leaked keys and a mistyped or made-up key is refused without a
//!   lookup: [`ApiKeySecret`].
//! - **At rest**: only a hash (HMAC-SHA-256 under a pepper, or SHA-256) and a
//!   display prefix: [`KeyHasher`]. The secret exists in memory only until
//!   it is returned once, and is wiped when dropped.
//! - **Storage**: the [`ApiKeyStore`] trait; [`MemoryStore`], and
//!   `SqlStore` for PostgreSQL (feature `postgres`) and SQLite (feature
//!   `sqlite`) with migrations shipped in the crate. No database driver is
//!   on by default: enable the one you use.
//! - **Lifecycle**: [`ApiKeyService`] creates, lists, updates, regenerates
//!   (with an optional grace period of at most 7 days), deletes and
//!   validates keys, with a cache in front of the store and `lastUsed`
//!   written in batches, never on the request path.
//! - **Authentication**: [`ApiKeyAuthenticator`] plugs into `mcp-auth`'s
//!   chain.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use mcp_apikeys::{ApiKeyAuthenticator, ApiKeyService, MemoryStore};
//! use mcp_auth::AuthLayer;
//!
//! let keys = Arc::new(ApiKeyService::builder(MemoryStore::new()).build());
//! let (_record, secret) = keys.create("user-1", "laptop", None, None).await.unwrap();
//! let layer = AuthLayer::new(ApiKeyAuthenticator::new(keys.clone()));
//! # let _ = (layer, secret);
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod key;
mod service;
pub mod store;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub use authenticator::{API_KEY_HEADER, ApiKeyAuthenticator, KeyOnly, OwnerLookup};
pub use key::{ApiKeySecret, DISPLAY_PREFIX_LEN, KEY_LEN, KEY_PREFIX, KeyHash, KeyHasher};
pub use service::{ApiKeyError, ApiKeyService, ApiKeyServiceBuilder, CacheStats, MAX_GRACE_PERIOD};
pub use store::{
    ApiKeyRecord, ApiKeyStore, Invalidation, KeyChanges, KeyPage, MemoryStore, NewSecret,
    StoreError, StoredKey,
};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "postgres", feature = "sqlite"))))]
pub use store::{SqlPool, SqlStore};
