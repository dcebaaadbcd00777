//! The layers through `tower::ServiceExt::oneshot`, with a manual clock.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use mcp_core::{AuthMethod, ManualClock, Principal, Problem, ProblemCode};
use mcp_ratelimit::{
    BackendError, BodyRateLimitLayer, Check, FailureLimitLayer, FailurePolicy, HeaderKey,
    HeaderStyle, InMemoryBackend, JsonBodyField, PeerIp, Policy, PrincipalOrIp, Quota, RateKey,
    RateLimitBackend, RateLimitLayer, RateLimiter, RequestInfo, TrustedProxyIp,
};
use serde_json::Value;
use tower::{Layer, Service, ServiceExt, service_fn};

mod common;

const T0: u64 = 1_800_000_000;

fn policy(name: &str, limit: u32, secs: u64) -> Policy {
    Policy::new(name, Quota::per(limit, Duration::from_secs(secs)).unwrap())
}

fn backend(clock: &ManualClock) -> Arc<InMemoryBackend> {
    Arc::new(InMemoryBackend::new().clock(clock.shared()))
}

fn request_from(ip: &str) -> Request<Full<Bytes>> {
    let mut request = Request::new(Full::new(Bytes::new()));
    request
        .extensions_mut()
        .insert(format!("{ip}:1234").parse::<SocketAddr>().unwrap());
    request
}

/// A request from `ip` whose inner service answers with problem `code`
/// (`None`: a success), as `auth_service` reads it.
fn attempt_from(ip: &str, code: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = request_from(ip);
    if let Some(code) = code {
        request
            .headers_mut()
            .insert("x-code", code.parse().unwrap());
    }
    request
}

async fn ok_service(_req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"ok"))))
}

