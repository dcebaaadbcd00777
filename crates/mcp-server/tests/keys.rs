//! End-to-end: API keys over real HTTP, on SQLite and on PostgreSQL.

mod common;

use common::{Api, TestDb, TestServer, create_user};
use serde_json::{Value, json};

const SECRET: (&str, &str) = ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef");

async fn call_key(
    api: &Api,
    method: &str,
    path: &str,
    key: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = api
        .client
        .request(method, format!("{}{}", api.base, path))
        .header("x-api-key", key);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn bootstrap_key(logs: &str) -> Option<String> {
    logs.lines()
        .map(str::trim)
        .find(|l| l.starts_with("mcp_") && l.len() == 53)
        .map(str::to_owned)
}

async fn first_start_prints_one_admin_key_once(db: TestDb) {
    let server = TestServer::start(&db, &[SECRET]);
    assert!(
        server.wait_for_log(|l| l.contains("shown ONCE")).await,
        "{}",
        server.logs()
    );
    let logs = server.logs();
    let key = bootstrap_key(&logs).expect("the key is printed");
    assert_eq!(
        logs.matches(&key).count(),
        2,
        "the key and the curl example, nothing else"
    );
    let api = Api::new(&server);
    let (status, me) = call_key(&api, "GET", "/api/auth/me", &key, None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["email"], "admin@localhost");
    assert_eq!(me["authMethod"], "api_key");
    assert_eq!(me["scopes"], Value::Null);
    assert!(me["keyId"].is_string());
    let (status, _) = server.terminate();
    assert!(status.success());

    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &key, None).await.0,
        200
    );
    assert!(
        !server.logs().contains(&key),
        "printed only on the first start"
    );
    assert!(!server.logs().contains("shown ONCE"));
}
both_databases!(
    first_start_prints_one_admin_key_once,
    first_start_prints_one_admin_key_once
);

