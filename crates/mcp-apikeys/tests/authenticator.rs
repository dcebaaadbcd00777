//! The authenticator through `mcp-auth`'s layer, and proof that the request
//! path never writes to the database.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use mcp_apikeys::store::{KeyPage, NewSecret, StoreFuture, StoredKey};
use mcp_apikeys::{
    ApiKeyAuthenticator, ApiKeyService, ApiKeyStore, KeyChanges, KeyHash, MemoryStore, SqlStore,
};
use mcp_auth::{AuthLayer, JwtAuthenticator, TrustedIssuer, VerifyingKey};
use mcp_core::{ManualClock, Principal};
use serde_json::Value;
use time::OffsetDateTime;
use tower::{Layer, ServiceExt, service_fn};
use uuid::Uuid;

const T0: u64 = 1_800_000_000;

async fn send(layer: &AuthLayer, headers: &[(&str, &str)]) -> (u16, Value) {
    let service = layer.layer(service_fn(|req: Request<()>| async move {
        let p = req.extensions().get::<Principal>().unwrap();
        let body = serde_json::json!({
            "subject": p.subject(),
            "method": p.auth_method().as_str(),
            "keyId": p.key_id(),
            "scopes": p.scopes(),
        });
        Ok::<_, Infallible>(Response::new(Bytes::from(body.to_string())))
    }));
    let mut request = Request::new(());
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    (status, serde_json::from_slice(response.body()).unwrap())
}

fn layer_with_jwt(keys: Arc<ApiKeyService>) -> AuthLayer {
    let jwt = JwtAuthenticator::builder()
        .trust(
            TrustedIssuer::new("https://iss", "https://aud")
                .key(VerifyingKey::hmac(&[9; 32]).unwrap()),
        )
        .build()
        .unwrap();
    AuthLayer::new(jwt).or(ApiKeyAuthenticator::new(keys))
}

#[tokio::test]
async fn keys_by_header_and_by_bearer() {
    let clock = ManualClock::at_unix(T0);
    let keys = Arc::new(
        ApiKeyService::builder(Arc::new(MemoryStore::new()))
            .clock(clock.shared())
            .build(),
    );
    let (record, secret) = keys
        .create("user-1", "k", Some(vec!["mcp".into()]), Some(1))
        .await
        .unwrap();
    let layer = layer_with_jwt(keys.clone());

    let (status, body) = send(&layer, &[("x-api-key", secret.expose())]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["subject"], "user-1");
    assert_eq!(body["method"], "api_key");
    assert_eq!(body["keyId"], record.id.to_string());
    assert_eq!(body["scopes"], serde_json::json!(["mcp"]));

    let bearer = format!("Bearer {}", secret.expose());
    let (status, _) = send(&layer, &[("authorization", &bearer)]).await;
    assert_eq!(status, 200);

    // Bearer wins: a JWT beside a good key is judged as the JWT.
    let (status, body) = send(
        &layer,
        &[
            ("authorization", "Bearer a.b.c"),
            ("x-api-key", secret.expose()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token"))
    );

    // Unknown, malformed, inactive: the same answer.
    let unknown = mcp_apikeys::ApiKeySecret::generate();
    for bad in [unknown.expose(), "mcp_short", "not-a-key", ""] {
        let (status, body) = send(&layer, &[("x-api-key", bad)]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_api_key")),
            "{bad:?}"
        );
    }
    let (status, body) = send(
        &layer,
        &[
            ("x-api-key", secret.expose()),
            ("x-api-key", secret.expose()),
        ],
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    keys.update(
        record.id,
        KeyChanges {
            is_active: Some(false),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    let (status, body) = send(&layer, &[("x-api-key", secret.expose())]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    keys.update(
        record.id,
        KeyChanges {
            is_active: Some(true),
            scopes: Some(Some(vec!["agents:read".into()])),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    // A scope change reaches the cached principal at once.
    let (_, body) = send(&layer, &[("x-api-key", secret.expose())]).await;
    assert_eq!(body["scopes"], serde_json::json!(["agents:read"]));

    clock.advance(Duration::from_secs(86_400));
    let (status, body) = send(&layer, &[("x-api-key", secret.expose())]).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("api_key_expired"))
    );
}

/// Delegates to a real store and counts what reaches it.
struct Counting {
    inner: SqlStore,
    reads: AtomicUsize,
    writes: AtomicUsize,
}

impl Counting {
    fn read(&self) {
        self.reads.fetch_add(1, Ordering::SeqCst);
    }
    fn write(&self) {
        self.writes.fetch_add(1, Ordering::SeqCst);
    }
}

impl ApiKeyStore for Counting {
    fn insert(&self, key: StoredKey) -> StoreFuture<'_, ()> {
        self.write();
        self.inner.insert(key)
    }
    fn get(&self, id: Uuid) -> StoreFuture<'_, Option<StoredKey>> {
        self.read();
        self.inner.get(id)
    }
    fn find_by_hash(&self, hash: KeyHash) -> StoreFuture<'_, Option<StoredKey>> {
        self.read();
        self.inner.find_by_hash(hash)
    }
    fn list(&self, owner: &str, limit: u32, cursor: Option<Uuid>) -> StoreFuture<'_, KeyPage> {
        self.read();
        self.inner.list(owner, limit, cursor)
    }
    fn update(&self, id: Uuid, c: KeyChanges, at: OffsetDateTime) -> StoreFuture<'_, StoredKey> {
        self.write();
        self.inner.update(id, c, at)
    }
    fn replace_secret(
        &self,
        id: Uuid,
        s: NewSecret,
        at: OffsetDateTime,
    ) -> StoreFuture<'_, StoredKey> {
        self.write();
        self.inner.replace_secret(id, s, at)
    }
    fn delete(&self, id: Uuid) -> StoreFuture<'_, StoredKey> {
        self.write();
        self.inner.delete(id)
    }
    fn delete_owner(&self, owner: &str) -> StoreFuture<'_, Vec<StoredKey>> {
        self.write();
        self.inner.delete_owner(owner)
    }
    fn record_last_used(&self, uses: Vec<(Uuid, OffsetDateTime)>) -> StoreFuture<'_, ()> {
        self.write();
        self.inner.record_last_used(uses)
    }
}

