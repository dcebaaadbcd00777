//! The CORS origin rules, stated input by input: what an `Origin` is, what a
//! setting may list (with its exact error), how wildcards match, and what
//! the layer counts as a preflight.

use std::convert::Infallible;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Method, Request, Response};
use http_body_util::Full;
use mcp_cors::{CorsPolicy, Origin};
use tower::{Layer, Service, ServiceExt, service_fn};

mod common;
use common::Gate;

fn origin(text: &str) -> Option<String> {
    Origin::parse(text.as_bytes()).map(|o| o.as_str().to_owned())
}

#[test]
fn an_origin_is_http_or_https_scheme_host_and_port() {
    for (text, normalised) in [
        ("https://example.com", "https://example.com"),
        ("HTTPS://Example.COM", "https://example.com"),
        ("HtTp://localhost:3000", "http://localhost:3000"),
        ("http://10.0.0.1:8080", "http://10.0.0.1:8080"),
        ("https://my-app.example.com", "https://my-app.example.com"),
        (
            "https://xn--bcher-kva.example",
            "https://xn--bcher-kva.example",
        ),
        ("http://[::1]", "http://[::1]"),
        ("http://[::1]:8080", "http://[::1]:8080"),
        ("http://[2001:DB8::1]", "http://[2001:db8::1]"),
    ] {
        assert_eq!(origin(text).as_deref(), Some(normalised), "{text}");
    }
    for bad in [
        "ftp://example.com",
        "ws://localhost:3000",
        "file://",
        "null",
        "example.com",
        "//example.com",
        "https://",
        "https://example.com/",
        "https://example.com/path",
        "https://example.com?q",
        "https://example.com#f",
        "https://user@example.com",
        "https://example.com:",
        "https://example.com:65536",
        "https://example.com:x",
        "https://:443",
        "http://[::1",
        "http://[::1]x",
        "http://[::1]:",
        "http://[::1]8080",
        "http://[nope]",
        "http://::1",
        "http://]",
        "http://x::]:8080",
    ] {
        assert_eq!(origin(bad), None, "{bad}");
    }
}

#[test]
fn default_ports_are_dropped_per_scheme() {
    for (text, normalised, with_port) in [
        (
            "http://example.com:80",
            "http://example.com",
            "http://example.com:80",
        ),
        (
            "http://example.com",
            "http://example.com",
            "http://example.com:80",
        ),
        (
            "https://example.com:443",
            "https://example.com",
            "https://example.com:443",
        ),
        (
            "https://example.com",
            "https://example.com",
            "https://example.com:443",
        ),
        // The other scheme's default is an ordinary port.
        (
            "http://example.com:443",
            "http://example.com:443",
            "http://example.com:443",
        ),
        (
            "https://example.com:80",
            "https://example.com:80",
            "https://example.com:80",
        ),
        ("http://[::1]:80", "http://[::1]", "http://[::1]:80"),
    ] {
        let parsed = Origin::parse(text.as_bytes()).unwrap();
        assert_eq!(parsed.as_str(), normalised, "{text}");
        assert_eq!(parsed.with_port(), with_port, "{text}");
        // Display writes the normalised text, which parses back to itself.
        assert_eq!(parsed.to_string(), normalised, "{text}");
        assert_eq!(Origin::parse(parsed.to_string().as_bytes()), Some(parsed));
    }
}

