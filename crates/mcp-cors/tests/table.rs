//! Table-driven CORS and guard tests through `tower::ServiceExt::oneshot`.

use std::convert::Infallible;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use mcp_cors::{CorsPolicy, HostOriginGuardLayer};
use tower::{Layer, ServiceExt, service_fn};

async fn handler(request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    // Stands for an API that refuses unauthenticated calls.
    let status = if request.headers().contains_key("authorization") {
        StatusCode::OK
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = Response::new(Full::new(Bytes::from_static(b"{}")));
    *response.status_mut() = status;
    Ok(response)
}

struct Case {
    name: &'static str,
    setting: &'static str,
    method: Method,
    origin: Option<&'static str>,
    preflight: bool,
    /// Expected `Access-Control-Allow-Origin` (None: absent).
    allow_origin: Option<&'static str>,
    credentials: bool,
    vary_origin: bool,
    status: u16,
}

async fn run(case: &Case) -> Response<Full<Bytes>> {
    let policy: CorsPolicy = case.setting.parse().unwrap();
    let mut request = Request::builder()
        .method(case.method.clone())
        .uri("/api/keys");
    if let Some(origin) = case.origin {
        request = request.header("origin", origin);
    }
    if case.preflight {
        request = request
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type, x-api-key");
    } else {
        request = request.header("authorization", "Bearer x");
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    policy
        .layer()
        .layer(service_fn(handler))
        .oneshot(request)
        .await
        .unwrap()
}

#[tokio::test]
async fn cors_table() {
    let cases = [
        Case {
            name: "disallowed origin gets no CORS headers",
            setting: "https://app.example.com",
            method: Method::GET,
            origin: Some("https://evil.example"),
            preflight: false,
            allow_origin: None,
            credentials: false,
            vary_origin: true,
            status: 200,
        },
        Case {
            name: "allowed origin is reflected with credentials",
            setting: "https://app.example.com, https://other.example.com",
            method: Method::GET,
            origin: Some("https://other.example.com"),
            preflight: false,
            allow_origin: Some("https://other.example.com"),
            credentials: true,
            vary_origin: true,
            status: 200,
        },
        Case {
            name: "star allows any origin without credentials",
            setting: "*",
            method: Method::GET,
            origin: Some("https://anyone.example"),
            preflight: false,
            allow_origin: Some("*"),
            credentials: false,
            // Harmless for `*`; tower-http always names what it reads.
            vary_origin: true,
            status: 200,
        },
        Case {
            name: "wildcard subdomain matches a subdomain",
            setting: "https://*.example.com",
            method: Method::GET,
            origin: Some("https://deep.app.example.com"),
            preflight: false,
            allow_origin: Some("https://deep.app.example.com"),
            credentials: true,
            vary_origin: true,
            status: 200,
        },
        Case {
            name: "wildcard refuses a look-alike domain",
            setting: "https://*.example.com",
            method: Method::GET,
            origin: Some("https://evil-example.com"),
            preflight: false,
            allow_origin: None,
            credentials: false,
            vary_origin: true,
            status: 200,
        },
        Case {
            name: "wildcard refuses the bare domain and a suffix attack",
            setting: "https://*.example.com",
            method: Method::GET,
            origin: Some("https://app.example.com.evil.net"),
            preflight: false,
            allow_origin: None,
            credentials: false,
            vary_origin: true,
            status: 200,
        },
        Case {
            name: "preflight answers 204 without credentials being needed",
            setting: "https://app.example.com",
            method: Method::OPTIONS,
            origin: Some("https://app.example.com"),
            preflight: true,
            allow_origin: Some("https://app.example.com"),
            credentials: true,
            vary_origin: true,
            status: 204,
        },
        Case {
            name: "false disables CORS",
            setting: "false",
            method: Method::GET,
            origin: Some("https://app.example.com"),
            preflight: false,
            allow_origin: None,
            credentials: false,
            vary_origin: false,
            status: 200,
        },
        Case {
            name: "null is never reflected",
            setting: "*",
            method: Method::GET,
            origin: Some("null"),
            preflight: false,
            allow_origin: Some("*"),
            credentials: false,
            // Harmless for `*`; tower-http always names what it reads.
            vary_origin: true,
            status: 200,
        },
    ];
    for case in &cases {
        let response = run(case).await;
        let h = response.headers();
        assert_eq!(response.status().as_u16(), case.status, "{}", case.name);
        assert_eq!(
            h.get("access-control-allow-origin")
                .map(|v| v.to_str().unwrap()),
            case.allow_origin,
            "{}",
            case.name
        );
        assert_eq!(
            h.get("access-control-allow-credentials").is_some(),
            case.credentials,
            "{}",
            case.name
        );
        let vary = h
            .get_all("vary")
            .iter()
            .any(|v| v.to_str().unwrap().to_ascii_lowercase().contains("origin"));
        assert_eq!(vary, case.vary_origin, "{}", case.name);
    }
}

#[tokio::test]
async fn preflight_lists_the_contract() {
    let case = Case {
        name: "preflight",
        setting: "https://app.example.com",
        method: Method::OPTIONS,
        origin: Some("https://app.example.com"),
        preflight: true,
        allow_origin: None,
        credentials: true,
        vary_origin: true,
        status: 204,
    };
    let response = run(&case).await;
    let h = response.headers();
    let methods = h["access-control-allow-methods"].to_str().unwrap();
    for method in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
        assert!(methods.contains(method), "{methods}");
    }
    let headers = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "accept",
        "content-type",
        "authorization",
        "x-api-key",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    ] {
        assert!(headers.contains(header), "{headers}");
    }
    assert_eq!(h["access-control-max-age"], "86400");
    assert_eq!(response.status(), 204);
}

