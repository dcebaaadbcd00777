//! End-to-end: users, login, tokens and the users API over real HTTP, on
//! SQLite and on PostgreSQL.

mod common;

use std::sync::{Arc, Mutex};

use common::{Api, TestDb, TestServer, create_user};
use serde_json::{Value, json};

const ADMIN: &str = "admin@example.com";
const ADMIN_PW: &str = "admin-password-1";
/// A password too short to be accepted, whose text cannot appear in an
/// error message by accident (as `short` would in "too short").
const TOO_SHORT: &str = "Qz7#vK";
const KEYS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../mcp-auth/tests/keys/");

fn secret_env() -> Vec<(&'static str, String)> {
    vec![("MCP_JWT_SECRET", "x".repeat(40))]
}

fn start(db: &TestDb, extra: &[(&str, &str)]) -> TestServer {
    let secret = secret_env();
    let mut env: Vec<(&str, &str)> = secret.iter().map(|(k, v)| (*k, v.as_str())).collect();
    env.extend_from_slice(extra);
    TestServer::start(db, &env)
}

async fn login_and_me(db: TestDb) {
    let admin = create_user(&db, "  Admin@Example.com ", ADMIN_PW, "admin");
    assert_eq!(admin["email"], ADMIN);
    assert!(admin.get("passwordHash").is_none());
    let server = start(&db, &[]);
    let api = Api::new(&server);

    let (status, headers, body) = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "ADMIN@example.COM", "password": ADMIN_PW})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["tokenType"], "Bearer");
    assert_eq!(body["expiresIn"], 3600);
    assert_eq!(headers["cache-control"], "no-store");
    let token = body["accessToken"].as_str().unwrap();

    let (status, headers, me) = api.call("GET", "/api/auth/me", Some(token), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(me["id"], admin["id"]);
    assert_eq!(me["email"], ADMIN);
    assert_eq!(me["name"], "Test User");
    assert_eq!(me["role"], "admin");
    assert_eq!(me["authMethod"], "jwt");
    assert_eq!(me["scopes"], Value::Null);
    assert!(me.get("keyId").is_none());

    let (status, headers, body) = api.call("GET", "/api/auth/me", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "missing_credentials");
    assert_eq!(
        common::without_resource_metadata(headers["www-authenticate"].to_str().unwrap()),
        "Bearer realm=\"mcp\""
    );
    let (status, headers, body) = api
        .call("GET", "/api/auth/me", Some("nonsense.to.ken"), None)
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["code"], "invalid_token");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
}
both_databases!(login_and_me, login_and_me);

