//! End-to-end: the rate-limit policies of the contract over real HTTP, in
//! process and shared through the real Redis.

mod common;

use common::{Api, Backend, TestDb, TestServer, create_user};
use serde_json::{Value, json};

const SECRET: (&str, &str) = ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef");

fn redis_url() -> String {
    mcp_testkit::redis_url()
}

fn unique_prefix() -> String {
    format!("test:{}", uuid::Uuid::new_v4().simple())
}

async fn login(api: &Api, email: &str, password: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    api.call(
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"email": email, "password": password})),
    )
    .await
}

async fn login_policy_counts_per_email_and_passes_the_body(db: TestDb) {
    create_user(&db, "ada@example.com", "ada-password", "user");
    create_user(&db, "bob@example.com", "bob-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);

    // Ten attempts for one e-mail (wrong password, and one right, which
    // proves the handler got the whole body).
    let started = std::time::Instant::now();
    for i in 0..9 {
        let (status, headers, _) = login(&api, "ada@example.com", "wrong-password").await;
        assert_eq!(status, 401, "attempt {i}");
        // The auth policy (10 per 15 min) has fewer left than api (100/min).
        assert_eq!(headers["ratelimit-limit"], "10");
        assert_eq!(headers["ratelimit-remaining"], (9 - i).to_string().as_str());
    }
    let (status, _, body) = login(&api, "ADA@example.com", "ada-password").await;
    assert_eq!(
        status, 200,
        "the 10th attempt, with the right password: {body}"
    );
    // The 11th within 15 minutes is refused, whatever its case.
    let (status, headers, body) = login(&api, "Ada@Example.com", "ada-password").await;
    assert_eq!(status, 429);
    assert_eq!(body["code"], "rate_limited");
    // 10 per 15 minutes frees one attempt each 90 s after the first: the
    // wait is 90 s less what has passed since then (the server's clock is
    // real, so the window is as wide as this test's own run).
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    let passed = started.elapsed().as_secs();
    assert!(
        (90 - passed - 1..=90).contains(&retry),
        "Retry-After {retry} after {passed} s"
    );
    assert_eq!(headers["content-type"], "application/problem+json");
    // Another e-mail still passes.
    let (status, _, _) = login(&api, "bob@example.com", "bob-password").await;
    assert_eq!(status, 200);
}
both_databases!(
    login_policy_counts_per_email_and_passes_the_body,
    login_policy_counts_per_email_and_passes_the_body
);

async fn refused_credentials_lock_the_ip_out(db: TestDb) {
    create_user(&db, "ada@example.com", "ada-password", "user");
    let server = TestServer::start(&db, &[SECRET, ("MCP_RATE_LIMIT_AUTH_FAILURES", "5/60s")]);
    let api = Api::new(&server);
    let token = api.login("ada@example.com", "ada-password").await;

    // Missing credentials do not count.
    for _ in 0..10 {
        assert_eq!(api.call("GET", "/api/auth/me", None, None).await.0, 401);
    }
    // Five refused keys and tokens use the quota up.
    let bogus_key = format!("mcp_{}", "A".repeat(49));
    for i in 0..5 {
        let (status, _, body) = if i % 2 == 0 {
            api.call("GET", "/api/auth/me", Some("not.a.token"), None)
                .await
        } else {
            api.call("GET", "/api/auth/me", Some(&bogus_key), None)
                .await
        };
        assert_eq!(status, 401, "{body}");
    }
    // Now even a good token is refused before it is looked at...
    let (status, headers, body) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(status, 429, "{body}");
    assert!(headers.contains_key("retry-after"));
    assert_eq!(body["policy"], "auth-failures");
    // ...and so are logins (which would check a password).
    assert_eq!(login(&api, "ada@example.com", "ada-password").await.0, 429);
    // ...and every other route that takes a credential: the limit stands
    // around the router, not on some of its routes.
    for (method, path) in [
        ("POST", "/mcp"),
        ("GET", "/ws"),
        ("GET", "/metrics"),
        ("GET", "/api/keys"),
        ("GET", "/no/such/route"),
    ] {
        let (status, _, body) = api.call(method, path, Some(&token), None).await;
        assert_eq!(status, 429, "{method} {path}: {body}");
    }
    // Health checks are never limited.
    for path in ["/health", "/health/ready"] {
        assert_eq!(api.call("GET", path, None, None).await.0, 200, "{path}");
    }
}
both_databases!(
    refused_credentials_lock_the_ip_out,
    refused_credentials_lock_the_ip_out
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_policy_headers_and_health_is_never_limited() {
    let db = TestDb::new(Backend::Sqlite).await;
    let server = TestServer::start(&db, &[SECRET, ("MCP_RATE_LIMIT_API", "3/60s")]);
    let api = Api::new(&server);
    for _ in 0..20 {
        let (status, headers, _) = api.call("GET", "/health", None, None).await;
        assert_eq!(status, 200);
        assert!(!headers.contains_key("ratelimit-limit"));
    }
    // An unauthenticated API request counts against the client IP.
    let started = std::time::Instant::now();
    for remaining in ["2", "1", "0"] {
        let (status, headers, _) = api
            .call("POST", "/api/auth/login", None, Some(json!({"email": "x"})))
            .await;
        assert_eq!(status, 400);
        assert_eq!(headers["ratelimit-remaining"], remaining);
    }
    let (status, headers, body) = api
        .call("POST", "/api/auth/login", None, Some(json!({"email": "x"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
    // 3 per 60 s: the next one is free 20 s after the first, less what has
    // passed since (the server's clock is real).
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    let passed = started.elapsed().as_secs();
    assert!(
        (20 - passed - 1..=20).contains(&retry),
        "Retry-After {retry} after {passed} s"
    );
    assert_eq!(headers["ratelimit-limit"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_decide_whose_address_counts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let send = |api: &Api, forwarded: &'static str| {
        let request = api
            .client
            .post(format!("{}/api/auth/login", api.base))
            .header("x-forwarded-for", forwarded)
            .json(&json!({"email": "x"}));
        async move { request.send().await.unwrap().status().as_u16() }
    };
    // Not trusted: the header is ignored, every request is 127.0.0.1's.
    let server = TestServer::start(&db, &[SECRET, ("MCP_RATE_LIMIT_API", "1/60s")]);
    let api = Api::new(&server);
    assert_eq!(send(&api, "198.51.100.1").await, 400);
    assert_eq!(send(&api, "198.51.100.2").await, 429);
    drop(server);
    // Trusted: each forwarded client has its own bucket.
    let server = TestServer::start(
        &db,
        &[
            SECRET,
            ("MCP_RATE_LIMIT_API", "1/60s"),
            ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
        ],
    );
    let api = Api::new(&server);
    assert_eq!(send(&api, "198.51.100.1").await, 400);
    assert_eq!(send(&api, "198.51.100.2").await, 400);
    assert_eq!(
        send(&api, "6.6.6.6, 198.51.100.1").await,
        429,
        "read from the right"
    );
}

/// Exactly one forwarding header is read (`MCP_FORWARDED_HEADER`): a client
/// behind the proxy cannot pick its bucket with the other one, and a hop
/// that does not parse is a hidden client, neither the proxy nor a bucket
/// the client names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_configured_forwarding_header_counts() {
    let db = TestDb::new(Backend::Sqlite).await;
    let send = |api: &Api, headers: &[(&'static str, String)]| {
        let mut request = api
            .client
            .post(format!("{}/api/auth/login", api.base))
            .json(&json!({"email": "x"}));
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        async move { request.send().await.unwrap().status().as_u16() }
    };
    let xff = |v: &str| ("x-forwarded-for", v.to_owned());
    let fwd = |v: &str| ("forwarded", v.to_owned());
    let base = [
        SECRET,
        ("MCP_RATE_LIMIT_API", "1/60s"),
        ("MCP_TRUSTED_PROXIES", "127.0.0.1"),
    ];

    // Default, X-Forwarded-For: the client's own `Forwarded` is ignored.
    let server = TestServer::start(&db, &base);
    let api = Api::new(&server);
    assert_eq!(
        send(&api, &[xff("198.51.100.1"), fwd("for=203.0.113.1")]).await,
        400
    );
    assert_eq!(
        send(&api, &[xff("198.51.100.1"), fwd("for=203.0.113.2")]).await,
        429,
        "a random Forwarded must not buy a new bucket"
    );
    // Garbage hops are hidden clients: one bucket of their own, not the
    // proxy's and not one per text.
    assert_eq!(send(&api, &[xff("_x")]).await, 400);
    assert_eq!(
        send(&api, &[xff("_y")]).await,
        429,
        "not one bucket per text"
    );
    assert_eq!(send(&api, &[fwd("for=_x"), xff("198.51.100.2")]).await, 400);
    assert_eq!(
        send(&api, &[]).await,
        400,
        "the proxy's own bucket is untouched"
    );
    drop(server);

    // `forwarded`: X-Forwarded-For is ignored.
    let mut env = base.to_vec();
    env.push(("MCP_FORWARDED_HEADER", "forwarded"));
    let server = TestServer::start(&db, &env);
    let api = Api::new(&server);
    assert_eq!(send(&api, &[xff("198.51.100.3")]).await, 400);
    assert_eq!(
        send(&api, &[xff("198.51.100.4")]).await,
        429,
        "X-Forwarded-For is not read when `forwarded` is configured"
    );
    assert_eq!(
        send(&api, &[fwd("for=198.51.100.5"), xff("1.1.1.1")]).await,
        400
    );
    assert_eq!(
        send(&api, &[fwd("for=198.51.100.5"), xff("2.2.2.2")]).await,
        429
    );
}

/// Two server processes on one database and one Redis enforce one quota.
async fn two_servers_share_one_quota_through_redis(db: TestDb) {
    let prefix = unique_prefix();
    let url = redis_url();
    let env = [
        SECRET,
        ("REDIS_URL", url.as_str()),
        ("MCP_RATE_LIMIT_PREFIX", prefix.as_str()),
        ("MCP_RATE_LIMIT_API", "6/60s"),
    ];
    let first = TestServer::start(&db, &env);
    let second = TestServer::start(&db, &env);
    let (a, b) = (Api::new(&first), Api::new(&second));
    for api in [&a, &b] {
        let (_, _, ready) = api.call("GET", "/health/ready", None, None).await;
        assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
    }
    let mut admitted = 0;
    for i in 0..20 {
        let api = if i % 2 == 0 { &a } else { &b };
        let (status, _, _) = api
            .call("POST", "/api/auth/login", None, Some(json!({"email": "x"})))
            .await;
        if status != 429 {
            admitted += 1;
        }
    }
    assert_eq!(admitted, 6, "one quota across both processes");
}
both_databases!(
    two_servers_share_one_quota_through_redis,
    two_servers_share_one_quota_through_redis,
    needs_redis
);

/// Redis unreachable: open by default (requests pass, readiness says
/// `redis: down` but stays 200), closed when configured (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_or_closed_as_configured() {
    let db = TestDb::new(Backend::Sqlite).await;
    let port = mcp_testkit::spare_port();
    let dead = format!("redis://127.0.0.1:{port}");
    let open = TestServer::start(&db, &[SECRET, ("REDIS_URL", dead.as_str())]);
    let api = Api::new(&open);
    let (status, headers, _) = api
        .call("POST", "/api/auth/login", None, Some(json!({"email": "x"})))
        .await;
    assert_eq!(status, 400, "fail open: the request goes through");
    assert!(!headers.contains_key("ratelimit-limit"));
    let (status, _, ready) = api.call("GET", "/health/ready", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(ready["checks"]["redis"], "down");
    drop(open);

    let closed = TestServer::start(
        &db,
        &[
            SECRET,
            ("REDIS_URL", dead.as_str()),
            ("MCP_RATE_LIMIT_FAIL", "closed"),
        ],
    );
    let api = Api::new(&closed);
    let (status, _, body) = api
        .call("POST", "/api/auth/login", None, Some(json!({"email": "x"})))
        .await;
    assert_eq!((status, body["code"].as_str()), (503, Some("unavailable")));
    let (status, _, ready) = api.call("GET", "/health/ready", None, None).await;
    assert_eq!(status, 503);
    assert_eq!(ready["checks"]["redis"], "down");
    assert_eq!(ready["checks"]["database"], "ok");
    assert_eq!(api.call("GET", "/health", None, None).await.0, 200);
    assert!(closed.logs().contains("rate limit backend failed"));
}

/// The server's auth-failures layer (`Limits::failures_layer`, built from
/// `env`) around an inner service, without HTTP: what the limits wiring
/// decides, deterministically.
mod failures_layer {
    use std::convert::Infallible;
    use std::ffi::OsString;
    use std::net::SocketAddr;
    use std::sync::Arc;

    use bytes::Bytes;
    use http::{Request, Response, StatusCode};
    use http_body_util::Full;
    use mcp_core::Problem;
    use mcp_server::config::Config;
    use mcp_server::limits::Limits;
    use tokio::sync::{Semaphore, mpsc};
    use tower::{Layer, ServiceExt, service_fn};

    fn limits(env: &[(&str, &str)]) -> Limits {
        let env = env
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .chain([(
                OsString::from(super::SECRET.0),
                OsString::from(super::SECRET.1),
            )]);
        let (config, _) = Config::load(None, env).expect("a valid configuration");
        Limits::new(&config).expect("limits")
    }

    fn from(ip: &str, path: &str) -> Request<Full<Bytes>> {
        let mut request = Request::get(path).body(Full::new(Bytes::new())).unwrap();
        request
            .extensions_mut()
            .insert(format!("{ip}:40000").parse::<SocketAddr>().unwrap());
        request
    }

    /// Refuses any presented credential, `200` otherwise (like a route
    /// that needs none).
    async fn refusing(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
        let h = request.headers();
        let presented = h.contains_key("authorization")
            || h.contains_key("x-api-key")
            || h.contains_key("sec-websocket-protocol")
            || request.uri().path().starts_with("/api/auth/");
        Ok(if presented {
            Problem::unauthorized("invalid_token", "no").into_response()
        } else {
            Response::new(Full::new(Bytes::new()))
        })
    }

    /// Sends `n` copies of `make()` at once; the inner service answers only
    /// once every request has reached it or been answered without it.
    async fn all_in_flight(
        limits: &Limits,
        n: usize,
        make: impl Fn() -> Request<Full<Bytes>>,
    ) -> Vec<u16> {
        let (events, mut arrived) = mpsc::unbounded_channel::<()>();
        let gate = Arc::new(Semaphore::new(0));
        let inner = {
            let (events, gate) = (events.clone(), gate.clone());
            service_fn(move |request: Request<Full<Bytes>>| {
                let (events, gate) = (events.clone(), gate.clone());
                async move {
                    let _ = events.send(());
                    let _permit = gate.acquire().await.expect("never closed");
                    refusing(request).await
                }
            })
        };
        let service = limits.failures_layer().layer(inner);
        let tasks: Vec<_> = (0..n)
            .map(|_| {
                let (service, events, request) = (service.clone(), events.clone(), make());
                tokio::spawn(async move {
                    let response = service.oneshot(request).await.unwrap();
                    let status = response.status().as_u16();
                    if status == 429 {
                        let _ = events.send(());
                    }
                    status
                })
            })
            .collect();
        for _ in 0..n {
            arrived.recv().await.expect("every request reports");
        }
        gate.add_permits(n);
        let mut statuses = Vec::new();
        for task in tasks {
            statuses.push(task.await.unwrap());
        }
        statuses
    }

    /// A busy NAT: more requests without credentials in flight from one
    /// address than the failure quota. None of them can fail for
    /// credentials, so none is refused.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn requests_without_credentials_in_flight_are_never_limited() {
        let limits = limits(&[("MCP_RATE_LIMIT_AUTH_FAILURES", "5/3600s")]);
        let statuses = all_in_flight(&limits, 64, || from("198.51.100.60", "/mcp")).await;
        assert!(
            statuses.iter().all(|s| *s == 200),
            "64 uncredentialed requests in flight, none may be 429: {statuses:?}"
        );
    }

    /// An address, a path and the credential header it presents.
    type Form = (
        &'static str,
        &'static str,
        Option<(&'static str, &'static str)>,
    );

    /// Every way of presenting a credential (and the login and register
    /// routes) is still reserved before the service runs: however many are
    /// in flight, at most the quota reach it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_credential_form_is_reserved() {
        let limits = limits(&[("MCP_RATE_LIMIT_AUTH_FAILURES", "3/3600s")]);
        let forms: [Form; 5] = [
            (
                "198.51.100.61",
                "/api/auth/me",
                Some(("authorization", "Bearer x")),
            ),
            (
                "198.51.100.62",
                "/api/auth/me",
                Some(("x-api-key", "mcp_nope")),
            ),
            (
                "198.51.100.63",
                "/ws",
                Some(("sec-websocket-protocol", "mcp, bearer.abc")),
            ),
            ("198.51.100.64", "/api/auth/login", None),
            ("198.51.100.65", "/api/auth/register", None),
        ];
        for (ip, path, header) in forms {
            let statuses = all_in_flight(&limits, 16, || {
                let mut request = from(ip, path);
                if let Some((name, value)) = header {
                    request.headers_mut().insert(name, value.parse().unwrap());
                }
                request
            })
            .await;
            let refused = statuses.iter().filter(|s| **s == 401).count();
            let limited = statuses.iter().filter(|s| **s == 429).count();
            assert!(refused <= 3, "{path} {header:?}: {statuses:?}");
            assert_eq!(refused + limited, 16, "{path} {header:?}: {statuses:?}");
            // Locked out: even a request without credentials is refused.
            let response = limits
                .failures_layer()
                .layer(service_fn(refusing))
                .oneshot(from(ip, "/mcp"))
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS, "{path}");
        }
    }

    /// Redis unreachable and the server failing open: the brute-force
    /// lockout still holds (in process), whatever `MCP_RATE_LIMIT_FAIL`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_lockout_holds_while_redis_is_down() {
        let port = mcp_testkit::spare_port();
        let dead = format!("redis://127.0.0.1:{port}");
        for fail in ["open", "closed"] {
            let limits = limits(&[
                ("REDIS_URL", dead.as_str()),
                ("MCP_RATE_LIMIT_FAIL", fail),
                ("MCP_RATE_LIMIT_AUTH_FAILURES", "3/3600s"),
            ]);
            let service = limits.failures_layer().layer(service_fn(refusing));
            let ip = if fail == "open" {
                "198.51.100.70"
            } else {
                "198.51.100.71"
            };
            let bad = || {
                let mut request = from(ip, "/api/auth/me");
                request
                    .headers_mut()
                    .insert("authorization", "Bearer guess".parse().unwrap());
                request
            };
            for i in 0..3 {
                let status = service.clone().oneshot(bad()).await.unwrap().status();
                assert_eq!(status, 401, "fail={fail}: guess {i}");
            }
            let status = service.clone().oneshot(bad()).await.unwrap().status();
            assert_eq!(status, 429, "fail={fail}: the 4th guess is locked out");
            let status = service
                .clone()
                .oneshot(from(ip, "/mcp"))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 429, "fail={fail}: and so is the rest of the IP");
            let status = service
                .oneshot(from("198.51.100.72", "/mcp"))
                .await
                .unwrap()
                .status();
            assert_eq!(status, 200, "fail={fail}: other IPs pass");
        }
    }
}