#[test]
fn an_origin_host_is_a_dns_name_of_valid_labels() {
    let label = "a".repeat(63);
    // 63 + 1 + 63 + 1 + 63 + 1 + 61 = 253 bytes, the DNS maximum.
    let longest = format!("{label}.{label}.{label}.{}", "a".repeat(61));
    assert_eq!(longest.len(), 253);
    for good in [
        format!("https://{label}.example.com"),
        format!("https://{longest}"),
        "https://a-b.example.com".to_owned(),
        "https://a--b.example.com".to_owned(),
        "https://1.example.com".to_owned(),
        "https://localhost".to_owned(),
    ] {
        assert!(origin(&good).is_some(), "{good}");
    }
    for bad in [
        format!("https://{label}a.example.com"),
        format!("https://{longest}a"),
        format!("https://a.{longest}"),
        "https://exa mple.com".to_owned(),
        "https://exa_mple.com".to_owned(),
        "https://exa%6dple.com".to_owned(),
        "https://a..example.com".to_owned(),
        "https://.example.com".to_owned(),
        // The absolute form (trailing dot) has an empty label: refused.
        "https://example.com.".to_owned(),
        "https://-a.example.com".to_owned(),
        "https://a-.example.com".to_owned(),
        "https://a.-.com".to_owned(),
        "https://*.example.com".to_owned(),
        "https://é.example.com".to_owned(),
    ] {
        assert_eq!(origin(&bad), None, "{bad}");
    }
}

#[test]
fn an_origin_longer_than_512_bytes_is_refused_as_it_stands() {
    // Ports are read as numbers, so only a zero-padded port makes a
    // well-formed origin this long; the cap is on the raw header value.
    let padded = |len: usize| {
        let head = "http://example.com:";
        format!("{head}{}80", "0".repeat(len - head.len() - 2))
    };
    assert_eq!(padded(512).len(), 512);
    assert_eq!(origin(&padded(512)).as_deref(), Some("http://example.com"));
    assert_eq!(origin(&padded(513)), None);
    assert_eq!(origin(&padded(600)), None);
}

#[test]
fn a_setting_is_refused_with_the_reason() {
    let wildcard =
        "a wildcard must be the whole left-most label of a domain with at least two labels";
    for (setting, entry, reason) in [
        (
            "example.com",
            "example.com",
            "expected scheme://host[:port]",
        ),
        (
            "ftp://x.com",
            "ftp://x.com",
            "the scheme must be http or https",
        ),
        (
            "https://",
            "https://",
            "an origin has no path, query, fragment or user",
        ),
        (
            "https://x.com/path",
            "https://x.com/path",
            "an origin has no path, query, fragment or user",
        ),
        (
            "https://x.com/",
            "https://x.com/",
            "an origin has no path, query, fragment or user",
        ),
        (
            "https://u@x.com",
            "https://u@x.com",
            "an origin has no path, query, fragment or user",
        ),
        ("https://x.com:99999", "https://x.com:99999", "bad port"),
        ("https://[::1]x", "https://[::1]x", "bad port"),
        ("https://*.com", "https://*.com", wildcard),
        (
            "https://*.*.example.com",
            "https://*.*.example.com",
            wildcard,
        ),
        ("https://*.exa mple.com", "https://*.exa mple.com", wildcard),
        (
            "https://*.a..example.com",
            "https://*.a..example.com",
            wildcard,
        ),
        ("https://*.localhost", "https://*.localhost", wildcard),
        (
            "https://a.*.example.com",
            "https://a.*.example.com",
            "not a host name or address",
        ),
        (
            "https://*example.com",
            "https://*example.com",
            "not a host name or address",
        ),
        (
            "https://exa mple.com",
            "https://exa mple.com",
            "not a host name or address",
        ),
        (
            "https://example.com.",
            "https://example.com.",
            "not a host name or address",
        ),
        (
            "https://a.com, *",
            "*",
            "`*` must be the whole setting, not part of a list",
        ),
        (
            "https://a.com, NULL",
            "NULL",
            "the null origin is never allowed with credentials",
        ),
    ] {
        assert_eq!(
            setting.parse::<CorsPolicy>().unwrap_err().to_string(),
            format!("invalid CORS origin {entry:?}: {reason}"),
            "{setting}"
        );
    }
}

