//! A hardened HTTP/1.1 accept loop over hyper, for an MCP endpoint or any
//! tower service, so slow and greedy clients cannot hold the server.
//!
//! `axum::serve` gives hyper no timer and no limits: half a request head or
//! an idle keep-alive connection is held forever, and every accepted socket
//! is served. [`Server`] runs each connection in a task of its own next to a
//! small watcher of its state, with the [`ConnectionLimits`]:
//!
//! - A request head must be whole within `header_read_timeout` of the
//!   connection opening or, on a kept-alive connection, of its first byte.
//! - A kept-alive connection with no request under way is closed after
//!   `keep_alive_timeout`. hyper's own `header_read_timeout` cannot do both:
//!   its clock starts when the previous response ends, so it would close
//!   idle connections after the (shorter) header timeout.
//! - At most `max_connections` sockets are open, at most
//!   `max_connections_per_ip` from one client (IPv6 by /56, as
//!   `mcp-ratelimit` groups them). A connection over a cap gets `503` (an
//!   RFC 9457 problem with `Retry-After: 1`) and is closed. An upgraded
//!   connection (a WebSocket) keeps its slot until it closes.
//! - A request head over `max_header_bytes` gets hyper's `431`.
//! - On the shutdown signal it stops accepting, closes idle connections,
//!   and lets in-flight requests finish for a grace period.
//!
//! With the `axum` feature, [`spine`] wraps an axum app in the request
//! hygiene every route needs: sane request ids, one log line per request
//! without credentials, bounded metric labels, panics and timeouts as
//! problems, and the SIGINT/SIGTERM [`spine::shutdown_signal`].
//!
//! Each request carries the peer's [`SocketAddr`](std::net::SocketAddr) in
//! its extensions (what `mcp-ratelimit`'s `PeerIp` reads) and, with the
//! `axum` feature, axum's `ConnectInfo<SocketAddr>` too, as with
//! `into_make_service_with_connect_info::<SocketAddr>()`.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use axum::{Router, routing::get};
//! use mcp_serve::{ConnectionLimits, Server};
//!
//! # async fn run() -> std::io::Result<()> {
//! let app = Router::new().route("/", get(|| async { "hello" }));
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! Server::new(listener, app)
//!     .limits(ConnectionLimits {
//!         max_connections_per_ip: 64,
//!         ..ConnectionLimits::default()
//!     })
//!     .graceful_shutdown(
//!         async {
//!             let _ = tokio::signal::ctrl_c().await;
//!         },
//!         Duration::from_secs(30),
//!     )
//!     .run()
//!     .await
//! # }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

// The README's examples run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;

mod conn;
mod limits;
mod server;
mod slots;
#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub mod spine;

pub use limits::ConnectionLimits;
pub use server::Server;