/// 1,000 authenticated requests against a real SQLite database: one read
/// (the first, then the cache), no write; `lastUsed` lands in one batched
/// write at the flush.
#[tokio::test]
async fn the_request_path_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .connect_with(
            sqlx::sqlite::SqliteConnectOptions::new()
                .filename(dir.path().join("k.db"))
                .create_if_missing(true),
        )
        .await
        .unwrap();
    let sql = SqlStore::sqlite(pool.clone());
    sql.migrate().await.unwrap();
    let store = Arc::new(Counting {
        inner: sql,
        reads: AtomicUsize::new(0),
        writes: AtomicUsize::new(0),
    });
    let keys = Arc::new(ApiKeyService::builder(store.clone()).build());
    let (record, secret) = keys.create("u", "k", None, None).await.unwrap();
    let layer = AuthLayer::new(ApiKeyAuthenticator::new(keys.clone()));
    let (reads, writes) = (
        store.reads.load(Ordering::SeqCst),
        store.writes.load(Ordering::SeqCst),
    );

    for _ in 0..1_000 {
        assert_eq!(send(&layer, &[("x-api-key", secret.expose())]).await.0, 200);
    }
    assert_eq!(
        store.writes.load(Ordering::SeqCst) - writes,
        0,
        "no write per request"
    );
    assert_eq!(
        store.reads.load(Ordering::SeqCst) - reads,
        1,
        "one read, then the cache"
    );

    assert_eq!(keys.flush_last_used().await.unwrap(), 1);
    assert_eq!(
        store.writes.load(Ordering::SeqCst) - writes,
        1,
        "one batched write"
    );
    let last_used: Option<String> =
        sqlx::query_scalar("SELECT last_used FROM api_keys WHERE id = $1")
            .bind(record.id)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert!(last_used.is_some());
}

/// Counts the principals it makes.
#[derive(Default)]
struct CountingOwners {
    made: AtomicUsize,
}

impl mcp_apikeys::OwnerLookup for CountingOwners {
    fn principal<'a>(
        &'a self,
        key: &'a mcp_apikeys::ApiKeyRecord,
    ) -> mcp_auth::BoxFuture<'a, Result<Option<Principal>, mcp_auth::AuthError>> {
        self.made.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { Ok(Some(key.principal(Some("admin")))) })
    }
}