async fn body_json(response: Response<Full<Bytes>>) -> Value {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

#[tokio::test]
async fn headers_429_and_recovery_through_the_layer() {
    let clock = ManualClock::at_unix(T0);
    let layer = RateLimitLayer::new(backend(&clock), policy("api", 3, 60));
    let mut service = layer.layer(service_fn(ok_service));
    for remaining in ["2", "1", "0"] {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request_from("192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_eq!(response.headers()["ratelimit-remaining"], remaining);
        assert!(response.headers().contains_key("ratelimit-reset"));
    }
    let refused = service
        .ready()
        .await
        .unwrap()
        .call(request_from("192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(refused.headers()["ratelimit-remaining"], "0");
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let body = body_json(refused).await;
    assert_eq!(body["code"], "rate_limited");
    assert_eq!(body["policy"], "api");
    // Another client is untouched.
    let other = service
        .ready()
        .await
        .unwrap()
        .call(request_from("192.0.2.2"))
        .await
        .unwrap();
    assert_eq!(other.headers()["ratelimit-remaining"], "2");
    // On time, one more passes.
    clock.advance(Duration::from_secs(20));
    let again = service
        .ready()
        .await
        .unwrap()
        .call(request_from("192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
}

#[tokio::test]
async fn header_styles() {
    let clock = ManualClock::at_unix(T0);
    let layer = RateLimitLayer::new(backend(&clock), policy("api", 100, 60)).headers(HeaderStyle {
        draft_07: false,
        structured: true,
        x_ratelimit: true,
    });
    let response = layer
        .layer(service_fn(ok_service))
        .oneshot(request_from("192.0.2.1"))
        .await
        .unwrap();
    let h = response.headers();
    assert!(!h.contains_key("ratelimit-limit"));
    assert_eq!(h["ratelimit-policy"], "\"api\";q=100;w=60");
    assert_eq!(h["ratelimit"], "\"api\";r=99;t=1");
    assert_eq!(h["x-ratelimit-limit"], "100");
    assert_eq!(h["x-ratelimit-remaining"], "99");
    assert_eq!(h["x-ratelimit-reset"], "1");
}

#[tokio::test]
async fn stacked_limiters_show_the_one_with_fewer_left() {
    let clock = ManualClock::at_unix(T0);
    let shared = backend(&clock);
    let api = RateLimitLayer::new(shared.clone(), policy("api", 100, 60));
    let auth = RateLimitLayer::new(shared.clone(), policy("auth", 10, 900));
    // auth inside api: the auth headers (9 left) beat api's (99 left).
    let service = api.layer(auth.layer(service_fn(ok_service)));
    let response = service
        .clone()
        .oneshot(request_from("192.0.2.1"))
        .await
        .unwrap();
    assert_eq!(response.headers()["ratelimit-limit"], "10");
    assert_eq!(response.headers()["ratelimit-remaining"], "9");
    // And the other way round.
    let service = auth.layer(api.layer(service_fn(ok_service)));
    let response = service.oneshot(request_from("192.0.2.9")).await.unwrap();
    assert_eq!(response.headers()["ratelimit-limit"], "10");
}

#[tokio::test]
async fn skipped_requests_are_not_limited() {
    let clock = ManualClock::at_unix(T0);
    let layer = RateLimitLayer::new(backend(&clock), policy("api", 1, 60))
        .skip(|request: &RequestInfo<'_>| request.uri.path() == "/health");
    let mut service = layer.layer(service_fn(ok_service));
    for _ in 0..5 {
        let mut request = request_from("192.0.2.1");
        *request.uri_mut() = "/health".parse().unwrap();
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("ratelimit-limit"));
    }
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn principals_are_keyed_by_key_or_subject_then_ip() {
    let clock = ManualClock::at_unix(T0);
    let layer =
        RateLimitLayer::new(backend(&clock), policy("api", 1, 60)).key(PrincipalOrIp::new());
    let mut service = layer.layer(service_fn(ok_service));
    let with = |principal: Option<Principal>| {
        let mut request = request_from("192.0.2.1");
        if let Some(p) = principal {
            request.extensions_mut().insert(p);
        }
        request
    };
    let alice = Principal::builder("alice", AuthMethod::Jwt).build();
    let alice_key = Principal::builder("alice", AuthMethod::ApiKey)
        .key_id("k1")
        .build();
    for principal in [Some(alice.clone()), Some(alice_key.clone()), None] {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(with(principal))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "each is its own bucket");
    }
    let response = service
        .ready()
        .await
        .unwrap()
        .call(with(Some(alice)))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn keyless_requests_share_one_bucket() {
    let clock = ManualClock::at_unix(T0);
    // An extractor that finds no key: not a way around the limit.
    let layer = RateLimitLayer::new(backend(&clock), policy("api", 1, 60))
        .key(|_: &RequestInfo<'_>| None::<RateKey>);
    let mut service = layer.layer(service_fn(ok_service));
    let statuses = statuses(
        &mut service,
        vec![request_from("192.0.2.1"), request_from("192.0.2.2")],
    )
    .await;
    assert_eq!(statuses, [200, 429]);
}

/// The service answers `500 internal`, saying nothing of the cause, and is
/// never called.
async fn assert_misconfigured(
    response: Response<Full<Bytes>>,
    calls: &std::sync::atomic::AtomicUsize,
) {
    assert_eq!(response.status(), 500);
    let body = body_json(response).await;
    assert_eq!(body["code"], "internal");
    assert_eq!(body["detail"], "an internal error occurred");
    assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 0);
}

fn counted_ok(
    calls: Arc<std::sync::atomic::AtomicUsize>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = impl Future<Output = Result<Response<Full<Bytes>>, Infallible>> + Send,
> + Clone
+ Send
+ 'static {
    service_fn(move |request: Request<Full<Bytes>>| {
        calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        ok_service(request)
    })
}

fn no_peer() -> Request<Full<Bytes>> {
    Request::new(Full::new(Bytes::new()))
}

/// Without connection info every client would share one bucket: the layer
/// refuses loudly instead, whichever peer-keyed extractor it uses.
#[tokio::test]
async fn a_peer_keyed_layer_without_connect_info_answers_500() {
    let clock = ManualClock::at_unix(T0);
    let trusted = TrustedProxyIp::new(["10.0.0.0/8".parse().unwrap()]);
    let layers = [
        RateLimitLayer::new(backend(&clock), policy("api", 100, 60)),
        RateLimitLayer::new(backend(&clock), policy("api", 100, 60)).key(PrincipalOrIp::new()),
        RateLimitLayer::new(backend(&clock), policy("api", 100, 60)).key(trusted.clone()),
        RateLimitLayer::new(backend(&clock), policy("api", 100, 60))
            .key(PrincipalOrIp::with_fallback(trusted)),
    ];
    for layer in layers {
        let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let response = layer
            .layer(counted_ok(calls.clone()))
            .oneshot(no_peer())
            .await
            .unwrap();
        assert_misconfigured(response, &calls).await;
    }
}

#[tokio::test]
async fn a_principal_needs_no_peer_address() {
    let clock = ManualClock::at_unix(T0);
    let service = RateLimitLayer::new(backend(&clock), policy("api", 100, 60))
        .key(PrincipalOrIp::new())
        .layer(service_fn(ok_service));
    let mut request = no_peer();
    request
        .extensions_mut()
        .insert(Principal::builder("alice", AuthMethod::Jwt).build());
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["ratelimit-remaining"], "99");
}

#[tokio::test]
async fn a_failure_limit_without_connect_info_answers_500() {
    let clock = ManualClock::at_unix(T0);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let response = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 5, 60),
        counts_refused,
    )
    .layer(counted_ok(calls.clone()))
    .oneshot(no_peer())
    .await
    .unwrap();
    assert_misconfigured(response, &calls).await;
    // A skipped request is not keyed at all, so it passes.
    let response = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 5, 60),
        counts_refused,
    )
    .skip(|_: &RequestInfo<'_>| true)
    .layer(service_fn(ok_service))
    .oneshot(no_peer())
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn a_body_limit_falling_back_to_a_missing_peer_answers_500() {
    let clock = ManualClock::at_unix(T0);
    let layer = BodyRateLimitLayer::new(
        backend(&clock),
        policy("auth", 5, 60),
        JsonBodyField::new("email", 1024, PeerIp),
    );
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let response = layer
        .clone()
        .layer(counted_ok(calls.clone()))
        .oneshot(Request::new(Full::new(Bytes::from_static(b"{}"))))
        .await
        .unwrap();
    assert_misconfigured(response, &calls).await;
    // The field is a key of its own: no peer needed.
    let response = layer
        .layer(service_fn(ok_service))
        .oneshot(Request::new(Full::new(Bytes::from_static(
            br#"{"email":"ada@example.com"}"#,
        ))))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[test]
fn the_missing_peer_error_names_its_fix() {
    let message = mcp_ratelimit::KeyError::NoPeerAddress.to_string();
    assert!(
        message.contains("into_make_service_with_connect_info::<SocketAddr>()"),
        "{message}"
    );
    assert!(message.contains("`axum` feature"), "{message}");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn axum_connect_info_is_the_peer() {
    let clock = ManualClock::at_unix(T0);
    let service =
        RateLimitLayer::new(backend(&clock), policy("api", 1, 60)).layer(service_fn(ok_service));
    let from = |ip: &str| {
        let mut request = no_peer();
        request.extensions_mut().insert(axum::extract::ConnectInfo(
            format!("{ip}:1234").parse::<SocketAddr>().unwrap(),
        ));
        request
    };
    let mut service = service;
    let statuses = statuses(
        &mut service,
        vec![from("192.0.2.1"), from("192.0.2.2"), from("192.0.2.1")],
    )
    .await;
    assert_eq!(statuses, [200, 200, 429]);
}

#[tokio::test]
async fn json_field_keys_and_the_body_arrives_intact() {
    let clock = ManualClock::at_unix(T0);
    let seen = Arc::new(Mutex::new(Vec::<Bytes>::new()));
    let sink = seen.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        let sink = sink.clone();
        async move {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            sink.lock().unwrap().push(body);
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    });
    let layer = BodyRateLimitLayer::new(
        backend(&clock),
        policy("auth", 2, 900),
        JsonBodyField::new("email", 4096, PeerIp),
    )
    .max_buffer(64 * 1024);
    let mut service = layer.layer(inner);
    let login = |email: &str| {
        let body = format!(r#"{{"email":"{email}","password":"p\u00e9 \"x\""}}"#);
        let mut request = Request::post("/login")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        request
            .extensions_mut()
            .insert("192.0.2.1:1".parse::<SocketAddr>().unwrap());
        request
    };
    for email in ["ada@example.com", "ADA@Example.com"] {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(login(email))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    let response = service
        .ready()
        .await
        .unwrap()
        .call(login("Ada@example.com"))
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        429,
        "the e-mail is lower-cased: one bucket"
    );
    let response = service
        .ready()
        .await
        .unwrap()
        .call(login("bob@example.com"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "another e-mail passes");
    let bodies = seen.lock().unwrap().clone();
    assert_eq!(bodies.len(), 3);
    assert_eq!(
        bodies[2],
        Bytes::from(r#"{"email":"bob@example.com","password":"p\u00e9 \"x\""}"#),
        "the handler gets the exact bytes"
    );

    // Not JSON, or no field: keyed by IP, still passed on intact.
    let mut request = Request::post("/login")
        .body(Full::new(Bytes::from_static(b"\xff\xfe{{")))
        .unwrap();
    request
        .extensions_mut()
        .insert("192.0.2.7:1".parse::<SocketAddr>().unwrap());
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(request)
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(seen.lock().unwrap().last().unwrap().as_ref(), b"\xff\xfe{{");

    // Over the buffer: 413, never a panic.
    let mut request = Request::post("/login")
        .body(Full::new(Bytes::from(vec![b' '; 70 * 1024])))
        .unwrap();
    request
        .extensions_mut()
        .insert("192.0.2.8:1".parse::<SocketAddr>().unwrap());
    let response = service.ready().await.unwrap().call(request).await.unwrap();
    assert_eq!(response.status(), 413);
}

/// Answers 401 with a problem code taken from the `x-code` header.
async fn auth_service(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let code = req
        .headers()
        .get("x-code")
        .map(|v| v.to_str().unwrap().to_owned());
    Ok(match code {
        Some(code) => Problem::unauthorized(code, "no").into_response(),
        None => Response::new(Full::new(Bytes::from_static(b"ok"))),
    })
}

fn counts_refused(status: StatusCode, extensions: &http::Extensions) -> bool {
    status == StatusCode::UNAUTHORIZED
        && extensions
            .get::<ProblemCode>()
            .is_none_or(|c| c.as_str() != "missing_credentials")
}

#[tokio::test]
async fn failure_limit_locks_out_before_the_service_runs() {
    let clock = ManualClock::at_unix(T0);
    let calls = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = calls.clone();
    let inner = service_fn(move |req: Request<Full<Bytes>>| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        auth_service(req)
    });
    let layer = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 3, 60),
        counts_refused,
    );
    let mut service = layer.layer(inner);
    let attempt = |code: Option<&str>| attempt_from("198.51.100.4", code);
    // Missing credentials are not counted.
    for _ in 0..10 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(attempt(Some("missing_credentials")))
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    // Three refused credentials use the quota up...
    for _ in 0..3 {
        let response = service
            .ready()
            .await
            .unwrap()
            .call(attempt(Some("invalid_api_key")))
            .await
            .unwrap();
        assert_eq!(response.status(), 401);
    }
    let before = calls.load(std::sync::atomic::Ordering::SeqCst);
    // ...after which even a good request is refused before it is checked.
    let response = service
        .ready()
        .await
        .unwrap()
        .call(attempt(None))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "20");
    assert_eq!(
        calls.load(std::sync::atomic::Ordering::SeqCst),
        before,
        "the service never ran"
    );
    // Other IPs are fine.
    let mut other = request_from("198.51.100.5");
    other
        .headers_mut()
        .insert("x-code", "invalid_token".parse().unwrap());
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(other)
            .await
            .unwrap()
            .status(),
        401
    );
    // It recovers on time.
    clock.advance(Duration::from_secs(20));
    assert_eq!(
        service
            .ready()
            .await
            .unwrap()
            .call(attempt(None))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A backend that cannot be reached, to exercise the failure policies
/// without a network (the real Redis outage is in `tests/redis.rs`).
struct Down;

impl RateLimitBackend for Down {
    fn check<'a>(&'a self, _: &'a Policy, _: &'a RateKey, _: u32) -> Check<'a> {
        Check::Ready(Err(BackendError::Unavailable("down".into())))
    }
    fn peek<'a>(&'a self, _: &'a Policy, _: &'a RateKey) -> Check<'a> {
        Check::Ready(Err(BackendError::Unavailable("down".into())))
    }
    fn refund<'a>(&'a self, _: &'a Policy, _: &'a RateKey, _: u32) -> Check<'a, ()> {
        Check::Ready(Err(BackendError::Unavailable("down".into())))
    }
}

