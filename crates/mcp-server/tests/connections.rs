//! Slow and greedy clients, over real loopback TCP: the header-read and
//! keep-alive timeouts, the connection caps and the header size limit.
//!
//! Connection handling does not depend on the database, so these run on
//! SQLite only.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Backend, TestDb, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Longest a test waits for the server to close a connection.
const CLOSE_WAIT: Duration = Duration::from_secs(2);

async fn db() -> TestDb {
    TestDb::new(Backend::Sqlite).await
}

/// Connects to `server` from the loopback address `from` (Linux answers on
/// all of 127.0.0.0/8, so tests can be several clients).
async fn connect_from(server: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    socket
        .bind(SocketAddr::new(IpAddr::V4(from), 0))
        .expect("bind client address");
    socket.connect(server).await.expect("connect")
}

async fn connect(server: SocketAddr) -> TcpStream {
    connect_from(server, Ipv4Addr::LOCALHOST).await
}

/// A response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: Vec<u8>,
}

/// Sends `GET path` on `stream` (kept alive) with `extra` header lines and
/// reads one response with a Content-Length. `None` when the server closed
/// the connection instead of answering.
async fn get(stream: &mut TcpStream, addr: SocketAddr, path: &str, extra: &str) -> Option<Raw> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: {addr}\r\n{extra}\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    read_response(stream).await
}

async fn read_response(stream: &mut TcpStream) -> Option<Raw> {
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(5);
    let head_end = loop {
        if let Some(end) = find(&received, b"\r\n\r\n") {
            break end;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
            Err(_) => panic!("no response within 5 s"),
        }
    };
    let head = String::from_utf8_lossy(&received[..head_end]).into_owned();
    let status = head.split(' ').nth(1)?.parse().ok()?;
    let length: usize = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse().ok())?
        })
        .unwrap_or(0);
    let mut body = received[head_end + 4..].to_vec();
    while body.len() < length {
        let n = stream.read(&mut buffer).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&buffer[..n]);
    }
    Some(Raw { status, head, body })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Waits up to [`CLOSE_WAIT`] for the server to close `stream`; returns
/// how long that took, or `None` when it stayed open. Anything the server
/// sends before closing is discarded.
async fn closed_within(stream: &mut TcpStream) -> Option<Duration> {
    closed_within_for(stream, CLOSE_WAIT).await
}

async fn closed_within_for(stream: &mut TcpStream, wait: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buffer = [0u8; 1024];
    loop {
        let left = wait.saturating_sub(started.elapsed());
        match tokio::time::timeout(left, stream.read(&mut buffer)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            Ok(Ok(_)) => continue,
            Err(_) => return None,
        }
    }
}

/// Asserts a refusal: a `503` problem, or (when no response could be sent)
/// a closed connection.
async fn assert_refused(server: SocketAddr, from: Ipv4Addr) {
    let mut stream = connect_from(server, from).await;
    match get(&mut stream, server, "/health", "").await {
        None => {}
        Some(raw) => {
            assert_eq!(raw.status, 503, "{raw:?}");
            assert!(
                raw.head
                    .to_ascii_lowercase()
                    .contains("content-type: application/problem+json"),
                "{raw:?}"
            );
            let body: serde_json::Value = serde_json::from_slice(&raw.body).expect("JSON");
            assert_eq!(body["code"], "unavailable", "{body}");
            assert!(
                closed_within(&mut stream).await.is_some(),
                "a refused connection is closed"
            );
        }
    }
}

/// Opens a connection from `from` and has it served once, so the server
/// has certainly accepted and counted it; returns it, kept alive.
async fn held(server: SocketAddr, from: Ipv4Addr) -> TcpStream {
    let mut stream = connect_from(server, from).await;
    let raw = get(&mut stream, server, "/health", "")
        .await
        .expect("a held connection is served");
    assert_eq!(raw.status, 200, "{raw:?}");
    stream
}