fn parts(headers: &[(&str, &str)]) -> http::request::Parts {
    let mut request = Request::new(());
    for (name, value) in headers {
        request.headers_mut().append(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            http::HeaderValue::from_str(value).unwrap(),
        );
    }
    request.into_parts().0
}

/// A principal made at t is reused while its age is under the TTL: at
/// t + 10 s - 1 µs it is, at exactly t + 10 s a new one is made.
#[tokio::test]
async fn a_principal_is_reused_for_less_than_its_ttl() {
    use mcp_auth::Authenticator;
    let clock = ManualClock::at_unix(T0);
    let keys = Arc::new(
        ApiKeyService::builder(Arc::new(MemoryStore::new()))
            .clock(clock.shared())
            .build(),
    );
    let (_, secret) = keys.create("user-1", "k", None, None).await.unwrap();
    let owners = Arc::new(CountingOwners::default());
    let auth = ApiKeyAuthenticator::new(keys)
        .owners(owners.clone())
        .ttl(Duration::from_secs(10));
    let request = parts(&[("x-api-key", secret.expose())]);
    let made = || owners.made.load(Ordering::SeqCst);

    let first = auth.authenticate(&request).await.unwrap().unwrap();
    assert_eq!(first.roles().iter().collect::<Vec<_>>(), ["admin"]);
    assert_eq!(made(), 1);
    clock.advance(Duration::from_secs(10) - Duration::from_micros(1));
    auth.authenticate(&request).await.unwrap().unwrap();
    assert_eq!(made(), 1, "reused just under the TTL");
    clock.advance(Duration::from_micros(1));
    auth.authenticate(&request).await.unwrap().unwrap();
    assert_eq!(made(), 2, "made again at exactly the TTL");
    // The new one is dated from now: reused again for the next 10 s.
    clock.advance(Duration::from_secs(9));
    auth.authenticate(&request).await.unwrap().unwrap();
    assert_eq!(made(), 2);
}

/// The principal of a key: the owner as subject, the key's id and scopes,
/// its expiry; `KeyOnly` gives no roles. A key without scopes is
/// unrestricted (no scope set).
#[tokio::test]
async fn the_principal_carries_the_keys_owner_scopes_and_expiry() {
    use mcp_auth::Authenticator;
    let clock = ManualClock::at_unix(T0);
    let keys = Arc::new(
        ApiKeyService::builder(Arc::new(MemoryStore::new()))
            .clock(clock.shared())
            .build(),
    );
    let (scoped, scoped_secret) = keys
        .create("owner-7", "s", Some(vec!["a".into(), "b".into()]), Some(2))
        .await
        .unwrap();
    let (_, open_secret) = keys.create("owner-8", "o", None, None).await.unwrap();
    let auth = ApiKeyAuthenticator::new(keys.clone());

    let p = auth
        .authenticate(&parts(&[("x-api-key", scoped_secret.expose())]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.subject(), "owner-7");
    assert_eq!(p.auth_method(), &mcp_core::AuthMethod::ApiKey);
    assert_eq!(p.key_id(), Some(scoped.id.to_string().as_str()));
    assert!(p.roles().is_empty());
    assert_eq!(
        p.scopes().map(|s| s.iter().cloned().collect::<Vec<_>>()),
        Some(vec!["a".to_owned(), "b".to_owned()])
    );
    assert_eq!(
        p.expires_at(),
        Some(std::time::UNIX_EPOCH + Duration::from_secs(T0 + 2 * 86_400))
    );

    let p = auth
        .authenticate(&parts(&[("x-api-key", open_secret.expose())]))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(p.subject(), "owner-8");
    assert_eq!(p.scopes(), None);
    assert_eq!(p.expires_at(), None);

    // No key at all, or a bearer token that is not a key: not ours.
    assert!(auth.authenticate(&parts(&[])).await.unwrap().is_none());
    assert!(
        auth.authenticate(&parts(&[("authorization", "Bearer a.b.c")]))
            .await
            .unwrap()
            .is_none()
    );
    // Surrounding spaces in the header are ignored.
    let spaced = format!("  {}  ", open_secret.expose());
    assert!(
        auth.authenticate(&parts(&[("x-api-key", &spaced)]))
            .await
            .unwrap()
            .is_some()
    );
}
