//! The front door to the `mcp-*` security layers.
//!
//! Each layer crate is re-exported under a short name behind a feature of
//! the same name (`auth`, `apikeys`, `ratelimit`, `cors`, `validate`,
//! `headers`, `endpoint`; drivers and backends: `postgres`, `sqlite`,
//! `redis`, `jwks`, `rmcp`, `ws`), and [`SecurityStack`] puts them on an
//! axum app in the one order that is safe, so that order is not the user's
//! to get wrong:
//!
//! 1. security headers, on every answer, refusals included;
//! 2. the Host/Origin guard (DNS rebinding), from the CORS policy;
//! 3. CORS (a no-op until a policy allows an origin);
//! 4. the body limit, as a `413` problem;
//! 5. the auth-failure lockout, before any credential is checked;
//! 6. authentication (JWTs, API keys, anything that implements
//!    [`auth::Authenticator`]);
//! 7. the rate limit, keyed by who was authenticated;
//! 8. authorization (a requirement for every route; per-route ones with
//!    `route_layer`);
//! 9. validation limits for `Valid<T>` in the handlers.
//!
//! ```
//! use axum::{Router, routing::get};
//! use mcp_security::SecurityStack;
//! use mcp_security::auth::{JwtAuthenticator, TrustedIssuer, VerifyingKey};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let jwt = JwtAuthenticator::builder()
//!     .trust(TrustedIssuer::new("https://idp.example", "https://mcp.example/mcp")
//!         .key(VerifyingKey::hmac(b"a secret of at least thirty-two bytes")?))
//!     .build()?;
//! let app: Router = SecurityStack::new()
//!     .cors("https://app.example".parse()?)
//!     .authenticate(jwt)
//!     .apply(Router::new().route("/me", get(|| async { "me" })));
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

#[cfg(feature = "apikeys")]
#[cfg_attr(docsrs, doc(cfg(feature = "apikeys")))]
pub use mcp_apikeys as apikeys;
#[cfg(feature = "auth")]
#[cfg_attr(docsrs, doc(cfg(feature = "auth")))]
pub use mcp_auth as auth;
pub use mcp_core as core;
#[cfg(feature = "cors")]
#[cfg_attr(docsrs, doc(cfg(feature = "cors")))]
pub use mcp_cors as cors;
#[cfg(feature = "endpoint")]
#[cfg_attr(docsrs, doc(cfg(feature = "endpoint")))]
pub use mcp_endpoint as endpoint;
#[cfg(feature = "headers")]
#[cfg_attr(docsrs, doc(cfg(feature = "headers")))]
pub use mcp_headers as headers;
#[cfg(feature = "ratelimit")]
#[cfg_attr(docsrs, doc(cfg(feature = "ratelimit")))]
pub use mcp_ratelimit as ratelimit;
#[cfg(feature = "validate")]
#[cfg_attr(docsrs, doc(cfg(feature = "validate")))]
pub use mcp_validate as validate;

#[cfg(all(
    feature = "auth",
    feature = "ratelimit",
    feature = "cors",
    feature = "validate",
    feature = "headers"
))]
mod stack;
#[cfg(all(
    feature = "auth",
    feature = "ratelimit",
    feature = "cors",
    feature = "validate",
    feature = "headers"
))]
#[cfg_attr(
    docsrs,
    doc(cfg(all(
        feature = "auth",
        feature = "ratelimit",
        feature = "cors",
        feature = "validate",
        feature = "headers"
    )))
)]
pub use stack::SecurityStack;
