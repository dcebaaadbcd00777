//! The guard's `Host` rules, stated input by input: the syntax of an allowed
//! host, ports, look-alike names through the layer, and readiness.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use mcp_cors::{AllowedHost, AllowedHosts, CorsPolicy, HostOriginGuardLayer};
use tower::{Layer, Service, ServiceExt, service_fn};

mod common;
use common::Gate;

/// Status, problem code ("" when the request passed) and whether the inner
/// service saw the request.
async fn through_layer(
    guard: &HostOriginGuardLayer,
    request: Request<Full<Bytes>>,
) -> (u16, String, bool) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let service = guard.layer(service_fn(move |_r: Request<Full<Bytes>>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok")))) }
    }));
    let response = service.oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let code = response
        .extensions()
        .get::<mcp_core::ProblemCode>()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    if !code.is_empty() {
        assert_eq!(
            response.headers()["content-type"],
            mcp_core::PROBLEM_CONTENT_TYPE
        );
        let body = response.into_body().collect().await.unwrap().to_bytes();
        let body = std::str::from_utf8(&body).unwrap();
        assert!(body.contains(&format!("\"code\":\"{code}\"")), "{body}");
        assert!(body.contains("\"status\":403"), "{body}");
    }
    (status, code, calls.load(Ordering::SeqCst) == 1)
}

async fn host(guard: &HostOriginGuardLayer, host: &str) -> (u16, String, bool) {
    let request = Request::post("/mcp")
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    through_layer(guard, request).await
}

fn passed() -> (u16, String, bool) {
    (200, String::new(), true)
}

fn refused() -> (u16, String, bool) {
    (403, "host_not_allowed".to_owned(), false)
}

/// The guard a deployment at `mcp.example.com` runs: the loopback defaults
/// plus its own name, any port.
fn deployed() -> HostOriginGuardLayer {
    guard().allow_host(allowed("mcp.example.com"))
}

/// The guard with the loopback defaults and CORS off.
fn guard() -> HostOriginGuardLayer {
    HostOriginGuardLayer::new(CorsPolicy::disabled())
}

fn allowed(host: &str) -> AllowedHost {
    host.parse().unwrap()
}

fn only(hosts: &[&str]) -> HostOriginGuardLayer {
    guard().only_hosts(hosts.iter().map(|h| allowed(h)).collect::<AllowedHosts>())
}

#[tokio::test]
async fn allowed_hosts_pass_with_any_case_and_any_port() {
    let guard = deployed();
    for allowed in [
        "mcp.example.com",
        "mcp.example.com:443",
        "mcp.example.com:8443",
        "MCP.EXAMPLE.COM",
        "Mcp.Example.Com:8443",
        "localhost",
        "localhost:3000",
        "LOCALHOST:3000",
        "127.0.0.1",
        "127.0.0.1:8080",
        "[::1]",
        "[::1]:8080",
    ] {
        assert_eq!(host(&guard, allowed).await, passed(), "{allowed}");
    }
}

#[tokio::test]
async fn look_alike_hosts_are_refused_403_host_not_allowed() {
    let guard = deployed();
    for foreign in [
        // Our name as a label of someone else's domain.
        "mcp.example.com.attacker.example",
        "mcp.example.com.attacker.example:443",
        "MCP.EXAMPLE.COM.attacker.example",
        // Our name as a suffix of another label.
        "attacker-mcp.example.com",
        "attacker-mcp.example.com:8443",
        "attackermcp.example.com",
        "sub.mcp.example.com",
        "example.com",
        "localhost.evil",
        "localhost.evil:3000",
        "LOCALHOST.EVIL",
        "evil-localhost",
        // Other addresses: loopback is exactly 127.0.0.1 and [::1].
        "0.0.0.0",
        "0.0.0.0:8080",
        "127.0.0.2",
        "127.0.0.2:8080",
        "127.1",
        "[::]",
        "[::2]",
        "[::2]:8080",
        "[::ffff:127.0.0.1]",
        // The absolute form (trailing dot) has an empty last label: it is
        // not our name but malformed, so it is refused, never normalised.
        "mcp.example.com.",
        "mcp.example.com.:443",
        "MCP.EXAMPLE.COM.",
        "localhost.",
        "localhost.:3000",
        // Malformed: empty labels, bad ports, junk after the brackets, no
        // brackets around IPv6, user info.
        ".mcp.example.com",
        "mcp..example.com",
        "mcp.example.com:",
        "mcp.example.com:99999",
        "mcp.example.com:http",
        "mcp.example.com:443:443",
        "[::1]x",
        "[::1]:",
        "[::1]:99999",
        "[::1",
        "::1",
        "user@mcp.example.com",
        "mcp.example.com/",
        "mcp_example.com",
        "",
    ] {
        assert_eq!(host(&guard, foreign).await, refused(), "{foreign:?}");
    }
}

