//! End-to-end: the agents API on both databases, and every JSON route of the
//! server against good, bad and hostile bodies.

mod common;

use common::{Api, TestDb, TestServer, create_user};
use serde_json::{Value, json};

const SECRET: (&str, &str) = ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef");

async fn agents_are_owned(db: TestDb) {
    create_user(&db, "admin@example.com", "admin-password", "admin");
    create_user(&db, "ann@example.com", "ann-password", "user");
    create_user(&db, "ben@example.com", "ben-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let admin = api.login("admin@example.com", "admin-password").await;
    let ann = api.login("ann@example.com", "ann-password").await;
    let ben = api.login("ben@example.com", "ben-password").await;

    let (status, headers, agent) = api
        .call(
            "POST",
            "/api/agents",
            Some(&ann),
            Some(json!({"name": " crawler ", "type": "web", "capabilities": ["fetch", " parse "],
                        "metadata": {"owner": "ops", "nested": {"depth": [1, 2]}}, "ignored": true})),
        )
        .await;
    assert_eq!(status, 201, "{agent}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(agent["name"], "crawler");
    assert_eq!(agent["type"], "web");
    assert_eq!(agent["capabilities"], json!(["fetch", "parse"]));
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["metadata"]["nested"]["depth"], json!([1, 2]));
    assert!(agent.get("ignored").is_none());
    for field in ["id", "ownerId", "createdAt", "updatedAt"] {
        assert!(agent[field].is_string(), "{field}");
    }
    let id = agent["id"].as_str().unwrap().to_owned();
    let path = format!("/api/agents/{id}");

    // Minimal body: defaults.
    let (status, _, minimal) = api
        .call(
            "POST",
            "/api/agents",
            Some(&ann),
            Some(json!({"name": "b", "type": "t"})),
        )
        .await;
    assert_eq!(status, 201);
    assert_eq!(minimal["capabilities"], json!([]));
    assert_eq!(minimal["metadata"], json!({}));

    // Owner reads, lists and changes it.
    assert_eq!(api.call("GET", &path, Some(&ann), None).await.0, 200);
    let (_, _, list) = api.call("GET", "/api/agents", Some(&ann), None).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2);
    let (_, _, page) = api
        .call("GET", "/api/agents?limit=1", Some(&ann), None)
        .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert!(page["nextCursor"].is_string());
    let (status, _, patched) = api
        .call(
            "PATCH",
            &path,
            Some(&ann),
            Some(json!({"status": "error", "capabilities": [], "metadata": {"v": 2}})),
        )
        .await;
    assert_eq!(status, 200, "{patched}");
    assert_eq!(patched["status"], "error");
    assert_eq!(patched["capabilities"], json!([]));
    assert_eq!(patched["metadata"], json!({"v": 2}));
    assert_eq!(patched["name"], "crawler", "absent fields are kept");
    for bad in [
        json!({"status": "sleeping"}),
        json!({"name": null}),
        json!({"metadata": null}),
        json!({"capabilities": "fetch"}),
        json!({"metadata": [1]}),
    ] {
        let (status, _, problem) = api
            .call("PATCH", &path, Some(&ann), Some(bad.clone()))
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("validation_failed")),
            "{bad}"
        );
    }

    // Another user: 404 everywhere, an empty list; an admin sees all.
    for (method, body) in [
        ("GET", None),
        ("PATCH", Some(json!({"name": "x"}))),
        ("DELETE", None),
    ] {
        let (status, _, problem) = api.call(method, &path, Some(&ben), body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (404, Some("not_found")),
            "{method}"
        );
    }
    let (_, _, list) = api.call("GET", "/api/agents", Some(&ben), None).await;
    assert_eq!(list["items"], json!([]));
    let (_, _, all) = api.call("GET", "/api/agents", Some(&admin), None).await;
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    assert_eq!(api.call("GET", &path, Some(&admin), None).await.0, 200);

    // Scopes: a key with agents:read can read, not write.
    let (_, _, key) = api
        .call(
            "POST",
            "/api/keys",
            Some(&ann),
            Some(json!({"name": "ro", "scopes": ["agents:read"]})),
        )
        .await;
    let key = key["key"].as_str().unwrap().to_owned();
    assert_eq!(
        api.call("GET", "/api/agents", Some(&key), None).await.0,
        200
    );
    let (status, _, problem) = api
        .call(
            "POST",
            "/api/agents",
            Some(&key),
            Some(json!({"name": "x", "type": "y"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("insufficient_scope"))
    );

    // Delete.
    assert_eq!(api.call("DELETE", &path, Some(&ann), None).await.0, 204);
    assert_eq!(api.call("GET", &path, Some(&ann), None).await.0, 404);
}
both_databases!(agents_are_owned, agents_are_owned);

/// Every JSON route with hostile bodies: the documented status and code,
/// never a 500.
async fn hostile_bodies_on_every_route(db: TestDb) {
    create_user(&db, "ann@example.com", "ann-password", "admin");
    // Limits out of the way: this test sends ~100 bad bodies from one address.
    let server = TestServer::start(
        &db,
        &[
            SECRET,
            ("MCP_ALLOW_REGISTRATION", "true"),
            ("MCP_RATE_LIMIT_AUTH", "1000/60s"),
            ("MCP_RATE_LIMIT_API", "10000/60s"),
        ],
    );
    let api = Api::new(&server);
    let token = api.login("ann@example.com", "ann-password").await;
    let (_, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    let (_, _, agent) = api
        .call(
            "POST",
            "/api/agents",
            Some(&token),
            Some(json!({"name": "a", "type": "b"})),
        )
        .await;
    let (_, _, key) = api
        .call(
            "POST",
            "/api/keys",
            Some(&token),
            Some(json!({"name": "k"})),
        )
        .await;
    let routes = [
        ("POST", "/api/auth/login".to_owned()),
        ("POST", "/api/auth/register".to_owned()),
        ("POST", "/api/users".to_owned()),
        (
            "PATCH",
            format!("/api/users/{}", me["id"].as_str().unwrap()),
        ),
        ("POST", "/api/keys".to_owned()),
        (
            "PATCH",
            format!("/api/keys/{}", key["id"].as_str().unwrap()),
        ),
        ("POST", "/api/agents".to_owned()),
        (
            "PATCH",
            format!("/api/agents/{}", agent["id"].as_str().unwrap()),
        ),
    ];
    let deep = format!(r#"{{"name":{}1{}}}"#, "[".repeat(1000), "]".repeat(1000));
    let cases: Vec<(&str, Vec<u8>, &str, u16, &str)> = vec![
        (
            "wrong types",
            br#"{"name":5,"email":[],"password":{},"type":true,"scopes":"x","capabilities":7}"#
                .to_vec(),
            "application/json",
            400,
            "validation_failed",
        ),
        (
            "1,000-deep nesting",
            deep.into_bytes(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "invalid UTF-8",
            b"{\"name\":\"\xff\xfe\"}".to_vec(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "duplicate keys",
            br#"{"name":"a","name":"b"}"#.to_vec(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "not an object",
            b"[1,2,3]".to_vec(),
            "application/json",
            400,
            "validation_failed",
        ),
        (
            "truncated",
            b"{\"name\":".to_vec(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "empty",
            Vec::new(),
            "application/json",
            400,
            "malformed_json",
        ),
        (
            "no JSON content type",
            br#"{"name":"a"}"#.to_vec(),
            "text/plain",
            415,
            "unsupported_media_type",
        ),
        (
            "form data",
            b"name=a".to_vec(),
            "application/x-www-form-urlencoded",
            415,
            "unsupported_media_type",
        ),
    ];
    for (method, path) in &routes {
        for (name, body, content_type, status, code) in &cases {
            let response = api
                .client
                .request(
                    reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                    format!("{}{}", api.base, path),
                )
                .bearer_auth(&token)
                .header("content-type", *content_type)
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let got = response.status().as_u16();
            let problem: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                (got, problem["code"].as_str().unwrap_or("")),
                (*status, *code),
                "{method} {path}: {name}: {problem}"
            );
        }
        // 10 MB: over the body limit, refused before any handler.
        let (status, _, body) = common::expect_continue(
            server.addr,
            &format!("{method} {path}"),
            &[
                ("content-type", "application/json"),
                ("authorization", &format!("Bearer {token}")),
            ],
            &vec![b' '; 10 * 1024 * 1024],
        )
        .await;
        assert_eq!(status, 413, "{method} {path}");
        let body: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "payload_too_large");
    }
    // Every failing field at once, with camelCase paths.
    let (status, _, problem) = api
        .call(
            "POST",
            "/api/keys",
            Some(&token),
            Some(json!({"name": "", "scopes": ["mcp", "nope", "also-nope"], "expiresInDays": 0})),
        )
        .await;
    assert_eq!(status, 400);
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["expiresInDays", "name", "scopes[1]", "scopes[2]"]);
    let (_, _, problem) = api
        .call(
            "POST",
            "/api/agents",
            Some(&token),
            Some(json!({"capabilities": ["ok", ""]})),
        )
        .await;
    let mut fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort();
    assert_eq!(fields, ["capabilities[1]", "name", "type"]);
    assert!(!server.logs().contains("panicked"));
}
both_databases!(hostile_bodies_on_every_route, hostile_bodies_on_every_route);