#[tokio::test]
async fn cors_headers_reach_error_responses() {
    let policy: CorsPolicy = "https://app.example.com".parse().unwrap();
    let request = Request::get("/api/keys")
        .header("origin", "https://app.example.com")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = policy
        .layer()
        .layer(service_fn(handler))
        .oneshot(request)
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(
        response.headers()["access-control-allow-origin"],
        "https://app.example.com"
    );
    let exposed = response.headers()["access-control-expose-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for header in [
        "www-authenticate",
        "retry-after",
        "ratelimit-remaining",
        "mcp-session-id",
    ] {
        assert!(exposed.contains(header), "{exposed}");
    }
}

async fn guarded(
    guard: &HostOriginGuardLayer,
    host: Option<&str>,
    origin: Option<&[u8]>,
    method: Method,
) -> (u16, String) {
    let mut request = Request::builder().method(method).uri("/mcp");
    if let Some(host) = host {
        request = request.header("host", host);
    }
    if let Some(origin) = origin {
        request = request.header("origin", http::HeaderValue::from_bytes(origin).unwrap());
    }
    let request = request.body(Full::new(Bytes::new())).unwrap();
    let response = guard
        .layer(service_fn(|_r: Request<Full<Bytes>>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
        }))
        .oneshot(request)
        .await
        .unwrap();
    let status = response.status().as_u16();
    let code = response
        .extensions()
        .get::<mcp_core::ProblemCode>()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    (status, code)
}

