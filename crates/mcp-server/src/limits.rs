//! The rate-limit policies of the contract, on Redis or in process.

use std::sync::Arc;
use std::time::Duration;

use mcp_core::ProblemCode;
use mcp_ratelimit::{
    BodyRateLimitLayer, FailureLimitLayer, FailurePolicy, HeaderStyle, InMemoryBackend,
    JsonBodyField, Policy, PrincipalOrIp, RateLimitBackend, RateLimitLayer, RateLimiter,
    RedisBackend, RequestInfo, TrustedProxyIp,
};

use crate::StartError;
use crate::config::Config;
use crate::mcp::ws::TOKEN_SUBPROTOCOL_PREFIX;

/// The server's limiters.
#[derive(Clone)]
pub struct Limits {
    backend: Arc<dyn RateLimitBackend>,
    redis: Option<RedisBackend>,
    /// Where the auth-failures lockout counts when the backend fails: the
    /// in-process backend itself without Redis, a backend of its own with.
    lockout_fallback: Arc<InMemoryBackend>,
    api: Policy,
    auth: Policy,
    /// One limiter for every WebSocket message of every connection.
    ws: RateLimiter,
    auth_failures: Policy,
    failure: FailurePolicy,
    fail_closed: bool,
    headers: HeaderStyle,
    client_ip: TrustedProxyIp,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("redis", &self.redis.is_some())
            .field("api", &self.api)
            .finish_non_exhaustive()
    }
}

