//! An OAuth 2.1 authorization server for MCP clients.
//!
//! The MCP authorization flow: a client's request to `/mcp` is refused
//! with a `401` naming the protected resource metadata, which names this
//! authorization server; the client registers ([`RegistrationRequest`]) or
//! identifies itself by a Client ID Metadata Document, sends the user to
//! the authorization endpoint (login and consent), and exchanges the code
//! for a token for exactly this resource.
//!
//! This crate holds the rules, independent of HTTP: [`AuthorizationServer`]
//! checks authorization requests (client, exact redirect URI, PKCE `S256`,
//! `resource`, scopes), issues one-use codes, exchanges them for
//! [`mcp_auth`] JWTs and rotating refresh tokens (a replayed code or a
//! reused refresh token revokes its whole grant), registers clients and
//! revokes grants. Secrets are random and stored only as hashes, behind
//! the [`OAuthStore`] trait.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use mcp_auth::{SigningKey, TokenIssuer};
//! use mcp_oauth::{AuthorizationParams, AuthorizationServer, MemoryStore, RegistrationRequest, Settings};
//!
//! let mut settings = Settings::new("https://mcp.example.com", "https://mcp.example.com/mcp");
//! settings.scopes = vec!["mcp".into()];
//! let tokens = TokenIssuer::new(
//!     SigningKey::hmac(&[7; 32]).unwrap(),
//!     "https://mcp.example.com",
//!     "https://mcp.example.com/mcp",
//! );
//! let server = AuthorizationServer::new(MemoryStore::new(), tokens, settings);
//! let client = server
//!     .register(RegistrationRequest {
//!         redirect_uris: vec!["http://127.0.0.1/callback".into()],
//!         client_name: Some("Desk".into()),
//!         ..Default::default()
//!     })
//!     .await
//!     .unwrap();
//! let request = server
//!     .check_authorization(&AuthorizationParams {
//!         response_type: Some("code".into()),
//!         client_id: Some(client.client_id),
//!         redirect_uri: Some("http://127.0.0.1:50123/callback".into()),
//!         code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
//!         code_challenge_method: Some("S256".into()),
//!         state: Some("xyz".into()),
//!         ..Default::default()
//!     })
//!     .await
//!     .unwrap();
//! let redirect = server.approve(&request, "user-1", &request.scopes).await.unwrap();
//! assert!(redirect.as_str().starts_with("http://127.0.0.1:50123/callback?code="));
//! assert!(redirect.as_str().ends_with("&state=xyz&iss=https%3A%2F%2Fmcp.example.com"));
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "client-metadata")]
mod cimd;
mod error;
mod metadata;
mod pages;
mod pkce;
mod redirect;
mod register;
mod router;
mod secret;
mod server;
mod store;

#[cfg(feature = "client-metadata")]
pub use cimd::{ClientMetadataFetcher, MAX_DOCUMENT_BYTES, is_public_address};
pub use error::{ErrorCode, OAuthError, StoreError};
pub use metadata::AuthorizationServerMetadata;
pub use pages::{LoginError, LoginUser, UserDirectory, authorize_pages};
pub use pkce::CodeChallenge;
pub use redirect::{redirect_uri_allowed, redirect_uri_matches};
pub use register::{RegistrationRequest, RegistrationResponse};
pub use router::router;
pub use secret::{Secret, SecretHash};
pub use server::{
    AuthorizationParams, AuthorizationRequest, AuthorizationServer, AuthorizeError, OnEvent,
    Settings, TokenEvent, TokenParams, TokenResponse,
};
#[cfg(any(feature = "postgres", feature = "sqlite"))]
pub use store::SqlStore;
pub use store::{
    Client, CodeRecord, Grant, MemoryStore, OAuthStore, RefreshRecord, StoreFuture, Taken,
};
