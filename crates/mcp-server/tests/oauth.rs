//! Stock MCP clients log in: rmcp's own OAuth client against the running
//! server, on both databases, through the whole MCP authorization flow:
//! `401` → protected resource metadata → authorization server metadata →
//! registration (dynamic, or a Client ID Metadata Document the test
//! serves) → the login and consent forms, posted as a browser posts them →
//! token → `tools/call` → refresh → revoke → refused. Also: the server's
//! side of the attacks that need it (a revoked grant's access token, the
//! login form's lock-out, foreign grants), and the grants API.

mod common;

use std::collections::HashMap;

use common::oauth::*;
use common::{Api, TestDb, TestServer, create_user};
use rmcp::ServiceExt;
use rmcp::model::CallToolRequestParams;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::auth::{
    AuthClient, AuthorizationCallback, AuthorizationManager, OAuthClientConfig,
};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

/// The server on a port chosen first, so that `MCP_PUBLIC_URL` (the
/// issuer, and the resource `<url>/mcp`) is the address clients use.
fn start(db: &TestDb, env: &[(&str, &str)]) -> TestServer {
    let port = mcp_testkit::spare_port();
    let bind = format!("127.0.0.1:{port}");
    let public = format!("http://127.0.0.1:{port}");
    let mut all = vec![
        ("MCP_BIND", bind.as_str()),
        ("MCP_PUBLIC_URL", public.as_str()),
        ("MCP_OAUTH_INSECURE_CLIENT_URLS", "true"),
    ];
    all.extend_from_slice(env);
    TestServer::start(db, &all)
}

/// rmcp's manager for the server's `/mcp`, metadata discovered from the
/// server's `401`.
async fn discovered(server: &TestServer) -> AuthorizationManager {
    let mut manager = AuthorizationManager::new(server.url("/mcp").as_str())
        .await
        .expect("manager");
    let resolution = manager.resolve_metadata().await.expect("discovery");
    let metadata = resolution.metadata;
    assert_eq!(
        metadata.authorization_endpoint,
        server.url("/oauth/authorize")
    );
    assert_eq!(metadata.token_endpoint, server.url("/oauth/token"));
    manager.set_metadata(metadata);
    manager
}

type McpClient = rmcp::service::RunningService<rmcp::RoleClient, ()>;

async fn connect(server: &TestServer, auth: &AuthClient<reqwest::Client>) -> McpClient {
    let transport = StreamableHttpClientTransport::with_client(
        auth.clone(),
        StreamableHttpClientTransportConfig::with_uri(server.url("/mcp")),
    );
    ().serve(transport)
        .await
        .expect("MCP session with the OAuth token")
}

async fn whoami(client: &McpClient) -> Result<Value, rmcp::ServiceError> {
    let result = client
        .call_tool(CallToolRequestParams::new("whoami"))
        .await?;
    Ok(result.structured_content.unwrap_or(Value::Null))
}

/// The refresh token of a token response (rmcp keeps it to itself).
fn refresh_token_of(response: &impl serde::Serialize) -> String {
    serde_json::to_value(response).unwrap()["refresh_token"]
        .as_str()
        .expect("a refresh token")
        .to_owned()
}

