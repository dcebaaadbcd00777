//! The Redis backend against real Redis servers: the shared one at
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and, for outages, one
//! this test starts and kills itself. Each test uses its own key prefix.
//! Without Redis the tests fail under `CI=true` and are skipped, loudly,
//! elsewhere.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use mcp_ratelimit::{
    FailurePolicy, InMemoryBackend, Policy, Quota, RateKey, RateLimitBackend, RateLimitLayer,
    RateLimiter, RedisBackend,
};
use tower::{Layer, ServiceExt, service_fn};

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn prefix() -> String {
    format!("test:{}", uuid_like())
}

fn uuid_like() -> String {
    use std::collections::hash_map::RandomState;
    use std::hash::{BuildHasher, Hasher};
    let mut h = RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

fn unavailable(test: &str, error: &dyn std::fmt::Display) {
    if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
        panic!("Redis is required under CI=true but unreachable: {error}");
    }
    eprintln!(
        "\n==================== SKIPPED ====================\n\
         {test}: Redis unreachable ({error}).\n\
         =================================================\n"
    );
}

async fn shared_redis(test: &str) -> Option<RedisBackend> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        RedisBackend::connect(&redis_url(), &prefix()),
    )
    .await
    {
        Ok(Ok(backend)) => {
            // The connection manager connects lazily; prove Redis answers.
            let policy = Policy::new("probe", Quota::per(1, Duration::from_secs(1)).unwrap());
            match backend
                .check(&policy, &RateKey::text("probe"), 1)
                .decision()
                .await
            {
                Ok(_) => Some(backend),
                Err(e) => {
                    unavailable(test, &e);
                    None
                }
            }
        }
        Ok(Err(e)) => {
            unavailable(test, &e);
            None
        }
        Err(e) => {
            unavailable(test, &e);
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_clients_get_exactly_the_quota() {
    let Some(backend) = shared_redis("sixty_four_clients_get_exactly_the_quota").await else {
        return;
    };
    let backend = Arc::new(backend);
    let policy = Arc::new(Policy::new(
        "api",
        Quota::per(100, Duration::from_secs(3600)).unwrap(),
    ));
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let backend = backend.clone();
            let policy = policy.clone();
            tokio::spawn(async move {
                let key = RateKey::text("one-key");
                let mut admitted = 0;
                for _ in 0..5 {
                    if backend
                        .check(&policy, &key, 1)
                        .decision()
                        .await
                        .unwrap()
                        .allowed
                    {
                        admitted += 1;
                    }
                }
                admitted
            })
        })
        .collect();
    let mut admitted = 0;
    for task in tasks {
        admitted += task.await.unwrap();
    }
    assert_eq!(admitted, 100, "320 attempts, exactly 100 admitted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_share_one_quota() {
    let Some(first) = shared_redis("two_backends_share_one_quota").await else {
        return;
    };
    // A second, independent connection on the same prefix (another replica).
    let prefix = prefix();
    let a = RedisBackend::connect(&redis_url(), &prefix).await.unwrap();
    let b = RedisBackend::connect(&redis_url(), &prefix).await.unwrap();
    drop(first);
    let policy = Policy::new("api", Quota::per(10, Duration::from_secs(3600)).unwrap());
    let key = RateKey::ip("192.0.2.1".parse().unwrap());
    let mut admitted = 0;
    for i in 0..30 {
        let backend = if i % 2 == 0 { &a } else { &b };
        let decision = backend.check(&policy, &key, 1).decision().await.unwrap();
        if decision.allowed {
            admitted += 1;
            assert_eq!(decision.remaining, 10 - admitted);
        } else {
            let retry = decision.retry_after.unwrap();
            assert!(
                retry > Duration::from_secs(359) && retry <= Duration::from_secs(360),
                "{retry:?}"
            );
        }
    }
    assert_eq!(admitted, 10);
    // Peek does not count.
    let policy = Policy::new("peek", Quota::per(1, Duration::from_secs(3600)).unwrap());
    for _ in 0..5 {
        assert!(a.peek(&policy, &key).decision().await.unwrap().allowed);
    }
    assert!(b.check(&policy, &key, 1).decision().await.unwrap().allowed);
    assert!(!a.peek(&policy, &key).decision().await.unwrap().allowed);
}

/// A redis-server of this test's own, on a spare port.
struct OwnRedis {
    port: u16,
    child: Child,
}

impl OwnRedis {
    fn start(port: u16) -> std::io::Result<OwnRedis> {
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return Err(std::io::Error::other("redis-server did not start"));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(OwnRedis { port, child })
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn ok(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::new())))
}

fn request() -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    request
        .extensions_mut()
        .insert("192.0.2.50:1".parse::<SocketAddr>().unwrap());
    request
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_fails_open_or_closed_and_limiting_resumes() {
    let port = spare_port();
    let mut redis = match OwnRedis::start(port) {
        Ok(redis) => redis,
        Err(e) => {
            unavailable(
                "an_outage_fails_open_or_closed_and_limiting_resumes (redis-server)",
                &e,
            );
            return;
        }
    };
    let url = format!("redis://127.0.0.1:{}", redis.port);
    let backend: Arc<dyn RateLimitBackend> =
        Arc::new(RedisBackend::connect(&url, "outage").await.unwrap());
    let policy = Policy::new("api", Quota::per(2, Duration::from_secs(3600)).unwrap());
    let open = RateLimitLayer::new(backend.clone(), policy.clone()).layer(service_fn(ok));
    let closed = RateLimitLayer::new(backend.clone(), policy.clone())
        .on_failure(FailurePolicy::Closed)
        .layer(service_fn(ok));
    let fallback = RateLimitLayer::new(backend.clone(), Policy::new("fb", policy.quota()))
        .on_failure(FailurePolicy::Fallback(Arc::new(InMemoryBackend::new())))
        .layer(service_fn(ok));

    // Up: limited.
    assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 200);
    assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 200);
    assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 429);

    // Down mid-run.
    redis.kill();
    let started = Instant::now();
    for _ in 0..3 {
        let response = open.clone().oneshot(request()).await.unwrap();
        assert_eq!(response.status(), 200, "fail-open lets requests through");
        assert!(!response.headers().contains_key("ratelimit-remaining"));
    }
    assert_eq!(
        closed.clone().oneshot(request()).await.unwrap().status(),
        503
    );
    assert_eq!(
        fallback.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    assert_eq!(
        fallback.clone().oneshot(request()).await.unwrap().status(),
        200
    );
    assert_eq!(
        fallback.clone().oneshot(request()).await.unwrap().status(),
        429,
        "the in-process fallback limits on its own"
    );
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "failures are fast"
    );

    // Back on the same port, empty: limiting resumes.
    let _redis = OwnRedis::start(port).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let limiter = RateLimiter::new(backend.clone(), Policy::new("resume", policy.quota()));
    loop {
        if limiter.check(&RateKey::text("x")).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the backend did not reconnect");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 200);
    assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 200);
    assert_eq!(open.clone().oneshot(request()).await.unwrap().status(), 429);
    assert_eq!(closed.oneshot(request()).await.unwrap().status(), 429);
}
