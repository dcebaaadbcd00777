//! The endpoints over HTTP (in process, `oneshot`): formats, status codes,
//! `no-store`, and hostile bodies answered in OAuth's error format.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use mcp_auth::{SigningKey, TokenIssuer};
use mcp_oauth::{
    AuthorizationParams, AuthorizationServer, MemoryStore, Settings, TokenEvent, router,
};
use serde_json::Value;
use tower::ServiceExt;

const ISSUER: &str = "https://mcp.example.com";
const RESOURCE: &str = "https://mcp.example.com/mcp";
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn server() -> AuthorizationServer {
    let mut settings = Settings::new(ISSUER, RESOURCE);
    settings.scopes = vec!["mcp".into()];
    let tokens = TokenIssuer::new(SigningKey::hmac(&[3; 32]).unwrap(), ISSUER, RESOURCE);
    AuthorizationServer::new(MemoryStore::new(), tokens, settings)
}

async fn call(app: &axum::Router, request: Request<Body>) -> (StatusCode, http::HeaderMap, Value) {
    let response: Response<Body> = app.clone().oneshot(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let bytes = body.collect().await.unwrap().to_bytes();
    let json = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (parts.status, parts.headers, json)
}

fn form(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap()
}

#[tokio::test]
async fn metadata_registration_token_refresh_and_revocation_over_http() {
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    let server = server().on_event(move |e: &TokenEvent| seen.lock().unwrap().push(e.clone()));
    let app: axum::Router = router(server.clone(), true);

    let (status, _, metadata) = call(
        &app,
        Request::get("/.well-known/oauth-authorization-server")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(metadata["issuer"], ISSUER);
    assert_eq!(
        metadata["registration_endpoint"],
        format!("{ISSUER}/oauth/register")
    );
    assert_eq!(
        metadata["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    assert_eq!(
        metadata["authorization_response_iss_parameter_supported"],
        true
    );

    let (status, headers, client) = call(
        &app,
        Request::post("/oauth/register")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"redirect_uris":["http://127.0.0.1/cb"],"client_name":"CLI","scope":"ignored"}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    assert_eq!(headers["cache-control"], "no-store");
    let client_id = client["client_id"].as_str().unwrap().to_owned();
    assert!(client.get("client_secret").is_none(), "public by default");

    let request = server
        .check_authorization(&AuthorizationParams {
            response_type: Some("code".into()),
            client_id: Some(client_id.clone()),
            redirect_uri: Some("http://127.0.0.1:4000/cb".into()),
            code_challenge: Some(CHALLENGE.into()),
            code_challenge_method: Some("S256".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let url = server
        .approve(&request, "user-9", &request.scopes)
        .await
        .unwrap();
    let code = url
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();

    let exchange = format!(
        "grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2F127.0.0.1%3A4000%2Fcb&code_verifier={VERIFIER}&client_id={client_id}"
    );
    let (status, headers, tokens) = call(&app, form("/oauth/token", &exchange)).await;
    assert_eq!(status, 200, "{tokens}");
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(tokens["token_type"], "Bearer");
    assert_eq!(tokens["scope"], "mcp");
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();

    let (status, _, next) = call(
        &app,
        form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={refresh}&client_id={client_id}"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let next = next["refresh_token"].as_str().unwrap().to_owned();

    let (status, _, _) = call(
        &app,
        form(
            "/oauth/revoke",
            &format!("token={next}&client_id={client_id}"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, error) = call(
        &app,
        form(
            "/oauth/token",
            &format!("grant_type=refresh_token&refresh_token={next}&client_id={client_id}"),
        ),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(error["error"], "invalid_grant");

    let events = events.lock().unwrap();
    assert!(matches!(events[0], TokenEvent::Granted(_)));
    assert!(matches!(events[1], TokenEvent::Refreshed(_)));
    assert!(matches!(events[2], TokenEvent::Revoked(_)));
    assert_eq!(events.len(), 3);
}

#[tokio::test]
async fn hostile_bodies_get_oauth_errors_never_a_500() {
    let app: axum::Router = router(server(), false);
    let cases: Vec<(Request<Body>, StatusCode, &str)> = vec![
        (
            Request::post("/oauth/token")
                .header("content-type", "application/json")
                .body(Body::from(r#"{"grant_type":"authorization_code"}"#))
                .unwrap(),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            form(
                "/oauth/token",
                "client_id=a&client_id=b&grant_type=refresh_token",
            ),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        // Broken escapes decode as the text they are: then no client.
        (
            form("/oauth/token", "%ZZ=%&grant_type=%"),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            Request::post("/oauth/token")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", "Basic !!!not-base64")
                .body(Body::from("grant_type=refresh_token"))
                .unwrap(),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            form(
                "/oauth/token",
                &format!("client_id={}", "x".repeat(100_000)),
            ),
            StatusCode::UNAUTHORIZED,
            "invalid_client",
        ),
        (
            form("/oauth/revoke", "client_id=unknown"),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (request, status, code) in cases {
        let (got, headers, body) = call(&app, request).await;
        assert_eq!(got, status, "{body}");
        assert_eq!(body["error"], code, "{body}");
        assert_eq!(headers["cache-control"], "no-store");
        if got == StatusCode::UNAUTHORIZED {
            assert!(headers.contains_key("www-authenticate"));
        }
        // The description never echoes what was sent.
        assert!(!body["error_description"].as_str().unwrap().contains("xxxx"));
    }
    // Registration is off: no route.
    let (status, _, _) = call(
        &app,
        Request::post("/oauth/register")
            .header("content-type", "application/json")
            .body(Body::from("{}"))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn confidential_clients_authenticate_over_http_by_basic_or_post() {
    let server = server();
    let app: axum::Router = router(server.clone(), true);
    let (status, _, client) = call(
        &app,
        Request::post("/oauth/register")
            .header("content-type", "application/json")
            .body(Body::from(
                r#"{"redirect_uris":["http://127.0.0.1/cb"],"token_endpoint_auth_method":"client_secret_basic"}"#,
            ))
            .unwrap(),
    )
    .await;
    assert_eq!(status, 201);
    let id = client["client_id"].as_str().unwrap().to_owned();
    let secret = client["client_secret"].as_str().unwrap().to_owned();
    let code = |server: AuthorizationServer, id: String| async move {
        let request = server
            .check_authorization(&AuthorizationParams {
                response_type: Some("code".into()),
                client_id: Some(id),
                code_challenge: Some(CHALLENGE.into()),
                code_challenge_method: Some("S256".into()),
                ..Default::default()
            })
            .await
            .unwrap();
        let url = server
            .approve(&request, "user-9", &request.scopes)
            .await
            .unwrap();
        url.query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned()
    };
    let exchange = |code: &str| {
        format!(
            "grant_type=authorization_code&code={code}&redirect_uri=http%3A%2F%2F127.0.0.1%2Fcb&code_verifier={VERIFIER}"
        )
    };
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    );
    let with_basic = |body: String, basic: &str| {
        Request::post("/oauth/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic)
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, tokens) = call(
        &app,
        with_basic(exchange(&code(server.clone(), id.clone()).await), &basic),
    )
    .await;
    assert_eq!(status, 200, "{tokens}");
    // Without the header the same request is an unknown, unauthenticated client.
    let (status, _, error) = call(
        &app,
        form(
            "/oauth/token",
            &exchange(&code(server.clone(), id.clone()).await),
        ),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error["error"].as_str()),
        (401, Some("invalid_client"))
    );
    // Revocation by client_secret_post takes effect; without the secret it is refused.
    let refresh = tokens["refresh_token"].as_str().unwrap();
    let (status, _, error) = call(
        &app,
        form("/oauth/revoke", &format!("token={refresh}&client_id={id}")),
    )
    .await;
    assert_eq!(
        (status.as_u16(), error["error"].as_str()),
        (401, Some("invalid_client"))
    );
    let (status, _, _) = call(
        &app,
        form(
            "/oauth/revoke",
            &format!("token={refresh}&client_id={id}&client_secret={secret}"),
        ),
    )
    .await;
    assert_eq!(status, 200);
    let grants = server.store().grants(Some("user-9")).await.unwrap();
    assert!(grants[0].revoked_at.is_some());
}
