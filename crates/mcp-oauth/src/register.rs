//! Dynamic Client Registration (RFC 7591).

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, OAuthError};
use crate::redirect::redirect_uri_allowed;
use crate::secret::Secret;
use crate::server::AuthorizationServer;
use crate::store::Client;

/// Most redirect URIs one client may register.
const MAX_REDIRECT_URIS: usize = 10;
/// Longest redirect URI or client name accepted.
const MAX_FIELD_LEN: usize = 2048;

/// A registration request: the client metadata this server uses. Other
/// fields are ignored (RFC 7591 §2: a server may ignore what it does not
/// support).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct RegistrationRequest {
    /// Where codes may be sent (required).
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// Shown on the consent page.
    pub client_name: Option<String>,
    /// `none` (public, the default for MCP clients), `client_secret_basic`
    /// or `client_secret_post`.
    pub token_endpoint_auth_method: Option<String>,
    /// Must include `authorization_code` when sent.
    pub grant_types: Option<Vec<String>>,
    /// Must be `["code"]` when sent.
    pub response_types: Option<Vec<String>>,
}

/// The answer to a registration (RFC 7591 §3.2.1). `Debug` hides the
/// secret.
#[derive(Clone, Serialize)]
pub struct RegistrationResponse {
    /// The new client's id.
    pub client_id: String,
    /// A confidential client's secret, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// `0`: the secret does not expire.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_expires_at: Option<u64>,
    /// Seconds since the epoch.
    pub client_id_issued_at: u64,
    /// As registered.
    pub redirect_uris: Vec<String>,
    /// As registered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// As registered.
    pub token_endpoint_auth_method: String,
    /// `["authorization_code", "refresh_token"]`.
    pub grant_types: [&'static str; 2],
    /// `["code"]`.
    pub response_types: [&'static str; 1],
}

impl fmt::Debug for RegistrationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegistrationResponse")
            .field("client_id", &self.client_id)
            .field("redirect_uris", &self.redirect_uris)
            .finish_non_exhaustive()
    }
}

fn metadata_error(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClientMetadata, description)
}

impl AuthorizationServer {
    /// Registers a client: its redirect URIs checked
    /// ([`redirect_uri_allowed`]), a confidential one given a secret.
    pub async fn register(
        &self,
        request: RegistrationRequest,
    ) -> Result<RegistrationResponse, OAuthError> {
        if request.redirect_uris.is_empty() {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "redirect_uris is required",
            ));
        }
        if request.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "at most 10 redirect_uris",
            ));
        }
        if request
            .redirect_uris
            .iter()
            .any(|uri| uri.len() > MAX_FIELD_LEN || !redirect_uri_allowed(uri))
        {
            return Err(OAuthError::new(
                ErrorCode::InvalidRedirectUri,
                "each redirect_uri must be https, a loopback http URI or a private-use scheme, without a fragment",
            ));
        }
        if let Some(name) = &request.client_name
            && (name.len() > MAX_FIELD_LEN || name.chars().any(char::is_control))
        {
            return Err(metadata_error(
                "client_name is too long or has control characters",
            ));
        }
        if request.grant_types.as_ref().is_some_and(|g| {
            !g.iter().any(|t| t == "authorization_code")
                || g.iter()
                    .any(|t| t != "authorization_code" && t != "refresh_token")
        }) {
            return Err(metadata_error(
                "grant_types: authorization_code and refresh_token only",
            ));
        }
        if request
            .response_types
            .as_ref()
            .is_some_and(|r| r.iter().any(|t| t != "code"))
        {
            return Err(metadata_error("response_types: code only"));
        }
        let method = request
            .token_endpoint_auth_method
            .unwrap_or_else(|| "none".to_owned());
        let secret = match method.as_str() {
            "none" => None,
            "client_secret_basic" | "client_secret_post" => Some(Secret::generate()),
            _ => {
                return Err(metadata_error(
                    "token_endpoint_auth_method: none, client_secret_basic or client_secret_post",
                ));
            }
        };
        let now = self.now();
        let client = Client {
            id: uuid::Uuid::new_v4().to_string(),
            secret_hash: secret.as_ref().map(Secret::hash),
            name: request.client_name,
            redirect_uris: request.redirect_uris,
            created_at: now,
        };
        self.store().put_client(client.clone()).await?;
        Ok(RegistrationResponse {
            client_id: client.id,
            client_secret_expires_at: secret.as_ref().map(|_| 0),
            client_secret: secret.map(|s| s.expose().to_owned()),
            client_id_issued_at: now
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            redirect_uris: client.redirect_uris,
            client_name: client.name,
            token_endpoint_auth_method: method,
            grant_types: ["authorization_code", "refresh_token"],
            response_types: ["code"],
        })
    }
}
