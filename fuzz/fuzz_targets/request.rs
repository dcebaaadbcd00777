//! A whole request through the server's full stack, in process: the spine,
//! every layer, the REST API, the OAuth endpoints and MCP, on SQLite. The
//! input is `method byte, path line, header lines, blank line, body`; the
//! words `$JWT` and `$KEY` in a header stand for a real user's credentials,
//! so the fuzzer gets past authentication. Whatever comes in, the answer
//! is never a `500`, and never carries the user's key or password.
#![no_main]

use std::ffi::OsString;
use std::net::SocketAddr;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::ConnectInfo;
use http::Request;
use libfuzzer_sys::fuzz_target;
use std::convert::Infallible;

use tower::util::BoxCloneSyncService;
use tower::{Service, ServiceExt};

const PASSWORD: &str = "a-long-fuzz-password";

type App = BoxCloneSyncService<Request<Body>, axum::response::Response, Infallible>;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    app: App,
    jwt: String,
    key: String,
    _dir: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let dir = tempfile::tempdir().expect("a directory");
        let env: Vec<(OsString, OsString)> = [
            (
                "DATABASE_URL",
                format!("sqlite://{}", dir.path().join("mcp.db").display()),
            ),
            (
                "MCP_JWT_SECRET",
                "fuzz-secret-fuzz-secret-fuzz-secret-0123".to_owned(),
            ),
            ("MCP_CORS_ORIGIN", "http://app.example.com".to_owned()),
            ("MCP_LOG", "off".to_owned()),
            ("MCP_AUDIT_SINK", "off".to_owned()),
            // The fuzzer is one address sending everything: no limit may
            // end the run in `429`s.
            ("MCP_RATE_LIMIT_API", "1000000/1s".to_owned()),
            ("MCP_RATE_LIMIT_AUTH", "1000000/1s".to_owned()),
            ("MCP_RATE_LIMIT_AUTH_FAILURES", "1000000/1s".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
        let (app, jwt, key) = runtime.block_on(async {
            let (config, _) = mcp_server::config::Config::load(None, env).expect("a configuration");
            let state = mcp_server::Services::open(config)
                .await
                .expect("the server's state");
            let hash = state
                .passwords
                .hash(PASSWORD.to_owned())
                .await
                .expect("a hash");
            mcp_server::users::create(
                &state.db,
                mcp_server::users::NewUser {
                    email: "fuzz@example.com".to_owned(),
                    name: "Fuzz".to_owned(),
                    role: mcp_server::users::Role::Admin,
                    password_hash: hash,
                },
                mcp_server::users::now(&*state.clock),
            )
            .await
            .expect("a user");
            let app = BoxCloneSyncService::new(mcp_server::app::<Body>(state));
            let login = json(
                &app,
                "/api/auth/login",
                None,
                serde_json::json!({"email": "fuzz@example.com", "password": PASSWORD}),
            )
            .await;
            let jwt = login["accessToken"].as_str().expect("a token").to_owned();
            let created = json(
                &app,
                "/api/keys",
                Some(&jwt),
                serde_json::json!({"name": "fuzz"}),
            )
            .await;
            let key = created["key"].as_str().expect("a key").to_owned();
            (app, jwt, key)
        });
        Fixture {
            runtime,
            app,
            jwt,
            key,
            _dir: dir,
        }
    })
}

async fn json<S>(
    app: &S,
    path: &str,
    jwt: Option<&str>,
    body: serde_json::Value,
) -> serde_json::Value
where
    S: Service<Request<Body>, Response = axum::response::Response> + Clone,
    S::Error: std::fmt::Debug,
{
    let mut request = Request::post(path)
        .header("host", "127.0.0.1:8080")
        .header("content-type", "application/json");
    if let Some(jwt) = jwt {
        request = request.header("authorization", format!("Bearer {jwt}"));
    }
    let mut request = request
        .body(Body::from(body.to_string()))
        .expect("a request");
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = app.clone().oneshot(request).await.expect("an answer");
    let bytes = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .expect("a body");
    serde_json::from_slice(&bytes).expect("json")
}

const METHODS: [&str; 7] = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"];

fuzz_target!(|data: &[u8]| {
    let Some((&method, rest)) = data.split_first() else {
        return;
    };
    let fixture = fixture();
    let text = String::from_utf8_lossy(rest);
    let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let path = lines.next().unwrap_or("/");
    let path = if path.starts_with('/') {
        path.to_owned()
    } else {
        format!("/{path}")
    };
    let mut builder = Request::builder()
        .method(METHODS[usize::from(method) % METHODS.len()])
        .uri(path.as_str())
        .header("host", "127.0.0.1:8080");
    // What the request carries outside its credential headers: data the
    // client chose to send, which an answer may quote back to it.
    let mut data = body.to_owned();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value
            .trim()
            .replace("$JWT", &fixture.jwt)
            .replace("$KEY", &fixture.key);
        let name = name.trim();
        if !["authorization", "x-api-key", "cookie"]
            .iter()
            .any(|c| name.eq_ignore_ascii_case(c))
        {
            data.push_str(&value);
        }
        builder = builder.header(name, value);
    }
    // What `http` refuses never reaches a server.
    let Ok(mut request) = builder.body(Body::from(body.to_owned())) else {
        return;
    };
    request
        .extensions_mut()
        .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let response = fixture.runtime.block_on(async {
        let Ok(response) = fixture.app.clone().oneshot(request).await;
        let status = response.status();
        let bytes = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            axum::body::to_bytes(response.into_body(), 4 << 20),
        )
        .await;
        (status, bytes)
    });
    let (status, answer) = response;
    assert_ne!(status.as_u16(), 500, "{path}");
    if let Ok(Ok(answer)) = answer {
        let answer = String::from_utf8_lossy(&answer);
        // What the client sent as data may come back where the protocol
        // echoes it (a registration's metadata, rmcp naming a header value
        // it refuses); a credential presented as one, or that the server
        // knows, never does.
        for (secret, what) in [(fixture.key.as_str(), "key"), (PASSWORD, "password")] {
            assert!(
                !answer.contains(secret) || data.contains(secret),
                "the {what} came back from {path}"
            );
        }
    }
});
