//! End-to-end: the MCP endpoint over Streamable HTTP with `rmcp`'s own
//! client, and raw HTTP where the status line matters.

mod common;

use std::collections::HashMap;

use common::{Api, TestDb, TestServer, create_user};
use rmcp::ServiceExt;
use rmcp::model::{
    CallToolRequestParams, ClientCapabilities, ClientConfig, Implementation, ProtocolVersion,
};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};

const SECRET: (&str, &str) = ("MCP_JWT_SECRET", "0123456789abcdef0123456789abcdef");
const TOOLS: [&str; 5] = [
    "create_agent",
    "get_agent",
    "list_agents",
    "update_agent_status",
    "whoami",
];

/// How a client proves who it is.
enum Credential<'a> {
    None,
    Bearer(&'a str),
    ApiKey(&'a str),
}

type Client = RunningService<RoleClient, ClientConfig>;

/// `rmcp`'s client over Streamable HTTP, speaking `version`.
async fn connect(
    server: &TestServer,
    credential: Credential<'_>,
    version: ProtocolVersion,
) -> Result<Client, rmcp::service::ClientInitializeError> {
    let mut config = StreamableHttpClientTransportConfig::with_uri(server.url("/mcp"));
    match credential {
        Credential::None => {}
        Credential::Bearer(token) => config = config.auth_header(token),
        Credential::ApiKey(key) => {
            config = config.custom_headers(HashMap::from([(
                http::HeaderName::from_static("x-api-key"),
                http::HeaderValue::from_str(key).unwrap(),
            )]));
        }
    }
    let transport = StreamableHttpClientTransport::from_config(config);
    ClientConfig::new(
        ClientCapabilities::default(),
        Implementation::new("mcp-e2e", "1.0"),
    )
    .with_protocol_version(version)
    .serve(transport)
    .await
}

async fn call(client: &Client, tool: &str, arguments: Value) -> Result<Value, rmcp::ServiceError> {
    let mut request = CallToolRequestParams::new(tool.to_owned());
    if let Value::Object(map) = arguments {
        request = request.with_arguments(map);
    }
    let result = client.call_tool(request).await?;
    assert_ne!(result.is_error, Some(true), "{tool}: {result:?}");
    Ok(result.structured_content.unwrap_or(Value::Null))
}

/// A tool call that fails for a business reason: the MCP specification
/// wants a result with `isError: true` (so the model can read it and
/// correct itself), not a JSON-RPC error. Returns the structured error.
async fn call_failing(client: &Client, tool: &str, arguments: Value) -> Value {
    let request = CallToolRequestParams::new(tool.to_owned())
        .with_arguments(arguments.as_object().cloned().unwrap_or_default());
    let result = client.call_tool(request).await.unwrap_or_else(|error| {
        panic!("{tool}: a JSON-RPC error instead of a tool result: {error}")
    });
    assert_eq!(result.is_error, Some(true), "{tool}: {result:?}");
    let structured = result.structured_content.expect("a structured error");
    assert!(structured["code"].is_string(), "{structured}");
    structured
}

/// Why rmcp's client could not start: the status it was refused with (rmcp
/// tells a 401 from a 403) and the server's `WWW-Authenticate` challenge.
fn refused_at_initialize(
    result: Result<Client, rmcp::service::ClientInitializeError>,
) -> (u16, String) {
    let error = match result {
        Ok(_) => panic!("the connection was accepted"),
        Err(error) => error,
    };
    let challenge = error
        .auth_challenge()
        .unwrap_or_else(|| panic!("not refused with 401 or 403: {error}"))
        .to_owned();
    let status = if error.is_authorization_required() {
        401
    } else {
        403
    };
    (status, challenge)
}

/// The scope a call was refused for with `403 insufficient_scope`, and the
/// challenge, from the error rmcp's client returns.
fn refused_for_scope(error: &rmcp::ServiceError) -> (Option<String>, String) {
    use rmcp::transport::streamable_http_client::InsufficientScopeError;
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(refusal) = current.downcast_ref::<InsufficientScopeError>() {
            return (
                refusal.required_scope.clone(),
                refusal.www_authenticate_header.clone(),
            );
        }
        source = current.source();
    }
    panic!("not a 403 insufficient_scope: {error}");
}

async fn tool_names(client: &Client) -> Vec<String> {
    let mut names: Vec<String> = client
        .list_all_tools()
        .await
        .expect("tools/list")
        .into_iter()
        .map(|tool| tool.name.to_string())
        .collect();
    names.sort();
    names
}

async fn create_key(api: &Api, token: &str, name: &str, scopes: Value) -> (String, String) {
    let (status, _, created) = api
        .call(
            "POST",
            "/api/keys",
            Some(token),
            Some(json!({"name": name, "scopes": scopes})),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    (
        created["key"].as_str().unwrap().to_owned(),
        created["id"].as_str().unwrap().to_owned(),
    )
}

/// A JSON-RPC message POSTed by hand; returns status, headers and the
/// JSON-RPC answer (from a JSON body or the first SSE event).
async fn post(
    api: &Api,
    headers: &[(&str, &str)],
    body: Value,
) -> (u16, reqwest::header::HeaderMap, Value) {
    let mut request = api
        .client
        .post(format!("{}/mcp", api.base))
        .header("accept", "application/json, text/event-stream")
        .json(&body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let sse = headers
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if !sse {
        let bytes = response.bytes().await.unwrap();
        return (
            status,
            headers,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        );
    }
    // The stream stays open after the answer; read until the first event.
    let mut text = String::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, response.chunk()).await {
        text.push_str(&String::from_utf8_lossy(&chunk));
        if let Some(json) = text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .find_map(|data| serde_json::from_str::<Value>(data.trim()).ok())
        {
            return (status, headers, json);
        }
    }
    panic!("no JSON-RPC answer in the event stream: {text}");
}

/// A `tools/call` of protocol 2026-07-28, which carries its lifecycle in
/// `_meta` instead of a session.
fn stateless_tool_call(id: u64, name: &str, arguments: Value) -> Value {
    let mut call = tool_call(id, name, arguments);
    call["params"]["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientCapabilities": {}
    });
    call
}

fn initialize(id: u64) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "initialize",
        "params": {
            "protocolVersion": "2025-11-25",
            "capabilities": {},
            "clientInfo": {"name": "raw", "version": "1"}
        }
    })
}

fn tool_call(id: u64, name: &str, arguments: Value) -> Value {
    json!({
        "jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": name, "arguments": arguments}
    })
}

