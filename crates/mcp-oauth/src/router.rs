//! The HTTP endpoints: metadata, token, registration and revocation, as an
//! axum [`Router`] over an [`AuthorizationServer`].

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

use crate::error::{OAuthError, json_response};
use crate::metadata::AuthorizationServerMetadata;
use crate::register::RegistrationRequest;
use crate::server::{AuthorizationServer, TokenParams};

#[derive(Clone)]
struct Endpoints {
    server: AuthorizationServer,
    metadata: std::sync::Arc<AuthorizationServerMetadata>,
}

/// The authorization server's JSON endpoints, at the paths its metadata
/// names: `GET /.well-known/oauth-authorization-server`, `POST
/// /oauth/token`, `POST /oauth/register` (when `registration`) and `POST
/// /oauth/revoke`. Rate limits, body limits and the audit trail are the
/// embedder's layers; events reach [`AuthorizationServer::on_event`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_auth::{SigningKey, TokenIssuer};
/// use mcp_oauth::{AuthorizationServer, MemoryStore, Settings, router};
/// use tower::ServiceExt;
///
/// let settings = Settings::new("https://mcp.example.com", "https://mcp.example.com/mcp");
/// let tokens = TokenIssuer::new(SigningKey::hmac(&[1; 32]).unwrap(), "https://mcp.example.com", "https://mcp.example.com/mcp");
/// let app = router(AuthorizationServer::new(MemoryStore::new(), tokens, settings), true);
/// let response = app
///     .oneshot(
///         http::Request::post("/oauth/token")
///             .header("content-type", "application/x-www-form-urlencoded")
///             .body(axum::body::Body::from("grant_type=password"))
///             .unwrap(),
///     )
///     .await
///     .unwrap();
/// assert_eq!(response.status(), 401); // no client: invalid_client
/// # }
/// ```
pub fn router<S>(server: AuthorizationServer, registration: bool) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    let settings = server.settings();
    let metadata = AuthorizationServerMetadata::new(
        &settings.issuer,
        settings.scopes.iter().cloned(),
        registration,
    );
    let endpoints = Endpoints {
        metadata: std::sync::Arc::new(metadata),
        server,
    };
    let mut router = Router::new()
        .route(
            "/.well-known/oauth-authorization-server",
            get(metadata_route),
        )
        .route("/oauth/token", post(token))
        .route("/oauth/revoke", post(revoke));
    if registration {
        router = router.route("/oauth/register", post(register));
    }
    router.with_state(endpoints)
}

async fn metadata_route(State(endpoints): State<Endpoints>) -> Response {
    endpoints.metadata.to_response()
}

/// The form of a token or revocation request. Content type checked, each
/// parameter at most once (RFC 6749 §3.2: "MUST NOT be included more than
/// once"); errors in OAuth's format.
fn form<T: DeserializeOwned>(headers: &HeaderMap, body: &Bytes) -> Result<T, OAuthError> {
    let form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| {
            v.trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        });
    if !form {
        return Err(OAuthError::invalid_request(
            "the body must be application/x-www-form-urlencoded",
        ));
    }
    serde_urlencoded::from_bytes(body)
        .map_err(|_| OAuthError::invalid_request("malformed form, or a parameter given twice"))
}

fn basic(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
}

async fn token(State(endpoints): State<Endpoints>, headers: HeaderMap, body: Bytes) -> Response {
    let params: TokenParams = match form(&headers, &body) {
        Ok(params) => params,
        Err(error) => return error.to_response(),
    };
    match endpoints.server.token(&params, basic(&headers)).await {
        Ok((tokens, _)) => json_response(
            StatusCode::OK,
            serde_json::to_vec(&tokens).unwrap_or_default(),
        ),
        Err(error) => error.to_response(),
    }
}

#[derive(serde::Deserialize)]
struct RevokeParams {
    token: Option<String>,
    #[serde(rename = "token_type_hint")]
    _hint: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn revoke(State(endpoints): State<Endpoints>, headers: HeaderMap, body: Bytes) -> Response {
    let params: RevokeParams = match form(&headers, &body) {
        Ok(params) => params,
        Err(error) => return error.to_response(),
    };
    let Some(token) = params.token else {
        return OAuthError::invalid_request("token is required").to_response();
    };
    let client = TokenParams {
        client_id: params.client_id,
        client_secret: params.client_secret,
        ..TokenParams::default()
    };
    match endpoints
        .server
        .revoke(&token, &client, basic(&headers))
        .await
    {
        // RFC 7009 §2.2: 200 whether or not the token was known.
        Ok(_) => json_response(StatusCode::OK, b"{}".to_vec()),
        Err(error) => error.to_response(),
    }
}

async fn register(State(endpoints): State<Endpoints>, headers: HeaderMap, body: Bytes) -> Response {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.trim_start()
                .to_ascii_lowercase()
                .starts_with("application/json")
        });
    if !json {
        return OAuthError::invalid_request("the body must be application/json").to_response();
    }
    let request: RegistrationRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(_) => {
            return OAuthError::new(
                crate::ErrorCode::InvalidClientMetadata,
                "the body is not client metadata JSON",
            )
            .to_response();
        }
    };
    match endpoints.server.register(request).await {
        Ok(client) => json_response(
            StatusCode::CREATED,
            serde_json::to_vec(&client).unwrap_or_default(),
        ),
        Err(error) => error.to_response(),
    }
}
