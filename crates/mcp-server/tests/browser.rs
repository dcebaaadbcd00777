//! A real browser: headless Chromium loads pages from two local origins,
//! one allowed by `MCP_CORS_ORIGIN`, one not, and each makes a credentialed
//! `fetch` to the server. The allowed page reads the answer; the other one
//! is blocked by the browser.
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

/// Loads `url` in headless Chromium and returns the DOM after the scripts
/// ran (virtual time: no sleeping).
fn dump_dom(url: &str) -> String {
    let profile = tempfile::tempdir().unwrap();
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
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(url)
        .output()
        .expect("run chromium");
    String::from_utf8_lossy(&output.stdout).into_owned()
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

    let from_allowed = outcome(&dump_dom(&allowed_origin));
    assert!(from_allowed.starts_with("STATUS 200"), "{from_allowed}");
    assert!(from_allowed.contains("ada@example.com"), "{from_allowed}");
    let from_other = outcome(&dump_dom(&other_origin));
    assert!(from_other.starts_with("BLOCKED TypeError"), "{from_other}");

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
    let from_allowed = outcome(&dump_dom(&allowed_origin));
    assert!(from_allowed.starts_with("STATUS 200"), "{from_allowed}");
    let from_other = outcome(&dump_dom(&other_origin));
    assert!(from_other.starts_with("BLOCKED TypeError"), "{from_other}");
    // The server did answer it: the refusal was the browser's.
    assert!(
        server
            .wait_for_log(|l| l.contains("\"/health\"") && l.contains("\"status\":200"))
            .await,
        "{}",
        server.logs()
    );
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
