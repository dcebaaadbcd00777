//! What secures an MCP endpoint itself, for MCP servers of your own:
//!
//! - [`McpPolicy`]: which MCP methods and tools a principal may use, and
//!   [`AuthorizeMcpLayer`], which enforces it over Streamable HTTP from the
//!   `Mcp-Method`/`Mcp-Name` headers or the JSON-RPC body;
//! - [`SessionBindingLayer`]: a session belongs to the principal that
//!   opened it (anyone else's id is `404`);
//! - [`SubprotocolBearer`]: a browser's token in the `bearer.<token>`
//!   WebSocket subprotocol, as an `mcp_auth::Authenticator`;
//! - feature `rmcp`: `streamable_http_config` (rmcp's allowed hosts and
//!   origins from the guard's settings) and `caller` (a tool's
//!   [`Principal`](mcp_core::Principal));
//! - feature `ws`: `WebSocketEndpoint`, MCP over WebSocket with the policy,
//!   a per-message rate limit and credentials checked for the
//!   connection's whole life.
//!
//! The layers read the [`Principal`](mcp_core::Principal) that
//! authentication (`mcp_auth::AuthLayer`) put into the request: put them
//! behind it.
//!
//! ```
//! use mcp_endpoint::{AuthorizeMcpLayer, McpPolicy, SessionBindingLayer};
//! use tower::ServiceBuilder;
//!
//! let policy = McpPolicy::empty()
//!     .allow("initialize", "*", ["mcp"])
//!     .allow("notifications/*", "*", ["mcp"])
//!     .allow("tools/list", "*", ["mcp"])
//!     .allow("tools/call", "greet", ["mcp", "greet"]);
//! let layers = ServiceBuilder::new()
//!     // .layer(mcp_auth::AuthLayer::required(..))
//!     .layer(AuthorizeMcpLayer::new(policy))
//!     .layer(SessionBindingLayer::new());
//! # let _ = layers;
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's example runs as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod authorize;
pub mod future;
mod message;
mod policy;
mod session;
mod subprotocol;

#[cfg(feature = "rmcp")]
mod rmcp;
#[cfg(feature = "ws")]
mod ws;

pub use authorize::{AuthorizeMcp, AuthorizeMcpLayer, DEFAULT_MAX_BODY};
pub use message::Messages;
pub use policy::{McpPolicy, McpRule, Metered, PolicyConfig, PolicyError, Refusal, RuleConfig};
pub use session::{SESSION_ID, SessionBinding, SessionBindingLayer};
pub use subprotocol::{SubprotocolBearer, TOKEN_SUBPROTOCOL_PREFIX};

#[cfg(feature = "rmcp")]
#[cfg_attr(docsrs, doc(cfg(feature = "rmcp")))]
pub use crate::rmcp::{caller, streamable_http_config};
#[cfg(feature = "ws")]
#[cfg_attr(docsrs, doc(cfg(feature = "ws")))]
pub use ws::{FORBIDDEN, RATE_LIMITED, SUBPROTOCOL, WS_CONNECTIONS, WebSocketEndpoint, WsRefusal};