/// MCP authorization: a `401` names the scopes its route needs (none for
/// `/api/auth/me` and the routes of one's own user), for no credential and
/// for a refused one alike; the `403` of a key without them names the same.
async fn every_401_names_the_scopes_of_its_route(db: TestDb) {
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let id = "/01936f3e-0000-7000-8000-000000000000";
    let routes: &[(&str, String, Option<&str>)] = &[
        ("GET", "/api/auth/me".into(), None),
        ("GET", "/api/users".into(), Some("admin")),
        ("POST", "/api/users".into(), Some("admin")),
        ("GET", format!("/api/users{id}"), None),
        ("PATCH", format!("/api/users{id}"), None),
        ("DELETE", format!("/api/users{id}"), Some("admin")),
        ("GET", "/api/keys".into(), Some("keys:read")),
        ("POST", "/api/keys".into(), Some("keys:write")),
        ("GET", format!("/api/keys{id}"), Some("keys:read")),
        ("PATCH", format!("/api/keys{id}"), Some("keys:write")),
        ("DELETE", format!("/api/keys{id}"), Some("keys:write")),
        (
            "POST",
            format!("/api/keys{id}/regenerate"),
            Some("keys:write"),
        ),
        ("GET", "/api/agents".into(), Some("agents:read")),
        ("POST", "/api/agents".into(), Some("agents:write")),
        ("GET", format!("/api/agents{id}"), Some("agents:read")),
        ("PATCH", format!("/api/agents{id}"), Some("agents:write")),
        ("DELETE", format!("/api/agents{id}"), Some("agents:write")),
        ("GET", "/api/audit".into(), Some("admin")),
        ("POST", "/mcp".into(), Some("mcp")),
    ];
    for (method, path, scope) in routes {
        let scope_attr = scope.map(|s| format!(", scope=\"{s}\""));
        let (status, headers, body) = api.call(method, path, None, None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("missing_credentials")),
            "{method} {path}"
        );
        assert_eq!(
            common::without_resource_metadata(headers["www-authenticate"].to_str().unwrap()),
            format!(
                "Bearer realm=\"mcp\"{}",
                scope_attr.clone().unwrap_or_default()
            )
            .as_str(),
            "{method} {path}"
        );
        let (status, headers, _) = api.call(method, path, Some("nonsense.to.ken"), None).await;
        assert_eq!(status, 401, "{method} {path}");
        let challenge =
            common::without_resource_metadata(headers["www-authenticate"].to_str().unwrap());
        let challenge = challenge.as_str();
        assert!(
            challenge.contains("error=\"invalid_token\""),
            "{method} {path}: {challenge}"
        );
        match &scope_attr {
            Some(attr) => assert!(
                challenge.ends_with(attr.as_str()),
                "{method} {path}: {challenge}"
            ),
            None => assert!(
                !challenge.contains("scope="),
                "{method} {path}: {challenge}"
            ),
        }
    }

    // A key with none of those scopes is told the same scope in its 403.
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let token = api.login(ADMIN, ADMIN_PW).await;
    let (status, _, created) = api
        .call(
            "POST",
            "/api/keys",
            Some(&token),
            Some(json!({"name": "narrow", "scopes": ["mcp"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap();
    let (status, headers, problem) = api.call("GET", "/api/agents", Some(key), None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert_eq!(problem["requiredScopes"], json!(["agents:read"]));
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"agents:read\""),
        "{headers:?}"
    );
}
both_databases!(
    every_401_names_the_scopes_of_its_route,
    every_401_names_the_scopes_of_its_route
);

async fn login_failures_look_the_same(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let attempt = |email: &'static str, password: &'static str| {
        let api = &api;
        async move {
            api.call(
                "POST",
                "/api/auth/login",
                None,
                Some(json!({"email": email, "password": password})),
            )
            .await
        }
    };
    let (s1, h1, unknown) = attempt("nobody@example.com", ADMIN_PW).await;
    let (s2, h2, wrong) = attempt(ADMIN, "wrong-password").await;
    assert_eq!((s1, s2), (401, 401));
    assert_eq!(unknown, wrong, "the two failures must be indistinguishable");
    assert_eq!(unknown["code"], "invalid_credentials");
    assert_eq!(h1["www-authenticate"], h2["www-authenticate"]);

    // Malformed bodies.
    let (status, _, body) = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "not-an-email"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["code"], "validation_failed");
    let mut fields: Vec<&str> = body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    fields.sort_unstable();
    // Every failing field at once: the missing one and the malformed one.
    assert_eq!(fields, ["email", "password"], "{body}");
    let response = api
        .client
        .post(format!("{}/api/auth/login", api.base))
        .header("content-type", "text/plain")
        .body("email=a&password=b")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    let response = api
        .client
        .post(format!("{}/api/auth/login", api.base))
        .header("content-type", "application/json")
        .body("{\"email\":")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "malformed_json");
}
both_databases!(login_failures_look_the_same, login_failures_look_the_same);

async fn registration_is_off_unless_enabled(db: TestDb) {
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let body = json!({"email": "new@example.com", "password": "long-enough", "name": "New"});
    let (status, _, problem) = api
        .call("POST", "/api/auth/register", None, Some(body.clone()))
        .await;
    assert_eq!(status, 404);
    assert_eq!(problem["code"], "not_found");
    drop(server);

    let server = start(&db, &[("MCP_ALLOW_REGISTRATION", "true")]);
    let api = Api::new(&server);
    let mut body = body;
    body["role"] = json!("admin");
    let (status, _, user) = api
        .call("POST", "/api/auth/register", None, Some(body.clone()))
        .await;
    assert_eq!(status, 201, "{user}");
    assert_eq!(user["role"], "user", "register never makes admins");
    assert!(user.get("passwordHash").is_none() && user.get("password").is_none());
    body["email"] = json!("NEW@Example.com");
    let (status, _, problem) = api
        .call("POST", "/api/auth/register", None, Some(body))
        .await;
    assert_eq!(status, 409);
    assert_eq!(problem["code"], "conflict");
    let token = api.login("new@example.com", "long-enough").await;
    let (_, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(me["role"], "user");
}
both_databases!(
    registration_is_off_unless_enabled,
    registration_is_off_unless_enabled
);

async fn users_api_follows_the_self_service_rules(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;

    // Admin creates users; duplicates conflict; validation lists every field.
    let (status, _, alice) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "alice@example.com", "password": "alice-password", "name": " Alice "})),
        )
        .await;
    assert_eq!(status, 201, "{alice}");
    assert_eq!(alice["name"], "Alice");
    assert_eq!(alice["role"], "user");
    let (status, _, _) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "bob@example.com", "password": "bob-password", "name": "Bob", "role": "user"})),
        )
        .await;
    assert_eq!(status, 201);
    let (status, _, problem) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "ALICE@example.com", "password": "whatever1", "name": "A"})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (409, Some("conflict")));
    let (status, _, problem) = api
        .call(
            "POST",
            "/api/users",
            Some(&admin),
            Some(json!({"email": "x", "password": TOO_SHORT, "name": "", "role": "root"})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(problem["code"], "validation_failed");
    assert!(
        problem["errors"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["field"] == "password"),
        "{problem}"
    );
    assert!(
        !problem.to_string().contains(TOO_SHORT),
        "the password echoed: {problem}"
    );

    // Lists page with a cursor.
    let (status, _, page) = api
        .call("GET", "/api/users?limit=2", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["nextCursor"].as_str().unwrap().to_owned();
    let (_, _, rest) = api
        .call(
            "GET",
            &format!("/api/users?limit=2&cursor={cursor}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(rest["items"].as_array().unwrap().len(), 1);
    assert_eq!(rest["nextCursor"], Value::Null);
    for bad in [
        "/api/users?limit=0",
        "/api/users?limit=201",
        "/api/users?limit=x",
        "/api/users?cursor=zzz",
    ] {
        let (status, _, problem) = api.call("GET", bad, Some(&admin), None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some("validation_failed")),
            "{bad}"
        );
    }
    for item in page["items"].as_array().unwrap() {
        assert!(item.get("passwordHash").is_none());
    }

    // A user reads and renames themselves; others' records are 404.
    let alice_id = alice["id"].as_str().unwrap();
    let alice_token = api.login("alice@example.com", "alice-password").await;
    let (status, _, problem) = api
        .call("GET", "/api/users", Some(&alice_token), None)
        .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    let admin_id = api.call("GET", "/api/auth/me", Some(&admin), None).await.2["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _, _) = api
        .call(
            "GET",
            &format!("/api/users/{admin_id}"),
            Some(&alice_token),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, _, _) = api
        .call("GET", "/api/users/not-a-uuid", Some(&alice_token), None)
        .await;
    assert_eq!(status, 404);
    let (status, _, me) = api
        .call(
            "GET",
            &format!("/api/users/{alice_id}"),
            Some(&alice_token),
            None,
        )
        .await;
    assert_eq!(
        (status, me["email"].as_str()),
        (200, Some("alice@example.com"))
    );
    let (status, _, renamed) = api
        .call(
            "PATCH",
            &format!("/api/users/{alice_id}"),
            Some(&alice_token),
            Some(json!({"name": "Alice A."})),
        )
        .await;
    assert_eq!((status, renamed["name"].as_str()), (200, Some("Alice A.")));
    let (status, _, problem) = api
        .call(
            "PATCH",
            &format!("/api/users/{alice_id}"),
            Some(&alice_token),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    let (status, _, _) = api
        .call(
            "PATCH",
            &format!("/api/users/{alice_id}"),
            Some(&alice_token),
            Some(json!({"name": null})),
        )
        .await;
    assert_eq!(status, 400);

    // Changing one's own password needs the current one.
    let path = format!("/api/users/{alice_id}");
    let (status, _, problem) = api
        .call(
            "PATCH",
            &path,
            Some(&alice_token),
            Some(json!({"password": "new-password-1"})),
        )
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("validation_failed"))
    );
    let (status, _, _) = api
        .call(
            "PATCH",
            &path,
            Some(&alice_token),
            Some(json!({"password": "new-password-1", "currentPassword": "nope"})),
        )
        .await;
    // A wrong current password is a failed credential: the lockout counts it.
    assert_eq!(status, 401);
    let (status, _, _) = api
        .call(
            "PATCH",
            &path,
            Some(&alice_token),
            Some(json!({"password": "new-password-1", "currentPassword": "alice-password"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, _) = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "alice@example.com", "password": "alice-password"})),
        )
        .await;
    assert_eq!(status, 401, "the old password is gone");
    api.login("alice@example.com", "new-password-1").await;

    // Admins cannot change their own role or delete themselves.
    let (status, _, _) = api
        .call(
            "PATCH",
            &format!("/api/users/{admin_id}"),
            Some(&admin),
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, 403);
    let (status, _, _) = api
        .call(
            "DELETE",
            &format!("/api/users/{admin_id}"),
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 403);

    // Deleting a user stops their token at once on this replica.
    let (status, _, _) = api.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, _, problem) = api
        .call("GET", "/api/auth/me", Some(&alice_token), None)
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (401, Some("invalid_token"))
    );
    let (status, _, _) = api.call("DELETE", &path, Some(&admin), None).await;
    assert_eq!(status, 404);
}
both_databases!(
    users_api_follows_the_self_service_rules,
    users_api_follows_the_self_service_rules
);