/// Opens a session by hand (initialize, then initialized) with `credential`
/// as a header; returns the session id.
async fn open_session(api: &Api, credential: (&str, &str)) -> String {
    let (status, headers, answer) = post(api, &[credential], initialize(1)).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["serverInfo"]["name"], "mcp-server");
    let session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let (status, _, _) = post(
        api,
        &[
            credential,
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    session
}

async fn tools_and_agents_through_rmcp(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    create_user(&db, "other@example.com", "other-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (key, key_id) = create_key(
        &api,
        &jwt,
        "agent",
        json!(["mcp", "agents:read", "agents:write"]),
    )
    .await;

    // An API key, on a protocol version with initialize and sessions.
    let client = connect(
        &server,
        Credential::ApiKey(&key),
        ProtocolVersion::LATEST_WITH_INITIALIZE,
    )
    .await
    .expect("initialize with an API key");
    let info = client.peer_info().expect("server info from initialize");
    assert_eq!(
        info.server_info.as_ref().map(|i| i.name.as_str()),
        Some("mcp-server")
    );
    assert!(info.capabilities.tools.is_some());
    assert_eq!(tool_names(&client).await, TOOLS);
    let me = call(&client, "whoami", json!({})).await.unwrap();
    assert_eq!(me["authMethod"], "api_key");
    assert_eq!(me["keyId"], key_id.as_str());
    assert_eq!(me["scopes"], json!(["agents:read", "agents:write", "mcp"]));

    let agent = call(
        &client,
        "create_agent",
        json!({"name": "scout", "type": "crawler", "capabilities": ["read"]}),
    )
    .await
    .unwrap();
    let id = agent["id"].as_str().expect("agent id").to_owned();
    assert_eq!(agent["status"], "active");
    assert_eq!(agent["ownerId"], me["subject"]);
    let fetched = call(&client, "get_agent", json!({"id": id})).await.unwrap();
    assert_eq!(fetched["name"], "scout");
    let updated = call(
        &client,
        "update_agent_status",
        json!({"id": id, "status": "inactive"}),
    )
    .await
    .unwrap();
    assert_eq!(updated["status"], "inactive");
    // The REST API's schema: an empty name is refused, nothing is created;
    // every failing field at once, as a tool result the model can read.
    let refused = call_failing(
        &client,
        "create_agent",
        json!({"name": "", "type": "crawler", "capabilities": [1]}),
    )
    .await;
    assert_eq!(refused["code"], "validation_failed", "{refused}");
    let fields: Vec<&str> = refused["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(fields.contains(&"name"), "{refused}");
    assert!(fields.contains(&"capabilities[0]"), "{refused}");
    // Arguments of the wrong shape are a tool error too, not a protocol one.
    let missing = call_failing(&client, "get_agent", json!({})).await;
    assert_eq!(missing["code"], "validation_failed", "{missing}");
    let wrong_type = call_failing(&client, "get_agent", json!({"id": 7})).await;
    assert_eq!(wrong_type["code"], "validation_failed", "{wrong_type}");
    let bad_status = call_failing(
        &client,
        "update_agent_status",
        json!({"id": id, "status": "exploded"}),
    )
    .await;
    assert_eq!(bad_status["code"], "validation_failed", "{bad_status}");
    let unknown = call_failing(
        &client,
        "get_agent",
        json!({"id": uuid::Uuid::now_v7().to_string()}),
    )
    .await;
    assert_eq!(unknown["code"], "not_found", "{unknown}");
    client.cancel().await.unwrap();

    // A JWT, on the newest protocol (no initialize; method headers).
    let client = connect(&server, Credential::Bearer(&jwt), ProtocolVersion::LATEST)
        .await
        .expect("connect with a JWT");
    assert_eq!(tool_names(&client).await, TOOLS);
    let me = call(&client, "whoami", json!({})).await.unwrap();
    assert_eq!(me["authMethod"], "jwt");
    assert_eq!(me["scopes"], Value::Null, "a login token is unrestricted");
    let listed = call(&client, "list_agents", json!({})).await.unwrap();
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert_eq!(listed["items"][0]["status"], "inactive");
    client.cancel().await.unwrap();

    // The REST API sees the same agent.
    let (status, _, agents) = api.call("GET", "/api/agents", Some(&jwt), None).await;
    assert_eq!(status, 200);
    assert_eq!(agents["items"][0]["id"], id.as_str());

    // Another user sees none of it.
    let other = api.login("other@example.com", "other-password").await;
    let client = connect(
        &server,
        Credential::Bearer(&other),
        ProtocolVersion::LATEST_WITH_INITIALIZE,
    )
    .await
    .unwrap();
    let listed = call(&client, "list_agents", json!({})).await.unwrap();
    assert_eq!(listed["items"], json!([]));
    // Another user's agent is not found, as a tool result.
    let hidden = call_failing(&client, "get_agent", json!({"id": id})).await;
    assert_eq!(hidden["code"], "not_found", "{hidden}");
    let hidden = call_failing(
        &client,
        "update_agent_status",
        json!({"id": id, "status": "active"}),
    )
    .await;
    assert_eq!(hidden["code"], "not_found", "{hidden}");
    client.cancel().await.unwrap();
    let (_, _, agents) = api.call("GET", "/api/agents", Some(&jwt), None).await;
    assert_eq!(agents["items"][0]["status"], "inactive", "untouched");
}

both_databases!(tools_and_agents_through_rmcp, tools_and_agents_through_rmcp);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals() {
    let db = TestDb::new(common::Backend::Sqlite).await;
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;

    // No credentials: 401 with a challenge, and rmcp's client cannot start.
    let (status, headers, body) = post(&api, &[], initialize(1)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["code"], "missing_credentials");
    // The scope every MCP message needs, so a client asks for it at once.
    assert_eq!(
        common::without_resource_metadata(headers["www-authenticate"].to_str().unwrap()),
        "Bearer realm=\"mcp\", scope=\"mcp\""
    );
    assert_eq!(headers["cache-control"], "no-store");
    let (status, challenge) = refused_at_initialize(
        connect(
            &server,
            Credential::None,
            ProtocolVersion::LATEST_WITH_INITIALIZE,
        )
        .await,
    );
    assert_eq!(
        (
            status,
            common::without_resource_metadata(&challenge).as_str()
        ),
        (401, "Bearer realm=\"mcp\", scope=\"mcp\"")
    );
    // A bad token: 401 invalid_token, by hand and through rmcp's client.
    let (status, headers, body) = post(
        &api,
        &[("authorization", "Bearer not-a-token")],
        initialize(1),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("error=\"invalid_token\"")
    );
    let (status, challenge) = refused_at_initialize(
        connect(
            &server,
            Credential::Bearer("not-a-token"),
            ProtocolVersion::LATEST,
        )
        .await,
    );
    assert_eq!(status, 401, "{challenge}");
    assert!(challenge.contains("error=\"invalid_token\""), "{challenge}");

    // A key without scope `mcp`: 403 naming the scope.
    let (no_mcp, _) = create_key(&api, &jwt, "no-mcp", json!(["agents:read"])).await;
    let (status, headers, body) = post(&api, &[("x-api-key", &no_mcp)], initialize(1)).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "insufficient_scope");
    let challenge = headers["www-authenticate"].to_str().unwrap();
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    assert!(challenge.contains("scope=\"mcp\""), "{challenge}");
    let (status, challenge) = refused_at_initialize(
        connect(
            &server,
            Credential::ApiKey(&no_mcp),
            ProtocolVersion::LATEST_WITH_INITIALIZE,
        )
        .await,
    );
    assert_eq!(status, 403, "{challenge}");
    assert!(
        challenge.contains("error=\"insufficient_scope\"") && challenge.contains("scope=\"mcp\""),
        "{challenge}"
    );

    // A key with `mcp` only: whoami, but not the agent tools.
    let (mcp_only, _) = create_key(&api, &jwt, "mcp-only", json!(["mcp"])).await;
    let client = connect(
        &server,
        Credential::ApiKey(&mcp_only),
        ProtocolVersion::LATEST_WITH_INITIALIZE,
    )
    .await
    .expect("scope mcp is enough to connect");
    assert_eq!(
        call(&client, "whoami", json!({})).await.unwrap()["scopes"],
        json!(["mcp"])
    );
    let error = call(&client, "list_agents", json!({}))
        .await
        .expect_err("list_agents needs agents:read");
    let (scope, challenge) = refused_for_scope(&error);
    assert_eq!(scope.as_deref(), Some("mcp agents:read"), "{challenge}");
    assert!(
        challenge.contains("error=\"insufficient_scope\""),
        "{challenge}"
    );
    client.cancel().await.unwrap();

    // The same refusals by hand, to see the status: the body is read...
    let key = ("x-api-key", mcp_only.as_str());
    let session = open_session(&api, key).await;
    let in_session = [
        key,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    let (status, headers, body) = post(
        &api,
        &in_session,
        tool_call(2, "create_agent", json!({"name": "x", "type": "y"})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "insufficient_scope");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"mcp agents:write\"")
    );
    let (status, _, body) = post(&api, &in_session, tool_call(3, "rm_rf", json!({}))).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, _, body) = post(
        &api,
        &in_session,
        json!({"jsonrpc": "2.0", "id": 4, "method": "resources/list"}),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );
    let (status, headers, body) = post(&api, &in_session, tool_call(5, "whoami", json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/event-stream");
    assert_eq!(
        headers["cache-control"], "no-store",
        "never rmcp's no-cache"
    );
    assert_eq!(
        body["result"]["structuredContent"]["scopes"],
        json!(["mcp"])
    );
    // ...or, on 2026-07-28, the Mcp-Method / Mcp-Name headers decide.
    let (status, headers, body) = post(
        &api,
        &[
            key,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "update_agent_status"),
        ],
        tool_call(
            6,
            "update_agent_status",
            json!({"id": "x", "status": "active"}),
        ),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(
        headers["www-authenticate"]
            .to_str()
            .unwrap()
            .contains("scope=\"mcp agents:write\"")
    );
    // Headers that name an allowed tool over a body that calls another: the
    // body decides, so the headers cannot be used to slip past the policy.
    let (status, _, body) = post(
        &api,
        &[
            key,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        stateless_tool_call(7, "list_agents", json!({})),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["code"], "insufficient_scope");
    // And an allowed body under headers that disagree with it is rmcp's to
    // refuse.
    let (status, _, body) = post(
        &api,
        &[
            key,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "list_agents"),
        ],
        stateless_tool_call(7, "whoami", json!({})),
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["error"]["code"], -32020,
        "rmcp's own JSON-RPC error reaches the client"
    );
    assert!(body["result"].is_null());
    // Naming the rule, not the values (a header may carry anything, a
    // credential included: found by the `request` fuzz target).
    assert_eq!(
        body["error"]["message"], "Mcp-Name header does not match body value",
        "{body}"
    );
    // The same request with agreeing headers is answered.
    let (status, _, body) = post(
        &api,
        &[
            key,
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        stateless_tool_call(8, "whoami", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["scopes"],
        json!(["mcp"])
    );
    // Hostile bodies never reach rmcp and are never a 500: what is not a
    // JSON-RPC message is the contract's 400, naming what failed.
    for hostile in [
        json!("just a string"),
        json!([]),
        json!({"jsonrpc": "2.0"}),
        json!({"method": 7}),
    ] {
        let (status, _, body) = post(&api, &in_session, hostile.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("validation_failed")),
            "{hostile} -> {body}"
        );
    }

    // A foreign Host and a foreign Origin are refused before anything else.
    let response = api
        .client
        .post(format!("{}/mcp", api.base))
        .header("host", "evil.example")
        .header("x-api-key", &mcp_only)
        .header("accept", "application/json, text/event-stream")
        .json(&initialize(1))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "host_not_allowed");
    let (status, _, body) = post(
        &api,
        &[key, ("origin", "https://evil.example")],
        initialize(1),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
}

/// rmcp's own Host and Origin checks sit behind the server's guard; both
/// are fed from the same settings, so whatever the guard lets through rmcp
/// accepts too (rmcp alone would allow only loopback hosts and refuse these
/// with a plain-text 403).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmcp_host_and_origin_checks_agree_with_the_guard() {
    let db = TestDb::new(common::Backend::Sqlite).await;
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(
        &db,
        &[
            SECRET,
            ("MCP_PUBLIC_URL", "http://mcp.test:8080"),
            (
                "MCP_ALLOWED_HOSTS",
                "api.internal,localhost,127.0.0.1,[::1]",
            ),
            ("MCP_CORS_ORIGIN", "https://app.example"),
        ],
    );
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (key, _) = create_key(&api, &jwt, "k", json!(["mcp"])).await;
    let key = ("x-api-key", key.as_str());
    for headers in [
        vec![key, ("host", "mcp.test:8080")],
        vec![key, ("host", "api.internal")],
        vec![key, ("host", "[::1]:8080")],
        vec![key, ("origin", "https://app.example")],
        vec![
            key,
            ("host", "mcp.test:8080"),
            ("origin", "http://mcp.test:8080"),
        ],
    ] {
        let (status, _, body) = post(&api, &headers, initialize(1)).await;
        assert_eq!(status, 200, "{headers:?}: {body}");
        assert_eq!(body["result"]["serverInfo"]["name"], "mcp-server");
    }
    for (headers, code) in [
        (vec![key, ("host", "mcp.test:9999")], "host_not_allowed"),
        (vec![key, ("host", "evil.example")], "host_not_allowed"),
        (
            vec![key, ("origin", "https://app.example:8443")],
            "origin_not_allowed",
        ),
    ] {
        let (status, _, body) = post(&api, &headers, initialize(1)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some(code)),
            "{headers:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_belong_to_their_principal() {
    let db = TestDb::new(common::Backend::Sqlite).await;
    create_user(&db, "alice@example.com", "alice-password", "user");
    create_user(&db, "mallory@example.com", "mallory-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let alice = api.login("alice@example.com", "alice-password").await;
    let mallory = api.login("mallory@example.com", "mallory-password").await;
    let (alice_key, _) = create_key(&api, &alice, "alice", json!(["mcp"])).await;
    let (mallory_key, _) = create_key(&api, &mallory, "mallory", json!(["mcp"])).await;

    let session = open_session(&api, ("x-api-key", &alice_key)).await;
    let list = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"});
    for thief in [
        ("x-api-key", mallory_key.as_str()),
        ("authorization", &format!("Bearer {mallory}")),
    ] {
        let (status, _, body) = post(
            &api,
            &[
                thief,
                ("mcp-session-id", &session),
                ("mcp-protocol-version", "2025-11-25"),
            ],
            list.clone(),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{body}"
        );
        let response = api
            .client
            .delete(format!("{}/mcp", api.base))
            .header(thief.0, thief.1)
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "another principal cannot end the session: {body}"
        );
    }
    let (status, _, body) = post(
        &api,
        &[
            ("x-api-key", &alice_key),
            ("mcp-session-id", &session),
            ("mcp-protocol-version", "2025-11-25"),
        ],
        list,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    // Her key has `mcp` alone: the one tool it may call.
    assert_eq!(body["result"]["tools"][0]["name"], "whoami", "{body}");
    assert_eq!(body["result"]["tools"].as_array().unwrap().len(), 1);
    assert!(server.logs().contains("unknown or another principal's"));
    assert!(!server.logs().contains(&alice_key));
}

/// A session belongs to the credential that opened it, not to its user: a
/// less-scoped key of the same user cannot call, in the session of a key
/// with more scopes, what its own scopes do not allow (`403
/// insufficient_scope` naming the scope, nothing created), nor use that
/// session at all (`404 not_found`, as for a stranger), nor end it; neither
/// can the user's own login token. The session goes on for its key.
async fn a_narrower_key_of_the_same_user_cannot_use_a_wider_keys_session(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (wide, wide_id) = create_key(
        &api,
        &jwt,
        "wide",
        json!(["mcp", "agents:read", "agents:write"]),
    )
    .await;
    let (narrow, _) = create_key(&api, &jwt, "narrow", json!(["mcp"])).await;
    let session = open_session(&api, ("x-api-key", &wide)).await;
    let bearer = format!("Bearer {jwt}");
    let in_session = |credential: (&'static str, String)| {
        vec![
            (credential.0, credential.1),
            ("mcp-session-id", session.clone()),
            ("mcp-protocol-version", "2025-11-25".to_owned()),
        ]
    };
    let send = |headers: Vec<(&'static str, String)>, body: Value| {
        let api = &api;
        async move {
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
            post(api, &headers, body).await
        }
    };

    let narrow_in_wide = in_session(("x-api-key", narrow.clone()));
    for (id, tool) in [(2, "create_agent"), (3, "update_agent_status")] {
        let (status, headers, body) = send(
            narrow_in_wide.clone(),
            tool_call(
                id,
                tool,
                json!({"id": "x", "name": "x", "type": "y", "status": "active"}),
            ),
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{tool} with the narrow key in the wide key's session: {body}"
        );
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("scope=\"mcp agents:write\"")
        );
    }
    for (credential, what) in [
        (("x-api-key", narrow.clone()), "the narrow key"),
        (("authorization", bearer.clone()), "the user's login token"),
    ] {
        for message in [
            tool_call(4, "whoami", json!({})),
            json!({"jsonrpc": "2.0", "id": 5, "method": "tools/list"}),
        ] {
            let (status, _, body) = send(in_session(credential.clone()), message.clone()).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (404, Some("not_found")),
                "{what} in the wide key's session: {message} -> {body}"
            );
        }
        let response = api
            .client
            .delete(format!("{}/mcp", api.base))
            .header(credential.0, &credential.1)
            .header("mcp-session-id", &session)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, body["code"].as_str()),
            (404, Some("not_found")),
            "{what} cannot end the wide key's session: {body}"
        );
    }
    // Nothing was created, and the session is still the wide key's.
    let (status, _, agents) = api.call("GET", "/api/agents", Some(&jwt), None).await;
    assert_eq!((status, agents["items"].clone()), (200, json!([])));
    let (status, _, body) = send(
        in_session(("x-api-key", wide.clone())),
        tool_call(6, "whoami", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["keyId"],
        wide_id.as_str()
    );
}
both_databases!(
    a_narrower_key_of_the_same_user_cannot_use_a_wider_keys_session,
    a_narrower_key_of_the_same_user_cannot_use_a_wider_keys_session
);

/// JSON-RPC batches: the policy reads every message of one, so a batch
/// that hides a refused call behind an allowed one is refused as a whole
/// (`403 insufficient_scope` naming the refused call's scope), whichever
/// comes first. No protocol version rmcp speaks takes batches (2025-03-26,
/// which had them, included): a batch the policy allows is refused by
/// rmcp (`415`). Either way no call of the batch runs.
async fn a_batch_cannot_smuggle_a_refused_tool_call(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (narrow, _) = create_key(&api, &jwt, "narrow", json!(["mcp"])).await;
    let (wide, _) = create_key(&api, &jwt, "wide", json!(["mcp", "agents:write"])).await;
    let create = |id: u64| tool_call(id, "create_agent", json!({"name": "smuggled", "type": "t"}));
    let whoami = |id: u64| tool_call(id, "whoami", json!({}));

    let key = ("x-api-key", narrow.as_str());
    let session = open_session(&api, key).await;
    let in_session = [
        key,
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", "2025-11-25"),
    ];
    for batch in [json!([whoami(2), create(3)]), json!([create(4), whoami(5)])] {
        let (status, headers, body) = post(&api, &in_session, batch.clone()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("insufficient_scope")),
            "{batch} -> {body}"
        );
        assert_eq!(body["scope"], "mcp agents:write", "{body}");
        assert!(
            headers["www-authenticate"]
                .to_str()
                .unwrap()
                .contains("scope=\"mcp agents:write\"")
        );
    }
    // A batch of allowed calls is no way in either: rmcp takes one message
    // per request, on the newest version and on 2025-03-26.
    let (status, _, body) = post(&api, &in_session, json!([whoami(6), whoami(7)])).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    let wide = ("x-api-key", wide.as_str());
    let mut old = initialize(1);
    old["params"]["protocolVersion"] = json!("2025-03-26");
    let (status, headers, answer) = post(&api, &[wide], old).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["result"]["protocolVersion"], "2025-03-26");
    let old_session = headers["mcp-session-id"].to_str().unwrap().to_owned();
    let in_old = [
        wide,
        ("mcp-session-id", old_session.as_str()),
        ("mcp-protocol-version", "2025-03-26"),
    ];
    let (status, _, _) = post(
        &api,
        &in_old,
        json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
    )
    .await;
    assert_eq!(status, 202);
    let (status, _, body) = post(&api, &in_old, json!([whoami(8), create(9)])).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (415, Some("unsupported_media_type")),
        "{body}"
    );
    // No call of any batch ran.
    let (status, _, agents) = api.call("GET", "/api/agents", Some(&jwt), None).await;
    assert_eq!((status, agents["items"].clone()), (200, json!([])));
}
both_databases!(
    a_batch_cannot_smuggle_a_refused_tool_call,
    a_batch_cannot_smuggle_a_refused_tool_call
);