/// The whole lifecycle of a key, with the server's logs captured at debug
/// level: no secret may appear in them.
async fn key_lifecycle_over_http_leaks_nothing(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET, ("MCP_LOG", "debug")]);
    let api = Api::new(&server);
    let token = api.login("owner@example.com", "owner-password").await;
    let mut secrets = vec![token.clone(), "owner-password".to_owned()];

    // Create.
    let (status, headers, created) = api
        .call(
            "POST",
            "/api/keys",
            Some(&token),
            Some(json!({"name": "laptop", "scopes": ["keys:read", "mcp"], "expiresInDays": 30})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(headers["cache-control"], "no-store");
    let key = created["key"].as_str().unwrap().to_owned();
    secrets.push(key.clone());
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "laptop");
    assert_eq!(created["prefix"], &key[..12]);
    assert_eq!(created["scopes"], json!(["keys:read", "mcp"]));
    assert_eq!(created["isActive"], true);
    assert!(created["expiresAt"].is_string());
    assert_eq!(created["lastUsed"], Value::Null);
    for field in ["userId", "createdAt", "updatedAt"] {
        assert!(created[field].is_string(), "{field}");
    }
    let (status, _, dup) = api
        .call(
            "POST",
            "/api/keys",
            Some(&token),
            Some(json!({"name": "laptop"})),
        )
        .await;
    assert_eq!((status, dup["code"].as_str()), (409, Some("conflict")));

    // Use it: X-API-Key and Bearer.
    let (status, me) = call_key(&api, "GET", "/api/auth/me", &key, None).await;
    assert_eq!(status, 200);
    assert_eq!(me["authMethod"], "api_key");
    assert_eq!(me["keyId"], id.as_str());
    assert_eq!(me["scopes"], json!(["keys:read", "mcp"]));
    let (status, _, _) = api.call("GET", "/api/auth/me", Some(&key), None).await;
    assert_eq!(status, 200, "a key works as a bearer token too");

    // List and get never show the secret.
    let (status, _, list) = api.call("GET", "/api/keys", Some(&token), None).await;
    assert_eq!(status, 200);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["nextCursor"], Value::Null);
    let (status, _, one) = api
        .call("GET", &format!("/api/keys/{id}"), Some(&token), None)
        .await;
    assert_eq!(status, 200);
    for body in [&list, &one] {
        let text = body.to_string();
        assert!(
            !text.contains(&key) && !text.contains("\"key\"") && !text.contains("hash"),
            "{text}"
        );
    }

    // Patch inactive: refused like an unknown key; active again: back.
    let path = format!("/api/keys/{id}");
    let (status, _, patched) = api
        .call(
            "PATCH",
            &path,
            Some(&token),
            Some(json!({"isActive": false})),
        )
        .await;
    assert_eq!((status, patched["isActive"].as_bool()), (200, Some(false)));
    let (status, refused) = call_key(&api, "GET", "/api/auth/me", &key, None).await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
    // A well-formed key (good checksum) that the server never issued.
    let unknown = mcp_apikeys::ApiKeySecret::generate();
    assert_ne!(unknown.expose(), key);
    let (status, unknown_body) =
        call_key(&api, "GET", "/api/auth/me", unknown.expose(), None).await;
    assert_eq!(status, 401);
    assert_eq!(refused, unknown_body, "inactive and unknown look the same");
    api.call(
        "PATCH",
        &path,
        Some(&token),
        Some(json!({"isActive": true, "expiresInDays": null})),
    )
    .await;
    let (_, _, again) = api.call("GET", &path, Some(&token), None).await;
    assert_eq!(again["expiresAt"], Value::Null);
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &key, None).await.0,
        200
    );

    // Regenerate: the old secret dies at once; with a grace period it lives on.
    let (status, _, renewed) = api
        .call("POST", &format!("{path}/regenerate"), Some(&token), None)
        .await;
    assert_eq!(status, 200, "{renewed}");
    let new_key = renewed["key"].as_str().unwrap().to_owned();
    secrets.push(new_key.clone());
    assert_eq!(renewed["id"], id.as_str());
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &key, None).await.0,
        401
    );
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &new_key, None)
            .await
            .0,
        200
    );
    let (status, _, graced) = api
        .call(
            "POST",
            &format!("{path}/regenerate"),
            Some(&token),
            Some(json!({"gracePeriodSeconds": 600})),
        )
        .await;
    assert_eq!(status, 200);
    let newest = graced["key"].as_str().unwrap().to_owned();
    secrets.push(newest.clone());
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &new_key, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &newest, None).await.0,
        200
    );
    let (status, _, problem) = api
        .call(
            "POST",
            &format!("{path}/regenerate"),
            Some(&token),
            Some(json!({"gracePeriodSeconds": 604_801})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("validation_failed"))
    );

    // Delete: 204, then refused.
    let (status, _, _) = api.call("DELETE", &path, Some(&token), None).await;
    assert_eq!(status, 204);
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &newest, None).await.0,
        401
    );
    assert_eq!(api.call("GET", &path, Some(&token), None).await.0, 404);

    let logs = server.logs();
    for secret in &secrets {
        assert!(
            !logs.contains(secret.as_str()),
            "a secret reached the log:\n{logs}"
        );
    }
    // Neither the hash of a key nor the body of a request.
    assert!(!logs.contains("gracePeriodSeconds"));
    assert!(logs.contains("API key created") && logs.contains("API key deleted"));
}
both_databases!(
    key_lifecycle_over_http_leaks_nothing,
    key_lifecycle_over_http_leaks_nothing
);

