//! Browser-facing policy for MCP servers.
//!
//! - [`CorsPolicy`]: CORS from one setting (`*`, `false`, or a comma list of
//!   origins with `https://*.example.com` wildcards), built on tower-http's
//!   CORS layer, never reflecting an arbitrary origin with credentials,
//!   preflights answered `204`.
//! - [`OriginGuard`]: refuses a foreign `Host` or `Origin` with `403` on
//!   every request, the DNS-rebinding defence MCP's Streamable HTTP
//!   transport requires. On by default in the server, loopback-only by
//!   default.
//!
//! ```
//! use mcp_cors::{CorsPolicy, OriginGuard};
//!
//! let cors: CorsPolicy = "https://app.example.com".parse().unwrap();
//! let guard = OriginGuard::new().cors_policy(cors.clone()).layer();
//! let cors = cors.layer(); // Option<CorsLayer>: None when disabled
//! # let _ = (guard, cors);
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod guard;
mod policy;

pub use guard::{GuardError, GuardFuture, OriginGuard, OriginGuardLayer, OriginGuardService};
pub use policy::{
    ALLOWED_METHODS, CorsError, CorsFinish, CorsLayer, CorsPolicy, Origin, PreflightFuture,
    allowed_headers, exposed_headers,
};
