//! Client ID Metadata Documents: the request forgeries a fetched URL
//! invites, refused before any connection; documents that lie about
//! themselves or are too large, refused after; the cache.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use mcp_auth::{SigningKey, TokenIssuer};
use mcp_oauth::{
    AuthorizationParams, AuthorizationServer, ClientMetadataFetcher, ErrorCode, MemoryStore,
    Settings,
};

/// Serves `/good`, `/liar`, `/huge`, `/moved`, `/slow` on loopback; counts
/// the fetches of `/good`.
async fn documents() -> (String, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let hits = Arc::new(AtomicUsize::new(0));
    let good = {
        let base = base.clone();
        let hits = hits.clone();
        move || {
            hits.fetch_add(1, Ordering::SeqCst);
            let body = serde_json::json!({
                "client_id": format!("{base}/good"),
                "client_name": "Docs client",
                "redirect_uris": ["http://127.0.0.1/cb"],
                "token_endpoint_auth_method": "none",
            });
            async move { axum::Json(body) }
        }
    };
    let liar = {
        move || async move {
            axum::Json(serde_json::json!({
                "client_id": "https://someone-else.example/client.json",
                "redirect_uris": ["http://127.0.0.1/cb"],
            }))
        }
    };
    let evil_redirects = {
        let base = base.clone();
        move || {
            let id = format!("{base}/evil");
            async move {
                axum::Json(serde_json::json!({
                    "client_id": id,
                    "redirect_uris": ["javascript:alert(1)"],
                }))
            }
        }
    };
    let sized = |path: &'static str, size: usize, chunked: bool| {
        let base = base.clone();
        move || {
            let mut body = serde_json::to_string(&serde_json::json!({
                "client_id": format!("{base}{path}"),
                "redirect_uris": ["http://127.0.0.1/cb"],
            }))
            .unwrap();
            body.push_str(&" ".repeat(size - body.len()));
            async move {
                if chunked {
                    // No Content-Length: the cap must hold while streaming.
                    let chunks: Vec<Result<String, std::io::Error>> = body
                        .as_bytes()
                        .chunks(16 * 1024)
                        .map(|c| Ok(String::from_utf8(c.to_vec()).unwrap()))
                        .collect();
                    axum::body::Body::from_stream(futures_util::stream::iter(chunks))
                } else {
                    axum::body::Body::from(body)
                }
            }
        }
    };
    let shaped = |path: &'static str, extra: serde_json::Value| {
        let base = base.clone();
        move || {
            let mut body = serde_json::json!({
                "client_id": format!("{base}{path}"),
                "redirect_uris": ["http://127.0.0.1/cb"],
            });
            for (k, v) in extra.as_object().unwrap() {
                body[k] = v.clone();
            }
            async move { axum::Json(body) }
        }
    };
    let max = mcp_oauth::MAX_DOCUMENT_BYTES;
    let uris = |n: usize| serde_json::json!(vec!["http://127.0.0.1/cb"; n]);
    let app = Router::new()
        .route("/exact", get(sized("/exact", max, false)))
        .route("/over", get(sized("/over", max + 1, false)))
        .route("/stream-exact", get(sized("/stream-exact", max, true)))
        .route("/stream-over", get(sized("/stream-over", max + 1, true)))
        .route(
            "/ten",
            get(shaped(
                "/ten",
                serde_json::json!({"redirect_uris": uris(10)}),
            )),
        )
        .route(
            "/eleven",
            get(shaped(
                "/eleven",
                serde_json::json!({"redirect_uris": uris(11)}),
            )),
        )
        .route(
            "/none",
            get(shaped("/none", serde_json::json!({"redirect_uris": []}))),
        )
        .route(
            "/confidential",
            get(shaped(
                "/confidential",
                serde_json::json!({"token_endpoint_auth_method": "client_secret_basic"}),
            )),
        )
        .route(
            "/public",
            get(shaped(
                "/public",
                serde_json::json!({"token_endpoint_auth_method": "none"}),
            )),
        )
        .route(
            "/long-name",
            get(shaped(
                "/long-name",
                serde_json::json!({"client_name": "n".repeat(201)}),
            )),
        )
        .route(
            "/name-200",
            get(shaped(
                "/name-200",
                serde_json::json!({"client_name": "n".repeat(200)}),
            )),
        )
        .route(
            "/bell-name",
            get(shaped(
                "/bell-name",
                serde_json::json!({"client_name": "ring\u{7}"}),
            )),
        )
        .route("/good", get(good))
        .route("/liar", get(liar))
        .route("/evil", get(evil_redirects))
        .route("/huge", get(|| async { "x".repeat(200 * 1024) }))
        .route(
            "/moved",
            get(|| async { axum::response::Redirect::temporary("http://169.254.169.254/") }),
        )
        .route(
            "/slow",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(5)).await;
                "late"
            }),
        );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, hits)
}

