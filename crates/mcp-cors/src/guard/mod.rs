//! The Host/Origin guard against DNS rebinding.

mod future;
mod host;

use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HOST, ORIGIN};
use http::{Request, Response};
use mcp_core::{Problem, code};
use tower_layer::Layer;
use tower_service::Service;

use crate::cors::{CorsPolicy, Origin};

pub use future::ResponseFuture;
pub use host::{AllowedHost, AllowedHosts, HostError};

/// The DNS-rebinding defence the MCP Streamable HTTP transport requires: a
/// request whose `Host` is not one of ours, or whose `Origin` is present and
/// neither allowed by the CORS policy nor our own, is refused `403` before
/// anything else looks at it, preflight or not.
///
/// An attacker's page can omit `Origin` (a simple request), but never
/// `Host`: after a DNS rebind the browser sends the attacker's host name.
/// Loopback-only by default (`localhost`, `127.0.0.1`, `[::1]`); add the
/// names the server is reached by (see [`AllowedHost`] for the port rule).
/// Requests without `Origin` pass the origin check; `Origin: null` only when
/// allowed explicitly. With CORS `*`, every well-formed origin passes (the
/// host check still stops rebinding).
///
/// Built from the same [`CorsPolicy`] as the CORS layer, so the two never
/// disagree about which origins are allowed:
///
/// ```
/// use mcp_cors::{CorsPolicy, HostOriginGuardLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let cors: CorsPolicy = "https://app.example.com".parse()?;
/// let guard = HostOriginGuardLayer::new(cors.clone())
///     .allow_host("mcp.example.com".parse::<mcp_cors::AllowedHost>()?)
///     .own_origin("https://mcp.example.com".parse::<mcp_cors::Origin>()?);
/// let app = tower::ServiceBuilder::new()
///     .layer(guard) // outermost: refuse first
///     .layer(cors.layer())
///     .service_fn(|_: http::Request<String>| async {
///         Ok::<_, std::convert::Infallible>(http::Response::new(bytes::Bytes::new()))
///     });
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug)]
pub struct HostOriginGuardLayer {
    hosts: AllowedHosts,
    own: Vec<Origin>,
    cors: CorsPolicy,
    allow_null: bool,
}

impl HostOriginGuardLayer {
    /// Loopback hosts only; origins allowed by `cors` pass, no other.
    pub fn new(cors: CorsPolicy) -> Self {
        HostOriginGuardLayer {
            hosts: AllowedHosts::loopback(),
            own: Vec::new(),
            cors,
            allow_null: false,
        }
    }

    /// Also accepts `Host: host` (`name`, `name:port`, `[::1]:8080`).
    #[must_use]
    pub fn allow_host(mut self, host: impl Into<AllowedHost>) -> Self {
        self.hosts.push(host);
        self
    }

    /// Accepts only the given hosts, replacing the loopback defaults (an
    /// empty list allows no host).
    #[must_use]
    pub fn only_hosts(mut self, hosts: impl Into<AllowedHosts>) -> Self {
        self.hosts = hosts.into();
        self
    }

    /// The server's own origin (`https://mcp.example.com`): always allowed.
    #[must_use]
    pub fn own_origin(mut self, origin: impl Into<Origin>) -> Self {
        self.own.push(origin.into());
        self
    }

    /// Allows `Origin: null` (sandboxed frames, `file:` pages).
    #[must_use]
    pub fn allow_null_origin(mut self, allow: bool) -> Self {
        self.allow_null = allow;
        self
    }

    /// The hosts let in.
    pub fn allowed_hosts(&self) -> &AllowedHosts {
        &self.hosts
    }

    /// The server's own origins.
    pub fn own_origins(&self) -> &[Origin] {
        &self.own
    }

    /// The CORS policy whose origins pass.
    pub fn cors_policy(&self) -> &CorsPolicy {
        &self.cors
    }