#[tokio::test]
async fn without_a_host_header_the_uri_authority_is_the_host() {
    let guard = deployed();
    let request = |uri: &str| Request::post(uri).body(Full::new(Bytes::new())).unwrap();
    assert_eq!(
        through_layer(&guard, request("https://mcp.example.com/mcp")).await,
        passed()
    );
    assert_eq!(
        through_layer(&guard, request("https://MCP.example.com:8443/mcp")).await,
        passed()
    );
    for foreign in [
        "https://mcp.example.com.attacker.example/mcp",
        "https://user@mcp.example.com/mcp",
        "https://127.0.0.2/mcp",
        "/mcp",
    ] {
        assert_eq!(
            through_layer(&guard, request(foreign)).await,
            refused(),
            "{foreign}"
        );
    }
}

#[tokio::test]
async fn an_entry_with_a_port_allows_that_port_only() {
    // `only_hosts` replaces the loopback defaults, so nothing else lets
    // 127.0.0.1 in with another port.
    let guard = only(&["127.0.0.1:8080", "mcp.example.com:8443", "[::1]:3000"]);
    for allowed in ["127.0.0.1:8080", "mcp.example.com:8443", "[::1]:3000"] {
        assert_eq!(host(&guard, allowed).await, passed(), "{allowed}");
    }
    for foreign in [
        "127.0.0.1:8081",
        "127.0.0.1:80",
        // No port in `Host` is not the entry's port: the guard does not
        // know the scheme, and these ports are no scheme's default.
        "127.0.0.1",
        "mcp.example.com",
        "mcp.example.com:443",
        "mcp.example.com:8444",
        "[::1]",
        "[::1]:3001",
        // The defaults are gone.
        "localhost",
        "localhost:8080",
    ] {
        assert_eq!(host(&guard, foreign).await, refused(), "{foreign}");
    }
}

#[tokio::test]
async fn only_hosts_replaces_the_loopback_defaults() {
    let guard = only(&["mcp.example.com"]);
    assert_eq!(host(&guard, "mcp.example.com:1").await, passed());
    for loopback in ["localhost", "127.0.0.1", "[::1]"] {
        assert_eq!(host(&guard, loopback).await, refused(), "{loopback}");
    }
    // An empty list allows nothing.
    let none = only(&[]);
    assert_eq!(host(&none, "localhost").await, refused());
    // A bad entry is reported, not skipped.
    assert_eq!(
        "mcp.example.com, a..b"
            .parse::<AllowedHosts>()
            .unwrap_err()
            .to_string(),
        r#"invalid host "a..b""#
    );
}

#[test]
fn allow_host_accepts_names_addresses_and_ports() {
    let long_label = "a".repeat(63);
    // Three 63-byte labels and a fourth of 61: 253 bytes, DNS's longest
    // name and the longest accepted (as in a CORS origin).
    let longest = format!("{0}.{0}.{0}.{1}", long_label, "a".repeat(61));
    assert_eq!(longest.len(), 253);
    for good in [
        "mcp.example.com",
        "MCP.Example.COM",
        "  mcp.example.com  ",
        "attacker-mcp.example.com",
        "xn--bcher-kva.example",
        "localhost",
        "localhost:65535",
        "10.0.0.1:8080",
        "[::1]",
        "[::1]:8080",
        "[2001:DB8::1]:443",
        long_label.as_str(),
        longest.as_str(),
    ] {
        assert!(good.parse::<AllowedHost>().is_ok(), "{good}");
    }
}

#[test]
fn allow_host_refuses_what_is_not_a_host() {
    let long_label = "a".repeat(64);
    // One byte over the 253-byte limit, every label valid.
    let too_long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(62));
    assert_eq!(too_long.len(), 254);
    for bad in [
        "",
        "   ",
        ".",
        "a..b",
        ".mcp.example.com",
        "mcp.example.com.",
        "exa mple.com",
        "mcp_example.com",
        "mcp.example.com/",
        "user@mcp.example.com",
        "*.example.com",
        "https://mcp.example.com",
        "mcp.example.com:",
        "mcp.example.com:65536",
        "mcp.example.com:-1",
        "mcp.example.com:x",
        "::1",
        "[::1",
        "[::1]x",
        "[::1]:",
        "[::1]8080",
        "[not-ipv6]",
        "[127.0.0.1]",
        long_label.as_str(),
        too_long.as_str(),
    ] {
        assert_eq!(
            bad.parse::<AllowedHost>().unwrap_err().to_string(),
            format!("invalid host {bad:?}"),
        );
    }
}