/// Retries a fresh connection from `from` until one is served (a closed
/// connection is released by the server as soon as it sees the EOF).
async fn served_again(server: SocketAddr, from: Ipv4Addr) {
    let deadline = Instant::now() + CLOSE_WAIT;
    loop {
        let mut stream = connect_from(server, from).await;
        if let Some(raw) = get(&mut stream, server, "/health", "").await
            && raw.status == 200
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "a freed slot was not given to a new connection"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_a_request_head_is_closed_after_the_header_read_timeout() {
    let db = db().await;
    let server = TestServer::start(&db, &[("MCP_HEADER_READ_TIMEOUT", "300ms")]);
    let mut stream = connect(server.addr).await;
    stream
        .write_all(format!("GET /health HTTP/1.1\r\nhost: {}\r\nx-slow: ", server.addr).as_bytes())
        .await
        .unwrap();
    let closed = closed_within(&mut stream).await;
    assert!(
        closed.is_some(),
        "a connection with half a request head stayed open past {CLOSE_WAIT:?}"
    );
    // Whole-head requests on a fresh connection are untouched.
    let mut stream = connect(server.addr).await;
    let raw = get(&mut stream, server.addr, "/health", "").await.unwrap();
    assert_eq!(raw.status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() {
    let db = db().await;
    let server = TestServer::start(
        &db,
        &[
            ("MCP_HEADER_READ_TIMEOUT", "300ms"),
            ("MCP_KEEP_ALIVE_TIMEOUT", "2500ms"),
        ],
    );
    let mut stream = connect(server.addr).await;
    let raw = get(&mut stream, server.addr, "/health", "").await.unwrap();
    assert_eq!(raw.status, 200);
    // Idle longer than the header-read timeout but within the keep-alive
    // timeout: the connection is still there for the next request.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let raw = get(&mut stream, server.addr, "/health", "")
        .await
        .expect("a kept-alive connection idle for less than the keep-alive timeout is served");
    assert_eq!(raw.status, 200);
    // Then idle past the keep-alive timeout: closed, and not before it.
    // (The margins are wide: 600 ms idle against 2.5 s, on a loaded
    // two-core machine.)
    let closed = closed_within_for(&mut stream, Duration::from_secs(5)).await;
    let closed = closed.expect("an idle keep-alive connection stayed open past 5 s");
    assert!(
        closed >= Duration::from_millis(1500),
        "closed after {closed:?}, before the keep-alive timeout"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_ip_cap_are_refused() {
    let db = db().await;
    let server = TestServer::start(&db, &[("MCP_MAX_CONNECTIONS_PER_IP", "3")]);
    let local = Ipv4Addr::LOCALHOST;
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(held(server.addr, local).await);
    }
    assert_refused(server.addr, local).await;
    // Another client address has slots of its own.
    let other = held(server.addr, Ipv4Addr::new(127, 0, 0, 2)).await;
    // Closing one frees its slot.
    drop(open.pop());
    served_again(server.addr, local).await;
    drop((open, other));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_global_cap_are_refused() {
    let db = db().await;
    let server = TestServer::start(&db, &[("MCP_MAX_CONNECTIONS", "3")]);
    let mut open = vec![
        held(server.addr, Ipv4Addr::LOCALHOST).await,
        held(server.addr, Ipv4Addr::new(127, 0, 0, 2)).await,
        held(server.addr, Ipv4Addr::new(127, 0, 0, 3)).await,
    ];
    // A client with no connection of its own is refused all the same.
    assert_refused(server.addr, Ipv4Addr::new(127, 0, 0, 4)).await;
    drop(open.pop());
    served_again(server.addr, Ipv4Addr::new(127, 0, 0, 4)).await;
    drop(open);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_gets_431() {
    let db = db().await;
    let server = TestServer::start(&db, &[]);
    // Under the 16 KiB default: served.
    let mut stream = connect(server.addr).await;
    let filler = "a".repeat(12 * 1024);
    let raw = get(
        &mut stream,
        server.addr,
        "/health",
        &format!("x-big: {filler}\r\n"),
    )
    .await
    .unwrap();
    assert_eq!(raw.status, 200);
    // Over it: 431 from hyper, then closed.
    let mut stream = connect(server.addr).await;
    let filler = "a".repeat(20 * 1024);
    let raw = get(
        &mut stream,
        server.addr,
        "/health",
        &format!("x-big: {filler}\r\n"),
    )
    .await
    .expect("a 431 response");
    assert_eq!(raw.status, 431, "{raw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_header_limit_is_configurable() {
    let db = db().await;
    let server = TestServer::start(&db, &[("MCP_MAX_HEADER_BYTES", "4KiB")]);
    let mut stream = connect(server.addr).await;
    let filler = "a".repeat(6 * 1024);
    let raw = get(
        &mut stream,
        server.addr,
        "/health",
        &format!("x-big: {filler}\r\n"),
    )
    .await
    .expect("a 431 response");
    assert_eq!(raw.status, 431, "{raw:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_does_not_wait_for_idle_or_half_open_connections() {
    let db = db().await;
    let server = TestServer::start(&db, &[("MCP_SHUTDOWN_TIMEOUT", "20s")]);
    let mut idle = connect(server.addr).await;
    let raw = get(&mut idle, server.addr, "/health", "").await.unwrap();
    assert_eq!(raw.status, 200);
    let mut half = connect(server.addr).await;
    half.write_all(b"GET /health HTTP/1.1\r\nx-slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let (status, logs) = server.terminate();
    assert!(status.success(), "exit status {status}\n{logs}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for connections with nothing in flight",
        started.elapsed()
    );
    assert!(closed_within(&mut idle).await.is_some());
    assert!(closed_within(&mut half).await.is_some());
}