async fn a_demoted_admin_loses_admin_at_once(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let second = create_user(&db, "second@example.com", "second-password", "admin");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    let second_token = api.login("second@example.com", "second-password").await;
    assert_eq!(
        api.call("GET", "/api/users", Some(&second_token), None)
            .await
            .0,
        200
    );
    let (status, _, _) = api
        .call(
            "PATCH",
            &format!("/api/users/{}", second["id"].as_str().unwrap()),
            Some(&admin),
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, 200);
    // Same token, new role.
    let (status, _, problem) = api
        .call("GET", "/api/users", Some(&second_token), None)
        .await;
    assert_eq!((status, problem["code"].as_str()), (403, Some("forbidden")));
    let (_, _, me) = api
        .call("GET", "/api/auth/me", Some(&second_token), None)
        .await;
    assert_eq!(me["role"], "user");
}
both_databases!(
    a_demoted_admin_loses_admin_at_once,
    a_demoted_admin_loses_admin_at_once
);

/// A generated signing secret is kept in the database: a token issued before
/// a restart still works after it.
async fn generated_secret_survives_a_restart(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = TestServer::start(&db, &[]);
    assert!(
        server
            .wait_for_log(|l| l.contains("generated a signing secret"))
            .await,
        "{}",
        server.logs()
    );
    let token = Api::new(&server).login(ADMIN, ADMIN_PW).await;
    let (status, _) = server.terminate();
    assert!(status.success());

    let server = TestServer::start(&db, &[]);
    let api = Api::new(&server);
    assert_eq!(
        api.call("GET", "/api/auth/me", Some(&token), None).await.0,
        200
    );
    assert!(!server.logs().contains("generated a signing secret"));
}
both_databases!(
    generated_secret_survives_a_restart,
    generated_secret_survives_a_restart
);