#[tokio::test]
async fn hyphenated_and_long_allowed_hosts_match_through_the_layer() {
    let longest = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(61));
    let guard = only(&["attacker-mcp.example.com", longest.as_str()]);
    assert_eq!(host(&guard, "attacker-mcp.example.com").await, passed());
    assert_eq!(host(&guard, &longest).await, passed());
    assert_eq!(host(&guard, &format!("{longest}:8080")).await, passed());
    // A name longer than 253 bytes is refused before any comparison.
    assert_eq!(host(&guard, &format!("a{longest}")).await, refused());
    assert_eq!(host(&guard, "attackermcp.example.com").await, refused());
}

#[test]
fn the_guard_is_ready_when_the_inner_service_is() {
    let mut cx = Context::from_waker(Waker::noop());
    let layer = guard();
    for state in [Poll::Pending, Poll::Ready(Err("down")), Poll::Ready(Ok(()))] {
        let mut service = layer.layer(Gate(state));
        assert_eq!(
            Service::<Request<Full<Bytes>>>::poll_ready(&mut service, &mut cx),
            state
        );
    }
}

#[test]
fn host_syntax_is_the_cors_origin_syntax() {
    // 254 bytes of valid labels: one over DNS's 253.
    let too_long = format!("{0}.{0}.{0}.{1}", "a".repeat(63), "a".repeat(62));
    assert_eq!(too_long.len(), 254);
    for bad in [
        "-mcp.example.com",
        "mcp-.example.com",
        "mcp.-example.com",
        too_long.as_str(),
    ] {
        assert!(
            format!("https://{bad}")
                .parse::<mcp_cors::CorsPolicy>()
                .is_err(),
            "{bad}"
        );
        assert!(bad.parse::<AllowedHost>().is_err(), "{bad}");
    }
}

#[tokio::test]
async fn ipv6_hosts_compare_canonically() {
    let guard = only(&["[0:0::1]", "[2001:DB8::1]:8080"]);
    for allowed in [
        "[::1]",
        "[0:0:0:0:0:0:0:1]:3000",
        "[2001:db8:0::1]:8080",
        "[2001:DB8::1]:8080",
    ] {
        assert_eq!(host(&guard, allowed).await, passed(), "{allowed}");
    }
    assert_eq!(host(&guard, "[::2]").await, refused());
    assert_eq!(host(&guard, "[2001:db8::1]:8081").await, refused());
}

#[tokio::test]
async fn an_entry_with_a_default_port_allows_a_host_without_one() {
    // A client leaves out the scheme's default port (80, 443), so an entry
    // written with it must accept a `Host` without a port; any other port
    // must be in `Host`.
    let guard = only(&["mcp.example.com:443", "localhost:80", "[::1]:8443"]);
    for allowed in [
        "mcp.example.com",
        "mcp.example.com:443",
        "localhost",
        "localhost:80",
    ] {
        assert_eq!(host(&guard, allowed).await, passed(), "{allowed}");
    }
    for foreign in ["mcp.example.com:80", "localhost:443", "[::1]", "[::1]:443"] {
        assert_eq!(host(&guard, foreign).await, refused(), "{foreign}");
    }
}

#[test]
fn exact_lists_for_components_behind_the_guard() {
    let deployed = HostOriginGuardLayer::new("https://app.example.com".parse().unwrap())
        .only_hosts(
            "MCP.example.com:443, [0:0::1]:8080, localhost"
                .parse::<AllowedHosts>()
                .unwrap(),
        )
        .own_origin("http://mcp.test:8080".parse::<mcp_cors::Origin>().unwrap());
    assert_eq!(
        deployed.exact_hosts(),
        [
            "mcp.example.com:443",
            "mcp.example.com",
            "[::1]:8080",
            "localhost"
        ]
    );
    assert_eq!(
        deployed.exact_origins().unwrap(),
        ["https://app.example.com:443", "http://mcp.test:8080"]
    );
    let wildcard = HostOriginGuardLayer::new("https://*.example.com".parse().unwrap());
    assert_eq!(wildcard.exact_origins(), None);
    assert_eq!(
        guard().exact_origins(),
        Some(Vec::new()),
        "CORS off, no own origin"
    );
}