async fn scopes_restrict_routes_and_grants(db: TestDb) {
    create_user(&db, "admin@example.com", "admin-password", "admin");
    create_user(&db, "user@example.com", "user-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let admin = api.login("admin@example.com", "admin-password").await;
    let user = api.login("user@example.com", "user-password").await;
    let make = |token: String, body: Value| {
        let api = &api;
        async move {
            let (status, _, created) = api
                .call("POST", "/api/keys", Some(&token), Some(body))
                .await;
            (status, created)
        }
    };

    let (_, read_only) = make(user.clone(), json!({"name": "ro", "scopes": ["keys:read"]})).await;
    let read_only = read_only["key"].as_str().unwrap().to_owned();
    assert_eq!(
        call_key(&api, "GET", "/api/keys", &read_only, None).await.0,
        200
    );
    let response = api
        .client
        .post(format!("{}/api/keys", api.base))
        .header("x-api-key", &read_only)
        .json(&json!({"name": "escalate"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert_eq!(
        common::without_resource_metadata(response.headers()["www-authenticate"].to_str().unwrap()),
        "Bearer realm=\"mcp\", error=\"insufficient_scope\", \
         error_description=\"the token lacks the scope this needs\", scope=\"keys:write\""
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "insufficient_scope");
    // 403 before validation: a bad body from an unauthorized caller is not
    // even read.
    let (status, body) = call_key(
        &api,
        "POST",
        "/api/keys",
        &read_only,
        Some(json!({"name": ""})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // An empty scope list allows only /api/auth/me.
    let (_, nothing) = make(user.clone(), json!({"name": "none", "scopes": []})).await;
    let nothing = nothing["key"].as_str().unwrap().to_owned();
    let (status, me) = call_key(&api, "GET", "/api/auth/me", &nothing, None).await;
    assert_eq!((status, me["scopes"].clone()), (200, json!([])));
    assert_eq!(
        call_key(&api, "GET", "/api/keys", &nothing, None).await.0,
        403
    );

    // A restricted key cannot hand out more than it has.
    let (_, writer) = make(user.clone(), json!({"name": "w", "scopes": ["keys:write"]})).await;
    let writer = writer["key"].as_str().unwrap().to_owned();
    let (status, body) = call_key(
        &api,
        "POST",
        "/api/keys",
        &writer,
        Some(json!({"name": "x"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope")),
        "unrestricted"
    );
    let (status, body) = call_key(
        &api,
        "POST",
        "/api/keys",
        &writer,
        Some(json!({"name": "x", "scopes": ["mcp"]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _) = call_key(
        &api,
        "POST",
        "/api/keys",
        &writer,
        Some(json!({"name": "x", "scopes": ["keys:write"]})),
    )
    .await;
    assert_eq!(status, 201);

    // admin and metrics scopes need the admin role; unknown scopes are 400.
    let (status, body) = make(user.clone(), json!({"name": "m", "scopes": ["metrics"]})).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, body) = make(user.clone(), json!({"name": "u", "scopes": ["root"]})).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed"))
    );
    assert_eq!(body["errors"][0]["field"], "scopes[0]");
    let (status, _) = make(
        admin.clone(),
        json!({"name": "m", "scopes": ["metrics", "admin"]}),
    )
    .await;
    assert_eq!(status, 201);

    // A restricted admin key needs the admin scope for admin routes.
    let (_, admin_ro) = make(
        admin.clone(),
        json!({"name": "ro", "scopes": ["keys:read"]}),
    )
    .await;
    let admin_ro = admin_ro["key"].as_str().unwrap().to_owned();
    let (status, body) = call_key(&api, "GET", "/api/users", &admin_ro, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, _, _) = api.call("GET", "/api/users", Some(&admin), None).await;
    assert_eq!(status, 200);
}
both_databases!(
    scopes_restrict_routes_and_grants,
    scopes_restrict_routes_and_grants
);

async fn other_users_keys_are_404(db: TestDb) {
    create_user(&db, "admin@example.com", "admin-password", "admin");
    let bob = create_user(&db, "bob@example.com", "bob-password", "user");
    create_user(&db, "eve@example.com", "eve-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let admin = api.login("admin@example.com", "admin-password").await;
    let bob_token = api.login("bob@example.com", "bob-password").await;
    let eve = api.login("eve@example.com", "eve-password").await;
    let (_, _, key) = api
        .call(
            "POST",
            "/api/keys",
            Some(&bob_token),
            Some(json!({"name": "bob's"})),
        )
        .await;
    let id = key["id"].as_str().unwrap();
    let bob_key = key["key"].as_str().unwrap().to_owned();
    let path = format!("/api/keys/{id}");

    for (method, path, body) in [
        ("GET", path.clone(), None),
        ("PATCH", path.clone(), Some(json!({"isActive": false}))),
        ("PATCH", path.clone(), Some(json!({"name": ""}))),
        ("DELETE", path.clone(), None),
        ("POST", format!("{path}/regenerate"), None),
    ] {
        let (status, _, problem) = api.call(method, &path, Some(&eve), body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("not_found")),
            "{method} {path}"
        );
    }
    let bob_id = bob["id"].as_str().unwrap();
    let (status, _, _) = api
        .call(
            "GET",
            &format!("/api/keys?userId={bob_id}"),
            Some(&eve),
            None,
        )
        .await;
    assert_eq!(status, 404);
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &bob_key, None)
            .await
            .0,
        200
    );

    // Admins see anyone's keys; an owner that does not exist is 404.
    let (status, _, listed) = api
        .call(
            "GET",
            &format!("/api/keys?userId={bob_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(listed["items"][0]["id"], id);
    let (status, _, _) = api.call("GET", &path, Some(&admin), None).await;
    assert_eq!(status, 200);
    let (status, _, _) = api
        .call(
            "GET",
            &format!("/api/keys?userId={}", uuid::Uuid::now_v7()),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = api
        .call("GET", "/api/keys/not-an-id", Some(&admin), None)
        .await;
    assert_eq!(status, 404);

    // Deleting the owner kills the key.
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/users/{bob_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 204);
    let (status, body) = call_key(&api, "GET", "/api/auth/me", &bob_key, None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_api_key"))
    );
}
both_databases!(other_users_keys_are_404, other_users_keys_are_404);

async fn keys_cli_create_list_revoke(db: TestDb) {
    create_user(&db, "ops@example.com", "ops-password", "user");
    let url = db.url();
    let env = [("DATABASE_URL", url.as_str())];
    let (code, stdout, stderr) = common::run_binary(
        db.dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "ops@example.com",
            "--name",
            "deploy",
            "--scopes",
            "mcp,agents:read",
            "--expires-in-days",
            "7",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let created: Value = serde_json::from_str(stdout.trim()).unwrap();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(created["scopes"], json!(["mcp", "agents:read"]));
    assert!(!stderr.contains(&key));

    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &key, None).await.0,
        200
    );

    let (code, stdout, _) = common::run_binary(
        db.dir.path(),
        &["keys", "list", "--email", "ops@example.com"],
        &env,
    );
    assert_eq!(code, Some(0));
    assert!(stdout.contains("deploy") && !stdout.contains(&key));
    let (code, _, stderr) = common::run_binary(
        db.dir.path(),
        &[
            "keys",
            "create",
            "--email",
            "ops@example.com",
            "--name",
            "m",
            "--scopes",
            "metrics",
        ],
        &env,
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("admin role"), "{stderr}");
    let (code, _, stderr) = common::run_binary(
        db.dir.path(),
        &["keys", "revoke", "--id", created["id"].as_str().unwrap()],
        &env,
    );
    assert_eq!(code, Some(0), "{stderr}");
    let (code, stdout, _) = common::run_binary(
        db.dir.path(),
        &["keys", "list", "--email", "ops@example.com"],
        &env,
    );
    assert_eq!((code, stdout.trim()), (Some(0), ""));
}
both_databases!(keys_cli_create_list_revoke, keys_cli_create_list_revoke);

/// Creates a key with `body` through `credential` (a token or a key);
/// returns `(id, secret)`.
async fn new_key(api: &Api, credential: &str, body: Value) -> (String, String) {
    let (status, created) = if credential.starts_with("mcp_") {
        call_key(api, "POST", "/api/keys", credential, Some(body)).await
    } else {
        let (status, _, created) = api
            .call("POST", "/api/keys", Some(credential), Some(body))
            .await;
        (status, created)
    };
    assert_eq!(status, 201, "{created}");
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

/// The escalation a hostile review found: a key scoped to managing keys
/// regenerated (or re-activated) its owner's unrestricted key and so held
/// the owner's whole role. Every route that creates, changes, regenerates or
/// deletes a key must refuse to touch a key more powerful than the caller.
async fn restricted_key_cannot_reach_a_more_powerful_key(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let token = api.login("owner@example.com", "owner-password").await;
    let (full, full_secret) = new_key(&api, &token, json!({"name": "full"})).await;
    let (off, off_secret) = new_key(&api, &token, json!({"name": "off"})).await;
    let (status, _, _) = api
        .call(
            "PATCH",
            &format!("/api/keys/{off}"),
            Some(&token),
            Some(json!({"isActive": false})),
        )
        .await;
    assert_eq!(status, 200);
    let (mcp, _) = new_key(&api, &token, json!({"name": "mcp", "scopes": ["mcp"]})).await;
    let (manager, manager_secret) = new_key(
        &api,
        &token,
        json!({"name": "manager", "scopes": ["keys:read", "keys:write"]}),
    )
    .await;

    // Listing is within keys:read: it shows records, never secrets.
    let (status, listed) = call_key(&api, "GET", "/api/keys", &manager_secret, None).await;
    assert_eq!(status, 200, "{listed}");

    let attacks = [
        ("POST", format!("/api/keys/{full}/regenerate"), None),
        ("POST", format!("/api/keys/{off}/regenerate"), None),
        ("POST", format!("/api/keys/{mcp}/regenerate"), None),
        (
            "PATCH",
            format!("/api/keys/{off}"),
            Some(json!({"isActive": true})),
        ),
        (
            "PATCH",
            format!("/api/keys/{full}"),
            Some(json!({"expiresInDays": null})),
        ),
        (
            "PATCH",
            format!("/api/keys/{full}"),
            Some(json!({"name": "renamed"})),
        ),
        (
            "PATCH",
            format!("/api/keys/{mcp}"),
            Some(json!({"scopes": ["keys:read"]})),
        ),
        ("DELETE", format!("/api/keys/{full}"), None),
        ("DELETE", format!("/api/keys/{mcp}"), None),
        (
            "PATCH",
            format!("/api/keys/{manager}"),
            Some(json!({"scopes": null})),
        ),
        (
            "PATCH",
            format!("/api/keys/{manager}"),
            Some(json!({"scopes": ["keys:read", "keys:write", "mcp"]})),
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            Some(json!({"name": "root"})),
        ),
        (
            "POST",
            "/api/keys".to_owned(),
            Some(json!({"name": "wider", "scopes": ["agents:read"]})),
        ),
    ];
    for (method, path, body) in attacks {
        let (status, problem) = call_key(&api, method, &path, &manager_secret, body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{method} {path}: {problem}"
        );
        assert!(
            problem.get("key").is_none(),
            "{method} {path} handed out a secret"
        );
    }

    // Nothing changed: the full key still works as before, the deactivated
    // one is still refused, the mcp key keeps its scopes.
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &full_secret, None)
            .await
            .0,
        200
    );
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &off_secret, None)
            .await
            .0,
        401
    );
    let (_, _, record) = api
        .call("GET", &format!("/api/keys/{full}"), Some(&token), None)
        .await;
    assert_eq!(record["name"], "full");
    assert_eq!(record["expiresAt"], Value::Null);

    // Within its own scopes it may still do its job.
    let (narrow, _) = new_key(
        &api,
        &manager_secret,
        json!({"name": "narrow", "scopes": ["keys:read"]}),
    )
    .await;
    for (method, path, body) in [
        ("POST", format!("/api/keys/{narrow}/regenerate"), None),
        (
            "PATCH",
            format!("/api/keys/{narrow}"),
            Some(json!({"scopes": ["keys:write"]})),
        ),
        ("DELETE", format!("/api/keys/{narrow}"), None),
        ("POST", format!("/api/keys/{manager}/regenerate"), None),
    ] {
        let (status, body) = call_key(&api, method, &path, &manager_secret, body).await;
        assert!(status < 300, "{method} {path}: {status} {body}");
    }
}
both_databases!(
    restricted_key_cannot_reach_a_more_powerful_key,
    restricted_key_cannot_reach_a_more_powerful_key
);

/// An admin's restricted key acts as the admin only where its scopes say
/// `admin`: without it, another user's keys (and users) are out of reach;
/// with it, still only keys within its own scopes.
async fn restricted_admin_key_needs_admin_scope_for_others(db: TestDb) {
    create_user(&db, "root@example.com", "root-password", "admin");
    let bob = create_user(&db, "bob@example.com", "bob-password", "user");
    let bob_id = bob["id"].as_str().unwrap();
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let root = api.login("root@example.com", "root-password").await;
    let bob_token = api.login("bob@example.com", "bob-password").await;
    let (bob_full, bob_full_secret) = new_key(&api, &bob_token, json!({"name": "full"})).await;
    let (bob_narrow, _) = new_key(
        &api,
        &bob_token,
        json!({"name": "narrow", "scopes": ["keys:read"]}),
    )
    .await;
    let (root_full, _) = new_key(&api, &root, json!({"name": "root-full"})).await;
    let (_, keys_only) = new_key(
        &api,
        &root,
        json!({"name": "keys-only", "scopes": ["keys:read", "keys:write"]}),
    )
    .await;
    let (_, with_admin) = new_key(
        &api,
        &root,
        json!({"name": "with-admin", "scopes": ["admin", "keys:read", "keys:write"]}),
    )
    .await;

    for (method, path, body) in [
        ("GET", format!("/api/keys?userId={bob_id}"), None),
        ("GET", format!("/api/keys/{bob_narrow}"), None),
        ("POST", format!("/api/keys/{bob_narrow}/regenerate"), None),
        (
            "PATCH",
            format!("/api/keys/{bob_narrow}"),
            Some(json!({"name": "mine now"})),
        ),
        ("DELETE", format!("/api/keys/{bob_narrow}"), None),
        ("GET", "/api/users".to_owned(), None),
        ("GET", format!("/api/users/{bob_id}"), None),
        // Its owner's unrestricted key is beyond it too.
        ("POST", format!("/api/keys/{root_full}/regenerate"), None),
    ] {
        let (status, problem) = call_key(&api, method, &path, &keys_only, body).await;
        assert!(
            matches!(
                (status, problem["code"].as_str()),
                (403, Some("insufficient_scope")) | (404, Some("not_found"))
            ),
            "{method} {path}: {status} {problem}"
        );
        if method == "GET" && path.starts_with("/api/keys") {
            assert_eq!(status, 403, "{path}: {problem}");
        }
    }

    // With `admin` it reaches Bob's keys, but only those within its scopes.
    let (status, listed) = call_key(
        &api,
        "GET",
        &format!("/api/keys?userId={bob_id}"),
        &with_admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{listed}");
    let (status, problem) = call_key(
        &api,
        "POST",
        &format!("/api/keys/{bob_full}/regenerate"),
        &with_admin,
        None,
    )
    .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    let (status, body) = call_key(
        &api,
        "POST",
        &format!("/api/keys/{bob_narrow}/regenerate"),
        &with_admin,
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        call_key(&api, "GET", "/api/auth/me", &bob_full_secret, None)
            .await
            .0,
        200
    );
    // The unrestricted admin (its login) may do all of it.
    let (status, _, body) = api
        .call(
            "POST",
            &format!("/api/keys/{bob_full}/regenerate"),
            Some(&root),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
both_databases!(
    restricted_admin_key_needs_admin_scope_for_others,
    restricted_admin_key_needs_admin_scope_for_others
);

/// The scope hierarchy in the grant rule: a parent grants its children, so
/// `agents` may hand out `agents:read`; a child never grants its parent,
/// and holding every child today is not holding the parent. By every route
/// that gives a key scopes or acts on one: create, update, regenerate,
/// delete; and a refusal names every scope the caller lacks.
async fn the_hierarchy_never_grants_a_parent_from_its_children(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let token = api.login("owner@example.com", "owner-password").await;
    let (_, parent) = new_key(
        &api,
        &token,
        json!({"name": "parent", "scopes": ["keys", "agents"]}),
    )
    .await;
    let (_, children) = new_key(
        &api,
        &token,
        json!({"name": "children", "scopes": ["keys:read", "keys:write", "agents:read", "agents:write"]}),
    )
    .await;
    let (wide, _) = new_key(&api, &token, json!({"name": "wide", "scopes": ["agents"]})).await;

    // The parent grants its children, on create and on update.
    let (narrow, _) = new_key(
        &api,
        &parent,
        json!({"name": "narrow", "scopes": ["agents:read", "keys:read"]}),
    )
    .await;
    let (status, body) = call_key(
        &api,
        "PATCH",
        &format!("/api/keys/{narrow}"),
        &parent,
        Some(json!({"scopes": ["agents:write"]})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // And the parent itself.
    new_key(&api, &parent, json!({"name": "same", "scopes": ["agents"]})).await;

    // Every child is not the parent: refused by every route, naming what
    // the caller lacks.
    let (status, body) = call_key(
        &api,
        "POST",
        "/api/keys",
        &children,
        Some(json!({"name": "escalate", "scopes": ["agents", "agents:read", "mcp"]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope")),
        "{body}"
    );
    assert_eq!(body["requiredScopes"], json!(["agents", "mcp"]), "{body}");
    for (method, path, change) in [
        (
            "PATCH",
            format!("/api/keys/{narrow}"),
            Some(json!({"scopes": ["agents"]})),
        ),
        (
            "PATCH",
            format!("/api/keys/{wide}"),
            Some(json!({"name": "renamed"})),
        ),
        ("POST", format!("/api/keys/{wide}/regenerate"), None),
        ("DELETE", format!("/api/keys/{wide}"), None),
    ] {
        let (status, body) = call_key(&api, method, &path, &children, change).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{method} {path}: {body}"
        );
    }
    // A segment is not a prefix of the text: `agent` is no scope at all.
    let (status, body) = call_key(
        &api,
        "POST",
        "/api/keys",
        &parent,
        Some(json!({"name": "typo", "scopes": ["agent"]})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("validation_failed")),
        "{body}"
    );
}
both_databases!(
    the_hierarchy_never_grants_a_parent_from_its_children,
    the_hierarchy_never_grants_a_parent_from_its_children
);
