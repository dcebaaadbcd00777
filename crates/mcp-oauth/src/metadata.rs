//! Authorization server metadata (RFC 8414).

use bytes::Bytes;
use http::{HeaderValue, Response, header};
use serde::Serialize;

/// `/.well-known/oauth-authorization-server`: where the endpoints are and
/// what this server supports.
///
/// ```
/// use mcp_oauth::AuthorizationServerMetadata;
///
/// let metadata = AuthorizationServerMetadata::new("https://mcp.example.com", ["mcp"], true);
/// assert_eq!(metadata.token_endpoint, "https://mcp.example.com/oauth/token");
/// let json = serde_json::to_value(&metadata).unwrap();
/// assert_eq!(json["code_challenge_methods_supported"][0], "S256");
/// assert_eq!(json["registration_endpoint"], "https://mcp.example.com/oauth/register");
/// ```
#[derive(Clone, Debug, Serialize)]
pub struct AuthorizationServerMetadata {
    /// The issuer identifier.
    pub issuer: String,
    /// `GET,POST /oauth/authorize`.
    pub authorization_endpoint: String,
    /// `POST /oauth/token`.
    pub token_endpoint: String,
    /// `POST /oauth/register`, when registration is on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub registration_endpoint: Option<String>,
    /// `POST /oauth/revoke`.
    pub revocation_endpoint: String,
    /// What a client may ask for.
    pub scopes_supported: Vec<String>,
    /// `["code"]`.
    pub response_types_supported: [&'static str; 1],
    /// `["authorization_code", "refresh_token"]`.
    pub grant_types_supported: [&'static str; 2],
    /// `["S256"]`.
    pub code_challenge_methods_supported: [&'static str; 1],
    /// Public and confidential clients.
    pub token_endpoint_auth_methods_supported: [&'static str; 3],
    /// The same for revocation.
    pub revocation_endpoint_auth_methods_supported: [&'static str; 3],
    /// A `client_id` may be an https URL of a metadata document.
    pub client_id_metadata_document_supported: bool,
    /// `iss` in every authorization response (RFC 9207).
    pub authorization_response_iss_parameter_supported: bool,
}

const AUTH_METHODS: [&str; 3] = ["none", "client_secret_basic", "client_secret_post"];

impl AuthorizationServerMetadata {
    /// The metadata of the server at `issuer` (its public URL, no trailing
    /// slash), offering `scopes`, with a registration endpoint when
    /// `registration`.
    pub fn new<I, S>(issuer: &str, scopes: I, registration: bool) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let issuer = issuer.trim_end_matches('/');
        let at = |path: &str| format!("{issuer}{path}");
        AuthorizationServerMetadata {
            issuer: issuer.to_owned(),
            authorization_endpoint: at("/oauth/authorize"),
            token_endpoint: at("/oauth/token"),
            registration_endpoint: registration.then(|| at("/oauth/register")),
            revocation_endpoint: at("/oauth/revoke"),
            scopes_supported: scopes.into_iter().map(Into::into).collect(),
            response_types_supported: ["code"],
            grant_types_supported: ["authorization_code", "refresh_token"],
            code_challenge_methods_supported: ["S256"],
            token_endpoint_auth_methods_supported: AUTH_METHODS,
            revocation_endpoint_auth_methods_supported: AUTH_METHODS,
            client_id_metadata_document_supported: true,
            authorization_response_iss_parameter_supported: true,
        }
    }

    /// The JSON answer (cacheable for an hour: it changes with the
    /// configuration only).
    pub fn to_response<B: From<Bytes>>(&self) -> Response<B> {
        let body = serde_json::to_vec(self).unwrap_or_default();
        let mut response = Response::new(B::from(Bytes::from(body)));
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        response.headers_mut().insert(
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=3600"),
        );
        response
    }
}
