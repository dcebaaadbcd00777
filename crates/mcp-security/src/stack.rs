//! The stack builder: every layer in the order of checks.

use axum::Router;
use axum::extract::Extension;
use mcp_auth::{AuthLayer, Authenticator, RequireLayer};
use mcp_cors::{AllowedHosts, CorsPolicy, HostOriginGuardLayer, Origin};
use mcp_headers::SecurityHeadersLayer;
use mcp_ratelimit::{FailureLimitLayer, RateLimitLayer};
use mcp_validate::Limits;
use tower::util::MapResponseLayer;
use tower_http::limit::RequestBodyLimitLayer;

/// The security layers of an axum app, applied in the one safe order
/// (outermost first): security headers, the Host/Origin guard, CORS, the
/// body limit, the auth-failure lockout, authentication, the rate limit,
/// authorization, validation limits. Build it with the pieces you want and
/// [`apply`](SecurityStack::apply) it to your router; every piece left out
/// is simply not there, except the ones that are safe by default:
///
/// - security headers: [`SecurityHeadersLayer::new`]'s API defaults;
/// - the guard: loopback `Host`s only, and no foreign `Origin`, until
///   [`allowed_hosts`](SecurityStack::allowed_hosts),
///   [`own_origin`](SecurityStack::own_origin) or [`cors`](SecurityStack::cors)
///   say more; it is the one MCP's Streamable HTTP requires against DNS
///   rebinding;
/// - CORS: disabled (no CORS headers, browsers' same-origin rule);
/// - the body limit: [`Limits::default`]'s 100 KiB, answered as a `413`
///   problem, and the same limit for `Valid<T>`.
///
/// Every error the stack or the router gives without a body of its own
/// (a `405`, a `413`) is a problem.
///
/// Authentication applies to every route of the router it is applied to,
/// the fallback included (an unknown path without credentials is `401`,
/// so routes cannot be probed); apply the stack to the routes that need it
/// and merge public ones (health checks) outside. Route-specific
/// requirements stay `route_layer(RequireLayer::scope(..))` on the route.
///
/// ```
/// use std::time::Duration;
/// use axum::{Router, routing::get};
/// use mcp_security::SecurityStack;
/// use mcp_security::apikeys::{ApiKeyAuthenticator, ApiKeyService, MemoryStore};
/// use mcp_security::ratelimit::{InMemoryBackend, Policy, Quota, RateLimitLayer};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let keys = ApiKeyService::builder(MemoryStore::new()).build();
/// let quota = Quota::per(100, Duration::from_secs(60)).expect("a quota");
/// let app: Router = SecurityStack::new()
///     .cors("https://app.example".parse()?)
///     .authenticate(ApiKeyAuthenticator::new(keys))
///     .rate_limit(RateLimitLayer::new(InMemoryBackend::new(), Policy::new("api", quota)))
///     .apply(Router::new().route("/me", get(|| async { "me" })));
/// # Ok(()) }
/// ```
#[derive(Clone, Debug)]
#[must_use]
pub struct SecurityStack {
    headers: SecurityHeadersLayer,
    cors: CorsPolicy,
    hosts: Option<AllowedHosts>,
    own_origins: Vec<Origin>,
    guard: bool,
    limits: Limits,
    lockout: Option<FailureLimitLayer>,
    auth: Option<AuthLayer>,
    rate_limit: Option<RateLimitLayer>,
    require: Option<RequireLayer>,
}

impl Default for SecurityStack {
    fn default() -> Self {
        SecurityStack::new()
    }
}

impl SecurityStack {
    /// The safe defaults: headers, a loopback-only guard, no CORS, a 100 KiB
    /// body limit; no authentication until one is added.
    pub fn new() -> Self {
        SecurityStack {
            headers: SecurityHeadersLayer::new(),
            cors: CorsPolicy::disabled(),
            hosts: None,
            own_origins: Vec::new(),
            guard: true,
            limits: Limits::default(),
            lockout: None,
            auth: None,
            rate_limit: None,
            require: None,
        }
    }