#[test]
fn only_an_empty_or_off_setting_disables_cors() {
    for off in ["", "  ", "false", "off", "none", " , ", ","] {
        let policy: CorsPolicy = off.parse().unwrap();
        assert!(policy.is_disabled(), "{off:?}");
        assert!(policy.layer().is_disabled(), "{off:?}");
    }
    for on in ["*", "https://a.example.com", "https://*.example.com"] {
        let policy: CorsPolicy = on.parse().unwrap();
        assert!(!policy.is_disabled(), "{on}");
        assert!(!policy.layer().is_disabled(), "{on}");
    }
    assert!(CorsPolicy::disabled().is_disabled());
}

#[test]
fn a_wildcard_stands_for_whole_labels_left_of_the_suffix() {
    let policy: CorsPolicy = "https://*.example.com".parse().unwrap();
    for good in [
        "https://a.example.com",
        "https://A.Example.COM",
        "https://a.example.com:443",
        "https://a.b.example.com",
        "https://a.bbbbbbbbbbb.example.com",
        "https://a-b.example.com",
    ] {
        assert!(policy.allows(good.as_bytes()), "{good}");
    }
    for bad in [
        "https://example.com",
        "https://evilexample.com",
        "https://evil-example.com",
        "https://a.example.com.evil.net",
        "https://a.example.co",
        "https://a.example.com:8443",
        "http://a.example.com",
        "https://.example.com",
        "https://a..example.com",
        "null",
    ] {
        assert!(!policy.allows(bad.as_bytes()), "{bad}");
    }
}

#[test]
fn a_wildcard_port_is_normalised_like_an_origin_port() {
    // The scheme's default port is the same as none.
    for setting in ["https://*.example.com:443", "https://*.example.com"] {
        let policy: CorsPolicy = setting.parse().unwrap();
        assert!(policy.allows(b"https://a.example.com"), "{setting}");
        assert!(policy.allows(b"https://a.example.com:443"), "{setting}");
        assert!(!policy.allows(b"https://a.example.com:8443"), "{setting}");
    }
    let http: CorsPolicy = "http://*.example.com:80".parse().unwrap();
    assert!(http.allows(b"http://a.example.com"));
    assert!(!http.allows(b"http://a.example.com:8080"));
    // Any other port must be given exactly.
    let other: CorsPolicy = "https://*.example.com:8443".parse().unwrap();
    assert!(other.allows(b"https://a.example.com:8443"));
    assert!(!other.allows(b"https://a.example.com"));
    assert!(!other.allows(b"https://a.example.com:443"));
    // The other scheme's default is an ordinary port.
    let cross: CorsPolicy = "https://*.example.com:80".parse().unwrap();
    assert!(cross.allows(b"https://a.example.com:80"));
    assert!(!cross.allows(b"https://a.example.com"));
}

#[test]
fn an_exact_entry_normalises_case_and_default_port() {
    let policy: CorsPolicy = "HTTP://App.Example.com:80, https://[::1]:443"
        .parse()
        .unwrap();
    for good in [
        "http://app.example.com",
        "http://APP.example.com:80",
        "https://[::1]",
    ] {
        assert!(policy.allows(good.as_bytes()), "{good}");
    }
    for bad in [
        "https://app.example.com",
        "http://app.example.com:8080",
        "http://[::1]",
    ] {
        assert!(!policy.allows(bad.as_bytes()), "{bad}");
    }
}

async fn ok(_request: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    Ok(Response::new(Full::new(Bytes::from_static(b"{}"))))
}