// ---- WebSocket (`/ws`) with a real client ---------------------------------

mod ws {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    use tokio_tungstenite::tungstenite::{Error, Message};

    type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Opens `/ws` with `headers`; the HTTP refusal (status, body) when the
    /// upgrade is refused.
    pub(super) async fn open(
        server: &TestServer,
        headers: &[(&str, &str)],
    ) -> Result<(Socket, http::Response<Option<Vec<u8>>>), (u16, Value)> {
        let mut request = format!("ws://{}/ws", server.addr)
            .into_client_request()
            .unwrap();
        for (name, value) in headers {
            request.headers_mut().insert(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        match tokio_tungstenite::connect_async(request).await {
            Ok(pair) => Ok(pair),
            Err(Error::Http(response)) => {
                let status = response.status().as_u16();
                let body = response
                    .body()
                    .as_deref()
                    .and_then(|b| serde_json::from_slice(b).ok())
                    .unwrap_or(Value::Null);
                Err((status, body))
            }
            Err(other) => panic!("WebSocket connect failed: {other}"),
        }
    }

    /// The HTTP refusal of an upgrade that must be refused.
    pub(super) async fn refused(server: &TestServer, headers: &[(&str, &str)]) -> (u16, Value) {
        match open(server, headers).await {
            Ok(_) => panic!("the upgrade was accepted"),
            Err(refusal) => refusal,
        }
    }

    /// Sends one JSON-RPC message.
    pub(super) async fn send(socket: &mut Socket, message: &Value) {
        socket
            .send(Message::text(message.to_string()))
            .await
            .unwrap();
    }

    /// The next JSON-RPC message, or the close frame's code.
    pub(super) async fn next(socket: &mut Socket) -> Result<Value, Option<CloseCode>> {
        loop {
            let frame = tokio::time::timeout(std::time::Duration::from_secs(10), socket.next())
                .await
                .expect("an answer within 10 s");
            match frame {
                Some(Ok(Message::Text(text))) => return Ok(serde_json::from_str(&text).unwrap()),
                Some(Ok(Message::Close(frame))) => return Err(frame.map(|f| f.code)),
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Err(None),
            }
        }
    }

    /// initialize, initialized: the handshake of 2025-11-25.
    pub(super) async fn handshake(socket: &mut Socket) -> Value {
        send(socket, &initialize(1)).await;
        let answer = next(socket).await.expect("initialize answered");
        send(
            socket,
            &json!({"jsonrpc": "2.0", "method": "notifications/initialized"}),
        )
        .await;
        answer
    }

    /// A tool call over `/ws` is an audit event like one over HTTP: its
    /// request id is the upgrade's `X-Request-Id` (one per connection) and
    /// its address the client's; no credential of the upgrade reaches it.
    /// A message refused on the connection is an `authz.denied` event.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_tool_calls_are_audited_with_the_upgrades_request_id() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        create_user(&db, "root@example.com", "root-password", "admin");
        let server = TestServer::start(&db, &[SECRET]);
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        let admin = api.login("root@example.com", "root-password").await;
        let (key, key_id) = create_key(&api, &jwt, "ws", json!(["mcp"])).await;

        let (mut socket, response) = open(&server, &[("x-api-key", &key)]).await.unwrap();
        let upgrade_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        handshake(&mut socket).await;
        send(&mut socket, &tool_call(2, "whoami", json!({}))).await;
        let answer = next(&mut socket).await.unwrap();
        assert!(answer["result"].is_object(), "{answer}");

        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let event = loop {
            let (status, _, page) = api
                .call("GET", "/api/audit?type=mcp.tool_call", Some(&admin), None)
                .await;
            assert_eq!(status, 200, "{page}");
            if let Some(event) = page["items"].as_array().unwrap().first() {
                break event.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no tool-call event");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(event["requestId"], upgrade_id.as_str(), "{event}");
        assert_eq!(event["ip"], "127.0.0.1", "{event}");
        assert_eq!(event["actor"]["keyId"], key_id.as_str(), "{event}");
        assert_eq!(event["detail"]["tool"], "whoami", "{event}");
        assert!(!event.to_string().contains(&key), "{event}");

        // A message the policy refuses on the open connection is an
        // `authz.denied` event too, as a 403 is over HTTP.
        send(
            &mut socket,
            &tool_call(3, "create_agent", json!({"name": "x"})),
        )
        .await;
        let answer = next(&mut socket).await.unwrap();
        assert_eq!(answer["error"]["code"], -32003, "{answer}");
        let event = loop {
            let (_, _, page) = api
                .call("GET", "/api/audit?type=authz.denied", Some(&admin), None)
                .await;
            if let Some(event) = page["items"].as_array().unwrap().first() {
                break event.clone();
            }
            assert!(std::time::Instant::now() < deadline, "no refusal event");
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        };
        assert_eq!(event["outcome"], "denied", "{event}");
        assert_eq!(event["requestId"], upgrade_id.as_str(), "{event}");
        assert_eq!(event["ip"], "127.0.0.1", "{event}");
        assert_eq!(event["actor"]["keyId"], key_id.as_str(), "{event}");
        assert_eq!(
            event["target"],
            json!({"kind": "route", "id": "GET /ws"}),
            "{event}"
        );
        assert_eq!(event["detail"]["tool"], "create_agent", "{event}");
        assert_eq!(event["detail"]["method"], "tools/call", "{event}");
        assert_eq!(event["detail"]["code"], "insufficient_scope", "{event}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_transport() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        let server = TestServer::start(
            &db,
            &[
                SECRET,
                ("MCP_RATE_LIMIT_WS", "5/60s"),
                ("MCP_CORS_ORIGIN", "https://app.example"),
            ],
        );
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        let (key, key_id) = create_key(&api, &jwt, "ws", json!(["mcp", "agents:read"])).await;
        let (no_mcp, _) = create_key(&api, &jwt, "no-mcp", json!(["agents:read"])).await;

        // Refused at the upgrade: no credentials, a bad token, no scope
        // `mcp`, a foreign Origin.
        let (status, body) = refused(&server, &[]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("missing_credentials"))
        );
        let (status, body) = refused(&server, &[("authorization", "Bearer nope")]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token"))
        );
        let (status, body) = refused(&server, &[("x-api-key", &no_mcp)]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("insufficient_scope"))
        );
        let (status, body) = refused(
            &server,
            &[("x-api-key", &key), ("origin", "https://evil.example")],
        )
        .await;
        assert_eq!(
            (status, body["code"].as_str()),
            (403, Some("origin_not_allowed"))
        );
        // A token in the query string is not a credential.
        let url = format!("ws://{}/ws?access_token={jwt}", server.addr);
        match tokio_tungstenite::connect_async(url).await {
            Err(Error::Http(response)) => {
                assert_eq!(response.status(), 401);
                let body: Value = serde_json::from_slice(response.body().as_deref().unwrap())
                    .expect("a problem body");
                assert_eq!(body["code"], "missing_credentials", "{body}");
            }
            other => panic!("query-string token accepted: {:?}", other.map(|_| ())),
        }

        // A header credential: initialize and tool calls are answered.
        let (mut socket, response) = open(&server, &[("x-api-key", &key)])
            .await
            .expect("upgrade");
        assert_eq!(response.status(), 101);
        let init = handshake(&mut socket).await;
        assert_eq!(init["id"], 1);
        assert_eq!(init["result"]["serverInfo"]["name"], "mcp-server");
        send(&mut socket, &tool_call(2, "whoami", json!({}))).await;
        let me = next(&mut socket).await.unwrap();
        assert_eq!(me["id"], 2);
        assert_eq!(me["result"]["structuredContent"]["keyId"], key_id.as_str());
        // The per-tool policy holds here too.
        send(
            &mut socket,
            &tool_call(3, "create_agent", json!({"name": "a", "type": "b"})),
        )
        .await;
        let refused = next(&mut socket).await.unwrap();
        assert_eq!(refused["id"], 3);
        assert_eq!(refused["error"]["code"], -32003);
        assert_eq!(refused["error"]["data"]["scope"], "mcp agents:write");
        // Five messages so far (initialize, initialized, three calls).
        send(&mut socket, &tool_call(4, "list_agents", json!({}))).await;
        let listed = next(&mut socket).await.unwrap();
        assert_eq!(
            listed["result"]["structuredContent"]["items"],
            json!([]),
            "{listed}"
        );

        // The flood: each message past the quota gets -32029 with a
        // retry hint; a client that keeps going is closed with 1008.
        let mut limited = 0;
        let close = loop {
            send(&mut socket, &tool_call(100 + limited, "whoami", json!({}))).await;
            match next(&mut socket).await {
                Ok(answer) => {
                    assert_eq!(answer["id"], 100 + limited);
                    assert_eq!(answer["error"]["code"], -32029, "{answer}");
                    assert_eq!(answer["error"]["message"], "rate limited");
                    assert!(answer["error"]["data"]["retryAfter"].as_u64().unwrap() >= 1);
                    limited += 1;
                    assert!(limited <= 5, "never closed");
                }
                Err(code) => break code,
            }
        };
        assert_eq!(
            limited, 5,
            "refused messages up to one quota's worth, then closed"
        );
        assert_eq!(close, Some(CloseCode::Policy));

        // The server is unharmed: health, HTTP, and another principal's
        // connection (its own quota) all work; a browser passes its token
        // as a subprotocol beside `mcp`.
        let (status, _, _) = api.call("GET", "/health", None, None).await;
        assert_eq!(status, 200);
        let (status, _, _) = api.call("GET", "/api/auth/me", Some(&jwt), None).await;
        assert_eq!(status, 200);
        let protocols = format!("mcp, bearer.{jwt}");
        let (mut browser, response) = open(
            &server,
            &[
                ("sec-websocket-protocol", &protocols),
                ("origin", "https://app.example"),
            ],
        )
        .await
        .expect("a browser's upgrade");
        assert_eq!(response.headers()["sec-websocket-protocol"], "mcp");
        handshake(&mut browser).await;
        send(&mut browser, &tool_call(2, "whoami", json!({}))).await;
        let me = next(&mut browser).await.unwrap();
        assert_eq!(me["result"]["structuredContent"]["authMethod"], "jwt");
        // Hostile frames: not JSON, not JSON-RPC, binary.
        send(&mut browser, &json!("just a string")).await;
        browser.send(Message::text("{not json")).await.unwrap();
        let parse_error = loop {
            let answer = next(&mut browser).await.unwrap();
            if answer["error"]["code"] == -32700 {
                break answer;
            }
        };
        assert_eq!(parse_error["id"], Value::Null);
        browser
            .send(Message::binary(vec![0u8, 1, 2]))
            .await
            .unwrap();
        assert_eq!(
            next(&mut browser).await.err(),
            Some(Some(CloseCode::Unsupported))
        );
        assert!(!server.logs().contains(&key), "no key in the logs");
        assert!(!server.logs().contains(&jwt), "no token in the logs");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn oversized_and_idle_connections_are_closed() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        let server = TestServer::start(
            &db,
            &[
                SECRET,
                ("MCP_BODY_LIMIT", "4KiB"),
                ("MCP_WS_PING_INTERVAL", "100ms"),
                ("MCP_WS_IDLE_TIMEOUT", "800ms"),
            ],
        );
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        let bearer = format!("Bearer {jwt}");

        // A message over the size limit closes the connection (1009).
        let (mut socket, _) = open(&server, &[("authorization", &bearer)]).await.unwrap();
        let huge = json!({"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"pad": "x".repeat(8 * 1024)}});
        let _ = socket.send(Message::text(huge.to_string())).await;
        assert_eq!(next(&mut socket).await.err(), Some(Some(CloseCode::Size)));

        // A client that answers no ping and says nothing is closed once the
        // idle timeout has passed, and not before. It speaks raw TCP: a
        // WebSocket library would answer the pings as it reads.
        let (mut silent, opened) = silent_upgrade(&server, &bearer).await;
        let (code, after) = close_code_within(&mut silent, std::time::Duration::from_secs(10))
            .await
            .expect("the silent client was closed within 10 s");
        assert_eq!(code, 1001, "going away (idle timeout)");
        let lived = after.duration_since(opened);
        assert!(
            lived >= std::time::Duration::from_millis(700),
            "closed after {lived:?}, before the 800 ms idle timeout"
        );

        // A client that answers pings stays connected past the timeout.
        let (mut alive, _) = open(&server, &[("authorization", &bearer)]).await.unwrap();
        handshake(&mut alive).await;
        let until = tokio::time::Instant::now() + std::time::Duration::from_millis(1600);
        while tokio::time::Instant::now() < until {
            // Reading lets the client answer the server's pings.
            let _ = tokio::time::timeout_at(until, alive.next()).await;
        }
        send(
            &mut alive,
            &json!({"jsonrpc": "2.0", "id": 9, "method": "ping"}),
        )
        .await;
        assert_eq!(next(&mut alive).await.unwrap()["id"], 9);
    }

    /// A WebSocket upgrade by hand on a raw TCP stream (so nothing answers
    /// the server's pings), and when its `101` arrived.
    async fn silent_upgrade(
        server: &TestServer,
        bearer: &str,
    ) -> (tokio::net::TcpStream, tokio::time::Instant) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
        let head = format!(
            "GET /ws HTTP/1.1\r\nhost: {}\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
             sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             authorization: {bearer}\r\n\r\n",
            server.addr
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut response = Vec::new();
        let mut byte = [0u8; 1];
        while !response.ends_with(b"\r\n\r\n") {
            let read =
                tokio::time::timeout(std::time::Duration::from_secs(10), stream.read(&mut byte))
                    .await
                    .expect("an upgrade answer within 10 s")
                    .unwrap();
            assert_eq!(read, 1, "closed during the upgrade: {response:?}");
            response.push(byte[0]);
        }
        let opened = tokio::time::Instant::now();
        let response = String::from_utf8_lossy(&response);
        assert!(response.starts_with("HTTP/1.1 101"), "{response}");
        (stream, opened)
    }

    /// Reads server frames (unmasked) from a raw stream, ignoring pings and
    /// answering nothing, until a close frame: its code and when it came.
    async fn close_code_within(
        stream: &mut tokio::net::TcpStream,
        within: std::time::Duration,
    ) -> Option<(u16, tokio::time::Instant)> {
        use tokio::io::AsyncReadExt;
        let until = tokio::time::Instant::now() + within;
        loop {
            let mut head = [0u8; 2];
            tokio::time::timeout_at(until, stream.read_exact(&mut head))
                .await
                .ok()?
                .ok()?;
            let opcode = head[0] & 0x0f;
            let len = match head[1] & 0x7f {
                126 => {
                    let mut ext = [0u8; 2];
                    stream.read_exact(&mut ext).await.ok()?;
                    u64::from(u16::from_be_bytes(ext))
                }
                127 => {
                    let mut ext = [0u8; 8];
                    stream.read_exact(&mut ext).await.ok()?;
                    u64::from_be_bytes(ext)
                }
                short => u64::from(short),
            };
            let mut payload = vec![0u8; usize::try_from(len).ok()?];
            stream.read_exact(&mut payload).await.ok()?;
            if opcode == 0x8 {
                let code = u16::from_be_bytes([*payload.first()?, *payload.get(1)?]);
                return Some((code, tokio::time::Instant::now()));
            }
        }
    }

    /// The close code that ends `socket` within `within`, answering pings
    /// and skipping messages meanwhile.
    async fn closed_within(socket: &mut Socket, within: std::time::Duration) -> Option<CloseCode> {
        let until = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(until, socket.next()).await {
                Err(_) => panic!("still open after {within:?}"),
                Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f| f.code),
                Ok(Some(Ok(_))) => continue,
                Ok(None | Some(Err(_))) => return None,
            }
        }
    }

    /// A credential checked once at the upgrade used to keep a connection
    /// for its whole life: a token that expires, a key that is revoked and
    /// a user who is deleted must each end it (1008).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_ends_with_its_credentials() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "admin@example.com", "admin-password", "admin");
        create_user(&db, "owner@example.com", "owner-password", "user");
        create_user(&db, "leaver@example.com", "leaver-password", "user");
        let server = TestServer::start(&db, &[SECRET, ("MCP_USER_CACHE_TTL", "200ms")]);
        let api = Api::new(&server);
        let admin = api.login("admin@example.com", "admin-password").await;
        let owner = api.login("owner@example.com", "owner-password").await;
        let (key, key_id) = create_key(&api, &owner, "ws", json!(["mcp"])).await;
        let (keep, _) = create_key(&api, &owner, "kept", json!(["mcp"])).await;

        // Revoked key: closed within the cache TTL; another key stays.
        let (mut revoked, _) = open(&server, &[("x-api-key", &key)]).await.unwrap();
        handshake(&mut revoked).await;
        let (mut kept, _) = open(&server, &[("x-api-key", &keep)]).await.unwrap();
        handshake(&mut kept).await;
        let (status, _, _) = api
            .call("DELETE", &format!("/api/keys/{key_id}"), Some(&owner), None)
            .await;
        assert_eq!(status, 204);
        assert_eq!(
            closed_within(&mut revoked, std::time::Duration::from_secs(3)).await,
            Some(CloseCode::Policy)
        );
        send(
            &mut kept,
            &json!({"jsonrpc": "2.0", "id": 7, "method": "ping"}),
        )
        .await;
        assert_eq!(
            next(&mut kept).await.unwrap()["id"],
            7,
            "an unrevoked key goes on"
        );

        // Deleted user: their token's connection ends.
        let leaver = api.login("leaver@example.com", "leaver-password").await;
        let (_, _, me) = api.call("GET", "/api/auth/me", Some(&leaver), None).await;
        let bearer = format!("Bearer {leaver}");
        let (mut gone, _) = open(&server, &[("authorization", &bearer)]).await.unwrap();
        handshake(&mut gone).await;
        let (status, _, _) = api
            .call(
                "DELETE",
                &format!("/api/users/{}", me["id"].as_str().unwrap()),
                Some(&admin),
                None,
            )
            .await;
        assert_eq!(status, 204);
        assert_eq!(
            closed_within(&mut gone, std::time::Duration::from_secs(3)).await,
            Some(CloseCode::Policy)
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_closes_at_the_tokens_expiry() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        let server = TestServer::start(&db, &[SECRET, ("MCP_JWT_TTL", "1s")]);
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        let bearer = format!("Bearer {jwt}");
        let (mut socket, _) = open(&server, &[("authorization", &bearer)]).await.unwrap();
        // The token's exp is at most a second away (the leeway would let a
        // request through for 30 s more; a connection ends at exp itself).
        assert_eq!(
            closed_within(&mut socket, std::time::Duration::from_secs(3)).await,
            Some(CloseCode::Policy)
        );
    }

    /// Frames that are not JSON-RPC messages cost the server work too: they
    /// are metered, and a flood of them closes the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_meters_every_frame() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        let server = TestServer::start(&db, &[SECRET, ("MCP_RATE_LIMIT_WS", "3/60s")]);
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        let (garbage_key, _) = create_key(&api, &jwt, "garbage", json!(["mcp"])).await;
        let (pings_key, _) = create_key(&api, &jwt, "pings", json!(["mcp"])).await;

        let (mut garbage, _) = open(&server, &[("x-api-key", &garbage_key)]).await.unwrap();
        for _ in 0..20 {
            if garbage.send(Message::text("{not json")).await.is_err() {
                break;
            }
        }
        assert_eq!(
            closed_within(&mut garbage, std::time::Duration::from_secs(5)).await,
            Some(CloseCode::Policy)
        );

        let (mut pings, _) = open(&server, &[("x-api-key", &pings_key)]).await.unwrap();
        for _ in 0..20 {
            if pings.send(Message::Ping(vec![1].into())).await.is_err() {
                break;
            }
        }
        assert_eq!(
            closed_within(&mut pings, std::time::Duration::from_secs(5)).await,
            Some(CloseCode::Policy)
        );
    }