#[tokio::test]
async fn failure_policies() {
    let clock = ManualClock::at_unix(T0);
    let open =
        RateLimitLayer::new(Arc::new(Down), policy("api", 1, 60)).layer(service_fn(ok_service));
    for _ in 0..3 {
        let response = open
            .clone()
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(!response.headers().contains_key("ratelimit-limit"));
    }
    let closed = RateLimitLayer::new(Arc::new(Down), policy("api", 1, 60))
        .on_failure(FailurePolicy::Closed)
        .layer(service_fn(ok_service));
    let response = closed.oneshot(request_from("192.0.2.1")).await.unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(body_json(response).await["code"], "unavailable");
    let fallback = RateLimitLayer::new(Arc::new(Down), policy("api", 1, 60))
        .on_failure(FailurePolicy::Fallback(backend(&clock)))
        .layer(service_fn(ok_service));
    assert_eq!(
        fallback
            .clone()
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        fallback
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        429
    );
}

#[tokio::test]
async fn plain_limiter_follows_the_failure_policy() {
    let clock = ManualClock::at_unix(T0);
    let key = RateKey::text("conn-1");
    let open = RateLimiter::new(Arc::new(Down), policy("ws", 2, 60));
    for _ in 0..5 {
        let decision = open.check(&key).await.expect("fail open admits");
        assert!(decision.allowed);
        assert_eq!((decision.limit, decision.remaining), (2, 2));
        assert_eq!(decision.retry_after, None);
    }
    let closed =
        RateLimiter::new(Arc::new(Down), policy("ws", 2, 60)).on_failure(FailurePolicy::Closed);
    assert!(closed.check(&key).await.is_err(), "fail closed refuses");
    let fallback = RateLimiter::new(Arc::new(Down), policy("ws", 2, 60))
        .on_failure(FailurePolicy::Fallback(backend(&clock)));
    let mut outcomes = Vec::new();
    for _ in 0..3 {
        outcomes.push(
            fallback
                .check(&key)
                .await
                .expect("fallback decides")
                .allowed,
        );
    }
    assert_eq!(
        outcomes,
        [true, true, false],
        "the fallback limits in process"
    );
    clock.advance(Duration::from_secs(30));
    assert!(
        fallback.check(&key).await.unwrap().allowed,
        "one back after 30 s"
    );
}