#[tokio::test]
async fn forged_request_targets_are_refused_before_connecting() {
    let fetcher = ClientMetadataFetcher::new();
    for url in [
        "http://client.example/metadata.json",
        "https://127.0.0.1/metadata.json",
        "https://169.254.169.254/latest/meta-data",
        "https://10.1.2.3/client.json",
        "https://[::1]/client.json",
        "https://[::ffff:127.0.0.1]/client.json",
        "https://[fd00::1]/client.json",
        "https://100.64.0.1/client.json",
        "https://0.0.0.0/client.json",
        // A name that resolves to loopback.
        "https://localhost/client.json",
        "https://user:pw@client.example/metadata.json",
        "https://client.example/metadata.json#x",
        "https://client.example/",
        "not a url",
    ] {
        let started = std::time::Instant::now();
        let error = fetcher.fetch(url).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidClient, "{url}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{url} was not refused at once"
        );
    }
}

#[tokio::test]
async fn documents_must_describe_themselves_and_stay_small() {
    let (base, hits) = documents().await;
    let fetcher = ClientMetadataFetcher::insecure_for_tests(Duration::from_millis(500));
    let client = fetcher.fetch(&format!("{base}/good")).await.unwrap();
    assert_eq!(client.id, format!("{base}/good"));
    assert_eq!(client.name.as_deref(), Some("Docs client"));
    assert!(client.secret_hash.is_none(), "a public client");
    // Cached: the second use does not fetch.
    fetcher.fetch(&format!("{base}/good")).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    for (path, why) in [
        ("/liar", "client_id"),
        ("/evil", "redirect_uris"),
        ("/huge", "too large"),
        ("/moved", "cannot be fetched"),
        ("/slow", "cannot be fetched"),
        ("/missing", "cannot be fetched"),
    ] {
        let error = fetcher.fetch(&format!("{base}{path}")).await.unwrap_err();
        assert_eq!(error.code, ErrorCode::InvalidClient, "{path}");
        assert!(
            error.description.contains(why),
            "{path}: {}",
            error.description
        );
    }
}

#[tokio::test]
async fn sizes_counts_and_kinds_at_their_edges() {
    let (base, _) = documents().await;
    let fetcher = ClientMetadataFetcher::insecure_for_tests(Duration::from_millis(500));
    for ok in ["/exact", "/stream-exact", "/ten", "/public", "/name-200"] {
        fetcher
            .fetch(&format!("{base}{ok}"))
            .await
            .unwrap_or_else(|e| panic!("{ok}: {e}"));
    }
    for (bad, why) in [
        ("/over", "too large"),
        ("/stream-over", "too large"),
        ("/eleven", "redirect_uris"),
        ("/none", "redirect_uris"),
        ("/confidential", "public client"),
    ] {
        let error = fetcher.fetch(&format!("{base}{bad}")).await.unwrap_err();
        assert!(
            error.description.contains(why),
            "{bad}: {}",
            error.description
        );
    }
    // A name too long or with a control character is not shown.
    assert_eq!(
        fetcher
            .fetch(&format!("{base}/name-200"))
            .await
            .unwrap()
            .name,
        Some("n".repeat(200))
    );
    for dropped in ["/long-name", "/bell-name"] {
        assert_eq!(
            fetcher
                .fetch(&format!("{base}{dropped}"))
                .await
                .unwrap()
                .name,
            None,
            "{dropped}"
        );
    }
    // The URL's own rules hold in insecure mode too (everything else
    // about these would be fetched).
    let host = base.trim_start_matches("http://");
    for url in [
        format!("http://user@{host}/good"),
        format!("http://:pw@{host}/good"),
        format!("{base}/good#fragment"),
        format!("{base}/"),
        format!("ftp://{host}/good"),
    ] {
        let error = fetcher.fetch(&url).await.unwrap_err();
        assert!(
            !error.description.contains("cannot be fetched"),
            "{url}: {}",
            error.description
        );
    }
}

#[tokio::test]
async fn a_document_is_fetched_again_after_five_minutes() {
    let (base, hits) = documents().await;
    let clock = mcp_core::ManualClock::at_unix(1_800_000_000);
    let fetcher =
        ClientMetadataFetcher::insecure_for_tests(Duration::from_millis(500)).clock(clock.shared());
    let url = format!("{base}/good");
    fetcher.fetch(&url).await.unwrap();
    clock.advance(Duration::from_secs(299));
    fetcher.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    clock.advance(Duration::from_secs(1));
    fetcher.fetch(&url).await.unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn an_authorization_request_may_name_its_client_by_document() {
    let (base, _) = documents().await;
    let issuer = "https://mcp.example.com";
    let resource = "https://mcp.example.com/mcp";
    let tokens = TokenIssuer::new(SigningKey::hmac(&[8; 32]).unwrap(), issuer, resource);
    let server =
        AuthorizationServer::new(MemoryStore::new(), tokens, Settings::new(issuer, resource))
            .client_metadata(ClientMetadataFetcher::insecure_for_tests(
                Duration::from_millis(500),
            ));
    let request = server
        .check_authorization(&AuthorizationParams {
            response_type: Some("code".into()),
            client_id: Some(format!("{base}/good")),
            redirect_uri: Some("http://127.0.0.1:40000/cb".into()),
            code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(request.client.name.as_deref(), Some("Docs client"));
    // Kept in the store, so the token endpoint knows the client.
    assert!(
        server
            .store()
            .client(&format!("{base}/good"))
            .await
            .unwrap()
            .is_some()
    );
}