/// Status and `Access-Control-Allow-Origin` of a request through the layer
/// of `https://app.example.com`.
async fn through(method: Method, headers: &[(&str, &str)]) -> (u16, Option<String>) {
    let policy: CorsPolicy = "https://app.example.com".parse().unwrap();
    let mut request = Request::builder().method(method).uri("/mcp");
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = policy
        .layer()
        .layer(service_fn(ok))
        .oneshot(request.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let allow = response
        .headers()
        .get("access-control-allow-origin")
        .map(|v| v.to_str().unwrap().to_owned());
    (response.status().as_u16(), allow)
}

#[tokio::test]
async fn a_preflight_is_options_with_origin_and_request_method() {
    const ORIGIN: (&str, &str) = ("origin", "https://app.example.com");
    const METHOD: (&str, &str) = ("access-control-request-method", "POST");
    let allowed = Some("https://app.example.com".to_owned());
    // A preflight is answered 204.
    assert_eq!(
        through(Method::OPTIONS, &[ORIGIN, METHOD]).await,
        (204, allowed.clone())
    );
    // Not a preflight: the 200 stays.
    assert_eq!(
        through(Method::OPTIONS, &[ORIGIN]).await,
        (200, allowed.clone())
    );
    assert_eq!(through(Method::OPTIONS, &[METHOD]).await, (200, None));
    assert_eq!(through(Method::OPTIONS, &[]).await, (200, None));
    assert_eq!(
        through(Method::GET, &[ORIGIN, METHOD]).await,
        (200, allowed.clone())
    );
    assert_eq!(
        through(Method::POST, &[ORIGIN, METHOD]).await,
        (200, allowed)
    );
    // A refused origin's preflight is still 204, without CORS headers.
    assert_eq!(
        through(
            Method::OPTIONS,
            &[("origin", "https://evil.example"), METHOD]
        )
        .await,
        (204, None)
    );
}

#[test]
fn the_cors_layer_is_ready_when_the_inner_service_is() {
    let mut cx = Context::from_waker(Waker::noop());
    for setting in ["*", "https://app.example.com", "false"] {
        let layer = setting.parse::<CorsPolicy>().unwrap().layer();
        for state in [Poll::Pending, Poll::Ready(Err("down")), Poll::Ready(Ok(()))] {
            let mut service = layer.layer(Gate(state));
            assert_eq!(
                Service::<Request<Full<Bytes>>>::poll_ready(&mut service, &mut cx),
                state,
                "{setting}"
            );
        }
    }
}

#[test]
fn ipv6_origins_compare_canonically() {
    let policy: CorsPolicy = "http://[0:0::1]:3000, https://[2001:DB8:0::1]"
        .parse()
        .unwrap();
    for good in [
        "http://[::1]:3000",
        "http://[0:0:0:0:0:0:0:1]:3000",
        "https://[2001:db8::1]",
    ] {
        assert!(policy.allows(good.as_bytes()), "{good}");
    }
    assert_eq!(
        origin("http://[0:0::ABCD]:8080").as_deref(),
        Some("http://[::abcd]:8080")
    );
}

#[tokio::test]
async fn a_disabled_policy_layer_passes_everything_through_untouched() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let service =
        CorsPolicy::disabled()
            .layer()
            .layer(service_fn(move |request: Request<Full<Bytes>>| {
                seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    // The inner service answers the preflight itself: 405, as a
                    // router without an OPTIONS route would.
                    let mut response = Response::new(Full::new(Bytes::from_static(b"inner")));
                    if request.method() == Method::OPTIONS {
                        *response.status_mut() = http::StatusCode::METHOD_NOT_ALLOWED;
                    }
                    Ok::<_, Infallible>(response)
                }
            }));
    for (method, preflight) in [(Method::OPTIONS, true), (Method::POST, false)] {
        let mut request = Request::builder()
            .method(method.clone())
            .uri("/mcp")
            .header("origin", "https://app.example.com");
        if preflight {
            request = request.header("access-control-request-method", "POST");
        }
        let response = service
            .clone()
            .oneshot(request.body(Full::new(Bytes::new())).unwrap())
            .await
            .unwrap();
        let expected = if preflight { 405 } else { 200 };
        assert_eq!(response.status(), expected, "{method}");
        assert!(
            response
                .headers()
                .keys()
                .all(|name| !name.as_str().starts_with("access-control-")),
            "{method}: {:?}",
            response.headers()
        );
        assert!(!response.headers().contains_key("vary"), "{method}");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}