    /// A client that asks for a lot and never reads used to park the
    /// connection loop in a write forever: no recheck, no expiry, no idle
    /// close, its per-user place held. A write that cannot complete within
    /// the idle timeout now drops the connection.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_drops_a_client_that_stops_reading() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        let server = TestServer::start(
            &db,
            &[
                SECRET,
                ("MCP_RATE_LIMIT_API", "100000/60s"),
                ("MCP_WS_IDLE_TIMEOUT", "500ms"),
                ("MCP_WS_MAX_CONNECTIONS_PER_PRINCIPAL", "1"),
            ],
        );
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        // 200 agents of 16 KB metadata: each list_agents answer is ~3 MB.
        let filler = "x".repeat(16 * 1024 - 64);
        // In batches: more credentialed requests in flight from one address
        // than the auth-failures quota would be refused.
        for batch in 0..10 {
            let creates = (0..20).map(|i| {
                let body = json!({"name": format!("a{batch}-{i}"), "type": "t", "metadata": {"pad": filler}});
                let (api, jwt) = (&api, &jwt);
                async move { api.call("POST", "/api/agents", Some(jwt), Some(body)).await.0 }
            });
            for status in futures::future::join_all(creates).await {
                assert_eq!(status, 201);
            }
        }
        let (key, _) = create_key(&api, &jwt, "stall", json!(["mcp", "agents:read"])).await;
        let (mut stalled, _) = open(&server, &[("x-api-key", &key)]).await.unwrap();
        handshake(&mut stalled).await;
        // Far more than loopback's socket buffers hold; then read nothing.
        for id in 0..10 {
            send(&mut stalled, &tool_call(10 + id, "list_agents", json!({}))).await;
        }
        // The place is freed once the server gives up on the writes.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(8);
        let bearer = format!("Bearer {jwt}");
        loop {
            match open(&server, &[("authorization", &bearer)]).await {
                Ok(_) => break,
                Err((429, _)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(refusal) => panic!("the stalled connection kept its place: {refusal:?}"),
            }
        }
        drop(stalled);
    }

    /// One user cannot hold the server's connections, whichever of their
    /// keys and tokens they use.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn websocket_connections_per_user_are_capped() {
        let db = TestDb::new(common::Backend::Sqlite).await;
        create_user(&db, "owner@example.com", "owner-password", "user");
        create_user(&db, "other@example.com", "other-password", "user");
        let server = TestServer::start(
            &db,
            &[SECRET, ("MCP_WS_MAX_CONNECTIONS_PER_PRINCIPAL", "2")],
        );
        let api = Api::new(&server);
        let jwt = api.login("owner@example.com", "owner-password").await;
        let other = api.login("other@example.com", "other-password").await;
        let (one, _) = create_key(&api, &jwt, "one", json!(["mcp"])).await;
        let (two, _) = create_key(&api, &jwt, "two", json!(["mcp"])).await;
        let bearer = format!("Bearer {jwt}");

        let (mut first, _) = open(&server, &[("x-api-key", &one)]).await.unwrap();
        let (_second, _) = open(&server, &[("x-api-key", &two)]).await.unwrap();
        let (status, body) = refused(&server, &[("authorization", &bearer)]).await;
        assert_eq!((status, body["code"].as_str()), (429, Some("rate_limited")));
        // Another user is not affected.
        let other_bearer = format!("Bearer {other}");
        let (_theirs, _) = open(&server, &[("authorization", &other_bearer)])
            .await
            .unwrap();
        // A closed connection frees its place.
        first.close(None).await.unwrap();
        let _ = closed_within(&mut first, std::time::Duration::from_secs(3)).await;
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match open(&server, &[("authorization", &bearer)]).await {
                Ok(_) => break,
                Err((429, _)) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                Err(refusal) => panic!("the place was not freed: {refusal:?}"),
            }
        }
    }
}

