//! A real browser: headless Chromium loads pages from two local origins,
//! one allowed by `MCP_CORS_ORIGIN`, one not, and each makes a credentialed
//! `fetch` to the server. The allowed page reads the answer; the other one
//! is blocked by the browser: its console names the CORS policy, and the
//! server's log holds the very request (by the `X-Request-Id` the browser
//! received) that the browser then refused to hand to the page.
//!
//! Needs Debian's `chromium` (`/usr/bin/chromium`, installed by `.ci/run`
//! when missing). Without it the test fails under `CI=true` and is skipped,
//! loudly, elsewhere.

mod common;

use std::path::Path;
use std::process::Command;

use axum::Router;
use axum::response::Html;
use axum::routing::get;
use common::{Backend, TestDb, TestServer, create_user};

const CHROMIUM: &str = "/usr/bin/chromium";

/// A page whose script fetches `url` with credentials (and, when `key` is
/// set, an `X-API-Key`, which needs a preflight) and writes the outcome
/// into the page.
fn fetching_page(url: &str, key: Option<&str>) -> String {
    let headers = key.map_or_else(String::new, |k| format!("headers: {{'X-API-Key': '{k}'}},"));
    format!(
        r#"<!doctype html><html><body><pre id="out">PENDING</pre><script>
fetch('{url}', {{ credentials: 'include', {headers} }})
  .then(async (r) => {{ document.getElementById('out').textContent = 'STATUS ' + r.status + ' ' + (await r.text()); }})
  .catch((e) => {{ document.getElementById('out').textContent = 'BLOCKED ' + e.name; }});
</script></body></html>"#
    )
}

/// What headless Chromium saw of one page.
struct Visit {
    /// The DOM after the scripts ran.
    dom: String,
    /// The browser's console messages (`--enable-logging`): a CORS refusal
    /// is reported there, never to the page, which only sees a `TypeError`.
    console: Vec<String>,
    /// Every `X-Request-Id` the browser received in a response, from its
    /// net log: the server's id for each answer that reached the browser.
    request_ids: Vec<String>,
}

/// Loads `url` in headless Chromium (virtual time: no sleeping).
fn visit(url: &str) -> Visit {
    let profile = tempfile::tempdir().unwrap();
    let net_log = profile.path().join("net-log.json");
    let output = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--virtual-time-budget=5000",
            "--timeout=15000",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--log-net-log={}", net_log.display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    let net_log = std::fs::read_to_string(&net_log).unwrap_or_default();
    let mut request_ids: Vec<String> = net_log
        .split("x-request-id: ")
        .skip(1)
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect();
    request_ids.sort();
    request_ids.dedup();
    Visit {
        dom: String::from_utf8_lossy(&output.stdout).into_owned(),
        console,
        request_ids,
    }
}

/// Asserts that the browser refused `url` to the page at `origin` because
/// of CORS (its console says so), not for any other network failure.
fn assert_cors_refusal(visit: &Visit, url: &str, origin: &str) {
    let page = outcome(&visit.dom);
    assert!(page.starts_with("BLOCKED TypeError"), "{page}");
    let refusal = format!(
        "Access to fetch at '{url}' from origin '{origin}' has been blocked by CORS policy"
    );
    assert!(
        visit.console.iter().any(|line| line.contains(&refusal)),
        "no CORS refusal in the browser's console: {:#?}",
        visit.console
    );
}

/// The one id the server gave the answers the page received.
fn only_request_id(visit: &Visit) -> &str {
    assert_eq!(
        visit.request_ids.len(),
        1,
        "one answer from the server: {:?}",
        visit.request_ids
    );
    &visit.request_ids[0]
}

/// The server's log line for the request `id`.
async fn logged_request(server: &TestServer, id: &str) -> serde_json::Value {
    assert!(
        server
            .wait_for_log(|l| l.contains(&format!("\"request_id\":\"{id}\"")))
            .await,
        "the server never logged request {id}:\n{}",
        server.logs()
    );
    let lines: Vec<serde_json::Value> = server
        .log_records()
        .into_iter()
        .filter(|r| r["span"]["request_id"] == id && r["fields"]["status"].is_u64())
        .collect();
    assert_eq!(lines.len(), 1, "one response line for {id}: {lines:?}");
    lines[0].clone()
}