    /// Security headers other than the defaults.
    pub fn headers(mut self, headers: SecurityHeadersLayer) -> Self {
        self.headers = headers;
        self
    }

    /// The CORS policy; the guard admits the same origins, so the two never
    /// disagree.
    pub fn cors(mut self, policy: CorsPolicy) -> Self {
        self.cors = policy;
        self
    }

    /// The `Host`s the guard admits (default: loopback names only).
    pub fn allowed_hosts(mut self, hosts: AllowedHosts) -> Self {
        self.hosts = Some(hosts);
        self
    }

    /// This server's own origin, which the guard admits as `Origin`.
    pub fn own_origin(mut self, origin: Origin) -> Self {
        self.own_origins.push(origin);
        self
    }

    /// Turns the Host/Origin guard off (a proxy in front does it). Off, a
    /// browser page on any site can reach a server on loopback through DNS
    /// rebinding: MCP's Streamable HTTP requires the check.
    pub fn without_guard(mut self) -> Self {
        self.guard = false;
        self
    }

    /// The largest request body in bytes (a body of exactly this size
    /// passes), for the stack and for `Valid<T>`.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.limits.max_bytes = bytes;
        self
    }

    /// Validation limits for `Valid<T>` (their `max_bytes` is the body
    /// limit too).
    pub fn validation(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Counts refused credentials per client and refuses before checking
    /// any once it is over its budget (brute-force defence).
    pub fn lockout(mut self, lockout: FailureLimitLayer) -> Self {
        self.lockout = Some(lockout);
        self
    }

    /// Adds an authenticator; several are tried in the order added, the
    /// first that recognises the credential decides. A request with no
    /// credential any of them recognises is `401`.
    pub fn authenticate(mut self, authenticator: impl Authenticator) -> Self {
        self.auth = Some(match self.auth.take() {
            None => AuthLayer::new(authenticator),
            Some(auth) => auth.or(authenticator),
        });
        self
    }

    /// Authentication configured in full (optional mode, a challenge), in
    /// place of [`authenticate`](SecurityStack::authenticate).
    pub fn auth(mut self, auth: AuthLayer) -> Self {
        self.auth = Some(auth);
        self
    }

    /// The rate limit, inside authentication so it can key by the caller.
    pub fn rate_limit(mut self, rate_limit: RateLimitLayer) -> Self {
        self.rate_limit = Some(rate_limit);
        self
    }

    /// What every route needs (a role, scopes), after the rate limit.
    pub fn require(mut self, require: RequireLayer) -> Self {
        self.require = Some(require);
        self
    }

    /// Wraps `router` in the stack.
    pub fn apply<S>(self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let limit = self.limits.max_bytes;
        // axum's `layer` makes each call the outer one: innermost first.
        let mut router = router.layer(Extension(self.limits));
        if let Some(require) = self.require {
            router = router.layer(require);
        }
        if let Some(rate_limit) = self.rate_limit {
            router = router.layer(rate_limit);
        }
        if let Some(auth) = self.auth {
            router = router.layer(auth);
        }
        if let Some(lockout) = self.lockout {
            router = router.layer(lockout);
        }
        let router = router
            .layer(RequestBodyLimitLayer::new(limit))
            .layer(MapResponseLayer::new(move |response| {
                mcp_core::problem_for_bare_error(response, Some(limit))
            }))
            .layer(self.cors.layer());
        let router = if self.guard {
            let mut guard = HostOriginGuardLayer::new(self.cors);
            if let Some(hosts) = self.hosts {
                guard = guard.only_hosts(hosts);
            }
            for origin in self.own_origins {
                guard = guard.own_origin(origin);
            }
            router.layer(guard)
        } else {
            router
        };
        router.layer(self.headers)
    }
}