// ---- /metrics ---------------------------------------------------------------

/// The sum of the samples of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            let matches = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            matches.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn scrape(api: &Api, credential: (&str, &str)) -> (u16, String) {
    let response = api
        .client
        .get(format!("{}/metrics", api.base))
        .header(credential.0, credential.1)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap())
}

/// Scrapes until `done` holds of the text (at most 5 s); returns the last.
async fn scrape_until(api: &Api, credential: (&str, &str), done: impl Fn(&str) -> bool) -> String {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let (status, text) = scrape(api, credential).await;
        assert_eq!(status, 200, "{text}");
        if done(&text) || tokio::time::Instant::now() > deadline {
            return text;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_move_with_traffic() {
    let db = TestDb::new(common::Backend::Sqlite).await;
    create_user(&db, "admin@example.com", "admin-password", "admin");
    create_user(&db, "user@example.com", "user-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let admin = api.login("admin@example.com", "admin-password").await;
    let user = api.login("user@example.com", "user-password").await;
    let admin_bearer = format!("Bearer {admin}");
    let admin_auth = ("authorization", admin_bearer.as_str());

    // Who may read them: admin, or an admin's key with scope `metrics`.
    let (status, body) = scrape(&api, ("authorization", &format!("Bearer {user}"))).await;
    assert_eq!(status, 403, "{body}");
    let (status, _) = scrape(&api, ("x-api-key", "mcp_nothing")).await;
    assert_eq!(status, 401);
    let (metrics_key, _) = create_key(&api, &admin, "scraper", json!(["metrics"])).await;
    let (mcp_key, _) = create_key(&api, &admin, "other", json!(["mcp"])).await;
    let (status, _) = scrape(&api, ("x-api-key", &mcp_key)).await;
    assert_eq!(status, 403, "an admin's key without scope metrics");
    let (status, before) = scrape(&api, ("x-api-key", &metrics_key)).await;
    assert_eq!(status, 200, "{before}");

    let me = [
        ("route", "/api/auth/me"),
        ("method", "GET"),
        ("status", "200"),
    ];
    let requests = sample(&before, "http_requests_total", &me);
    let latency = sample(&before, "http_request_duration_seconds_count", &me);
    let invalid = sample(&before, "auth_failures_total", &[("code", "invalid_token")]);
    let allowed = sample(
        &before,
        "ratelimit_decisions_total",
        &[("policy", "api"), ("outcome", "allowed")],
    );
    let (hits, misses) = (
        sample(&before, "apikey_cache_hits_total", &[]),
        sample(&before, "apikey_cache_misses_total", &[]),
    );

    let (fresh, _) = create_key(&api, &admin, "fresh", json!(["keys:read"])).await;
    for _ in 0..2 {
        let response = api
            .client
            .get(format!("{}/api/keys", api.base))
            .header("x-api-key", &fresh)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }
    for _ in 0..3 {
        let (status, _, _) = api.call("GET", "/api/auth/me", Some(&user), None).await;
        assert_eq!(status, 200);
    }
    let (status, _, _) = api
        .call("GET", "/api/auth/me", Some("not-a-token"), None)
        .await;
    assert_eq!(status, 401);
    let (ws, _) = ws::open(&server, &[("x-api-key", &mcp_key)]).await.unwrap();
    // The connection is counted once the server has taken it over, just
    // after the 101 reached the client.
    let after = scrape_until(&api, ("x-api-key", &metrics_key), |text| {
        sample(text, "mcp_ws_connections", &[]) == 1.0
    })
    .await;

    assert_eq!(sample(&after, "http_requests_total", &me), requests + 3.0);
    assert_eq!(
        sample(&after, "http_request_duration_seconds_count", &me),
        latency + 3.0
    );
    assert_eq!(
        sample(&after, "auth_failures_total", &[("code", "invalid_token")]),
        invalid + 1.0
    );
    assert!(
        sample(
            &after,
            "ratelimit_decisions_total",
            &[("policy", "api"), ("outcome", "allowed")]
        ) >= allowed + 3.0
    );
    // The scrape's own key was looked up: once from the store, then cached.
    assert!(sample(&after, "apikey_cache_hits_total", &[]) > hits);
    // The fresh key: its first use went to the store.
    assert!(sample(&after, "apikey_cache_misses_total", &[]) >= misses + 1.0);
    assert_eq!(sample(&after, "mcp_ws_connections", &[]), 1.0);
    assert!(sample(&after, "db_pool_max_connections", &[("database", "sqlite")]) >= 1.0);
    assert!(after.contains("db_pool_connections{"));
    assert!(after.contains("http_request_duration_seconds_bucket{"));
    // Route templates, never raw paths: an unknown path is "unmatched".
    let (status, _, _) = api.call("GET", "/no/such/path/12345", None, None).await;
    assert_eq!(status, 404);
    drop(ws);
    let last = scrape_until(&api, admin_auth, |text| {
        sample(text, "mcp_ws_connections", &[]) == 0.0
    })
    .await;
    assert_eq!(
        sample(&last, "mcp_ws_connections", &[]),
        0.0,
        "the closed connection is gone"
    );
    assert!(!last.contains("12345"));
    assert!(
        sample(
            &last,
            "http_requests_total",
            &[("route", "unmatched"), ("status", "404")]
        ) >= 1.0
    );
    assert!(!last.contains(&admin) && !last.contains(&metrics_key));
}

/// One client making sequential `tools/call`s (2026-07-28, stateless) on
/// one kept-alive connection is answered in a few milliseconds each, not
/// the 40 ms of Nagle's algorithm meeting a delayed ACK on a streamed
/// answer (accepted sockets get `TCP_NODELAY`). The median of twenty calls
/// is asserted, under half of those 40 ms, so one slow call on a loaded
/// machine does not decide it; the load bench measures the real figure
/// (`benches/load`, `mcp_call_seq`).
#[tokio::test]
async fn sequential_tool_calls_do_not_wait_for_acks() {
    let db = TestDb::new(common::Backend::Sqlite).await;
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (key, _) = create_key(&api, &jwt, "seq", json!(["mcp"])).await;
    let headers = [
        ("x-api-key", key.as_str()),
        ("mcp-protocol-version", "2026-07-28"),
        ("mcp-method", "tools/call"),
        ("mcp-name", "whoami"),
    ];
    let mut took = Vec::new();
    for id in 0..21 {
        let started = std::time::Instant::now();
        let (status, _, body) =
            post(&api, &headers, stateless_tool_call(id, "whoami", json!({}))).await;
        // The first call opens the connection; it is not counted.
        if id > 0 {
            took.push(started.elapsed());
        }
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            body["result"]["structuredContent"]["scopes"],
            json!(["mcp"])
        );
    }
    took.sort();
    let median = took[took.len() / 2];
    assert!(
        median < std::time::Duration::from_millis(20),
        "median tools/call round trip {median:?} (all: {took:?})"
    );
}

/// The operator's policy, end to end on both transports: a caller lists
/// only the tools it may call, a refusal names every scope the call needs,
/// a parent scope grants its children, and a tool's quota from the TOML
/// file stops the fourth call while other tools still work.
async fn operators_policy_scopes_hierarchy_and_quotas(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    create_user(&db, "socket@example.com", "socket-password", "user");
    create_user(&db, "root@example.com", "root-password", "admin");
    let file = db.dir.path().join("policy.toml");
    std::fs::write(&file, "[mcp.tools.\"whoami\"]\nquota = \"3/60s\"\n").unwrap();
    let server = TestServer::start(&db, &[SECRET, ("MCP_CONFIG", file.to_str().unwrap())]);
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (reader, _) = create_key(&api, &jwt, "reader", json!(["mcp", "agents:read"])).await;
    let (parent, _) = create_key(&api, &jwt, "parent", json!(["mcp", "agents"])).await;

    // `mcp agents:read`: the read tools only; a write tool is refused with
    // every scope it needs.
    let client = connect(
        &server,
        Credential::ApiKey(&reader),
        ProtocolVersion::LATEST_WITH_INITIALIZE,
    )
    .await
    .unwrap();
    assert_eq!(
        tool_names(&client).await,
        ["get_agent", "list_agents", "whoami"]
    );
    let request = CallToolRequestParams::new("create_agent").with_arguments(
        json!({"name": "a", "type": "b"})
            .as_object()
            .cloned()
            .unwrap(),
    );
    let error = client.call_tool(request).await.unwrap_err();
    let (scope, challenge) = refused_for_scope(&error);
    assert_eq!(scope.as_deref(), Some("mcp agents:write"), "{challenge}");
    let (status, _, body) = post(
        &api,
        &[("x-api-key", &reader)],
        stateless_tool_call(2, "create_agent", json!({"name": "a", "type": "b"})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("insufficient_scope"))
    );
    assert_eq!(
        body["requiredScopes"],
        json!(["mcp", "agents:write"]),
        "{body}"
    );
    client.cancel().await.unwrap();

    // `mcp agents`: the parent grants both.
    let client = connect(
        &server,
        Credential::ApiKey(&parent),
        ProtocolVersion::LATEST,
    )
    .await
    .unwrap();
    assert_eq!(tool_names(&client).await, TOOLS);
    let created = call(
        &client,
        "create_agent",
        json!({"name": "a1", "type": "bot"}),
    )
    .await
    .unwrap();
    assert_eq!(created["name"], "a1", "{created}");
    call(&client, "list_agents", json!({})).await.unwrap();

    // `whoami` has a quota of 3 per minute, per caller and tool.
    for _ in 0..3 {
        call(&client, "whoami", json!({})).await.unwrap();
    }
    let (status, headers, body) = post(
        &api,
        &[("x-api-key", &parent)],
        stateless_tool_call(9, "whoami", json!({})),
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("rate_limited")),
        "{body}"
    );
    assert_eq!(body["policy"], "tool:whoami", "{body}");
    assert!(headers.contains_key("retry-after"));
    // The tool's quota, not the api limit's, in the rate-limit headers.
    assert_eq!(headers["ratelimit-limit"], "3", "{headers:?}");
    assert_eq!(headers["ratelimit-remaining"], "0", "{headers:?}");
    call(&client, "list_agents", json!({})).await.unwrap();
    client.cancel().await.unwrap();

    // The same over WebSocket, for another user (the quota is theirs).
    let other = api.login("socket@example.com", "socket-password").await;
    let (ws_reader, _) = create_key(&api, &other, "ws-reader", json!(["mcp", "agents:read"])).await;
    let (mut socket, _) = ws::open(&server, &[("x-api-key", &ws_reader)])
        .await
        .unwrap();
    ws::handshake(&mut socket).await;
    ws::send(
        &mut socket,
        &json!({"jsonrpc": "2.0", "id": 2, "method": "tools/list"}),
    )
    .await;
    let listed = ws::next(&mut socket).await.unwrap();
    let mut names: Vec<&str> = listed["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|tool| tool["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["get_agent", "list_agents", "whoami"], "{listed}");
    ws::send(
        &mut socket,
        &tool_call(3, "create_agent", json!({"name": "a", "type": "b"})),
    )
    .await;
    let refused = ws::next(&mut socket).await.unwrap();
    assert_eq!(
        refused["error"]["data"]["code"], "insufficient_scope",
        "{refused}"
    );
    assert_eq!(
        refused["error"]["data"]["requiredScopes"],
        json!(["mcp", "agents:write"])
    );
    for id in 4..7 {
        ws::send(&mut socket, &tool_call(id, "whoami", json!({}))).await;
        let answer = ws::next(&mut socket).await.unwrap();
        assert!(answer["result"].is_object(), "{answer}");
    }
    ws::send(&mut socket, &tool_call(7, "whoami", json!({}))).await;
    let limited = ws::next(&mut socket).await.unwrap();
    assert_eq!(limited["error"]["code"], -32029, "{limited}");
    assert_eq!(limited["error"]["data"]["policy"], "tool:whoami");
    ws::send(&mut socket, &tool_call(8, "list_agents", json!({}))).await;
    let listed = ws::next(&mut socket).await.unwrap();
    assert!(listed["result"].is_object(), "{listed}");

    // The quota decisions are counted by policy.
    let admin = api.login("root@example.com", "root-password").await;
    let (status, text) = scrape(&api, ("authorization", &format!("Bearer {admin}"))).await;
    assert_eq!(status, 200);
    assert!(
        text.lines()
            .any(|l| l.starts_with("ratelimit_decisions_total{")
                && l.contains("policy=\"tool:whoami\"")
                && l.contains("outcome=\"limited\"")),
        "{text}"
    );
}
both_databases!(
    operators_policy_scopes_hierarchy_and_quotas,
    operators_policy_scopes_hierarchy_and_quotas
);

/// A policy naming an unknown scope, or with a malformed quota, stops the
/// server at start with one line naming the entry.
#[test]
fn a_bad_policy_stops_start_up_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected) in [
        (
            "[mcp.tools.\"create_agent\"]\nscopes = [\"agentz\"]\n",
            "mcp.tools.\"create_agent\": unknown scope `agentz`",
        ),
        (
            "[mcp.tools.\"whoami\"]\nquota = \"three a minute\"\n",
            "mcp.tools.\"whoami\": quota \"three a minute\"",
        ),
        (
            "[mcp.tools.\"whoami\"]\nscope = [\"mcp\"]\n",
            "[mcp]: unknown field `scope`",
        ),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let (code, _, stderr) = common::run_binary(
            dir.path(),
            &["migrate"],
            &[("MCP_CONFIG", file.to_str().unwrap())],
        );
        assert_eq!(code, Some(2), "{stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{stderr}");
        assert!(lines[0].contains(expected), "{stderr}");
    }
}