/// 64 bad credentials from one address at once, all in flight together:
/// the inner service answers only when every request has either reached it
/// or been refused, so a check-then-act lockout lets all 64 through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bad_credentials_get_at_most_the_quota() {
    let clock = ManualClock::at_unix(T0);
    let results = common::concurrent_bad_credentials(backend(&clock), 5).await;
    let unauthorized = results.iter().filter(|s| **s == 401).count();
    let limited = results.iter().filter(|s| **s == 429).count();
    assert!(
        unauthorized <= 5,
        "at most the quota of 401s, got {unauthorized} (and {limited} 429s)"
    );
    assert_eq!(unauthorized + limited, 64, "{results:?}");
}

/// The same 64 at once while the backend is down, under each failure
/// policy: open lets every attempt reach the service (as documented),
/// closed refuses all of them with 503 before the service, and the
/// in-process fallback holds the quota exactly as the backend would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_bad_credentials_under_each_failure_policy() {
    let count = |results: &[u16], status: u16| results.iter().filter(|s| **s == status).count();
    let open =
        common::concurrent_bad_credentials_failing(Arc::new(Down), 5, FailurePolicy::Open).await;
    assert_eq!(count(&open, 401), 64, "open: {open:?}");

    let closed =
        common::concurrent_bad_credentials_failing(Arc::new(Down), 5, FailurePolicy::Closed).await;
    assert_eq!(count(&closed, 503), 64, "closed: {closed:?}");

    let clock = ManualClock::at_unix(T0);
    let fallback = common::concurrent_bad_credentials_failing(
        Arc::new(Down),
        5,
        FailurePolicy::Fallback(backend(&clock)),
    )
    .await;
    assert_eq!(
        (count(&fallback, 401), count(&fallback, 429)),
        (5, 59),
        "fallback: {fallback:?}"
    );
}

#[tokio::test]
async fn successes_do_not_use_the_failure_quota() {
    let clock = ManualClock::at_unix(T0);
    let service = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 3, 60),
        counts_refused,
    )
    .layer(service_fn(auth_service));
    let attempt = |code: Option<&str>| attempt_from("198.51.100.9", code);
    for _ in 0..20 {
        let response = service.clone().oneshot(attempt(None)).await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            !response.headers().contains_key("ratelimit-remaining"),
            "passing responses carry no failure headers"
        );
    }
    for i in 0..3 {
        let response = service
            .clone()
            .oneshot(attempt(Some("invalid_token")))
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "failure {i}");
    }
    let response = service.oneshot(attempt(None)).await.unwrap();
    assert_eq!(response.status(), 429);
}

