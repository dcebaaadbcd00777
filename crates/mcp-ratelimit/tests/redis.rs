//! The Redis backend against real Redis servers: the shared one at
//! `TEST_REDIS_URL` (default `redis://127.0.0.1:6379`) and, for outages, one
//! this test starts and kills itself. Each test uses its own key prefix.
//! They are ignored unless the run promises Redis (`CI=true` or
//! `MCP_TEST_SERVICES`, see `build/test-services.rs`), and fail when it was
//! promised and is missing.
#![cfg(feature = "redis")]

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
    RedisBackend,
};
use tower::{Layer, ServiceExt, service_fn};

mod common;

fn redis_url() -> String {
    mcp_testkit::redis_url()
}

fn prefix() -> String {
    mcp_testkit::unique("test")
}

async fn shared_redis() -> RedisBackend {
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
                Ok(_) => backend,
                Err(e) => mcp_testkit::unreachable("Redis", &e),
            }
        }
        Ok(Err(e)) => mcp_testkit::unreachable("Redis", &e),
        Err(e) => mcp_testkit::unreachable("Redis", &e),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn sixty_four_clients_get_exactly_the_quota() {
    let backend = shared_redis().await;
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
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn two_backends_share_one_quota() {
    let first = shared_redis().await;
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
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn an_outage_fails_open_or_closed_and_limiting_resumes() {
    let port = mcp_testkit::spare_port();
    let mut redis = match OwnRedis::start(port) {
        Ok(redis) => redis,
        Err(e) => mcp_testkit::unreachable("redis-server", &e),
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
    // Ask the backend itself: a limiter would fail open and answer Ok while
    // Redis is still unreachable.
    let probe = Policy::new("resume", policy.quota());
    loop {
        if backend
            .check(&probe, &RateKey::text("x"), 1)
            .decision()
            .await
            .is_ok()
        {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn concurrent_bad_credentials_get_at_most_the_quota_on_redis() {
    let backend = shared_redis().await;
    let results = common::concurrent_bad_credentials(Arc::new(backend), 5).await;
    let unauthorized = results.iter().filter(|s| **s == 401).count();
    let limited = results.iter().filter(|s| **s == 429).count();
    assert!(
        unauthorized <= 5,
        "at most the quota of 401s, got {unauthorized} (and {limited} 429s)"
    );
    assert_eq!(unauthorized + limited, 64, "{results:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn refund_moves_the_arrival_time_back_on_redis() {
    let backend = shared_redis().await;
    let policy = Policy::new("refund", Quota::per(3, Duration::from_secs(3600)).unwrap());
    let key = RateKey::text("k");
    let check = || async { backend.check(&policy, &key, 1).decision().await.unwrap() };
    for _ in 0..3 {
        assert!(check().await.allowed);
    }
    assert!(!check().await.allowed);
    backend.refund(&policy, &key, 1).wait().await.unwrap();
    let again = check().await;
    assert!(again.allowed, "one request given back");
    assert_eq!(again.remaining, 0);
    assert!(!check().await.allowed);
    // Never fuller than full: a refund of a bucket that was never used, or
    // more than was used, leaves it full.
    let fresh = RateKey::text("fresh");
    backend.refund(&policy, &fresh, 5).wait().await.unwrap();
    let first = backend.check(&policy, &fresh, 1).decision().await.unwrap();
    assert_eq!(first.remaining, 2);
    backend.refund(&policy, &fresh, 5).wait().await.unwrap();
    let after = backend.check(&policy, &fresh, 1).decision().await.unwrap();
    assert_eq!(
        after.remaining, 2,
        "the over-refund only emptied the bucket"
    );
}

/// Waits (polling, with a deadline) until one more request for `key` would
/// pass: refunds land in the background.
async fn until_free(backend: &RedisBackend, policy: &Policy, key: &RateKey) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !backend.peek(policy, key).decision().await.unwrap().allowed {
        assert!(Instant::now() < deadline, "the refund never landed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Every request is an attempt here (no `attempts`), so each success
/// reserves the only unit and gives it back from the background.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn successes_do_not_use_the_failure_quota_on_redis() {
    let backend = shared_redis().await;
    let policy = Policy::new(
        "auth-failures",
        Quota::per(1, Duration::from_secs(3600)).unwrap(),
    );
    let key = RateKey::ip("192.0.2.50".parse().unwrap());
    let service = mcp_ratelimit::FailureLimitLayer::new(
        Arc::new(backend.clone()),
        policy.clone(),
        common::counts_refused,
    )
    .layer(service_fn(bad_or_ok));
    for _ in 0..10 {
        assert_eq!(
            service.clone().oneshot(request()).await.unwrap().status(),
            200
        );
        until_free(&backend, &policy, &key).await;
    }
    assert_eq!(service.clone().oneshot(bad()).await.unwrap().status(), 401);
    assert!(
        !backend
            .peek(&policy, &key)
            .decision()
            .await
            .unwrap()
            .allowed,
        "the poll looks at the layer's bucket"
    );
    assert_eq!(service.oneshot(request()).await.unwrap().status(), 429);
}

async fn bad_or_ok(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(if req.headers().contains_key("x-bad") {
        mcp_core::Problem::unauthorized("invalid_api_key", "no").into_response()
    } else {
        Response::new(Full::new(Bytes::new()))
    })
}

fn bad() -> Request<Full<Bytes>> {
    let mut bad = request();
    bad.headers_mut().insert("x-bad", "1".parse().unwrap());
    bad
}

/// With `attempts`, a request that cannot fail costs one look (no
/// reservation, no refund): successes never touch the quota, and a
/// locked-out address is still refused on them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn requests_that_cannot_fail_only_look_on_redis() {
    let backend = shared_redis().await;
    let service = mcp_ratelimit::FailureLimitLayer::new(
        Arc::new(backend),
        Policy::new(
            "auth-failures",
            Quota::per(2, Duration::from_secs(3600)).unwrap(),
        ),
        common::counts_refused,
    )
    .attempts(|request: &mcp_ratelimit::RequestInfo<'_>| request.headers.contains_key("x-bad"))
    .layer(service_fn(bad_or_ok));
    for _ in 0..20 {
        assert_eq!(
            service.clone().oneshot(request()).await.unwrap().status(),
            200
        );
    }
    for _ in 0..2 {
        assert_eq!(service.clone().oneshot(bad()).await.unwrap().status(), 401);
    }
    assert_eq!(service.clone().oneshot(bad()).await.unwrap().status(), 429);
    assert_eq!(service.oneshot(request()).await.unwrap().status(), 429);
}

/// `start` returns at once while Redis is down, keeps retrying, and
/// connects when Redis comes up; `ping` says whether Redis answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_redis),
    ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
)]
async fn started_while_redis_is_down_it_connects_when_redis_comes_up() {
    let port = mcp_testkit::spare_port();
    let url = format!("redis://127.0.0.1:{port}");
    let backend = RedisBackend::start(&url, "late").unwrap();
    assert_eq!(
        format!("{backend:?}"),
        r#"RedisBackend { prefix: "late", .. }"#
    );
    assert!(backend.ping().await.is_err(), "nothing listens yet");
    // Long enough for the first attempts to fail (they retry every second).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(backend.ping().await.is_err(), "still nothing");
    let policy = Policy::new("late", Quota::per(1, Duration::from_secs(3600)).unwrap());
    assert!(
        backend
            .check(&policy, &RateKey::text("x"), 1)
            .decision()
            .await
            .is_err()
    );
    let _redis = match OwnRedis::start(port) {
        Ok(redis) => redis,
        Err(e) => mcp_testkit::unreachable("redis-server", &e),
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while backend.ping().await.is_err() {
        assert!(Instant::now() < deadline, "the backend never connected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let first = backend
        .check(&policy, &RateKey::text("x"), 1)
        .decision()
        .await
        .unwrap();
    assert!(first.allowed);
    let second = backend
        .check(&policy, &RateKey::text("x"), 1)
        .decision()
        .await
        .unwrap();
    assert!(!second.allowed, "limited once connected");
}