/// The whole flow with dynamic client registration.
async fn rmcp_client_logs_in_by_registration(db: TestDb) {
    let user = create_user(&db, "ada@example.com", PASSWORD, "user");
    let server = start(&db, &[]);
    let api = Api::new(&server);

    // Step 1, as the client meets it: a 401 naming the metadata.
    let (status, headers, _) = api.call("POST", "/mcp", None, Some(json!({}))).await;
    assert_eq!(status, 401);
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains(&format!(
            "resource_metadata=\"{}\"",
            server.url("/.well-known/oauth-protected-resource/mcp")
        )),
        "{challenge}"
    );
    let (status, _, document) = api
        .call(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(document["resource"], server.url("/mcp"));
    assert_eq!(document["authorization_servers"][0], server.url(""));

    let mut manager = discovered(&server).await;
    let registered = manager
        .register_client("rmcp e2e", REDIRECT, &["mcp"])
        .await
        .expect("dynamic client registration");
    let url = manager
        .get_authorization_url(&["mcp"])
        .await
        .expect("authorization URL");
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    let redirect = log_in_and_consent(&url, "ada@example.com", &["mcp"]).await;
    assert!(redirect.starts_with(REDIRECT), "{redirect}");
    let callback = AuthorizationCallback::from_redirect_url(&redirect).expect("callback");
    assert_eq!(callback.issuer.as_deref(), Some(server.url("").as_str()));
    let tokens = manager
        .exchange_code_for_token_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await
        .expect("code exchange");
    let first_refresh = refresh_token_of(&tokens);

    let auth = AuthClient::new(reqwest::Client::new(), manager);
    let client = connect(&server, &auth).await;
    let me = whoami(&client)
        .await
        .expect("tools/call with the OAuth token");
    assert_eq!(me["subject"], user["id"]);
    assert_eq!(me["scopes"], json!(["mcp"]));

    // Refresh: a new access token and a rotated refresh token, which keep
    // working; the old refresh token is spent.
    let old_access = auth.get_access_token().await.unwrap();
    let refreshed = auth
        .auth_manager
        .lock()
        .await
        .refresh_token()
        .await
        .expect("refresh");
    let second_refresh = refresh_token_of(&refreshed);
    assert_ne!(second_refresh, first_refresh);
    assert_ne!(auth.get_access_token().await.unwrap(), old_access);
    whoami(&client)
        .await
        .expect("a call with the refreshed token");

    // The user sees the grant, then revokes it by RFC 7009 as a client
    // would: the access token in hand is refused at once, the refresh
    // token too.
    let password_token = api.login("ada@example.com", PASSWORD).await;
    let (status, _, grants) = api
        .call("GET", "/api/oauth/grants", Some(&password_token), None)
        .await;
    assert_eq!(status, 200, "{grants}");
    assert_eq!(grants["items"].as_array().unwrap().len(), 1, "{grants}");
    assert_eq!(grants["items"][0]["clientId"], registered.client_id);
    assert_eq!(grants["items"][0]["scopes"], json!(["mcp"]));
    let revoke = reqwest::Client::new()
        .post(server.url("/oauth/revoke"))
        .form(&[
            ("token", second_refresh.as_str()),
            ("client_id", registered.client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status(), 200);
    let access = auth.get_access_token().await.unwrap();
    let (status, headers, body) = api.call("GET", "/api/auth/me", Some(&access), None).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("invalid_token")
    );
    assert!(whoami(&client).await.is_err(), "a call after revocation");
    let error = auth.auth_manager.lock().await.refresh_token().await;
    assert!(error.is_err(), "a refresh after revocation");
    let (_, _, grants) = api
        .call("GET", "/api/oauth/grants", Some(&password_token), None)
        .await;
    assert_eq!(grants["items"], json!([]));

    // The trail: a grant, a refresh, a revocation (and, as rmcp's client
    // tried the spent refresh token again after the refusal, that replay,
    // refused), with no secret in it.
    let admin = admin_token(&db, &api).await;
    let granted = events(&api, &admin, "oauth.grant", 1).await;
    assert_eq!(granted.len(), 1, "{granted:?}");
    assert_eq!(granted[0]["actor"]["subject"], user["id"]);
    assert_eq!(granted[0]["detail"]["clientId"], registered.client_id);
    assert_eq!(events(&api, &admin, "oauth.refresh", 1).await.len(), 1);
    let revoked = events(&api, &admin, "oauth.revoke", 1).await;
    assert_eq!(revoked[0]["outcome"], "success", "{revoked:?}");
    assert_eq!(revoked[0]["target"], granted[0]["target"]);
    for replay in &revoked[1..] {
        assert_eq!(replay["outcome"], "denied", "{replay}");
        assert_eq!(replay["detail"]["reason"], "replay", "{replay}");
    }
    let (_, _, all) = api
        .call("GET", "/api/audit?limit=200", Some(&admin), None)
        .await;
    let all = all.to_string();
    for secret in [&first_refresh, &second_refresh, &access, &callback.code] {
        assert!(
            !all.contains(secret.as_str()),
            "a secret in the audit trail"
        );
    }
    assert!(!all.contains(PASSWORD));
    client.cancel().await.ok();
}
both_databases!(
    rmcp_client_logs_in_by_registration,
    rmcp_client_logs_in_by_registration
);

/// The audit events of `kind`, once at least `count` are written (the
/// writer batches them off the request path), oldest first.
async fn events(api: &Api, admin: &str, kind: &str, count: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, _, page) = api
            .call("GET", &format!("/api/audit?type={kind}"), Some(admin), None)
            .await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().unwrap().clone();
        if items.len() >= count || std::time::Instant::now() > deadline {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

async fn admin_token(db: &TestDb, api: &Api) -> String {
    create_user(db, "root@example.com", PASSWORD, "admin");
    api.login("root@example.com", PASSWORD).await
}

/// A Client ID Metadata Document the test serves: rmcp's client presents
/// the document's URL as its `client_id`, and the server fetches it.
async fn rmcp_client_logs_in_by_metadata_document(db: TestDb) {
    create_user(&db, "ada@example.com", PASSWORD, "user");
    let server = start(&db, &[]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let document_url = format!("http://{}/client.json", listener.local_addr().unwrap());
    let document = json!({
        "client_id": document_url,
        "client_name": "Document client",
        "redirect_uris": [REDIRECT],
        "token_endpoint_auth_method": "none",
    });
    let app = axum::Router::new().route(
        "/client.json",
        axum::routing::get(move || {
            let document = document.clone();
            async move { axum::Json(document) }
        }),
    );
    let served = tokio::spawn(async move { axum::serve(listener, app).await });

    let mut manager = discovered(&server).await;
    manager
        .configure_client(OAuthClientConfig::new(document_url.clone(), REDIRECT))
        .expect("client configured");
    let url = manager.get_authorization_url(&["mcp"]).await.unwrap();
    let page = log_in_and_consent(&url, "ada@example.com", &["mcp"]).await;
    let callback = AuthorizationCallback::from_redirect_url(&page).unwrap();
    manager
        .exchange_code_for_token_with_issuer(
            &callback.code,
            &callback.csrf_token,
            callback.issuer.as_deref(),
        )
        .await
        .expect("code exchange for a metadata-document client");
    let auth = AuthClient::new(reqwest::Client::new(), manager);
    let client = connect(&server, &auth).await;
    let me = whoami(&client).await.unwrap();
    assert_eq!(me["authMethod"], "jwt");
    let api = Api::new(&server);
    let token = api.login("ada@example.com", PASSWORD).await;
    let (_, _, grants) = api
        .call("GET", "/api/oauth/grants", Some(&token), None)
        .await;
    assert_eq!(grants["items"][0]["clientId"], document_url);
    assert_eq!(grants["items"][0]["clientName"], "Document client");
    client.cancel().await.ok();
    served.abort();
}
both_databases!(
    rmcp_client_logs_in_by_metadata_document,
    rmcp_client_logs_in_by_metadata_document
);

/// Grants of another user are not theirs to see or revoke (`404`, as if
/// absent); an admin's are; revoking by the API refuses the grant's
/// access token at once and its refresh token; a deleted user's grants go
/// with them.
async fn grants_belong_to_their_user(db: TestDb) {
    let ada = create_user(&db, "ada@example.com", PASSWORD, "user");
    create_user(&db, "bob@example.com", PASSWORD, "user");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let (_, ada_access, ada_refresh) = granted(&server, "ada@example.com", &["mcp"]).await;
    let (status, _, me) = api
        .call("GET", "/api/auth/me", Some(&ada_access), None)
        .await;
    assert_eq!(status, 200, "{me}");
    let ada_password = api.login("ada@example.com", PASSWORD).await;
    let bob = api.login("bob@example.com", PASSWORD).await;
    let (_, _, grants) = api
        .call("GET", "/api/oauth/grants", Some(&ada_password), None)
        .await;
    let id = grants["items"][0]["id"].as_str().unwrap().to_owned();
    assert_eq!(grants["items"][0]["userId"], ada["id"]);

    // Bob: another user's list and grant are not found.
    let (status, _, _) = api
        .call(
            "GET",
            &format!("/api/oauth/grants?userId={}", ada["id"].as_str().unwrap()),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/oauth/grants/{id}"),
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (_, _, bobs) = api.call("GET", "/api/oauth/grants", Some(&bob), None).await;
    assert_eq!(bobs["items"], json!([]));
    // The OAuth token itself (scope `mcp`) may not manage grants.
    let (status, _, _) = api
        .call("GET", "/api/oauth/grants", Some(&ada_access), None)
        .await;
    assert_eq!(status, 403);

    // An admin sees Ada's and revokes it.
    let admin = admin_token(&db, &api).await;
    let (status, _, listed) = api
        .call(
            "GET",
            &format!("/api/oauth/grants?userId={}", ada["id"].as_str().unwrap()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["id"], id.as_str());
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/oauth/grants/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = api
        .call("GET", "/api/auth/me", Some(&ada_access), None)
        .await;
    assert_eq!(status, 401, "the access token of a revoked grant");
    let refused = common::oauth::refresh(
        &server,
        listed["items"][0]["clientId"].as_str().unwrap(),
        &ada_refresh,
    )
    .await;
    assert_eq!(refused.status(), 400);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant");
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/oauth/grants/{id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404, "a revoked grant is gone");
    let revoked = events(&api, &admin, "oauth.revoke", 1).await;
    let admin_me = api.call("GET", "/api/auth/me", Some(&admin), None).await.2;
    assert_eq!(
        revoked[0]["actor"]["subject"], admin_me["id"],
        "{revoked:?}"
    );
    assert_eq!(revoked[0]["target"]["id"], id.as_str());

    // Bob's grant goes when Bob is deleted.
    let (_, bob_access, _) = granted(&server, "bob@example.com", &["mcp"]).await;
    let bob_id = api.call("GET", "/api/auth/me", Some(&bob), None).await.2["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/users/{bob_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, _, _) = api
        .call("GET", "/api/auth/me", Some(&bob_access), None)
        .await;
    assert_eq!(status, 401);
    let (_, _, all) = api
        .call(
            "GET",
            &format!("/api/oauth/grants?userId={bob_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(all["items"], json!([]));
}
both_databases!(grants_belong_to_their_user, grants_belong_to_their_user);

/// A user consents to what they hold, never more: `admin` is not offered
/// to a plain user, and a forged consent for it is refused.
async fn consent_never_exceeds_the_user(db: TestDb) {
    create_user(&db, "ada@example.com", PASSWORD, "user");
    let server = start(&db, &[]);
    let (_, access, _) = granted(&server, "ada@example.com", &["mcp", "agents:read"]).await;
    let api = Api::new(&server);
    let (status, _, me) = api.call("GET", "/api/auth/me", Some(&access), None).await;
    assert_eq!(status, 200);
    assert_eq!(me["role"], "user");
    // Asking for `admin`: the consent page does not offer it, and posting
    // it anyway is refused.
    let client_id = register(&server).await;
    let browser = browser();
    let page = browser
        .get(authorize_url(&server, &client_id, Some("mcp admin")))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie(page.headers(), "mcp_oauth_login");
    let html = page.text().await.unwrap();
    let consent = post_login(
        &browser,
        &server.url(""),
        (&login_cookie, &html),
        "ada@example.com",
        PASSWORD,
    )
    .await;
    let session = cookie(consent.headers(), "mcp_oauth_session");
    let html = consent.text().await.unwrap();
    assert!(html.contains("value=\"mcp\""));
    assert!(!html.contains("value=\"admin\""), "admin offered to a user");
    let forged = browser
        .post(server.url("/oauth/authorize"))
        .header("cookie", &session)
        .form(&[
            ("action", "consent".to_owned()),
            ("query", hidden(&html, "query")),
            ("csrf", hidden(&html, "csrf")),
            ("scope", "admin".to_owned()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}
both_databases!(
    consent_never_exceeds_the_user,
    consent_never_exceeds_the_user
);

/// Wrong passwords on the login form count against the address like any
/// refused credential: once the auth-failures policy is used up the form
/// answers `429` before checking anything, the right password included.
async fn the_login_form_locks_out_like_the_api(db: TestDb) {
    create_user(&db, "ada@example.com", PASSWORD, "user");
    let server = start(&db, &[("MCP_RATE_LIMIT_AUTH_FAILURES", "3/60s")]);
    let url = authorize_url(&server, &register(&server).await, None);
    let browser = browser();
    let mut statuses = Vec::new();
    for password in ["wrong 1", "wrong 2", "wrong 3", PASSWORD] {
        let page = browser.get(&url).send().await.unwrap();
        if page.status() != 200 {
            statuses.push(page.status().as_u16());
            continue;
        }
        let login_cookie = cookie(page.headers(), "mcp_oauth_login");
        let html = page.text().await.unwrap();
        let answer = post_login(
            &browser,
            &server.url(""),
            (&login_cookie, &html),
            "ada@example.com",
            password,
        )
        .await;
        statuses.push(answer.status().as_u16());
        if answer.status() == 401 {
            // The page, for the person at the browser: not a problem.
            assert!(
                answer.headers()["content-type"]
                    .to_str()
                    .unwrap()
                    .starts_with("text/html")
            );
            assert!(
                answer
                    .text()
                    .await
                    .unwrap()
                    .contains("Wrong email or password.")
            );
        }
    }
    assert_eq!(statuses, [401, 401, 401, 429]);
    let api = Api::new(&server);
    let (status, _, _) = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "ada@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(status, 429, "the JSON login shares the lock-out");
}
both_databases!(
    the_login_form_locks_out_like_the_api,
    the_login_form_locks_out_like_the_api
);

/// `MCP_OAUTH=off`: no authorization server, no metadata naming it, and
/// a `401` without `resource_metadata` (no external issuer either).
async fn oauth_off_publishes_nothing(db: TestDb) {
    let server = start(&db, &[("MCP_OAUTH", "off")]);
    let api = Api::new(&server);
    for path in [
        "/.well-known/oauth-authorization-server",
        "/.well-known/oauth-protected-resource/mcp",
    ] {
        let (status, _, _) = api.call("GET", path, None, None).await;
        assert_eq!(status, 404, "{path}");
    }
    let (status, _, _) = api
        .call("POST", "/oauth/register", None, Some(json!({})))
        .await;
    assert_eq!(status, 404);
    let (status, headers, _) = api.call("GET", "/api/auth/me", None, None).await;
    assert_eq!(status, 401);
    assert!(
        !headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("resource_metadata")
    );
}
both_databases!(oauth_off_publishes_nothing, oauth_off_publishes_nothing);

/// `MCP_OAUTH_REGISTRATION=off` removes registration (and its metadata
/// entry); registration is limited per address by the auth policy.
async fn registration_is_optional_and_limited(db: TestDb) {
    let server = start(&db, &[("MCP_OAUTH_REGISTRATION", "off")]);
    let api = Api::new(&server);
    let (status, _, metadata) = api
        .call("GET", "/.well-known/oauth-authorization-server", None, None)
        .await;
    assert_eq!(status, 200);
    assert!(
        metadata.get("registration_endpoint").is_none(),
        "{metadata}"
    );
    let (status, _, _) = api
        .call(
            "POST",
            "/oauth/register",
            None,
            Some(json!({"redirect_uris": [REDIRECT]})),
        )
        .await;
    assert_eq!(status, 404);
    drop(server);

    let server = start(&db, &[("MCP_RATE_LIMIT_AUTH", "2/60s")]);
    let api = Api::new(&server);
    let mut statuses = HashMap::new();
    for _ in 0..3 {
        let (status, _, _) = api
            .call(
                "POST",
                "/oauth/register",
                None,
                Some(json!({"redirect_uris": [REDIRECT]})),
            )
            .await;
        *statuses.entry(status).or_insert(0) += 1;
    }
    assert_eq!(statuses, HashMap::from([(201, 2), (429, 1)]));
    // The limit is registration's alone: the token endpoint still answers.
    let (status, _, _) = api
        .call("GET", "/.well-known/oauth-authorization-server", None, None)
        .await;
    assert_eq!(status, 200);
}
both_databases!(
    registration_is_optional_and_limited,
    registration_is_optional_and_limited
);

/// A code presented twice (someone intercepted it): the second exchange is
/// refused with `invalid_grant`, and what the first one issued stops
/// working at once, the access token included (its grant is revoked).
async fn a_replayed_code_revokes_its_tokens(db: TestDb) {
    create_user(&db, "ada@example.com", PASSWORD, "user");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let (client_id, access, refresh, code) =
        granted_with_code(&server, "ada@example.com", &["mcp"]).await;
    assert_eq!(
        api.call("GET", "/api/auth/me", Some(&access), None).await.0,
        200
    );
    let http = reqwest::Client::new();
    let replay = http
        .post(server.url("/oauth/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            (
                "code_verifier",
                "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk",
            ),
            ("client_id", client_id.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 400);
    assert_eq!(replay.headers()["cache-control"], "no-store");
    let body: Value = replay.json().await.unwrap();
    assert_eq!(body["error"], "invalid_grant", "{body}");
    let (status, _, _) = api.call("GET", "/api/auth/me", Some(&access), None).await;
    assert_eq!(status, 401, "the replayed code's access token");
    let refreshed = common::oauth::refresh(&server, &client_id, &refresh).await;
    assert_eq!(refreshed.status(), 400);
}
both_databases!(
    a_replayed_code_revokes_its_tokens,
    a_replayed_code_revokes_its_tokens
);