/// Signing and verifying work in the built binary for each asymmetric
/// algorithm: proof that exactly one crypto backend is installed.
async fn asymmetric_keys_sign_and_verify_in_the_server(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    for (algorithm, private, public) in [
        ("ES256", "ec-private.pem", "ec-public.pem"),
        ("EdDSA", "ed-private.pem", "ed-public.pem"),
        ("RS256", "rsa-private.pem", "rsa-public.pem"),
    ] {
        let private = format!("{KEYS}{private}");
        let public = format!("{KEYS}{public}");
        let server = TestServer::start(
            &db,
            &[
                ("MCP_JWT_ALGORITHM", algorithm),
                ("MCP_JWT_PRIVATE_KEY_FILE", private.as_str()),
                ("MCP_JWT_PUBLIC_KEY_FILE", public.as_str()),
                ("MCP_JWT_KEY_ID", "test-key"),
            ],
        );
        let api = Api::new(&server);
        let token = api.login(ADMIN, ADMIN_PW).await;
        let header: Value = {
            use base64::Engine;
            let part = token.split('.').next().unwrap();
            serde_json::from_slice(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(part)
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(header["alg"], algorithm);
        assert_eq!(header["kid"], "test-key");
        assert_eq!(header["typ"], "at+jwt");
        let (status, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
        assert_eq!(status, 200, "{algorithm}: {me}");
    }
    // A public key that does not match the private key stops start-up.
    let url = db.url();
    let (code, _, stderr) = common::run_binary(
        db.dir.path(),
        &[],
        &[
            ("DATABASE_URL", url.as_str()),
            ("MCP_BIND", "127.0.0.1:0"),
            ("MCP_JWT_ALGORITHM", "RS256"),
            (
                "MCP_JWT_PRIVATE_KEY_FILE",
                &format!("{KEYS}rsa-private.pem"),
            ),
            ("MCP_JWT_PUBLIC_KEY_FILE", &format!("{KEYS}rsa2-public.pem")),
        ],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("does not verify"), "{stderr}");
}
both_databases!(
    asymmetric_keys_sign_and_verify_in_the_server,
    asymmetric_keys_sign_and_verify_in_the_server
);

/// An external issuer for tests: its JWKS, served here on loopback, and the
/// key that signs its tokens.
struct ExternalIssuer {
    jwks_url: String,
    key: jsonwebtoken::EncodingKey,
}

const EXTERNAL_ISSUER: &str = "https://auth.example.com";

async fn external_issuer() -> ExternalIssuer {
    use axum::routing::get;
    use jsonwebtoken::{Algorithm, EncodingKey};

    mcp_auth::install_crypto_provider();
    let private = std::fs::read(format!("{KEYS}rsa-private.pem")).unwrap();
    let key = EncodingKey::from_rsa_pem(&private).unwrap();
    let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, Algorithm::RS256).unwrap();
    jwk.common.key_id = Some("ext-1".into());
    let set = Arc::new(Mutex::new(
        serde_json::to_string(&jsonwebtoken::jwk::JwkSet { keys: vec![jwk] }).unwrap(),
    ));
    let app = axum::Router::new().route(
        "/jwks.json",
        get(move || {
            let set = set.clone();
            async move { set.lock().unwrap().clone() }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let jwks_url = format!("http://{}/jwks.json", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    ExternalIssuer { jwks_url, key }
}

impl ExternalIssuer {
    /// A token of this issuer with `claims` (`iss` and `exp` added).
    fn token(&self, mut claims: Value) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some("ext-1".into());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        claims["iss"] = json!(EXTERNAL_ISSUER);
        claims["exp"] = json!(now + 600);
        jsonwebtoken::encode(&header, &claims, &self.key).unwrap()
    }
}

/// An external issuer: its JWKS (served here) is fetched by the server, its
/// tokens accepted, its RFC 9728 metadata published and named in 401s.
async fn external_issuer_and_protected_resource_metadata(db: TestDb) {
    use jsonwebtoken::{Algorithm, Header};

    let external = external_issuer().await;
    let (jwks_url, key) = (external.jwks_url.clone(), &external.key);
    let issuer = "https://auth.example.com";
    let server = start(
        &db,
        &[
            ("MCP_JWT_ISSUER", issuer),
            ("MCP_JWT_JWKS_URL", jwks_url.as_str()),
            ("MCP_PUBLIC_URL", "http://mcp.test:8080"),
        ],
    );
    let api = Api::new(&server);
    let (status, headers, doc) = api
        .call(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(headers["content-type"], "application/json");
    assert_eq!(doc["resource"], "http://mcp.test:8080/mcp");
    // This server first (OAuth is on), then the external issuer.
    assert_eq!(
        doc["authorization_servers"],
        json!(["http://mcp.test:8080", issuer])
    );
    assert_eq!(doc["bearer_methods_supported"], json!(["header"]));
    assert!(
        doc["scopes_supported"]
            .as_array()
            .unwrap()
            .contains(&json!("mcp"))
    );
    let (status, _, _) = api
        .call("GET", "/.well-known/oauth-protected-resource", None, None)
        .await;
    assert_eq!(status, 200);

    let (status, headers, _) = api.call("GET", "/api/auth/me", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"mcp\", resource_metadata=\"http://mcp.test:8080/.well-known/oauth-protected-resource/mcp\""
    );
    let (_, headers, _) = api.call("GET", "/api/agents", None, None).await;
    assert_eq!(
        headers["www-authenticate"],
        "Bearer realm=\"mcp\", scope=\"agents:read\", resource_metadata=\"http://mcp.test:8080/.well-known/oauth-protected-resource/mcp\""
    );

    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("ext-1".into());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = json!({"sub": "ext-user-9", "iss": issuer, "aud": "http://mcp.test:8080/mcp",
                        "exp": now + 600, "scope": "mcp agents:read", "email": "ext@example.com"});
    let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    let (status, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    // The subject is the issuer's, qualified by it.
    assert_eq!(me["id"], "https://auth.example.com#ext-user-9");
    assert_eq!(me["email"], "ext@example.com");
    assert_eq!(me["scopes"], json!(["agents:read", "mcp"]));
    // A token of that issuer for another audience is refused.
    let claims =
        json!({"sub": "ext-user-9", "iss": issuer, "aud": "https://other", "exp": now + 600});
    let token = jsonwebtoken::encode(&header, &claims, key).unwrap();
    assert_eq!(
        api.call("GET", "/api/auth/me", Some(&token), None).await.0,
        401
    );
}
both_databases!(
    external_issuer_and_protected_resource_metadata,
    external_issuer_and_protected_resource_metadata
);

/// An external issuer's `role: admin` is not an admin here: without a role
/// map its principals are plain users; the map grants exactly what it names.
async fn external_roles_come_only_from_the_role_map(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let external = external_issuer().await;
    let aud = "http://mcp.test:8080/mcp";
    let admin_claims = json!({"sub": "boss", "aud": aud, "role": "admin"});
    let env = [
        ("MCP_JWT_ISSUER", EXTERNAL_ISSUER),
        ("MCP_JWT_JWKS_URL", external.jwks_url.as_str()),
        ("MCP_PUBLIC_URL", "http://mcp.test:8080"),
    ];
    {
        let server = start(&db, &env);
        let api = Api::new(&server);
        let token = external.token(admin_claims.clone());
        let (status, _, problem) = api.call("GET", "/api/users", Some(&token), None).await;
        assert!(
            matches!(status, 403 | 404),
            "an external role: admin is not an admin: {status} {problem}"
        );
        let (_, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
        assert_eq!(me["role"], "user", "{me}");
    }
    let mut mapped = env.to_vec();
    mapped.push(("MCP_JWT_ROLE_MAP", "mcp-admins=admin"));
    let server = start(&db, &mapped);
    let api = Api::new(&server);
    // `admin` is not in the map: still a user.
    let token = external.token(admin_claims);
    assert_eq!(
        api.call("GET", "/api/users", Some(&token), None).await.0,
        403
    );
    let token = external.token(json!({"sub": "boss", "aud": aud, "roles": ["mcp-admins"]}));
    let (status, _, body) = api.call("GET", "/api/users", Some(&token), None).await;
    assert_eq!(status, 200, "a mapped role is granted: {body}");
}
both_databases!(
    external_roles_come_only_from_the_role_map,
    external_roles_come_only_from_the_role_map
);

/// An external token whose `sub` is a local user's id is not that user: it
/// sees neither the user's record, nor keys, nor agents.
async fn an_external_subject_is_never_a_local_user(db: TestDb) {
    let local = create_user(&db, "local@example.com", "local-password", "user");
    let local_id = local["id"].as_str().unwrap().to_owned();
    let external = external_issuer().await;
    let server = start(
        &db,
        &[
            ("MCP_JWT_ISSUER", EXTERNAL_ISSUER),
            ("MCP_JWT_JWKS_URL", external.jwks_url.as_str()),
            ("MCP_PUBLIC_URL", "http://mcp.test:8080"),
        ],
    );
    let api = Api::new(&server);
    let own = api.login("local@example.com", "local-password").await;
    let (status, _, key) = api
        .call(
            "POST",
            "/api/keys",
            Some(&own),
            Some(json!({"name": "mine"})),
        )
        .await;
    assert_eq!(status, 201, "{key}");
    let (status, _, agent) = api
        .call(
            "POST",
            "/api/agents",
            Some(&own),
            Some(json!({"name": "mine", "type": "t"})),
        )
        .await;
    assert_eq!(status, 201, "{agent}");

    let impostor = external.token(json!({"sub": local_id, "aud": "http://mcp.test:8080/mcp"}));
    let (status, _, me) = api.call("GET", "/api/auth/me", Some(&impostor), None).await;
    assert_eq!(status, 200, "{me}");
    assert_ne!(me["id"], local_id.as_str(), "{me}");
    assert_ne!(me["email"], "local@example.com", "{me}");

    let (_, _, keys) = api.call("GET", "/api/keys", Some(&impostor), None).await;
    let listed = keys["items"].as_array().cloned().unwrap_or_default();
    assert!(listed.is_empty(), "the local user's keys: {keys}");
    let key_path = format!("/api/keys/{}", key["id"].as_str().unwrap());
    assert_eq!(
        api.call("GET", &key_path, Some(&impostor), None).await.0,
        404
    );

    let (_, _, agents) = api.call("GET", "/api/agents", Some(&impostor), None).await;
    let listed = agents["items"].as_array().cloned().unwrap_or_default();
    assert!(listed.is_empty(), "the local user's agents: {agents}");
    let agent_path = format!("/api/agents/{}", agent["id"].as_str().unwrap());
    assert_eq!(
        api.call("GET", &agent_path, Some(&impostor), None).await.0,
        404
    );
    let user_path = format!("/api/users/{local_id}");
    assert_eq!(
        api.call("GET", &user_path, Some(&impostor), None).await.0,
        404
    );
    // Keys belong to local users: an external subject cannot mint one
    // (it would be a dead row at best, a local credential at worst).
    let (status, _, refused) = api
        .call(
            "POST",
            "/api/keys",
            Some(&impostor),
            Some(json!({"name": "minted"})),
        )
        .await;
    assert_eq!(
        (status, refused["code"].as_str()),
        (403, Some("forbidden")),
        "{refused}"
    );
}
both_databases!(
    an_external_subject_is_never_a_local_user,
    an_external_subject_is_never_a_local_user
);

/// A demoted admin's API key loses admin at once on the replica that made
/// the change, although key principals are cached.
async fn a_demoted_admins_key_loses_admin_at_once(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let second = create_user(&db, "second@example.com", "second-password", "admin");
    let server = start(&db, &[("MCP_USER_CACHE_TTL", "300s")]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    let second_token = api.login("second@example.com", "second-password").await;
    let (status, _, created) = api
        .call(
            "POST",
            "/api/keys",
            Some(&second_token),
            Some(json!({"name": "ops"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    // The key's principal (role admin) is cached now.
    assert_eq!(api.call("GET", "/api/users", Some(&key), None).await.0, 200);

    let (status, _, _) = api
        .call(
            "PATCH",
            &format!("/api/users/{}", second["id"].as_str().unwrap()),
            Some(&admin),
            Some(json!({"role": "user"})),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _, problem) = api.call("GET", "/api/users", Some(&key), None).await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (403, Some("forbidden")),
        "the demoted admin's key is still admin"
    );
}
both_databases!(
    a_demoted_admins_key_loses_admin_at_once,
    a_demoted_admins_key_loses_admin_at_once
);

/// `GET /api/auth/me` answers from the user cache authentication fills
/// (no query per request): a change written behind the server's back is
/// not seen within the TTL, while one made through the API is seen at once.
async fn me_answers_from_the_user_cache(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = start(&db, &[("MCP_USER_CACHE_TTL", "300s")]);
    let api = Api::new(&server);
    let token = api.login(ADMIN, ADMIN_PW).await;
    let (status, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    let name = me["name"].clone();

    let direct = db.direct().await;
    mcp_server::with_pool!(&direct, |pool| {
        sqlx::query("UPDATE users SET name = 'renamed behind its back' WHERE email = $1")
            .bind(ADMIN)
            .execute(pool)
            .await
            .map(|_| ())
    })
    .unwrap();
    let (status, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me["name"], name,
        "/me read the database instead of the cache"
    );

    let (status, _, _) = api
        .call(
            "PATCH",
            &format!("/api/users/{}", me["id"].as_str().unwrap()),
            Some(&token),
            Some(json!({"name": "renamed through the API"})),
        )
        .await;
    assert_eq!(status, 200);
    let (_, _, me) = api.call("GET", "/api/auth/me", Some(&token), None).await;
    assert_eq!(me["name"], "renamed through the API");
}
both_databases!(
    me_answers_from_the_user_cache,
    me_answers_from_the_user_cache
);

async fn metadata_is_404_without_an_issuer(db: TestDb) {
    let server = start(&db, &[("MCP_OAUTH", "off")]);
    let (status, _, body) = Api::new(&server)
        .call(
            "GET",
            "/.well-known/oauth-protected-resource/mcp",
            None,
            None,
        )
        .await;
    assert_eq!((status, body["code"].as_str()), (404, Some("not_found")));
}
both_databases!(
    metadata_is_404_without_an_issuer,
    metadata_is_404_without_an_issuer
);

async fn cli_users_list_and_refusals(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    create_user(&db, "b@example.com", "b-password", "user");
    let url = db.url();
    let env = [("DATABASE_URL", url.as_str())];
    let (code, stdout, _) = common::run_binary(db.dir.path(), &["users", "list"], &env);
    assert_eq!(code, Some(0));
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    assert!(!stdout.contains("argon2"), "no hashes in the listing");
    let (code, _, stderr) = common::run_binary_with_stdin(
        db.dir.path(),
        &["users", "create", "--email", "bad", "--name", "X"],
        &env,
        &format!("{TOO_SHORT}\n"),
    );
    assert_eq!(code, Some(1));
    assert!(
        stderr.contains("email") && stderr.contains("password"),
        "{stderr}"
    );
    assert!(!stderr.contains(TOO_SHORT), "the password echoed: {stderr}");
    let (code, _, stderr) = common::run_binary_with_stdin(
        db.dir.path(),
        &["users", "create", "--email", ADMIN, "--name", "X"],
        &env,
        "long-enough-pw\n",
    );
    assert_eq!(code, Some(1));
    assert!(stderr.contains("exists"), "{stderr}");
}
both_databases!(cli_users_list_and_refusals, cli_users_list_and_refusals);

/// A credential restricted to `admin` administers users, but must not turn
/// itself unrestricted: making an admin (who logs in unrestricted) or
/// setting another user's password (then logging in as them) would.
async fn restricted_admin_cannot_mint_an_unrestricted_login(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let victim = create_user(&db, "victim@example.com", "victim-password", "admin");
    let plain = create_user(&db, "plain@example.com", "plain-password", "user");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    let (status, _, created) = api
        .call(
            "POST",
            "/api/keys",
            Some(&admin),
            Some(json!({"name": "user-admin", "scopes": ["admin"]})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let key = created["key"].as_str().unwrap().to_owned();
    let with_key = |method: &str, path: String, body: Value| {
        let request = api
            .client
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                format!("{}{path}", api.base),
            )
            .header("x-api-key", &key)
            .json(&body);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    };
    for (method, path, body) in [
        (
            "POST",
            "/api/users".to_owned(),
            json!({"email": "new-admin@example.com", "password": "new-admin-pw", "name": "N", "role": "admin"}),
        ),
        (
            "PATCH",
            format!("/api/users/{}", plain["id"].as_str().unwrap()),
            json!({"role": "admin"}),
        ),
        (
            "PATCH",
            format!("/api/users/{}", victim["id"].as_str().unwrap()),
            json!({"password": "taken-over-1"}),
        ),
    ] {
        let (status, problem) = with_key(method, path.clone(), body).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("forbidden")),
            "{method} {path}: {problem}"
        );
    }
    // Nothing changed: the victim's password and the plain user's role.
    api.login("victim@example.com", "victim-password").await;
    let (status, _, _) = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "new-admin@example.com", "password": "new-admin-pw"})),
        )
        .await;
    assert_eq!(status, 401, "no admin was created");
    let plain_token = api.login("plain@example.com", "plain-password").await;
    let (_, _, me) = api
        .call("GET", "/api/auth/me", Some(&plain_token), None)
        .await;
    assert_eq!(me["role"], "user");
    // Its actual job still works: a plain user, a rename.
    let (status, body) = with_key(
        "POST",
        "/api/users".to_owned(),
        json!({"email": "new-user@example.com", "password": "new-user-pw", "name": "U"}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The unrestricted admin may do all of it.
    let (status, _, body) = api
        .call(
            "PATCH",
            &format!("/api/users/{}", plain["id"].as_str().unwrap()),
            Some(&admin),
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
both_databases!(
    restricted_admin_cannot_mint_an_unrestricted_login,
    restricted_admin_cannot_mint_an_unrestricted_login
);

/// A key restricted to `keys:read` is for the keys API: it may not touch
/// its own user's record, neither read it nor rename, re-address, promote
/// or re-password it (`403 insufficient_scope`, the scope being `admin`),
/// whether its user is a plain user or an admin; the record is unchanged.
async fn a_restricted_key_cannot_edit_its_own_user(db: TestDb) {
    let admin_user = create_user(&db, ADMIN, ADMIN_PW, "admin");
    let plain = create_user(&db, "plain@example.com", "plain-password", "user");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    for (user, email, password) in [
        (&plain, "plain@example.com", "plain-password"),
        (&admin_user, ADMIN, ADMIN_PW),
    ] {
        let token = api.login(email, password).await;
        let (status, _, created) = api
            .call(
                "POST",
                "/api/keys",
                Some(&token),
                Some(json!({"name": "reader", "scopes": ["keys:read"]})),
            )
            .await;
        assert_eq!(status, 201, "{created}");
        let key = created["key"].as_str().unwrap().to_owned();
        // The key works for what it is for.
        let (status, _, _) = api.call("GET", "/api/keys", Some(&key), None).await;
        assert_eq!(status, 200);

        let path = format!("/api/users/{}", user["id"].as_str().unwrap());
        let (_, _, before) = api.call("GET", &path, Some(&token), None).await;
        assert_eq!(before["email"], email);
        let (status, headers, problem) = api.call("GET", &path, Some(&key), None).await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{email}: GET own record: {problem}"
        );
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("scope=\"admin\""),
            "{headers:?}"
        );
        for change in [
            json!({"name": "Renamed"}),
            json!({"email": "taken@example.com"}),
            json!({"role": "admin"}),
            json!({"role": "user"}),
            json!({"password": "taken-over-1", "currentPassword": password}),
        ] {
            let (status, _, problem) = api
                .call("PATCH", &path, Some(&key), Some(change.clone()))
                .await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (403, Some("insufficient_scope")),
                "{email}: PATCH own record with {change}: {problem}"
            );
        }
        let (_, _, after) = api.call("GET", &path, Some(&token), None).await;
        assert_eq!(after, before, "{email}: the record is unchanged");
        api.login(email, password).await;
    }
}
both_databases!(
    a_restricted_key_cannot_edit_its_own_user,
    a_restricted_key_cannot_edit_its_own_user
);

/// A user who is not an admin cannot change another user, by token or by
/// unrestricted key: `404 not_found` (ids are not probed), for each field,
/// and the other user is unchanged (record and password).
async fn a_user_cannot_patch_another_user(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    create_user(&db, "mallory@example.com", "mallory-password", "user");
    let bob = create_user(&db, "bob@example.com", "bob-password", "user");
    let server = start(&db, &[]);
    let api = Api::new(&server);
    let admin = api.login(ADMIN, ADMIN_PW).await;
    let mallory = api.login("mallory@example.com", "mallory-password").await;
    let (status, _, created) = api
        .call(
            "POST",
            "/api/keys",
            Some(&mallory),
            Some(json!({"name": "unrestricted"})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let mallory_key = created["key"].as_str().unwrap().to_owned();
    let path = format!("/api/users/{}", bob["id"].as_str().unwrap());
    let (status, _, before) = api.call("GET", &path, Some(&admin), None).await;
    assert_eq!(status, 200);
    for credential in [&mallory, &mallory_key] {
        for change in [
            json!({"name": "Pwned"}),
            json!({"email": "mallory+bob@example.com"}),
            json!({"role": "admin"}),
            json!({"password": "taken-over-1"}),
            json!({"password": "taken-over-1", "currentPassword": "bob-password"}),
        ] {
            let (status, _, problem) = api
                .call("PATCH", &path, Some(credential), Some(change.clone()))
                .await;
            assert_eq!(
                (status, problem["code"].as_str()),
                (404, Some("not_found")),
                "PATCH another user with {change}: {problem}"
            );
        }
    }
    let (_, _, after) = api.call("GET", &path, Some(&admin), None).await;
    assert_eq!(after, before, "the other user is unchanged");
    api.login("bob@example.com", "bob-password").await;
    let (status, _, _) = api
        .call(
            "POST",
            "/api/auth/login",
            None,
            Some(json!({"email": "bob@example.com", "password": "taken-over-1"})),
        )
        .await;
    assert_eq!(status, 401, "the password was not set");
}
both_databases!(
    a_user_cannot_patch_another_user,
    a_user_cannot_patch_another_user
);

/// An unknown e-mail address costs a login as much as a wrong password for
/// a known one (the password is checked against a dummy hash), so timing
/// does not tell which addresses exist. Medians of interleaved attempts,
/// compared with each other rather than with a fixed time.
async fn unknown_email_and_wrong_password_take_the_same_time(db: TestDb) {
    create_user(&db, ADMIN, ADMIN_PW, "admin");
    let server = start(
        &db,
        &[
            ("MCP_RATE_LIMIT_AUTH", "1000/60s"),
            ("MCP_RATE_LIMIT_AUTH_FAILURES", "1000/60s"),
        ],
    );
    let api = Api::new(&server);
    let attempt = |email: &str| {
        let request = api
            .client
            .post(format!("{}/api/auth/login", api.base))
            .json(&json!({"email": email, "password": "wrong-password-1"}));
        async move {
            let started = std::time::Instant::now();
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            response.bytes().await.unwrap();
            (status, started.elapsed())
        }
    };
    // Warm up both paths (connections, caches, the first hash).
    attempt(ADMIN).await;
    attempt("nobody-0@example.com").await;
    let (mut unknown, mut wrong) = (Vec::new(), Vec::new());
    for i in 0..9 {
        let (status, elapsed) = attempt(&format!("nobody-{}@example.com", i + 1)).await;
        assert_eq!(status, 401);
        unknown.push(elapsed);
        let (status, elapsed) = attempt(ADMIN).await;
        assert_eq!(status, 401);
        wrong.push(elapsed);
    }
    unknown.sort();
    wrong.sort();
    let (unknown, wrong) = (unknown[4], wrong[4]);
    let ratio = unknown.as_secs_f64() / wrong.as_secs_f64();
    assert!(
        (0.5..=2.0).contains(&ratio),
        "median unknown e-mail {unknown:?} vs wrong password {wrong:?}: ratio {ratio:.2}"
    );
}
both_databases!(
    unknown_email_and_wrong_password_take_the_same_time,
    unknown_email_and_wrong_password_take_the_same_time
);
