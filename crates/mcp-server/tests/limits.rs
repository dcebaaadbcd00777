//! End-to-end: the rate-limit policies of the contract over real HTTP, in
//! process and shared through the real Redis.

mod common;

use common::{Api, Backend, TestDb, TestServer, create_user};
use serde_json::{Value, json};

const SECRET: (&str, &str) = ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef");

fn redis_url() -> String {
    std::env::var("TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn redis_reachable(test: &str) -> bool {
    let url = url::Url::parse(&redis_url()).unwrap();
    let addr = format!(
        "{}:{}",
        url.host_str().unwrap_or("127.0.0.1"),
        url.port().unwrap_or(6379)
    );
    match std::net::TcpStream::connect(&addr) {
        Ok(_) => true,
        Err(e) => {
            common::unavailable("Redis", test, &e);
            false
        }
    }
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
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=90).contains(&retry), "{retry}");
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
    let Some(db) = TestDb::new(Backend::Sqlite, "api_policy_headers").await else {
        return;
    };
    let server = TestServer::start(&db, &[SECRET, ("MCP_RATE_LIMIT_API", "3/60s")]);
    let api = Api::new(&server);
    for _ in 0..20 {
        let (status, headers, _) = api.call("GET", "/health", None, None).await;
        assert_eq!(status, 200);
        assert!(!headers.contains_key("ratelimit-limit"));
    }
    // An unauthenticated API request counts against the client IP.
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
    assert_eq!(headers["retry-after"], "20");
    assert_eq!(headers["ratelimit-limit"], "3");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trusted_proxies_decide_whose_address_counts() {
    let Some(db) = TestDb::new(Backend::Sqlite, "trusted_proxies").await else {
        return;
    };
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
    let Some(db) = TestDb::new(Backend::Sqlite, "forwarded_header").await else {
        return;
    };
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
    if !redis_reachable("two_servers_share_one_quota_through_redis") {
        return;
    }
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
    let (_, _, ready) = a.call("GET", "/health/ready", None, None).await;
    assert_eq!(ready["checks"]["redis"], "ok", "{ready}");
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
    two_servers_share_one_quota_through_redis
);

/// Redis unreachable: open by default (requests pass, readiness says
/// `redis: down` but stays 200), closed when configured (503).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_open_or_closed_as_configured() {
    let Some(db) = TestDb::new(Backend::Sqlite, "redis_down").await else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
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