#[tokio::test]
async fn guard_table() {
    let guard = HostOriginGuardLayer::new("https://app.example.com".parse().unwrap())
        .allow_host("mcp.example.com".parse::<mcp_cors::AllowedHost>().unwrap())
        .allow_host("127.0.0.1:8080".parse::<mcp_cors::AllowedHost>().unwrap())
        .own_origin(
            "https://mcp.example.com"
                .parse::<mcp_cors::Origin>()
                .unwrap(),
        );
    let long = "a".repeat(5000);
    /// Name, Host, Origin, method, expected status and code.
    type GuardCase<'a> = (
        &'a str,
        Option<&'a str>,
        Option<&'a [u8]>,
        Method,
        u16,
        &'a str,
    );
    let cases: Vec<GuardCase<'_>> = vec![
        (
            "loopback, no origin",
            Some("localhost:3000"),
            None,
            Method::POST,
            200,
            "",
        ),
        (
            "allowed host with any port",
            Some("mcp.example.com:8443"),
            None,
            Method::GET,
            200,
            "",
        ),
        (
            "allowed host without port",
            Some("MCP.example.com"),
            None,
            Method::GET,
            200,
            "",
        ),
        (
            "host with a fixed port",
            Some("127.0.0.1:8080"),
            None,
            Method::GET,
            200,
            "",
        ),
        (
            "IPv6 loopback",
            Some("[::1]:8080"),
            None,
            Method::GET,
            200,
            "",
        ),
        (
            "foreign host (DNS rebinding)",
            Some("attacker.example"),
            None,
            Method::POST,
            403,
            "host_not_allowed",
        ),
        (
            "foreign host, allowed origin",
            Some("attacker.example:80"),
            Some(b"https://app.example.com"),
            Method::POST,
            403,
            "host_not_allowed",
        ),
        (
            "no host at all",
            None,
            None,
            Method::GET,
            403,
            "host_not_allowed",
        ),
        (
            "garbage host",
            Some("exa mple"),
            None,
            Method::GET,
            403,
            "host_not_allowed",
        ),
        (
            "huge host",
            Some(long.as_str()),
            None,
            Method::GET,
            403,
            "host_not_allowed",
        ),
        (
            "own origin",
            Some("mcp.example.com"),
            Some(b"https://mcp.example.com"),
            Method::POST,
            200,
            "",
        ),
        (
            "CORS-allowed origin",
            Some("mcp.example.com"),
            Some(b"https://app.example.com"),
            Method::POST,
            200,
            "",
        ),
        (
            "foreign origin",
            Some("mcp.example.com"),
            Some(b"https://evil.example"),
            Method::POST,
            403,
            "origin_not_allowed",
        ),
        (
            "foreign origin, preflight",
            Some("mcp.example.com"),
            Some(b"https://evil.example"),
            Method::OPTIONS,
            403,
            "origin_not_allowed",
        ),
        (
            "null origin",
            Some("mcp.example.com"),
            Some(b"null"),
            Method::POST,
            403,
            "origin_not_allowed",
        ),
        (
            "binary origin",
            Some("mcp.example.com"),
            Some(b"\xff\xfe"),
            Method::POST,
            403,
            "origin_not_allowed",
        ),
        (
            "origin with a path",
            Some("mcp.example.com"),
            Some(b"https://app.example.com/x"),
            Method::POST,
            403,
            "origin_not_allowed",
        ),
        (
            "same host, other scheme",
            Some("mcp.example.com"),
            Some(b"http://mcp.example.com"),
            Method::POST,
            403,
            "origin_not_allowed",
        ),
    ];
    for (name, host, origin, method, status, code) in cases {
        let (got, got_code) = guarded(&guard, host, origin, method).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{name}");
    }
    // null only when allowed explicitly; `*` lets every well-formed origin in.
    let open = guard.clone().allow_null_origin(true);
    assert_eq!(
        guarded(&open, Some("mcp.example.com"), Some(b"null"), Method::GET)
            .await
            .0,
        200
    );
    let any = HostOriginGuardLayer::new("*".parse().unwrap())
        .allow_host("mcp.example.com".parse::<mcp_cors::AllowedHost>().unwrap());
    assert_eq!(
        guarded(
            &any,
            Some("mcp.example.com"),
            Some(b"https://x.example"),
            Method::GET
        )
        .await
        .0,
        200
    );
    assert_eq!(
        guarded(&any, Some("mcp.example.com"), Some(b"null"), Method::GET)
            .await
            .0,
        403
    );

    // Two Host or Origin headers are refused.
    let request = Request::get("/")
        .header("host", "localhost")
        .header("host", "attacker.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(guard.check(&request).is_err());
    let request = Request::get("/")
        .header("host", "localhost")
        .header("origin", "https://app.example.com")
        .header("origin", "https://evil.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert!(guard.check(&request).is_err());
}

/// Our preflight answer (made from values computed once) is tower-http's,
/// header for header, for allowed, refused, wildcard-matched and hostile
/// origins, under a list and under `*`: the answer tower-http would give
/// with the contract's settings, made `204` and stripped of what an
/// unallowed origin must not learn, as the layer always did.
#[tokio::test]
async fn preflight_answers_are_tower_https() {
    use tower_http::cors::{AllowOrigin, CorsLayer as TowerCorsLayer};
    for setting in ["https://app.example.com, https://*.example.org", "*"] {
        let policy: CorsPolicy = setting.parse().unwrap();
        let reference = {
            let base = TowerCorsLayer::new()
                .allow_methods(mcp_cors::ALLOWED_METHODS.to_vec())
                .allow_headers(mcp_cors::allowed_headers())
                .max_age(std::time::Duration::from_secs(86_400));
            if policy.allows_any() {
                base.allow_origin(AllowOrigin::any())
            } else {
                let policy = policy.clone();
                base.allow_origin(AllowOrigin::predicate(move |origin, _| {
                    policy.allows(origin.as_bytes())
                }))
                .allow_credentials(true)
            }
        };
        for origin in [
            "https://app.example.com",
            "https://a.b.example.org",
            "https://evil.example.com",
            "HTTPS://APP.EXAMPLE.COM",
            "https://app.example.com:443",
            "null",
            "not an origin",
        ] {
            let request = || {
                Request::builder()
                    .method(Method::OPTIONS)
                    .uri("/api/keys")
                    .header("origin", origin)
                    .header("access-control-request-method", "POST")
                    .header("access-control-request-headers", "authorization")
                    .body(Full::new(Bytes::new()))
                    .unwrap()
            };
            let ours = policy
                .layer()
                .layer(service_fn(handler))
                .oneshot(request())
                .await
                .unwrap();
            let mut theirs = reference
                .clone()
                .layer(service_fn(handler))
                .oneshot(request())
                .await
                .unwrap();
            assert_eq!(theirs.status(), 200, "{setting} {origin}");
            let headers = theirs.headers_mut();
            if !headers.contains_key("access-control-allow-origin") {
                for name in [
                    "access-control-allow-credentials",
                    "access-control-allow-methods",
                    "access-control-allow-headers",
                    "access-control-max-age",
                ] {
                    headers.remove(name);
                }
            }
            headers.insert("content-length", "0".parse().unwrap());
            let sorted = |h: &http::HeaderMap| {
                let mut all: Vec<(String, String)> = h
                    .iter()
                    .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_owned()))
                    .collect();
                all.sort();
                all
            };
            assert_eq!(ours.status(), 204, "{setting} {origin}");
            assert_eq!(
                sorted(ours.headers()),
                sorted(theirs.headers()),
                "{setting} {origin}"
            );
        }
    }
}

/// An `OPTIONS` without `Origin` is not a browser's preflight, but tower-http
/// answers it as it answers every `OPTIONS` (an empty `200`, the API not
/// reached) and the layer says nothing of CORS in it but `Vary`; a `GET`
/// without `Origin` reaches the API untouched but for `Vary`.
#[tokio::test]
async fn requests_without_origin_say_nothing_of_cors() {
    let policy: CorsPolicy = "https://app.example.com".parse().unwrap();
    for (method, preflight_header, status) in [
        (Method::OPTIONS, true, 200),
        (Method::OPTIONS, false, 200),
        (Method::GET, false, 401),
    ] {
        let mut request = Request::builder().method(method.clone()).uri("/api/keys");
        if preflight_header {
            request = request.header("access-control-request-method", "POST");
        }
        let response = policy
            .layer()
            .layer(service_fn(handler))
            .oneshot(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), status, "{method} {preflight_header}");
        assert!(
            response
                .headers()
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "{method}: {:?}",
            response.headers()
        );
        assert_eq!(
            response.headers()["vary"],
            "origin, access-control-request-method, access-control-request-headers"
        );
    }
}