    /// The allowed hosts as plain `host[:port]` strings, for a component
    /// behind this guard that checks `Host` against a list itself (rmcp's
    /// allowed hosts): each entry normalised, and for an entry with port 80
    /// or 443 also its bare name, so that a `Host` without a port this guard
    /// lets in is not refused there. Such a list reads a bare name as any
    /// port, wider than this guard: keep the guard in front.
    pub fn exact_hosts(&self) -> Vec<String> {
        let mut hosts = Vec::new();
        for host in &self.hosts {
            hosts.push(host.to_string());
            if matches!(host.port(), Some(80 | 443)) {
                hosts.push(host.name().to_owned());
            }
        }
        hosts
    }

    /// The origins this guard allows, written out with explicit ports
    /// (`https://app.example.com:443`, rmcp's format): the CORS policy's and
    /// the server's own. `None` when the policy is `*` or has wildcards,
    /// which a plain list cannot express (the guard alone checks then).
    pub fn exact_origins(&self) -> Option<Vec<String>> {
        let mut origins = self.cors.exact_origins()?;
        origins.extend(self.own.iter().map(Origin::with_port));
        Some(origins)
    }

    /// Checks a request head; the problem to answer if refused.
    pub fn check<B>(&self, request: &Request<B>) -> Result<(), Problem> {
        self.check_host(request)?;
        self.check_origin(request)
    }

    fn check_host<B>(&self, request: &Request<B>) -> Result<(), Problem> {
        let refuse = || {
            Problem::forbidden(
                code::HOST_NOT_ALLOWED,
                "this server is not reached by that host name",
            )
        };
        let mut hosts = request.headers().get_all(HOST).iter();
        let host = match (hosts.next(), hosts.next()) {
            (Some(host), None) => host.to_str().map_err(|_| refuse())?,
            (None, _) => request
                .uri()
                .authority()
                .map(|a| a.as_str())
                .ok_or_else(refuse)?,
            (Some(_), Some(_)) => return Err(refuse()),
        };
        if self.hosts.allows_verbatim(host) {
            return Ok(());
        }
        let host = AllowedHost::parse(host).ok_or_else(refuse)?;
        if self.hosts.allows(&host) {
            Ok(())
        } else {
            Err(refuse())
        }
    }

    fn check_origin<B>(&self, request: &Request<B>) -> Result<(), Problem> {
        let refuse = || {
            Problem::forbidden(
                code::ORIGIN_NOT_ALLOWED,
                "requests from this origin are not allowed",
            )
        };
        let mut origins = request.headers().get_all(ORIGIN).iter();
        let origin = match (origins.next(), origins.next()) {
            (None, _) => return Ok(()),
            (Some(origin), None) => origin,
            (Some(_), Some(_)) => return Err(refuse()),
        };
        if origin.as_bytes() == b"null" {
            return if self.allow_null {
                Ok(())
            } else {
                Err(refuse())
            };
        }
        if self.cors.allows_any() && Origin::parse(origin.as_bytes()).is_some() {
            return Ok(());
        }
        // The canonical text matches without parsing (see `CorsPolicy::allows`).
        let own = self
            .own
            .iter()
            .any(|o| o.as_str().as_bytes() == origin.as_bytes())
            || Origin::parse(origin.as_bytes()).is_some_and(|parsed| self.own.contains(&parsed));
        if own || self.cors.allows(origin.as_bytes()) {
            Ok(())
        } else {
            Err(refuse())
        }
    }
}

impl<S> Layer<S> for HostOriginGuardLayer {
    type Service = HostOriginGuard<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HostOriginGuard {
            inner,
            guard: Arc::new(self.clone()),
        }
    }
}

/// The service made by [`HostOriginGuardLayer`].
#[derive(Clone, Debug)]
pub struct HostOriginGuard<S> {
    inner: S,
    guard: Arc<HostOriginGuardLayer>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HostOriginGuard<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.guard.check(&request) {
            Ok(()) => ResponseFuture::inner(self.inner.call(request)),
            Err(problem) => {
                tracing::debug!(
                    code = problem.code(),
                    "request refused by the Host/Origin guard"
                );
                ResponseFuture::refused(problem.into_response())
            }
        }
    }
}
