// Helpers shared by the test files: `pub` for the files that use them.
#![allow(unreachable_pub)]

//! Test harness: real databases, the real binary, real HTTP.
//!
//! Every test gets its own SQLite file or its own PostgreSQL schema, so tests
//! run in parallel. PostgreSQL comes from `TEST_POSTGRES_URL` (default
//! `postgres://postgres@127.0.0.1:5432/test`). Tests that need it are
//! ignored unless the run promises it (`CI=true` or `MCP_TEST_SERVICES`, see
//! `build/test-services.rs`), and fail when it was promised and is missing.
#![allow(dead_code)]

pub mod oauth;

use mcp_server::db::Database;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_mcp-server");

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per database: `both_databases!(name, body_fn)`
/// defines `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_databases {
    ($name:ident, $body:path) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                $body($crate::common::TestDb::new($crate::common::Backend::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(test_postgres),
                ignore = "needs PostgreSQL: MCP_TEST_SERVICES=postgres (CI=true implies it)"
            )]
            async fn postgres() {
                $body($crate::common::TestDb::new($crate::common::Backend::Postgres).await).await;
            }
        }
    };
    // Both databases, and Redis too.
    ($name:ident, $body:path, needs_redis) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(test_redis),
                ignore = "needs Redis: MCP_TEST_SERVICES=redis (CI=true implies it)"
            )]
            async fn sqlite() {
                $body($crate::common::TestDb::new($crate::common::Backend::Sqlite).await).await;
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            #[cfg_attr(
                not(all(test_postgres, test_redis)),
                ignore = "needs PostgreSQL and Redis: MCP_TEST_SERVICES=postgres,redis (CI=true implies it)"
            )]
            async fn postgres() {
                $body($crate::common::TestDb::new($crate::common::Backend::Postgres).await).await;
            }
        }
    };
}

pub fn postgres_admin_url() -> String {
    mcp_testkit::postgres_url()
}

/// A database of a test's own: a directory for SQLite, a schema in PostgreSQL.
pub struct TestDb {
    pub backend: Backend,
    /// Working directory of servers started on this database.
    pub dir: tempfile::TempDir,
    /// Dropped with the `TestDb`, also when the test fails.
    pub schema: Option<mcp_testkit::PgSchema>,
}

impl TestDb {
    /// Fails the test when PostgreSQL was promised and is unreachable.
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        let schema = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(mcp_testkit::PgSchema::create("t").await),
        };
        TestDb {
            backend,
            dir,
            schema,
        }
    }

    /// The `DATABASE_URL` a server should use.
    pub fn url(&self) -> String {
        self.url_via(None)
    }

    /// The URL, connecting through `proxy` instead of the real server.
    pub fn url_via(&self, proxy: Option<SocketAddr>) -> String {
        match self.backend {
            Backend::Sqlite => format!("sqlite://{}", self.dir.path().join("mcp.db").display()),
            Backend::Postgres => {
                let mut url = url::Url::parse(&postgres_admin_url()).expect("postgres url");
                if let Some(proxy) = proxy {
                    url.set_host(Some(&proxy.ip().to_string())).expect("host");
                    url.set_port(Some(proxy.port())).expect("port");
                }
                let schema = self.schema.as_ref().map_or("public", |s| s.name());
                url.query_pairs_mut()
                    .append_pair("options", &format!("-c search_path={schema}"));
                url.to_string()
            }
        }
    }

    /// A pool of our own on the same database, to look behind the server's back.
    pub async fn direct(&self) -> mcp_server::db::Db {
        let url: mcp_server::config::DatabaseUrl = self.url().parse().expect("url");
        mcp_server::db::Db::connect(&mcp_server::config::DatabaseConfig {
            url,
            max_connections: 2,
            acquire_timeout: Duration::from_secs(5),
        })
        .await
        .expect("connect to the test database")
    }
}

/// The real `mcp-server` binary, started on an ephemeral port.
pub struct TestServer {
    child: Child,
    pub addr: SocketAddr,
    logs: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    /// Starts `mcp-server serve` on `db` with `env` added.
    pub fn start(db: &TestDb, env: &[(&str, &str)]) -> TestServer {
        let url = db.url();
        let mut all = vec![("DATABASE_URL", url.as_str())];
        all.extend_from_slice(env);
        Self::start_in(db.dir.path(), &all)
    }

