//! One conformance suite, run against every store: memory, SQLite and
//! PostgreSQL (the last two over real connections, each test in its own
//! database file or schema). The PostgreSQL cases are ignored unless the
//! run promises it (`CI=true` or `MCP_TEST_SERVICES`), and fail when it was
//! promised and is missing.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcp_oauth::{
    Client, CodeChallenge, CodeRecord, Grant, MemoryStore, OAuthStore, RefreshRecord, Secret,
    SqlStore, Taken,
};
use uuid::Uuid;

struct Fixture {
    store: Arc<dyn OAuthStore>,
    _dir: Option<tempfile::TempDir>,
    _schema: Option<mcp_testkit::PgSchema>,
}

async fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        _dir: None,
        _schema: None,
    }
}

async fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.path().join("oauth.db"))
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
    store.migrate().await.unwrap(); // idempotent
    Fixture {
        store: Arc::new(store),
        _dir: Some(dir),
        _schema: None,
    }
}

async fn postgres() -> Fixture {
    let schema = mcp_testkit::PgSchema::create("oa").await;
    let options: sqlx::postgres::PgConnectOptions = mcp_testkit::postgres_url().parse().unwrap();
    let options = options.options([("search_path", schema.name())]);
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect_with(options)
        .await
        .unwrap();
    let store = SqlStore::postgres(pool);
    store.migrate().await.unwrap();
    store.migrate().await.unwrap();
    Fixture {
        store: Arc::new(store),
        _dir: None,
        _schema: Some(schema),
    }
}

macro_rules! every_store {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn memory() {
                super::$name(super::memory().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name(super::sqlite().await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(test_postgres),
                ignore = "needs PostgreSQL: MCP_TEST_SERVICES=postgres (CI=true implies it)"
            )]
            async fn postgres() {
                super::$name(super::postgres().await).await;
            }
        }
    };
}

/// Whole seconds: what every store keeps exactly (they keep microseconds).
fn at(seconds: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(seconds)
}

const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

async fn clients_round_trip(f: Fixture) {
    let secret = Secret::generate();
    let client = Client {
        id: "https://client.example/metadata.json".into(),
        secret_hash: Some(secret.hash()),
        name: Some("Ünïcode client".into()),
        redirect_uris: vec!["http://127.0.0.1/cb".into(), "https://a.example/cb".into()],
        created_at: at(1_800_000_000),
    };
    f.store.put_client(client.clone()).await.unwrap();
    assert_eq!(
        f.store.client(&client.id).await.unwrap(),
        Some(client.clone())
    );
    assert_eq!(f.store.client("other").await.unwrap(), None);
    // A refreshed metadata document replaces what was kept.
    let renamed = Client {
        name: Some("Renamed".into()),
        secret_hash: None,
        ..client.clone()
    };
    f.store.put_client(renamed.clone()).await.unwrap();
    assert_eq!(f.store.client(&client.id).await.unwrap(), Some(renamed));
}
every_store!(clients_round_trip);

async fn codes_are_taken_once(f: Fixture) {
    let code = Secret::generate();
    let record = CodeRecord {
        client_id: "c".into(),
        subject: "user-1".into(),
        redirect_uri: "http://127.0.0.1:5000/cb".into(),
        challenge: CodeChallenge::parse(Some(CHALLENGE), Some("S256")).unwrap(),
        scopes: vec!["mcp".into(), "agents:read".into()],
        resource: "https://mcp.example/mcp".into(),
        grant_id: Uuid::now_v7(),
        expires_at: at(1_800_000_060),
    };
    f.store.put_code(code.hash(), record.clone()).await.unwrap();
    assert_eq!(
        f.store.take_code(code.hash()).await.unwrap(),
        Taken::Fresh(record.clone())
    );
    assert_eq!(
        f.store.take_code(code.hash()).await.unwrap(),
        Taken::Reused(record.clone())
    );
    assert_eq!(
        f.store.take_code(code.hash()).await.unwrap(),
        Taken::Reused(record)
    );
    assert_eq!(
        f.store.take_code(Secret::generate().hash()).await.unwrap(),
        Taken::Unknown
    );
}
every_store!(codes_are_taken_once);

/// However many takes race, exactly one is first.
async fn concurrent_takes_have_one_winner(f: Fixture) {
    let token = Secret::generate();
    let record = RefreshRecord {
        grant_id: Uuid::now_v7(),
        expires_at: at(1_900_000_000),
    };
    f.store
        .put_refresh(token.hash(), record.clone())
        .await
        .unwrap();
    let hash = token.hash();
    let barrier = Arc::new(tokio::sync::Barrier::new(8));
    let takes: Vec<_> = (0..8)
        .map(|_| {
            let store = f.store.clone();
            let barrier = barrier.clone();
            tokio::spawn(async move {
                barrier.wait().await;
                store.take_refresh(hash).await.unwrap()
            })
        })
        .collect();
    let mut fresh = 0;
    for take in takes {
        match take.await.unwrap() {
            Taken::Fresh(r) => {
                assert_eq!(r, record);
                fresh += 1;
            }
            Taken::Reused(r) => assert_eq!(r, record),
            Taken::Unknown => panic!("the token was stored"),
        }
    }
    assert_eq!(fresh, 1);
    assert_eq!(f.store.refresh(hash).await.unwrap(), Some(record));
    assert_eq!(
        f.store.refresh(Secret::generate().hash()).await.unwrap(),
        None
    );
}
every_store!(concurrent_takes_have_one_winner);

async fn grants_list_by_user_and_revoke_once(f: Fixture) {
    let grant = |subject: &str, created: u64| Grant {
        id: Uuid::now_v7(),
        client_id: "c".into(),
        client_name: Some("Client".into()),
        subject: subject.into(),
        scopes: vec!["mcp".into()],
        resource: "https://mcp.example/mcp".into(),
        created_at: at(created),
        revoked_at: None,
    };
    let (a1, b1, a2) = (grant("a", 10), grant("b", 20), grant("a", 30));
    for g in [&a2, &b1, &a1] {
        f.store.put_grant(g.clone()).await.unwrap();
    }
    assert_eq!(
        f.store.grants(Some("a")).await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(
        f.store.grants(None).await.unwrap(),
        vec![a1.clone(), b1.clone(), a2.clone()]
    );
    assert_eq!(f.store.grants(Some("nobody")).await.unwrap(), vec![]);
    assert!(f.store.revoke_grant(a1.id, at(40)).await.unwrap());
    assert!(!f.store.revoke_grant(a1.id, at(50)).await.unwrap(), "once");
    assert!(!f.store.revoke_grant(Uuid::now_v7(), at(50)).await.unwrap());
    let revoked = f.store.grant(a1.id).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_at, Some(at(40)));
    assert_eq!(f.store.grant(b1.id).await.unwrap(), Some(b1));
}
every_store!(grants_list_by_user_and_revoke_once);
