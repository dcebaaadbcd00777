//! Browser-facing policy for MCP servers.
//!
//! - [`CorsPolicy`]: CORS from one setting (`*`, `false`, or a comma list of
//!   origins with `https://*.example.com` wildcards), built on tower-http's
//!   CORS layer, never reflecting an arbitrary origin with credentials,
//!   preflights answered `204`. [`CorsPolicy::layer`] always gives a
//!   [`CorsLayer`]: a disabled policy's passes everything through.
//! - [`HostOriginGuardLayer`]: refuses a foreign `Host` or `Origin` with
//!   `403` on every request, the DNS-rebinding defence MCP's Streamable HTTP
//!   transport requires. Built from the same [`CorsPolicy`], loopback-only
//!   by default.
//!
//! ```
//! use mcp_cors::{AllowedHost, CorsPolicy, HostOriginGuardLayer, Origin};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let cors: CorsPolicy = "https://app.example.com".parse()?;
//! let guard = HostOriginGuardLayer::new(cors.clone())
//!     .allow_host("mcp.example.com".parse::<AllowedHost>()?)
//!     .own_origin("https://mcp.example.com".parse::<Origin>()?);
//! let cors = cors.layer(); // a no-op layer when CORS is disabled
//! # let _ = (guard, cors);
//! # Ok(())
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

pub mod cors;
pub mod guard;

pub use cors::{
    ALLOWED_METHODS, Cors, CorsError, CorsLayer, CorsPolicy, Origin, OriginError, allowed_headers,
    exposed_headers,
};
pub use guard::{AllowedHost, AllowedHosts, HostError, HostOriginGuard, HostOriginGuardLayer};
