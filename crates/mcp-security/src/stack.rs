//! The stack builder: every layer in the order of checks.

use axum::Router;
use axum::extract::Extension;
use std::sync::Arc;

use mcp_auth::{AuthLayer, AuthMode, Authenticator, Challenge, RequireLayer};
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
#[derive(Clone)]
#[must_use]
pub struct SecurityStack {
    headers: SecurityHeadersLayer,
    cors: CorsPolicy,
    hosts: Option<AllowedHosts>,
    own_origins: Vec<Origin>,
    guard: bool,
    limits: Limits,
    body_limit: Option<usize>,
    lockout: Vec<FailureLimitLayer>,
    authenticators: Vec<Arc<dyn Authenticator>>,
    auth_mode: AuthMode,
    challenge: Option<Challenge>,
    rate_limits: Vec<RateLimitLayer>,
    require: Vec<RequireLayer>,
}

impl std::fmt::Debug for SecurityStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecurityStack")
            .field("cors", &self.cors)
            .field("hosts", &self.hosts)
            .field("own_origins", &self.own_origins)
            .field("guard", &self.guard)
            .field("limits", &self.limits)
            .field("body_limit", &self.body_limit)
            .field("lockout", &self.lockout)
            .field("authenticators", &self.authenticators.len())
            .field("auth_mode", &self.auth_mode)
            .field("rate_limits", &self.rate_limits)
            .field("require", &self.require)
            .finish_non_exhaustive()
    }
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
            body_limit: None,
            lockout: Vec::new(),
            authenticators: Vec::new(),
            auth_mode: AuthMode::Required,
            challenge: None,
            rate_limits: Vec::new(),
            require: Vec::new(),
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
    /// passes), for the stack and for `Valid<T>`; it wins over the
    /// `max_bytes` of [`validation`](SecurityStack::validation), whichever
    /// is set first.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = Some(bytes);
        self
    }

    /// Validation limits for `Valid<T>` (their `max_bytes` is the body
    /// limit too, unless [`body_limit`](SecurityStack::body_limit) is set).
    pub fn validation(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Counts refused credentials per client and refuses before checking
    /// any once it is over its budget (brute-force defence). Each call adds
    /// one; every one applies.
    pub fn lockout(mut self, lockout: FailureLimitLayer) -> Self {
        self.lockout.push(lockout);
        self
    }

    /// Adds an authenticator; several are tried in the order added, the
    /// first that recognises the credential decides. A request with no
    /// credential any of them recognises is `401`.
    pub fn authenticate(mut self, authenticator: impl Authenticator) -> Self {
        self.authenticators.push(Arc::new(authenticator));
        self
    }

    /// Lets requests without credentials through as anonymous (handlers
    /// see no `Principal`); refused credentials are still `401`.
    pub fn optional_auth(mut self) -> Self {
        self.auth_mode = AuthMode::Optional;
        self
    }

    /// The `WWW-Authenticate` challenge of the `401`s and `403`s.
    pub fn challenge(mut self, challenge: impl Into<Challenge>) -> Self {
        self.challenge = Some(challenge.into());
        self
    }

    /// A rate limit, inside authentication so it can key by the caller:
    /// give it `.key(PrincipalOrIp::with_fallback(PeerIp))` for that (its
    /// default key is the peer address). Each call adds one; every one
    /// applies.
    pub fn rate_limit(mut self, rate_limit: RateLimitLayer) -> Self {
        self.rate_limits.push(rate_limit);
        self
    }

    /// What every route needs (a role, scopes), after the rate limit.
    /// Each call adds a requirement; a request must meet them all.
    pub fn require(mut self, require: RequireLayer) -> Self {
        self.require.push(require);
        self
    }

    /// Wraps `router` in the stack.
    pub fn apply<S>(self, router: Router<S>) -> Router<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let mut limits = self.limits;
        limits.max_bytes = self.body_limit.unwrap_or(limits.max_bytes);
        let limit = limits.max_bytes;
        // axum's `layer` makes each call the outer one: innermost first.
        let mut router = router.layer(Extension(limits));
        for require in self.require.into_iter().rev() {
            router = router.layer(match &self.challenge {
                Some(challenge) => require.challenge(challenge.clone()),
                None => require,
            });
        }
        for rate_limit in self.rate_limits.into_iter().rev() {
            router = router.layer(rate_limit);
        }
        let mut authenticators = self.authenticators.into_iter();
        if let Some(first) = authenticators.next() {
            let mut auth = authenticators
                .fold(AuthLayer::new(first), |auth, next| auth.or(next))
                .mode(self.auth_mode);
            if let Some(challenge) = self.challenge {
                auth = auth.challenge(challenge);
            }
            router = router.layer(auth);
        }
        for lockout in self.lockout.into_iter().rev() {
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