fn outcome(dom: &str) -> String {
    dom.split("<pre id=\"out\">")
        .nth(1)
        .and_then(|rest| rest.split("</pre>").next())
        .unwrap_or(dom)
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_chromium),
    ignore = "needs Chromium: MCP_TEST_SERVICES=chromium (CI=true implies it)"
)]
async fn the_browser_enforces_the_cors_policy() {
    if !Path::new(CHROMIUM).exists() {
        mcp_testkit::unreachable("Chromium", &"/usr/bin/chromium is missing");
    }
    let db = TestDb::new(Backend::Sqlite).await;
    create_user(&db, "ada@example.com", "ada-password", "user");
    let url = db.url();
    let (code, stdout, _) = common::run_binary(
        db.dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "ada@example.com",
            "--name",
            "browser",
        ],
        &[("DATABASE_URL", url.as_str())],
    );
    assert_eq!(code, Some(0));
    let key: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let key = key["key"].as_str().unwrap().to_owned();

    // Two page origins; only the first is allowed. Their ports are known
    // once they listen, before the server starts.
    let (allowed_tx, allowed_rx) = tokio::sync::oneshot::channel::<String>();
    let (other_tx, other_rx) = tokio::sync::oneshot::channel::<String>();
    let allowed_origin = lazy_page(allowed_rx).await;
    let other_origin = lazy_page(other_rx).await;

    let server = TestServer::start(
        &db,
        &[
            ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("MCP_CORS_ORIGIN", allowed_origin.as_str()),
        ],
    );
    let me = server.url("/api/auth/me");
    allowed_tx.send(fetching_page(&me, Some(&key))).unwrap();
    other_tx.send(fetching_page(&me, Some(&key))).unwrap();

    let from_allowed = outcome(&visit(&allowed_origin).dom);
    assert!(from_allowed.starts_with("STATUS 200"), "{from_allowed}");
    assert!(from_allowed.contains("ada@example.com"), "{from_allowed}");
    // The X-API-Key needs a preflight; the guard refuses the foreign
    // Origin's, so the browser never sends the request itself.
    let from_other = visit(&other_origin);
    assert_cors_refusal(&from_other, &me, &other_origin);
    let preflight = logged_request(&server, only_request_id(&from_other)).await;
    assert_eq!(preflight["span"]["method"], "OPTIONS", "{preflight}");
    assert_eq!(preflight["span"]["path"], "/api/auth/me", "{preflight}");
    assert_eq!(preflight["fields"]["status"], 403, "{preflight}");

    // The same with the Origin guard off, so that only CORS headers decide:
    // the server answers the other page's plain GET with 200, and it is the
    // browser that refuses to hand the answer to the page.
    drop(server);
    let (allowed_tx, allowed_rx) = tokio::sync::oneshot::channel::<String>();
    let (other_tx, other_rx) = tokio::sync::oneshot::channel::<String>();
    let allowed_origin = lazy_page(allowed_rx).await;
    let other_origin = lazy_page(other_rx).await;
    let server = TestServer::start(
        &db,
        &[
            ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
            ("MCP_CORS_ORIGIN", allowed_origin.as_str()),
            ("MCP_ORIGIN_GUARD", "off"),
        ],
    );
    let health = server.url("/health");
    allowed_tx.send(fetching_page(&health, None)).unwrap();
    other_tx.send(fetching_page(&health, None)).unwrap();
    let from_allowed = visit(&allowed_origin);
    let page = outcome(&from_allowed.dom);
    assert!(page.starts_with("STATUS 200"), "{page}");
    let allowed_id = only_request_id(&from_allowed).to_owned();
    let from_other = visit(&other_origin);
    assert_cors_refusal(&from_other, &health, &other_origin);
    // The server did answer that very request, and with 200: the answer
    // (its X-Request-Id in the browser's net log) reached the browser, and
    // the refusal was the browser's.
    let other_id = only_request_id(&from_other);
    assert_ne!(other_id, allowed_id, "the blocked page's own request");
    let answered = logged_request(&server, other_id).await;
    assert_eq!(answered["span"]["method"], "GET", "{answered}");
    assert_eq!(answered["span"]["path"], "/health", "{answered}");
    assert_eq!(answered["fields"]["status"], 200, "{answered}");
}

/// A page server whose HTML arrives later (once the API's address is
/// known); returns its origin.
async fn lazy_page(html: tokio::sync::oneshot::Receiver<String>) -> String {
    let cell = std::sync::Arc::new(tokio::sync::OnceCell::<String>::new());
    let source = std::sync::Arc::new(tokio::sync::Mutex::new(Some(html)));
    let app = Router::new().route(
        "/",
        get(move || {
            let (cell, source) = (cell.clone(), source.clone());
            async move {
                let html = cell
                    .get_or_init(|| async {
                        match source.lock().await.take() {
                            Some(rx) => rx.await.unwrap_or_default(),
                            None => String::new(),
                        }
                    })
                    .await
                    .clone();
                Html(html)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    tokio::spawn(async move { axum::serve(listener, app).await });
    origin
}
