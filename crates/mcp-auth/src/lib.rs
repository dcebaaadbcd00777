//! Who is calling, and may they?
//!
//! - [`Authenticator`]: one way of proving identity; [`AuthLayer`] runs a
//!   chain of them and puts the [`Principal`](mcp_core::Principal) into the
//!   request's extensions (API keys plug in from `mcp-apikeys`).
//! - [`JwtAuthenticator`]: bearer JWTs from [`TrustedIssuer`]s, with static
//!   keys ([`VerifyingKey`]) or a [`JwksKeys`] endpoint (feature `jwks`).
//! - [`RequireLayer`] / [`Requirement`]: roles and scopes.
//! - [`TokenIssuer`]: signs the access tokens a server hands out, with the
//!   signing half of a [`KeyPair`].
//! - [`ProtectedResourceMetadata`]: the RFC 9728 document MCP clients read.
//! - [`Authenticated`]: an axum extractor (feature `axum`).
//!
//! Every refusal is a [`Problem`](mcp_core::Problem) with `WWW-Authenticate:
//! Bearer` (RFC 6750), configured by a [`Challenge`].
//!
//! A missing layer fails loudly: [`AuthLayer`] marks each request it passes
//! with [`AuthChecked`], and a [`RequireLayer`] or extractor that sees
//! neither a principal nor that mark answers `500 internal` and logs an
//! error naming the missing `AuthLayer`, instead of a `401` that blames the
//! client (or an anonymous pass).
//!
//! [`KeyPair`] is a signing key with its matching verifying key (from an
//! HMAC secret or a PEM pair), checked by signing and verifying one token.
//!
//! The crate signs and verifies with aws-lc-rs, installed explicitly as
//! jsonwebtoken's provider ([`install_crypto_provider`]), so no feature
//! combination can leave it without one.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod authenticator;
mod authorize;
mod error;
mod external;
#[cfg(feature = "axum")]
mod extract;
mod issuer;
#[cfg(feature = "jwks")]
mod jwks;
mod jwt;
mod key_pair;
mod keys;
mod metadata;
#[cfg(test)]
mod test_support;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub use authenticator::{
    Auth, AuthChecked, AuthFuture, AuthLayer, AuthMode, Authenticator, BoxFuture,
};
pub use authorize::{Require, RequireFuture, RequireLayer, Requirement};
pub use error::{AuthError, Challenge};
pub use external::ExternalClaimsMapper;
#[cfg(feature = "axum")]
pub use extract::{Authenticated, MaybeAuthenticated};
pub use issuer::{AccessToken, IssueError, IssuedToken, TokenIssuer};
pub use jsonwebtoken::Algorithm;
#[cfg(feature = "jwks")]
pub use jwks::{JwksError, JwksKeys, JwksUrlError};
pub use jwt::{
    Claims, ClaimsMapper, DefaultClaimsMapper, JwtAuthenticator, JwtAuthenticatorBuilder,
    JwtConfigError, MAX_TOKEN_BYTES, TrustedIssuer, bearer_token,
};
pub use key_pair::{KeyPair, KeyPairError, SigningAlgorithm, UnknownSigningAlgorithm};
pub use keys::{
    KeyError, MIN_HMAC_SECRET_BYTES, SigningKey, VerifyingKey, install_crypto_provider,
};
pub use metadata::{MetadataService, ProtectedResourceMetadata};