/// A scripted session leaves its trail, in order, each event with the
/// request id of its response, and none of the session's secrets.
async fn the_audit_trail_of_a_session(db: TestDb) {
    create_user(&db, "owner@example.com", "owner-password", "user");
    create_user(&db, "root@example.com", "root-password", "admin");
    let server = TestServer::start(&db, &[SECRET]);
    let api = Api::new(&server);
    let id =
        |headers: &reqwest::header::HeaderMap| headers["x-request-id"].to_str().unwrap().to_owned();
    let mut expected: Vec<(&str, &str, String)> = Vec::new();

    let login = json!({"email": "owner@example.com", "password": "owner-password"});
    let (status, headers, body) = api.call("POST", "/api/auth/login", None, Some(login)).await;
    assert_eq!(status, 200, "{body}");
    let jwt = body["accessToken"].as_str().unwrap().to_owned();
    expected.push(("auth.login", "success", id(&headers)));

    let wrong = json!({"email": "owner@example.com", "password": "not-the-password"});
    let (status, headers, _) = api.call("POST", "/api/auth/login", None, Some(wrong)).await;
    assert_eq!(status, 401);
    expected.push(("auth.login", "denied", id(&headers)));

    let create = json!({"name": "agent-key", "scopes": ["mcp", "agents:read"]});
    let (status, headers, created) = api
        .call("POST", "/api/keys", Some(&jwt), Some(create))
        .await;
    assert_eq!(status, 201, "{created}");
    let first_secret = created["key"].as_str().unwrap().to_owned();
    let key_id = created["id"].as_str().unwrap().to_owned();
    expected.push(("key.created", "success", id(&headers)));

    let path = format!("/api/keys/{key_id}/regenerate");
    let (status, headers, regenerated) = api.call("POST", &path, Some(&jwt), None).await;
    assert_eq!(status, 200, "{regenerated}");
    let key = regenerated["key"].as_str().unwrap().to_owned();
    expected.push(("key.regenerated", "success", id(&headers)));

    let create_agent = stateless_tool_call(1, "create_agent", json!({"name": "a", "type": "b"}));
    let (status, headers, _) = post(&api, &[("x-api-key", &key)], create_agent).await;
    assert_eq!(status, 403);
    expected.push(("authz.denied", "denied", id(&headers)));

    for (n, tool) in [(2, "whoami"), (3, "list_agents")] {
        let call = stateless_tool_call(n, tool, json!({"limit": 5}));
        let stateless = [
            ("x-api-key", key.as_str()),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", tool),
        ];
        let (status, headers, answer) = post(&api, &stateless, call).await;
        assert_eq!(status, 200, "{answer}");
        assert!(answer["result"].is_object(), "{answer}");
        expected.push(("mcp.tool_call", "success", id(&headers)));
    }

    let (status, headers, _) = api
        .call("DELETE", &format!("/api/keys/{key_id}"), Some(&jwt), None)
        .await;
    assert_eq!(status, 204);
    expected.push(("key.deleted", "success", id(&headers)));

    // Read back by an admin, oldest first, once the writer has written.
    let admin = api.login("root@example.com", "root-password").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (items, text) = loop {
        let response = api
            .client
            .get(format!("{}/api/audit?limit=200", api.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        let page: Value = serde_json::from_str(&text).unwrap();
        let items = page["items"].as_array().unwrap().clone();
        if items.len() > expected.len() || std::time::Instant::now() > deadline {
            break (items, text);
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let seen: Vec<(&str, &str, String)> = items
        .iter()
        .take(expected.len())
        .map(|event| {
            (
                event["type"].as_str().unwrap(),
                event["outcome"].as_str().unwrap(),
                event["requestId"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(seen, expected, "{text}");

    let owner = items[0]["actor"]["subject"].as_str().unwrap().to_owned();
    let key_events = &items[2..8];
    for event in &items[4..7] {
        // The API key's calls: actor with the key id, the client address.
        assert_eq!(event["actor"]["subject"], owner.as_str(), "{event}");
        assert_eq!(event["actor"]["keyId"], key_id.as_str(), "{event}");
        assert_eq!(event["ip"], "127.0.0.1", "{event}");
    }
    assert!(key_events.iter().all(|e| e["id"].is_string()));
    assert_eq!(items[1]["actor"], Value::Null);
    assert_eq!(items[2]["target"], json!({"kind": "key", "id": key_id}));
    assert_eq!(
        items[4]["detail"]["code"], "insufficient_scope",
        "{}",
        items[4]
    );
    assert_eq!(items[5]["detail"]["tool"], "whoami");
    assert_eq!(items[6]["detail"]["argumentNames"], json!(["limit"]));
    assert!(items[6]["detail"]["latencyMs"].is_u64());

    // Filters: by type and by subject.
    let (status, _, page) = api
        .call("GET", "/api/audit?type=mcp.tool_call", Some(&admin), None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(page["items"].as_array().unwrap().len(), 2, "{page}");
    let (status, _, page) = api
        .call(
            "GET",
            "/api/audit?since=yesterday&limit=0",
            Some(&admin),
            None,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(page["errors"].as_array().unwrap().len(), 2, "{page}");
    // Not for users.
    let (status, _, _) = api.call("GET", "/api/audit", Some(&jwt), None).await;
    assert_eq!(status, 403);

    for secret in [
        "owner-password",
        "not-the-password",
        "root-password",
        jwt.as_str(),
        first_secret.as_str(),
        key.as_str(),
        &key[..12],
    ] {
        assert!(!text.contains(secret), "a secret is in the audit trail");
    }

    // The command line reads the same trail.
    let (code, stdout, stderr) = common::run_binary(
        db.dir.path(),
        &["audit", "list", "--type", "key.deleted"],
        &[("DATABASE_URL", &db.url())],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{stdout}");
    assert_eq!(lines[0]["target"]["id"], key_id.as_str());
}
both_databases!(the_audit_trail_of_a_session, the_audit_trail_of_a_session);

/// With `OTEL_EXPORTER_OTLP_ENDPOINT` set, a tool call's span reaches the
/// OTLP receiver (HTTP, JSON) this test runs, in the trace the client's
/// `traceparent` named and under the client's span, with the request id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_calls_span_reaches_the_otlp_receiver_in_the_clients_trace() {
    use std::sync::{Arc, Mutex};
    let received: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = received.clone();
    let receiver = axum::Router::new().route(
        "/v1/traces",
        axum::routing::post(move |body: bytes::Bytes| {
            let sink = sink.clone();
            async move {
                if let Ok(json) = serde_json::from_slice::<Value>(&body) {
                    sink.lock().unwrap().push(json);
                }
                "{}"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });

    let db = TestDb::new(common::Backend::Sqlite).await;
    create_user(&db, "owner@example.com", "owner-password", "user");
    let server = TestServer::start(
        &db,
        &[
            SECRET,
            ("OTEL_EXPORTER_OTLP_ENDPOINT", &collector),
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    );
    let api = Api::new(&server);
    let jwt = api.login("owner@example.com", "owner-password").await;
    let (key, _) = create_key(&api, &jwt, "traced", json!(["mcp"])).await;
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let client_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{trace_id}-{client_span}-01");
    let (status, headers, answer) = post(
        &api,
        &[
            ("x-api-key", &key),
            ("traceparent", &traceparent),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        stateless_tool_call(1, "whoami", json!({})),
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let request_id = headers["x-request-id"].to_str().unwrap().to_owned();

    let spans = |name: &str| -> Vec<Value> {
        received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|export| {
                export["resourceSpans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|resource| {
                resource["scopeSpans"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .flat_map(|scope| scope["spans"].as_array().cloned().unwrap_or_default())
            .filter(|span| span["name"] == name)
            .collect()
    };
    // The request's span ends after its response is sent, so it may come
    // in a later export than the tool call's: wait for both of this trace.
    let in_trace =
        |span: &Value| span["traceId"].as_str().map(str::to_lowercase).as_deref() == Some(trace_id);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !(spans("tool_call").iter().any(in_trace) && spans("request").iter().any(in_trace))
        && std::time::Instant::now() < deadline
    {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let tool: Vec<Value> = spans("tool_call").into_iter().filter(in_trace).collect();
    let tool = tool
        .first()
        .unwrap_or_else(|| panic!("no tool_call span: {:?}", received.lock().unwrap()));
    assert_eq!(
        tool["traceId"].as_str().map(str::to_lowercase).as_deref(),
        Some(trace_id),
        "{tool}"
    );
    assert_eq!(
        tool["parentSpanId"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some(client_span),
        "{tool}"
    );
    let attribute = |span: &Value, key: &str| -> Option<String> {
        span["attributes"]
            .as_array()?
            .iter()
            .find(|a| a["key"] == key)?["value"]["stringValue"]
            .as_str()
            .map(str::to_owned)
    };
    assert_eq!(attribute(tool, "tool").as_deref(), Some("whoami"), "{tool}");
    assert_eq!(
        attribute(tool, "request_id").as_deref(),
        Some(request_id.as_str()),
        "{tool}"
    );
    // The HTTP request's span is in the same trace.
    assert!(
        spans("request").iter().any(|span| span["traceId"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref()
            == Some(trace_id)),
        "{:?}",
        spans("request")
    );

    // A message's `_meta.traceparent` wins over the header's.
    let meta_trace = "0af7651916cd43dd8448eb211c80319c";
    let meta_span = "b7ad6b7169203331";
    let mut call = stateless_tool_call(2, "whoami", json!({}));
    call["params"]["_meta"]["traceparent"] = json!(format!("00-{meta_trace}-{meta_span}-01"));
    let (status, _, answer) = post(
        &api,
        &[
            ("x-api-key", &key),
            ("traceparent", &traceparent),
            ("mcp-protocol-version", "2026-07-28"),
            ("mcp-method", "tools/call"),
            ("mcp-name", "whoami"),
        ],
        call,
    )
    .await;
    assert_eq!(status, 200, "{answer}");
    let in_meta_trace = |span: &Value| {
        span["traceId"].as_str().map(str::to_lowercase).as_deref() == Some(meta_trace)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !spans("tool_call").iter().any(in_meta_trace) && std::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let continued = spans("tool_call")
        .into_iter()
        .find(in_meta_trace)
        .expect("a span in the _meta trace");
    assert_eq!(
        continued["parentSpanId"]
            .as_str()
            .map(str::to_lowercase)
            .as_deref(),
        Some(meta_span)
    );
}

/// A lock-out is one event, by the failure that caused it; what happened
/// just before a SIGTERM is on record after the stop; old events are purged
/// by time, on both databases.
async fn lockouts_shutdown_and_retention_of_the_audit_trail(db: TestDb) {
    let server = TestServer::start(&db, &[SECRET, ("MCP_RATE_LIMIT_AUTH_FAILURES", "2/60s")]);
    let api = Api::new(&server);
    let mut failures = Vec::new();
    for _ in 0..3 {
        let (status, headers, _) = api
            .call("GET", "/api/auth/me", Some("not-a-token"), None)
            .await;
        failures.push((status, headers["x-request-id"].to_str().unwrap().to_owned()));
    }
    let statuses: Vec<u16> = failures.iter().map(|(s, _)| *s).collect();
    assert_eq!(statuses, [401, 401, 429]);
    // Stopped at once: the queue is written before the process exits.
    let (status, logs) = server.terminate();
    assert!(status.success(), "{logs}");
    let (code, stdout, stderr) = common::run_binary(
        db.dir.path(),
        &["audit", "list", "--type", "auth.lockout"],
        &[("DATABASE_URL", &db.url())],
    );
    assert_eq!(code, Some(0), "{stderr}");
    let lockouts: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lockouts.len(), 1, "{stdout}");
    assert_eq!(lockouts[0]["requestId"], failures[1].1.as_str(), "{stdout}");
    assert_eq!(lockouts[0]["ip"], "127.0.0.1");
    assert_eq!(lockouts[0]["outcome"], "denied");

    // Retention: events before the bound go, the others stay.
    use mcp_audit::{AuditSink, Event, Outcome};
    let direct = db.direct().await;
    let day = std::time::Duration::from_secs(86_400);
    let now = std::time::SystemTime::now();
    let old = Event::new("test.old", Outcome::Success, now - 100 * day);
    let recent = Event::new("test.recent", Outcome::Success, now - day);
    mcp_server::audit::DbSink(direct.clone())
        .write(&[old, recent])
        .await
        .unwrap();
    let purged = mcp_server::audit::purge(&direct, now - 90 * day)
        .await
        .unwrap();
    assert_eq!(purged, 1);
    let filter = mcp_server::audit::Filter {
        kind: Some("test.recent".to_owned()),
        ..Default::default()
    };
    let page = mcp_server::audit::list(&direct, &filter, 10, None)
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}
both_databases!(
    lockouts_shutdown_and_retention_of_the_audit_trail,
    lockouts_shutdown_and_retention_of_the_audit_trail
);
