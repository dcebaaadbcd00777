use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{HOST, ORIGIN};
use http::{Request, Response};
use mcp_core::{Problem, code};
use tower_layer::Layer;
use tower_service::Service;

use crate::policy::{CorsPolicy, Origin};

/// Why a guard setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}")]
pub struct GuardError {
    what: &'static str,
    value: String,
}

/// An allowed `Host`: a name or address, with or without a port.
#[derive(Clone, Debug, PartialEq, Eq)]
struct HostPattern {
    host: String,
    port: Option<u16>,
}

impl HostPattern {
    fn parse(text: &str) -> Option<HostPattern> {
        let text = text.trim().to_ascii_lowercase();
        if text.is_empty() || text.len() > 260 {
            return None;
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inner, after) = rest.split_once(']')?;
            inner.parse::<std::net::Ipv6Addr>().ok()?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (format!("[{inner}]"), port)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host.to_owned(), Some(port.parse().ok()?)),
                None => (text.clone(), None),
            }
        };
        let valid = host.starts_with('[')
            || host.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        valid.then_some(HostPattern { host, port })
    }

    /// An entry without a port allows any port; with one, only that one.
    fn allows(&self, other: &HostPattern) -> bool {
        self.host == other.host && (self.port.is_none() || self.port == other.port)
    }
}

/// The DNS-rebinding defence the MCP Streamable HTTP transport requires: a
/// request whose `Host` is not one of ours, or whose `Origin` is present and
/// neither allowed by the CORS policy nor our own, is refused `403` before
/// anything else looks at it, preflight or not.
///
/// An attacker's page can omit `Origin` (a simple request), but never
/// `Host`: after a DNS rebind the browser sends the attacker's host name.
/// Loopback-only by default (`localhost`, `127.0.0.1`, `[::1]`); add the
/// names the server is reached by. Requests without `Origin` pass the origin
/// check; `Origin: null` only when allowed explicitly.
///
/// ```
/// use mcp_cors::{CorsPolicy, OriginGuard};
///
/// let guard = OriginGuard::new()
///     .allow_host("mcp.example.com").unwrap()
///     .own_origin("https://mcp.example.com").unwrap()
///     .cors_policy("https://app.example.com".parse::<CorsPolicy>().unwrap());
/// let layer = guard.layer();
/// # let _ = layer;
/// ```
#[derive(Clone, Debug)]
pub struct OriginGuard {
    hosts: Vec<HostPattern>,
    own: Vec<Origin>,
    cors: CorsPolicy,
    allow_null: bool,
}

impl Default for OriginGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl OriginGuard {
    /// Loopback hosts only, no foreign origin.
    pub fn new() -> Self {
        OriginGuard {
            hosts: ["localhost", "127.0.0.1", "[::1]"]
                .into_iter()
                .filter_map(HostPattern::parse)
                .collect(),
            own: Vec::new(),
            cors: CorsPolicy::disabled(),
            allow_null: false,
        }
    }

    /// Also accepts `Host: host` (`name`, `name:port`, `[::1]:8080`).
    pub fn allow_host(mut self, host: &str) -> Result<Self, GuardError> {
        let pattern = HostPattern::parse(host).ok_or_else(|| GuardError {
            what: "host",
            value: host.to_owned(),
        })?;
        self.hosts.push(pattern);
        Ok(self)
    }

    /// Accepts only the given hosts (replacing the loopback defaults).
    pub fn only_hosts<'a>(
        mut self,
        hosts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, GuardError> {
        self.hosts.clear();
        for host in hosts {
            self = self.allow_host(host)?;
        }
        Ok(self)
    }

    /// The server's own origin (`https://mcp.example.com`): always allowed.
    pub fn own_origin(mut self, origin: &str) -> Result<Self, GuardError> {
        let parsed =
            Origin::parse(origin.trim_end_matches('/').as_bytes()).ok_or_else(|| GuardError {
                what: "origin",
                value: origin.to_owned(),
            })?;
        self.own.push(parsed);
        Ok(self)
    }

    /// Origins the CORS policy allows are allowed here too.
    #[must_use]
    pub fn cors_policy(mut self, policy: CorsPolicy) -> Self {
        self.cors = policy;
        self
    }

    /// Allows `Origin: null` (sandboxed frames, `file:` pages).
    #[must_use]
    pub fn allow_null_origin(mut self, allow: bool) -> Self {
        self.allow_null = allow;
        self
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
            (Some(host), None) => host.to_str().map_err(|_| refuse())?.to_owned(),
            (None, _) => request
                .uri()
                .authority()
                .map(|a| a.as_str().to_owned())
                .ok_or_else(refuse)?,
            (Some(_), Some(_)) => return Err(refuse()),
        };
        let host = HostPattern::parse(&host).ok_or_else(refuse)?;
        if self.hosts.iter().any(|allowed| allowed.allows(&host)) {
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
        let own = Origin::parse(origin.as_bytes()).is_some_and(|parsed| self.own.contains(&parsed));
        if own || self.cors.allows(origin.as_bytes()) {
            Ok(())
        } else {
            Err(refuse())
        }
    }

    /// The layer.
    pub fn layer(self) -> OriginGuardLayer {
        OriginGuardLayer {
            guard: Arc::new(self),
        }
    }
}

/// Applies an [`OriginGuard`] to every request.
#[derive(Clone, Debug)]
pub struct OriginGuardLayer {
    guard: Arc<OriginGuard>,
}

impl<S> Layer<S> for OriginGuardLayer {
    type Service = OriginGuardService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        OriginGuardService {
            inner,
            guard: self.guard.clone(),
        }
    }
}

/// The service made by [`OriginGuardLayer`].
#[derive(Clone, Debug)]
pub struct OriginGuardService<S> {
    inner: S,
    guard: Arc<OriginGuard>,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for OriginGuardService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: From<Bytes>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = GuardFuture<S::Future, ResBody>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        match self.guard.check(&request) {
            Ok(()) => GuardFuture {
                inner: Some(self.inner.call(request)),
                refused: None,
            },
            Err(problem) => {
                tracing::debug!(code = problem.code(), "request refused by the origin guard");
                GuardFuture {
                    inner: None,
                    refused: Some(problem.into_response()),
                }
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`OriginGuardService`].
    pub struct GuardFuture<F, B> {
        #[pin]
        inner: Option<F>,
        refused: Option<Response<B>>,
    }
}

impl<F, B, E> std::future::Future for GuardFuture<F, B>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Some(response) = this.refused.take() {
            return Poll::Ready(Ok(response));
        }
        match this.inner.as_pin_mut() {
            Some(inner) => inner.poll(cx),
            None => Poll::Pending,
        }
    }
}