impl Limits {
    /// The client address of a request, by the same trusted-proxy rule as
    /// the limits (`None` for a client hidden behind a proxy).
    pub fn client_ip(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Option<std::net::IpAddr> {
        let (method, uri) = (http::Method::GET, http::Uri::from_static("/"));
        let info = RequestInfo {
            method: &method,
            uri: &uri,
            headers,
            extensions,
        };
        self.client_ip.client(&info).and_then(|addr| addr.ip())
    }

    /// `policy` with its tool quotas counted where the other limits are
    /// (Redis, across replicas, when configured), failing as they do.
    pub fn tool_quotas(&self, policy: mcp_endpoint::McpPolicy) -> mcp_endpoint::McpPolicy {
        policy
            .quota_backend(self.backend.clone())
            .quota_failure(self.failure.clone())
    }

    /// The backend (`REDIS_URL` or in process) and the policies. Redis is
    /// connected in the background: the server starts while it is down.
    pub fn new(config: &Config) -> Result<Limits, StartError> {
        let rl = &config.rate_limits;
        let (backend, redis, memory): (Arc<dyn RateLimitBackend>, _, _) = match &rl.redis_url {
            Some(url) => {
                let url = String::from_utf8_lossy(&url.0).into_owned();
                let redis = RedisBackend::start(&url, &rl.prefix).map_err(|e| {
                    StartError::Config(crate::config::ConfigError::Invalid {
                        setting: crate::config::settings::REDIS_URL,
                        origin: crate::config::Origin::Env,
                        value: None,
                        reason: e.to_string(),
                    })
                })?;
                (Arc::new(redis.clone()), Some(redis), None)
            }
            None => {
                let memory = Arc::new(InMemoryBackend::new());
                (memory.clone(), None, Some(memory))
            }
        };
        let lockout_fallback = memory
            .clone()
            .unwrap_or_else(|| Arc::new(InMemoryBackend::new()));
        let failure = if rl.fail_closed {
            FailurePolicy::Closed
        } else {
            FailurePolicy::Open
        };
        Ok(Limits {
            ws: RateLimiter::new(backend.clone(), Policy::new("ws", rl.ws))
                .on_failure(failure.clone()),
            backend,
            redis,
            lockout_fallback,
            api: Policy::new("api", rl.api),
            auth: Policy::new("auth", rl.auth),
            auth_failures: Policy::new("auth-failures", rl.auth_failures),
            failure,
            fail_closed: rl.fail_closed,
            headers: rl.headers,
            client_ip: config
                .trusted_proxies
                .clone()
                .header(config.forwarded_header),
        })
    }

    /// Starts the background work: evicting idle keys of the in-process
    /// backend every minute (the backend itself without Redis, the
    /// lockout's fallback with it).
    pub fn start(&self) -> Option<tokio::task::JoinHandle<()>> {
        Some(
            self.lockout_fallback
                .start_eviction(Duration::from_secs(60)),
        )
    }

    /// The api policy, keyed by API key id or user id, else client IP.
    pub fn api_layer(&self) -> RateLimitLayer {
        RateLimitLayer::new(self.backend.clone(), self.api.clone())
            .key(PrincipalOrIp::with_fallback(self.client_ip.clone()))
            .on_failure(self.failure.clone())
            .headers(self.headers)
    }

    /// The auth policy as a limiter, for logins that are not JSON (the
    /// OAuth login form): key `email:<lower-cased address>`, the bucket
    /// [`auth_layer`](Self::auth_layer) gives the same address.
    pub fn login_limiter(&self) -> RateLimiter {
        RateLimiter::new(self.backend.clone(), self.auth.clone()).on_failure(self.failure.clone())
    }

    /// The auth policy for `POST /oauth/register` (dynamic client
    /// registration), per client address; other requests pass.
    pub fn registration_layer(&self) -> RateLimitLayer {
        RateLimitLayer::new(self.backend.clone(), self.auth.clone())
            .key(self.client_ip.clone())
            .on_failure(self.failure.clone())
            .headers(self.headers)
            .skip(|request: &RequestInfo<'_>| request.uri.path() != "/oauth/register")
    }

    /// The auth policy of login and register, keyed by the lower-cased
    /// e-mail of the body (one bucket for both routes), else client IP.
    pub fn auth_layer(&self) -> BodyRateLimitLayer {
        // The server's body limit applies first; this is only the buffer.
        const BUFFER: usize = 1024 * 1024;
        BodyRateLimitLayer::new(
            self.backend.clone(),
            self.auth.clone(),
            // Every buffered body is read for the e-mail: with a smaller
            // bound, padding a login would move it to the IP's bucket and
            // out of the per-account limit.
            JsonBodyField::new("email", BUFFER, self.client_ip.clone()),
        )
        .on_failure(self.failure.clone())
        .headers(self.headers)
        .max_buffer(BUFFER)
    }

    /// The auth-failures policy: refused credentials and failed logins per
    /// client IP; once used up, that IP gets `429` before any credential is
    /// checked. Health checks are never limited.
    ///
    /// Only requests that can fail for credentials ([`can_fail`]) reserve an
    /// attempt; the others are refused only while their IP is locked out.
    /// The lockout never fails open: when the backend (Redis) fails, it
    /// counts in process (per replica), whatever `MCP_RATE_LIMIT_FAIL` says.
    pub fn failures_layer(&self) -> FailureLimitLayer {
        FailureLimitLayer::new(
            self.backend.clone(),
            self.auth_failures.clone(),
            |status: http::StatusCode, extensions: &http::Extensions| {
                status == http::StatusCode::UNAUTHORIZED
                    && extensions
                        .get::<ProblemCode>()
                        .is_none_or(|code| code.as_str() != mcp_core::code::MISSING_CREDENTIALS)
            },
        )
        .key(self.client_ip.clone())
        .skip(|request: &RequestInfo<'_>| request.uri.path().starts_with("/health"))
        .attempts(can_fail)
        .on_failure(FailurePolicy::Fallback(self.lockout_fallback.clone()))
        .headers(self.headers)
    }

    /// The ws policy, for each WebSocket message, with the server's
    /// failure policy.
    pub fn ws_limiter(&self) -> &RateLimiter {
        &self.ws
    }

    /// `ok`, `down` or `disabled` (no `REDIS_URL`), and whether a down Redis
    /// makes the server unready (only when failing closed).
    pub async fn redis_check(&self) -> (&'static str, bool) {
        let Some(redis) = &self.redis else {
            return ("disabled", false);
        };
        match tokio::time::timeout(Duration::from_secs(1), redis.ping()).await {
            Ok(Ok(())) => ("ok", false),
            _ => ("down", self.fail_closed),
        }
    }
}

/// Whether a request can end in a counted failure: it presents a credential
/// (`Authorization`, `X-API-Key`, or a `bearer.<token>` WebSocket
/// subprotocol, which the `/ws` route turns into `Authorization`), or it is
/// a login or registration, which check a password or refuse an account,
/// or an OAuth login form or token request (a password or a client secret).
/// Everything else reaching the failures layer has nothing to refuse: a
/// missing credential is `401 missing_credentials`, never counted.
pub fn can_fail(request: &RequestInfo<'_>) -> bool {
    let headers = request.headers;
    headers.contains_key(http::header::AUTHORIZATION)
        || headers.contains_key(&mcp_apikeys::API_KEY_HEADER)
        || headers
            .get_all(http::header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .any(|protocol| protocol.trim().starts_with(TOKEN_SUBPROTOCOL_PREFIX))
        || matches!(
            request.uri.path(),
            "/api/auth/login" | "/api/auth/register" | "/oauth/token" | "/oauth/revoke"
        )
        || (request.uri.path() == "/oauth/authorize" && request.method == http::Method::POST)
}
