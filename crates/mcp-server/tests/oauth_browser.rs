//! A real browser on the authorization pages: headless Chromium, driven
//! through ChromeDriver's WebDriver API, types into the login form as a
//! user would. A wrong password shows the error on the page; the right one
//! shows the consent page, whose "Allow" sends the browser to the client's
//! redirect URI with a code, `state` and `iss`. The consent page's
//! screenshot is kept in `target/test-artifacts/oauth-consent.png`.
//!
//! The pages' CSP forbids every script, so nothing here runs JavaScript in
//! them: WebDriver's element commands are the browser's own input.
//!
//! Needs Debian's `chromium` and `chromium-driver` (installed by `.ci/run`
//! when missing). Without them the test fails under `CI=true` and is
//! skipped, loudly, elsewhere.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use common::{Backend, TestDb, TestServer, create_user};
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const PASSWORD: &str = "correct horse battery";

/// ChromeDriver on a port of its own, killed on drop.
struct Driver {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
struct Session<'a> {
    driver: &'a Driver,
    id: String,
}

impl Driver {
    async fn start() -> Driver {
        let port = mcp_testkit::spare_port();
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver");
        let driver = Driver {
            child,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let ready = driver
                .http
                .get(format!("{}/status", driver.base))
                .send()
                .await;
            if let Ok(response) = ready {
                let status: Value = response.json().await.unwrap_or_default();
                if status["value"]["ready"] == true {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn command(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let mut request = self.http.request(method, format!("{}{}", self.base, path));
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.expect("webdriver command");
        let status = response.status();
        let value: Value = response.json().await.expect("webdriver JSON");
        assert!(status.is_success(), "{path}: {status} {value}");
        value["value"].clone()
    }

    async fn session(&self) -> Session<'_> {
        let created = self
            .command(
                reqwest::Method::POST,
                "/session",
                Some(json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": CHROMIUM,
                        "args": ["--headless", "--no-sandbox", "--disable-gpu",
                                 "--disable-dev-shm-usage", "--no-first-run",
                                 "--disable-background-networking", "--window-size=800,700"]
                    }
                }}})),
            )
            .await;
        Session {
            driver: self,
            id: created["sessionId"].as_str().expect("sessionId").to_owned(),
        }
    }
}

impl Session<'_> {
    async fn post(&self, path: &str, body: Value) -> Value {
        self.driver
            .command(
                reqwest::Method::POST,
                &format!("/session/{}{path}", self.id),
                Some(body),
            )
            .await
    }

    async fn get(&self, path: &str) -> Value {
        self.driver
            .command(
                reqwest::Method::GET,
                &format!("/session/{}{path}", self.id),
                None,
            )
            .await
    }

    async fn open(&self, url: &str) {
        self.post("/url", json!({"url": url})).await;
    }

    async fn element(&self, css: &str) -> String {
        let found = self
            .post("/element", json!({"using": "css selector", "value": css}))
            .await;
        found[ELEMENT].as_str().expect("element id").to_owned()
    }

    async fn type_into(&self, css: &str, text: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/clear"), json!({}))
            .await;
        self.post(&format!("/element/{element}/value"), json!({"text": text}))
            .await;
    }

    async fn click(&self, css: &str) {
        let element = self.element(css).await;
        self.post(&format!("/element/{element}/click"), json!({}))
            .await;
    }

    async fn source(&self) -> String {
        self.get("/source")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The page source once it contains `text` (a click's navigation
    /// may still be under way when the click returns).
    async fn source_with(&self, text: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let source = self.source().await;
            if source.contains(text) {
                return source;
            }
            assert!(Instant::now() < deadline, "no {text:?} in {source}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn url(&self) -> String {
        self.get("/url")
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn screenshot(&self, name: &str) -> std::path::PathBuf {
        let png = self.get("/screenshot").await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64 PNG"))
            .expect("a PNG");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/test-artifacts");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, png).unwrap();
        path
    }

    async fn close(self) {
        self.driver
            .command(
                reqwest::Method::DELETE,
                &format!("/session/{}", self.id),
                None,
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(test_chromium),
    ignore = "needs Chromium: MCP_TEST_SERVICES=chromium (CI=true implies it)"
)]
async fn a_browser_logs_in_and_consents_on_the_pages() {
    for binary in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(binary).exists() {
            mcp_testkit::unreachable("Chromium", &format!("{binary} is missing"));
        }
    }
    let db = TestDb::new(Backend::Sqlite).await;
    create_user(&db, "ada@example.com", PASSWORD, "user");
    let port = mcp_testkit::spare_port();
    let bind = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let server = TestServer::start(
        &db,
        &[
            ("MCP_BIND", bind.as_str()),
            ("MCP_PUBLIC_URL", public.as_str()),
        ],
    );

    // The client's redirect URI: a listener of the test's, so the browser
    // lands on a page and the test reads what it was sent.
    let callback = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let redirect = format!("http://{}/callback", callback.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/callback",
        axum::routing::get(|| async { axum::response::Html("<p id=done>Signed in.</p>") }),
    );
    let served = tokio::spawn(async move { axum::serve(callback, app).await });
    let client_id = common::oauth::register_client(&server, &redirect, "Browser Test Client").await;
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", redirect.as_str()),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
        ("scope", "mcp agents:read"),
        ("state", "browser-state"),
    ])
    .unwrap();

    let driver = Driver::start().await;
    let browser = driver.session().await;
    browser
        .open(&server.url(&format!("/oauth/authorize?{query}")))
        .await;
    let page = browser.source().await;
    assert!(page.contains("Browser Test Client"), "{page}");

    // A wrong password: the login page again, with the error.
    browser.type_into("#email", "ada@example.com").await;
    browser.type_into("#password", "not the password").await;
    browser.click("button[type=submit]").await;
    let page = browser.source_with("Wrong email or password.").await;
    assert!(!page.contains("not the password"), "the password echoed");

    // The right one: the consent page, naming the client, the redirect
    // host and the scopes asked for, each ticked.
    browser.type_into("#email", "ada@example.com").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("button[type=submit]").await;
    let page = browser.source_with("Allow access?").await;
    assert!(page.contains("Browser Test Client"));
    assert!(page.contains("127.0.0.1"), "the redirect host is shown");
    for scope in ["mcp", "agents:read"] {
        assert!(
            page.contains(&format!("value=\"{scope}\"")),
            "{scope}: {page}"
        );
    }
    let shot = browser.screenshot("oauth-consent.png").await;
    assert!(std::fs::metadata(&shot).unwrap().len() > 1000);

    // Narrowed to `mcp`, then allowed: the browser is at the client with a
    // code for exactly that.
    browser.click("input[value='agents:read']").await;
    browser.click("button[value=consent]").await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let landed = loop {
        let url = browser.url().await;
        if url.starts_with(&redirect) {
            break url;
        }
        assert!(Instant::now() < deadline, "never redirected: {url}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let landed = url::Url::parse(&landed).unwrap();
    let params: std::collections::HashMap<_, _> = landed.query_pairs().into_owned().collect();
    assert_eq!(params["state"], "browser-state");
    assert_eq!(params["iss"], public);
    let tokens: Value = reqwest::Client::new()
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", params["code"].as_str()),
            ("redirect_uri", redirect.as_str()),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["scope"], "mcp", "{tokens}");
    browser.close().await;
    served.abort();
}