#[tokio::test]
async fn past_the_cap_the_layer_still_limits_new_clients() {
    let clock = ManualClock::at_unix(T0);
    let memory = Arc::new(InMemoryBackend::new().clock(clock.shared()).max_keys(10));
    let service =
        RateLimitLayer::new(memory.clone(), policy("api", 3, 60)).layer(service_fn(ok_service));
    for i in 0..10 {
        let response = service
            .clone()
            .oneshot(request_from(&format!("192.0.2.{i}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    memory.evict_idle();
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = service
            .clone()
            .oneshot(request_from("203.0.113.200"))
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429], "a new client past the cap");
}

/// The failure policy set on a copy of a configured layer applies: nothing
/// set can be lost, and nothing panics.
#[tokio::test]
async fn rate_limit_layer_on_failure_after_clone_applies() {
    let layer = RateLimitLayer::new(Arc::new(Down), policy("api", 1, 60));
    let open = layer.clone().layer(service_fn(ok_service));
    let closed = layer
        .clone()
        .on_failure(FailurePolicy::Closed)
        .layer(service_fn(ok_service));
    assert_eq!(
        closed
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        503
    );
    assert_eq!(
        open.oneshot(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        200,
        "the original is unchanged"
    );
    drop(layer);
}

#[tokio::test]
async fn body_rate_limit_layer_on_failure_after_clone_applies() {
    let layer = BodyRateLimitLayer::new(
        Arc::new(Down),
        policy("auth", 1, 60),
        JsonBodyField::new("email", 1024, PeerIp),
    );
    let _kept = layer.clone();
    let closed = layer
        .on_failure(FailurePolicy::Closed)
        .layer(service_fn(ok_service));
    let mut request = Request::post("/login")
        .body(Full::new(Bytes::from_static(br#"{"email":"a@b.c"}"#)))
        .unwrap();
    request
        .extensions_mut()
        .insert("192.0.2.1:1".parse::<SocketAddr>().unwrap());
    assert_eq!(closed.oneshot(request).await.unwrap().status(), 503);
}

#[tokio::test]
async fn failure_limit_layer_on_failure_after_clone_applies() {
    let layer = FailureLimitLayer::new(
        Arc::new(Down),
        policy("auth-failures", 1, 60),
        counts_refused,
    );
    let _kept = layer.clone();
    let closed = layer
        .on_failure(FailurePolicy::Closed)
        .layer(service_fn(auth_service));
    assert_eq!(
        closed
            .oneshot(request_from("192.0.2.1"))
            .await
            .unwrap()
            .status(),
        503
    );
}

#[tokio::test]
async fn rate_limiter_on_failure_after_clone_applies() {
    let limiter = RateLimiter::new(Arc::new(Down), policy("ws", 1, 60));
    let _kept = limiter.clone();
    let closed = limiter.on_failure(FailurePolicy::Closed);
    assert!(
        closed.check(&RateKey::text("conn")).await.is_err(),
        "fail closed refuses"
    );
}

#[tokio::test]
async fn a_body_over_max_bytes_is_keyed_by_the_fallback() {
    let clock = ManualClock::at_unix(T0);
    let service = BodyRateLimitLayer::new(
        backend(&clock),
        policy("auth", 1, 60),
        JsonBodyField::new("email", 64, PeerIp),
    )
    .layer(service_fn(ok_service));
    let login = |ip: &str, padding: usize| {
        let body = format!(r#"{{"email":"ada@example.com"{}}}"#, " ".repeat(padding));
        let mut request = Request::post("/login")
            .body(Full::new(Bytes::from(body)))
            .unwrap();
        request
            .extensions_mut()
            .insert(format!("{ip}:1").parse::<SocketAddr>().unwrap());
        request
    };
    // Small bodies from two addresses share the e-mail's bucket.
    let first = service
        .clone()
        .oneshot(login("192.0.2.1", 0))
        .await
        .unwrap();
    assert_eq!(first.status(), 200);
    let second = service
        .clone()
        .oneshot(login("192.0.2.2", 0))
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    // Over max_bytes, the field is not looked for: the address's bucket.
    let padded = service
        .clone()
        .oneshot(login("192.0.2.3", 100))
        .await
        .unwrap();
    assert_eq!(padded.status(), 200, "keyed by its address, not the e-mail");
    let again = service.oneshot(login("192.0.2.3", 100)).await.unwrap();
    assert_eq!(again.status(), 429);
}

/// A reserved attempt whose request is dropped before the service answers
/// is refunded: cancelling never costs a unit.
#[tokio::test]
async fn a_dropped_attempt_is_refunded() {
    use tokio::sync::{Semaphore, mpsc};
    let clock = ManualClock::at_unix(T0);
    let (entered, mut arrived) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(0));
    let inner = {
        let gate = gate.clone();
        service_fn(move |req: Request<Full<Bytes>>| {
            let (entered, gate) = (entered.clone(), gate.clone());
            async move {
                let _ = entered.send(());
                let _permit = gate.acquire().await.expect("the gate is never closed");
                auth_service(req).await
            }
        })
    };
    let service = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 1, 60),
        counts_refused,
    )
    .layer(inner);
    let stuck = tokio::spawn(service.clone().oneshot(request_from("198.51.100.30")));
    arrived
        .recv()
        .await
        .expect("the first attempt reaches the service");
    // The only unit is reserved by the attempt in flight.
    let second = service
        .clone()
        .oneshot(request_from("198.51.100.30"))
        .await
        .unwrap();
    assert_eq!(second.status(), 429);
    stuck.abort();
    assert!(stuck.await.unwrap_err().is_cancelled());
    gate.add_permits(1);
    let third = service
        .oneshot(request_from("198.51.100.30"))
        .await
        .unwrap();
    assert_eq!(
        third.status(),
        200,
        "the dropped attempt gave its unit back"
    );
}

/// Sends `n` requests made by `make` at once through `service`; the inner
/// service (`answer`, behind a gate) answers only once every request has
/// reached it or been answered without it. The statuses.
async fn all_in_flight<S>(
    layer: impl Fn(
        tower::util::BoxCloneSyncService<Request<Full<Bytes>>, Response<Full<Bytes>>, Infallible>,
    ) -> S,
    n: usize,
    make: impl Fn() -> Request<Full<Bytes>>,
) -> Vec<u16>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send,
{
    use tokio::sync::{Semaphore, mpsc};
    let (events, mut arrived) = mpsc::unbounded_channel::<()>();
    let gate = Arc::new(Semaphore::new(0));
    let inner = {
        let (events, gate) = (events.clone(), gate.clone());
        tower::util::BoxCloneSyncService::new(service_fn(move |req: Request<Full<Bytes>>| {
            let (events, gate) = (events.clone(), gate.clone());
            async move {
                let _ = events.send(());
                let _permit = gate.acquire().await.expect("the gate is never closed");
                auth_service(req).await
            }
        }))
    };
    let service = layer(inner);
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (service, events, request) = (service.clone(), events.clone(), make());
            tokio::spawn(async move {
                let status = service.oneshot(request).await.unwrap().status().as_u16();
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

/// Attempts are the requests with an `x-code` (a credential, here).
fn has_credential(request: &RequestInfo<'_>) -> bool {
    request.headers.contains_key("x-code")
}

/// More requests that cannot fail in flight from one address than the
/// quota: none is reserved, so none is refused; attempts beside them are
/// still reserved, and once the address is locked out every request is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_cannot_fail_are_never_reserved() {
    let clock = ManualClock::at_unix(T0);
    let layer = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 5, 3600),
        counts_refused,
    )
    .attempts(has_credential);
    let statuses = all_in_flight(
        |inner| layer.layer(inner),
        64,
        || request_from("198.51.100.40"),
    )
    .await;
    assert!(
        statuses.iter().all(|s| *s == 200),
        "no credentials, none may be 429: {statuses:?}"
    );
    // The same layer still reserves every attempt in flight.
    let statuses = all_in_flight(
        |inner| layer.layer(inner),
        64,
        || {
            let mut request = request_from("198.51.100.40");
            request
                .headers_mut()
                .insert("x-code", "invalid_token".parse().unwrap());
            request
        },
    )
    .await;
    let refused = statuses.iter().filter(|s| **s == 401).count();
    assert_eq!(refused, 5, "exactly the quota of guesses: {statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 59);
    // Locked out: a request that cannot fail is refused too, with headers.
    let response = layer
        .layer(service_fn(auth_service))
        .oneshot(request_from("198.51.100.40"))
        .await
        .unwrap();
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(body_json(response).await["policy"], "auth-failures");
    // Another address is free.
    let response = layer
        .layer(service_fn(auth_service))
        .oneshot(request_from("198.51.100.41"))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// A request the predicate did not expect to fail, failing after all, is
/// still counted (once its response is known).
#[tokio::test]
async fn an_unexpected_failure_is_counted_after_the_fact() {
    let clock = ManualClock::at_unix(T0);
    // Nothing is an attempt: every failure is unexpected.
    let service = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 2, 60),
        counts_refused,
    )
    .attempts(|_: &RequestInfo<'_>| false)
    .layer(service_fn(auth_service));
    let bad = || {
        let mut request = request_from("198.51.100.42");
        request
            .headers_mut()
            .insert("x-code", "invalid_token".parse().unwrap());
        request
    };
    for i in 0..2 {
        let response = service.clone().oneshot(bad()).await.unwrap();
        assert_eq!(response.status(), 401, "failure {i}");
    }
    assert_eq!(service.clone().oneshot(bad()).await.unwrap().status(), 429);
    assert_eq!(
        service
            .oneshot(request_from("198.51.100.42"))
            .await
            .unwrap()
            .status(),
        429
    );
}

/// The in-process backend, with refunds over a "network" that answers only
/// when the test says so: the response must not wait for its refund.
struct SlowRefunds {
    memory: Arc<InMemoryBackend>,
    gate: Arc<tokio::sync::Semaphore>,
}

impl RateLimitBackend for SlowRefunds {
    fn check<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a> {
        self.memory.check(policy, key, cost)
    }
    fn peek<'a>(&'a self, policy: &'a Policy, key: &'a RateKey) -> Check<'a> {
        self.memory.peek(policy, key)
    }
    fn refund<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a, ()> {
        Check::Pending(Box::pin(async move {
            let _permit = self.gate.acquire().await.expect("never closed");
            self.memory.refund(policy, key, cost).wait().await
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_response_does_not_wait_for_its_refund() {
    let clock = ManualClock::at_unix(T0);
    let memory = backend(&clock);
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let policy = policy("auth-failures", 1, 3600);
    let service = FailureLimitLayer::new(
        Arc::new(SlowRefunds {
            memory: memory.clone(),
            gate: gate.clone(),
        }),
        policy.clone(),
        counts_refused,
    )
    .layer(service_fn(auth_service));
    // The refund cannot complete until the gate opens: the response comes
    // first (with the unit still reserved).
    let response = tokio::time::timeout(
        Duration::from_secs(30),
        service.clone().oneshot(request_from("198.51.100.43")),
    )
    .await
    .expect("the response does not wait for the refund")
    .unwrap();
    assert_eq!(response.status(), 200);
    let key = RateKey::ip("198.51.100.43".parse().unwrap());
    assert!(
        !memory.peek(&policy, &key).wait().await.unwrap().allowed,
        "the refund is still pending"
    );
    // Once the network answers, the refund lands in the background.
    gate.add_permits(1);
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !memory.peek(&policy, &key).wait().await.unwrap().allowed {
        assert!(
            std::time::Instant::now() < deadline,
            "the background refund never landed"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        service
            .oneshot(request_from("198.51.100.43"))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The backend failing with a fallback: the lockout holds in process, for
/// attempts and for the requests only looked at.
#[tokio::test]
async fn the_lockout_falls_back_in_process() {
    let clock = ManualClock::at_unix(T0);
    let service = FailureLimitLayer::new(
        Arc::new(Down),
        policy("auth-failures", 2, 60),
        counts_refused,
    )
    .attempts(has_credential)
    .on_failure(FailurePolicy::Fallback(backend(&clock)))
    .layer(service_fn(auth_service));
    let bad = || {
        let mut request = request_from("198.51.100.44");
        request
            .headers_mut()
            .insert("x-code", "invalid_token".parse().unwrap());
        request
    };
    for _ in 0..5 {
        let response = service
            .clone()
            .oneshot(request_from("198.51.100.44"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "no credentials, nothing counted");
    }
    for i in 0..2 {
        assert_eq!(
            service.clone().oneshot(bad()).await.unwrap().status(),
            401,
            "{i}"
        );
    }
    assert_eq!(service.clone().oneshot(bad()).await.unwrap().status(), 429);
    assert_eq!(
        service
            .clone()
            .oneshot(request_from("198.51.100.44"))
            .await
            .unwrap()
            .status(),
        429
    );
    clock.advance(Duration::from_secs(30));
    assert_eq!(
        service
            .oneshot(request_from("198.51.100.44"))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// The statuses of `requests` sent one after another through `service`.
async fn statuses<S>(service: &mut S, requests: Vec<Request<Full<Bytes>>>) -> Vec<u16>
where
    S: Service<Request<Full<Bytes>>, Response = Response<Full<Bytes>>, Error = Infallible>,
{
    let mut out = Vec::new();
    for request in requests {
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        out.push(response.status().as_u16());
    }
    out
}

fn with_tenant(tenant: Option<&str>) -> Request<Full<Bytes>> {
    let mut request = request_from("192.0.2.1");
    if let Some(tenant) = tenant {
        request
            .headers_mut()
            .insert("x-tenant", tenant.parse().unwrap());
    }
    request
}

#[tokio::test]
async fn header_key_buckets_per_value_and_one_for_the_headerless() {
    let clock = ManualClock::at_unix(T0);
    let layer = RateLimitLayer::new(backend(&clock), policy("api", 1, 60))
        .key(HeaderKey(http::HeaderName::from_static("x-tenant")));
    let mut service = layer.layer(service_fn(ok_service));
    // One peer, three buckets: acme, globex, and the headerless.
    let sent = [
        Some("acme"),
        Some("globex"),
        Some("acme"),
        None,
        Some("globex"),
        None,
    ];
    assert_eq!(
        statuses(&mut service, sent.iter().map(|t| with_tenant(*t)).collect()).await,
        [200, 200, 429, 200, 429, 429]
    );
}

#[tokio::test]
async fn a_closure_keys_requests() {
    let clock = ManualClock::at_unix(T0);
    let by_tenant = |request: &RequestInfo<'_>| {
        request
            .headers
            .get("x-tenant")
            .and_then(|v| v.to_str().ok())
            .map(|t| RateKey::text(format!("tenant:{t}")))
    };
    let shared = backend(&clock);
    let layer = RateLimitLayer::new(shared.clone(), policy("api", 2, 60)).key(by_tenant);
    let mut service = layer.layer(service_fn(ok_service));
    let sent = [Some("acme"), Some("acme"), Some("acme"), Some("globex")];
    assert_eq!(
        statuses(&mut service, sent.iter().map(|t| with_tenant(*t)).collect()).await,
        [200, 200, 429, 200]
    );
    // Counted under the closure's keys, not the peer's.
    let peek = |key: &str| match shared.peek(&policy("api", 2, 60), &RateKey::text(key)) {
        Check::Ready(Ok(d)) => d.allowed,
        _ => unreachable!("in process"),
    };
    assert!(!peek("tenant:acme"));
    assert_eq!(shared.tracked_keys(), 2);
}

#[tokio::test]
async fn remaining_and_limit_headers_are_exact_around_the_precomputed_range() {
    let clock = ManualClock::at_unix(T0);
    // Values up to 10_000 come from a table, larger ones are formatted.
    for (limit, first_remaining) in [(1, "0"), (2, "1"), (10_000, "9999"), (10_001, "10000")] {
        let layer =
            RateLimitLayer::new(backend(&clock), policy("api", limit, 3600)).headers(HeaderStyle {
                draft_07: true,
                structured: false,
                x_ratelimit: true,
            });
        let mut service = layer.layer(service_fn(ok_service));
        let response = service
            .ready()
            .await
            .unwrap()
            .call(request_from("192.0.2.1"))
            .await
            .unwrap();
        let h = response.headers();
        let limit = limit.to_string();
        assert_eq!(h["ratelimit-limit"], limit.as_str());
        assert_eq!(h["x-ratelimit-limit"], limit.as_str());
        assert_eq!(h["ratelimit-remaining"], first_remaining, "{limit}");
        assert_eq!(h["x-ratelimit-remaining"], first_remaining, "{limit}");
    }
}

/// Counts every counter increment by name and labels, for one scope.
#[derive(Default)]
struct Counts(Arc<Mutex<Vec<(String, u64)>>>);

struct Count {
    key: String,
    all: Arc<Mutex<Vec<(String, u64)>>>,
}

impl metrics::CounterFn for Count {
    fn increment(&self, value: u64) {
        self.all.lock().unwrap().push((self.key.clone(), value));
    }
    fn absolute(&self, _: u64) {}
}

impl metrics::Recorder for Counts {
    fn describe_counter(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_gauge(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn describe_histogram(
        &self,
        _: metrics::KeyName,
        _: Option<metrics::Unit>,
        _: metrics::SharedString,
    ) {
    }
    fn register_counter(&self, key: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Counter {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        metrics::Counter::from_arc(Arc::new(Count {
            key: format!("{}{{{}}}", key.name(), labels.join(",")),
            all: self.0.clone(),
        }))
    }
    fn register_gauge(&self, _: &metrics::Key, _: &metrics::Metadata<'_>) -> metrics::Gauge {
        metrics::Gauge::noop()
    }
    fn register_histogram(
        &self,
        _: &metrics::Key,
        _: &metrics::Metadata<'_>,
    ) -> metrics::Histogram {
        metrics::Histogram::noop()
    }
}

/// [`Down`], counting how often it is asked to decide.
#[derive(Default)]
struct CountedDown(std::sync::atomic::AtomicUsize);

impl RateLimitBackend for CountedDown {
    fn check<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Down.check(policy, key, cost)
    }
    fn peek<'a>(&'a self, policy: &'a Policy, key: &'a RateKey) -> Check<'a> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Down.peek(policy, key)
    }
    fn refund<'a>(&'a self, policy: &'a Policy, key: &'a RateKey, cost: u32) -> Check<'a, ()> {
        Down.refund(policy, key, cost)
    }
}

#[tokio::test]
async fn a_backend_failure_is_asked_and_counted_once_under_every_failure_policy() {
    let clock = ManualClock::at_unix(T0);
    for (failure, expected) in [
        (FailurePolicy::Open, [200, 200, 200]),
        (FailurePolicy::Closed, [503, 503, 503]),
        (FailurePolicy::Fallback(backend(&clock)), [200, 200, 429]),
    ] {
        let counts = Counts::default();
        let all = counts.0.clone();
        let down = Arc::new(CountedDown::default());
        let mut service = metrics::with_local_recorder(&counts, || {
            RateLimitLayer::new(down.clone(), policy("api", 2, 60))
                .on_failure(failure.clone())
                .layer(service_fn(ok_service))
        });
        let sent = (0..3).map(|_| request_from("192.0.2.1")).collect();
        assert_eq!(statuses(&mut service, sent).await, expected, "{failure:?}");
        assert_eq!(
            down.0.load(std::sync::atomic::Ordering::Relaxed),
            3,
            "{failure:?}: the failing backend is asked once a request"
        );
        let errors: u64 = all
            .lock()
            .unwrap()
            .iter()
            .filter(|(k, _)| k == "ratelimit_backend_errors_total{policy=api}")
            .map(|(_, v)| v)
            .sum();
        assert_eq!(errors, 3, "{failure:?}: one error counted a request");
    }
}

/// A successful attempt's reservation is given back where it was made: with
/// the backend down, to the fallback that counted it.
#[tokio::test]
async fn successes_are_refunded_to_the_fallback_that_counted_them() {
    let clock = ManualClock::at_unix(T0);
    let service = FailureLimitLayer::new(
        Arc::new(Down),
        policy("auth-failures", 2, 60),
        counts_refused,
    )
    .on_failure(FailurePolicy::Fallback(backend(&clock)))
    .layer(service_fn(auth_service));
    let attempt = |code: Option<&str>| attempt_from("198.51.100.45", code);
    for i in 0..5 {
        let response = service.clone().oneshot(attempt(None)).await.unwrap();
        assert_eq!(response.status(), 200, "success {i} is not counted");
    }
    for i in 0..2 {
        let response = service
            .clone()
            .oneshot(attempt(Some("invalid_token")))
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "failure {i}");
    }
    assert_eq!(service.oneshot(attempt(None)).await.unwrap().status(), 429);
}

/// An inner service that is never ready.
#[derive(Clone)]
struct Overloaded;

impl<B> Service<Request<B>> for Overloaded {
    type Response = Response<Full<Bytes>>;
    type Error = &'static str;
    type Future = std::future::Ready<Result<Response<Full<Bytes>>, &'static str>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), &'static str>> {
        std::task::Poll::Ready(Err("overloaded"))
    }

    fn call(&mut self, _: Request<B>) -> Self::Future {
        unreachable!("never ready")
    }
}

#[tokio::test]
async fn the_layers_are_ready_when_their_service_is() {
    let clock = ManualClock::at_unix(T0);
    let mut limited = RateLimitLayer::new(backend(&clock), policy("api", 5, 60)).layer(Overloaded);
    let mut body = BodyRateLimitLayer::new(
        backend(&clock),
        policy("login", 5, 60),
        JsonBodyField::new("email", 1024, PeerIp),
    )
    .layer(Overloaded);
    let mut failures = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 5, 60),
        counts_refused,
    )
    .layer(Overloaded);
    assert_eq!(
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut limited)
            .await
            .err(),
        Some("overloaded")
    );
    assert_eq!(
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut body)
            .await
            .err(),
        Some("overloaded")
    );
    assert_eq!(
        ServiceExt::<Request<Full<Bytes>>>::ready(&mut failures)
            .await
            .err(),
        Some("overloaded")
    );
}

#[test]
fn rate_limiter_debug_shows_its_policy_only() {
    let clock = ManualClock::at_unix(T0);
    let limiter = RateLimiter::new(backend(&clock), policy("ws-messages", 7, 60));
    let shown = format!("{limiter:?}");
    assert!(
        shown.starts_with(r#"RateLimiter { policy: Policy { name: "ws-messages", quota: "#),
        "{shown}"
    );
    assert!(shown.contains("limit: 7"), "{shown}");
    assert!(shown.ends_with(", .. }"), "{shown}");
    assert!(!shown.contains("InMemoryBackend"), "{shown}");
}

#[tokio::test]
async fn reset_headers_are_the_seconds_until_the_bucket_is_full_rounded_up() {
    let clock = ManualClock::at_unix(T0);
    // 3 per minute: 20 s a request.
    let layer = RateLimitLayer::new(backend(&clock), policy("api", 3, 60)).headers(HeaderStyle {
        draft_07: true,
        structured: true,
        x_ratelimit: true,
    });
    let mut service = layer.layer(service_fn(ok_service));
    let mut send = async || {
        service
            .ready()
            .await
            .unwrap()
            .call(request_from("192.0.2.1"))
            .await
            .unwrap()
    };
    for (remaining, reset) in [("2", "20"), ("1", "40"), ("0", "60")] {
        let response = send().await;
        let h = response.headers();
        assert_eq!(h["ratelimit-remaining"], remaining);
        assert_eq!(h["ratelimit-reset"], reset, "{remaining} left");
        assert_eq!(h["x-ratelimit-reset"], reset);
        assert_eq!(
            h["ratelimit"],
            format!("\"api\";r={remaining};t={reset}").as_str()
        );
    }
    clock.advance(Duration::from_millis(500));
    let refused = send().await;
    assert_eq!(refused.status(), 429);
    // 19.5 s to wait, full 59.5 s from now: both rounded up.
    assert_eq!(refused.headers()["retry-after"], "20");
    assert_eq!(refused.headers()["ratelimit-reset"], "60");
    clock.advance(Duration::from_millis(19_500));
    let again = send().await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["ratelimit-reset"], "60");
}

/// The failure that takes the last unit is told, once, with its key and
/// request id; the refusals that follow and the successes are not.
#[tokio::test]
async fn a_lockout_is_told_once_by_the_failure_that_caused_it() {
    let clock = ManualClock::at_unix(T0);
    let told = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = told.clone();
    let layer = FailureLimitLayer::new(
        backend(&clock),
        policy("auth-failures", 3, 60),
        counts_refused,
    )
    .on_lockout(move |lockout: &mcp_ratelimit::Lockout| {
        sink.lock().unwrap().push((
            lockout.key.to_string(),
            lockout
                .request_id
                .clone()
                .map(|v| v.to_str().unwrap().to_owned()),
        ));
    });
    let mut service = layer.layer(service_fn(auth_service));
    let mut statuses = Vec::new();
    for (i, code) in [
        None,
        Some("invalid_token"),
        Some("invalid_token"),
        Some("invalid_token"),
        Some("invalid_token"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut request = attempt_from("198.51.100.9", code);
        request
            .headers_mut()
            .insert("x-request-id", format!("r{i}").parse().unwrap());
        let response = service.ready().await.unwrap().call(request).await.unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 401, 401, 401, 429]);
    assert_eq!(
        *told.lock().unwrap(),
        [("ip:198.51.100.9".to_owned(), Some("r3".to_owned()))]
    );
}