    /// Starts the binary in `dir` with only `env` (plus test defaults) set.
    pub fn start_in(dir: &Path, env: &[(&str, &str)]) -> TestServer {
        let mut command = Command::new(BIN);
        command
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("MCP_BIND", "127.0.0.1:0")
            .env("MCP_LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (name, value) in env {
            command.env(name, value);
        }
        let mut child = command.spawn().expect("spawn mcp-server");
        let stderr = child.stderr.take().expect("stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(addr) = listening_address(&line) {
                    let _ = tx.send(addr);
                }
                sink.lock().unwrap().push(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(50)) {
                return TestServer { child, addr, logs };
            }
            if let Ok(Some(status)) = child.try_wait() {
                std::thread::sleep(Duration::from_millis(50));
                panic!(
                    "mcp-server exited with {status} before listening:\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            assert!(
                Instant::now() < deadline,
                "mcp-server did not start:\n{}",
                logs.lock().unwrap().join("\n")
            );
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Everything the server logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    /// Log lines parsed as JSON.
    pub fn log_records(&self) -> Vec<serde_json::Value> {
        self.logs
            .lock()
            .unwrap()
            .iter()
            .filter_map(|line| serde_json::from_str(line).ok())
            .collect()
    }

    /// Waits (up to 5 s) until a log line satisfies `pred`.
    pub async fn wait_for_log(&self, pred: impl Fn(&str) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.logs.lock().unwrap().iter().any(|l| pred(l)) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Sends SIGTERM and waits for the exit.
    pub fn terminate(mut self) -> (ExitStatus, String) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            assert!(Instant::now() < deadline, "server did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        // Let the reader thread drain the last lines.
        std::thread::sleep(Duration::from_millis(50));
        (status, self.logs())
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn listening_address(line: &str) -> Option<SocketAddr> {
    let record: serde_json::Value = serde_json::from_str(line).ok()?;
    if record["fields"]["message"] != "listening" {
        return None;
    }
    record["fields"]["address"].as_str()?.parse().ok()
}

/// Runs the binary to completion with `args` and `env`; returns exit code,
/// stdout and stderr.
pub fn run_binary(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Option<i32>, String, String) {
    run_binary_with_stdin(dir, args, env, "")
}

/// [`run_binary`] with `stdin` piped in.
pub fn run_binary_with_stdin(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    stdin: &str,
) -> (Option<i32>, String, String) {
    use std::io::Write;
    let mut child = Command::new(BIN)
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mcp-server");
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin.as_bytes());
    }
    let output = child.wait_with_output().expect("wait for mcp-server");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Creates a user with the CLI (`users create`, password on stdin);
/// returns its JSON record.
pub fn create_user(db: &TestDb, email: &str, password: &str, role: &str) -> serde_json::Value {
    let url = db.url();
    let (code, stdout, stderr) = run_binary_with_stdin(
        db.dir.path(),
        &[
            "users",
            "create",
            "--email",
            email,
            "--name",
            "Test User",
            "--role",
            role,
        ],
        &[("DATABASE_URL", url.as_str())],
        &format!("{password}\n"),
    );
    assert_eq!(code, Some(0), "users create failed: {stderr}");
    serde_json::from_str(stdout.trim()).expect("user JSON on stdout")
}

/// A client for one server, with JSON helpers.
pub struct Api {
    pub client: reqwest::Client,
    pub base: String,
}

impl Api {
    pub fn new(server: &TestServer) -> Api {
        Api {
            client: reqwest::Client::new(),
            base: format!("http://{}", server.addr),
        }
    }

    /// Sends `method path` with an optional bearer token and JSON body;
    /// returns status, headers and the body as JSON (Null when empty).
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self
            .client
            .request(method, format!("{}{}", self.base, path));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("request");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("body");
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, json)
    }

    /// Logs in; returns the access token.
    pub async fn login(&self, email: &str, password: &str) -> String {
        let (status, _, body) = self
            .call(
                "POST",
                "/api/auth/login",
                None,
                Some(serde_json::json!({"email": email, "password": password})),
            )
            .await;
        assert_eq!(status, 200, "login {email}: {body}");
        body["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned()
    }
}

/// Sends `request_line` with `headers` and `Expect: 100-continue`, then the
/// body only if the server asks for it; returns the final status, the head
/// as text and the body (de-chunked is not needed: responses here carry a
/// Content-Length).
pub async fn expect_continue(
    addr: SocketAddr,
    request_line: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> (u16, String, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let mut head = format!(
        "{request_line} HTTP/1.1\r\nhost: {addr}\r\ncontent-length: {}\r\nexpect: 100-continue\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.expect("write head");
    let mut received = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        let n = stream.read(&mut buffer).await.expect("read");
        if n == 0 {
            break;
        }
        received.extend_from_slice(&buffer[..n]);
        let text = String::from_utf8_lossy(&received);
        if text.starts_with("HTTP/1.1 100")
            && let Some(end) = text.find("\r\n\r\n")
        {
            received.drain(..end + 4);
            stream.write_all(body).await.expect("write body");
        }
    }
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, _) = text.split_once("\r\n\r\n").expect("a response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body_start = head.len() + 4;
    (status, head.to_owned(), received[body_start..].to_vec())
}

/// A TCP proxy that can cut every connection and refuse new ones, to make a
/// database unreachable without touching the database itself.
pub struct Proxy {
    pub addr: SocketAddr,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    pub async fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr = listener.local_addr().expect("proxy addr");
        let up = Arc::new(AtomicBool::new(true));
        let connections = Arc::new(Mutex::new(Vec::<AbortHandle>::new()));
        let (up2, connections2) = (up.clone(), connections.clone());
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !up2.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let task = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                connections2.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy {
            addr,
            up,
            connections,
        }
    }

    /// Cuts every open connection and refuses new ones.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        for task in self.connections.lock().unwrap().drain(..) {
            task.abort();
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

/// The socket address of the PostgreSQL server tests use.
pub fn postgres_socket_addr() -> SocketAddr {
    let url = url::Url::parse(&postgres_admin_url()).expect("postgres url");
    let host = url.host_str().unwrap_or("127.0.0.1");
    let port = url.port().unwrap_or(5432);
    format!("{host}:{port}")
        .parse()
        .expect("postgres address must be ip:port")
}

pub fn sqlite_file(db: &TestDb) -> PathBuf {
    db.dir.path().join("mcp.db")
}

/// `challenge` without its `resource_metadata` attribute, which every
/// challenge of a server with OAuth on carries (asserted here), naming the
/// protected resource metadata of `/mcp`.
pub fn without_resource_metadata(challenge: &str) -> String {
    let marker = ", resource_metadata=\"";
    let start = challenge
        .find(marker)
        .unwrap_or_else(|| panic!("no resource_metadata in {challenge}"));
    let end = challenge[start + marker.len()..]
        .find('"')
        .map(|i| start + marker.len() + i + 1)
        .expect("a closing quote");
    assert!(
        challenge[start..end].ends_with("/.well-known/oauth-protected-resource/mcp\""),
        "{challenge}"
    );
    format!("{}{}", &challenge[..start], &challenge[end..])
}
