//! Shared vocabulary of the MCP security layers.
//!
//! Every layer crate speaks in three types from here, and nothing else:
//!
//! - [`Principal`]: who is calling (subject, roles, scopes, how they
//!   authenticated). Authentication layers put one into the request's
//!   extensions; authorization and rate limiting read it.
//! - [`Problem`]: the one error response of the project, RFC 9457
//!   `application/problem+json` with a stable machine-readable `code`.
//! - [`Clock`]: the time source, injected so that expiry and windows can be
//!   tested exactly with a [`ManualClock`].
//!
//! The crate does no I/O and depends only on `http`, `bytes` and `serde`.
//!
//! ```
//! use mcp_core::{AuthMethod, Principal, Problem};
//!
//! let alice = Principal::builder("user-1", AuthMethod::Jwt)
//!     .role("user")
//!     .scopes(["keys:read"])
//!     .build();
//! assert!(alice.has_scope("keys:read"));
//! assert!(!alice.has_scope("keys:write"));
//!
//! let response: http::Response<bytes::Bytes> = Problem::not_found().into_response();
//! assert_eq!(response.status(), 404);
//! assert_eq!(response.headers()["content-type"], "application/problem+json");
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

mod bare;
mod body;
mod clock;
mod future;
mod page;
mod principal;
mod problem;
mod scope;

/// The README's example, compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctest;

pub use bare::problem_for_bare_error;
pub use body::read_body;
pub use clock::{Clock, ManualClock, SharedClock, SystemClock};
pub use future::RefusalFuture;
pub use page::Page;
pub use principal::{AuthMethod, Principal, PrincipalBuilder};
pub use problem::{FieldError, MAX_FIELD_ERRORS, PROBLEM_CONTENT_TYPE, Problem, ProblemCode, code};
pub use scope::{scope_grants, scopes_grant};

/// The request-id header: the spine sets it on each request and its
/// response, and audit events and lock-outs carry it.
pub const REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");
