//! The settings this version knows, in the order of the docs.

/// Declares each setting once: its constant and its place in
/// [`ALL`].
macro_rules! settings {
    ($($(#[$doc:meta])* $name:ident = $env:literal, $key:literal $(, $secret:ident)?;)*) => {
        $($(#[$doc])* pub const $name: Setting = Setting {
            env: $env,
            key: $key,
            secret: settings!(@secret $($secret)?),
        };)*
        /// Every setting.
        pub const ALL: &[Setting] = &[$($name),*];
    };
    (@secret secret) => { true };
    (@secret) => { false };
}

use super::Setting;

// Secret settings (URLs and keys that may carry a password) never show
// their value in an error or a log.
settings! {
    /// Address and port to listen on.
    BIND = "MCP_BIND", "bind";
    /// The server's own origin; `<public_url>/mcp` is the token audience.
    PUBLIC_URL = "MCP_PUBLIC_URL", "public_url";
    /// `sqlite://...` or `postgres://...`.
    DATABASE_URL = "DATABASE_URL", "database_url", secret;
    /// Most connections the pool opens.
    DB_MAX_CONNECTIONS = "MCP_DB_MAX_CONNECTIONS", "db_max_connections";
    /// How long a request waits for a database connection.
    DB_ACQUIRE_TIMEOUT = "MCP_DB_ACQUIRE_TIMEOUT", "db_acquire_timeout";
    /// Largest request body accepted.
    BODY_LIMIT = "MCP_BODY_LIMIT", "body_limit";
    /// Longest a request may take to produce its response head.
    REQUEST_TIMEOUT = "MCP_REQUEST_TIMEOUT", "request_timeout";
    /// How long in-flight requests may run after a shutdown signal.
    SHUTDOWN_TIMEOUT = "MCP_SHUTDOWN_TIMEOUT", "shutdown_timeout";
    /// How often a WebSocket connection is pinged.
    WS_PING_INTERVAL = "MCP_WS_PING_INTERVAL", "ws_ping_interval";
    /// How long a WebSocket connection may stay silent (no message, no pong).
    WS_IDLE_TIMEOUT = "MCP_WS_IDLE_TIMEOUT", "ws_idle_timeout";
    /// Most WebSocket connections open at once for one user (or external
    /// subject).
    WS_MAX_CONNECTIONS_PER_PRINCIPAL = "MCP_WS_MAX_CONNECTIONS_PER_PRINCIPAL", "ws_max_connections_per_principal";
    /// How long a client may take to send a whole request head.
    HEADER_READ_TIMEOUT = "MCP_HEADER_READ_TIMEOUT", "header_read_timeout";
    /// How long a kept-alive connection may wait for its next request.
    KEEP_ALIVE_TIMEOUT = "MCP_KEEP_ALIVE_TIMEOUT", "keep_alive_timeout";
    /// Most connections open at once.
    MAX_CONNECTIONS = "MCP_MAX_CONNECTIONS", "max_connections";
    /// Most connections open at once from one client address.
    MAX_CONNECTIONS_PER_IP = "MCP_MAX_CONNECTIONS_PER_IP", "max_connections_per_ip";
    /// Largest request head (request line and headers).
    MAX_HEADER_BYTES = "MCP_MAX_HEADER_BYTES", "max_header_bytes";
    /// Log filter (`tracing` directives).
    LOG = "MCP_LOG", "log";
    /// `text` or `json`.
    LOG_FORMAT = "MCP_LOG_FORMAT", "log_format";
    /// HMAC signing secret (at least 32 bytes).
    JWT_SECRET = "MCP_JWT_SECRET", "jwt_secret", secret;
    /// Signing algorithm of issued tokens.
    JWT_ALGORITHM = "MCP_JWT_ALGORITHM", "jwt_algorithm";
    /// PEM private key for RS256 / ES256 / EdDSA.
    JWT_PRIVATE_KEY_FILE = "MCP_JWT_PRIVATE_KEY_FILE", "jwt_private_key_file";
    /// PEM public key matching the private key.
    JWT_PUBLIC_KEY_FILE = "MCP_JWT_PUBLIC_KEY_FILE", "jwt_public_key_file";
    /// `kid` of issued tokens.
    JWT_KEY_ID = "MCP_JWT_KEY_ID", "jwt_key_id";
    /// Lifetime of issued tokens.
    JWT_TTL = "MCP_JWT_TTL", "jwt_ttl";
    /// Clock-skew tolerance on `exp`/`nbf`.
    JWT_LEEWAY = "MCP_JWT_LEEWAY", "jwt_leeway";
    /// An external issuer whose tokens are accepted (with a JWKS URL).
    JWT_ISSUER = "MCP_JWT_ISSUER", "jwt_issuer";
    /// The audience tokens must carry.
    JWT_AUDIENCE = "MCP_JWT_AUDIENCE", "jwt_audience";
    /// The external issuer's JWKS.
    JWT_JWKS_URL = "MCP_JWT_JWKS_URL", "jwt_jwks_url";
    /// Which of the external issuer's role values grant which local role
    /// (`claim=role,...`); none by default, so its users are plain users.
    JWT_ROLE_MAP = "MCP_JWT_ROLE_MAP", "jwt_role_map";
    /// Whether `POST /api/auth/register` exists.
    ALLOW_REGISTRATION = "MCP_ALLOW_REGISTRATION", "allow_registration";
    /// How long a user's deletion or demotion may take to reach its tokens.
    USER_CACHE_TTL = "MCP_USER_CACHE_TTL", "user_cache_ttl";
    /// Pepper for API key hashes (HMAC-SHA-256); SHA-256 without it.
    API_KEY_PEPPER = "MCP_API_KEY_PEPPER", "api_key_pepper", secret;
    /// E-mail of the admin created on first start.
    ADMIN_EMAIL = "MCP_ADMIN_EMAIL", "admin_email";
    /// Redis for shared rate limits; unset: in process.
    REDIS_URL = "REDIS_URL", "redis_url", secret;
    /// Prefix of rate-limit keys in Redis.
    RATE_LIMIT_PREFIX = "MCP_RATE_LIMIT_PREFIX", "rate_limit_prefix";
    /// The api policy.
    RATE_LIMIT_API = "MCP_RATE_LIMIT_API", "rate_limit_api";
    /// The auth (login/register, per e-mail) policy.
    RATE_LIMIT_AUTH = "MCP_RATE_LIMIT_AUTH", "rate_limit_auth";
    /// The per-WebSocket-message policy.
    RATE_LIMIT_WS = "MCP_RATE_LIMIT_WS", "rate_limit_ws";
    /// The auth-failures (brute force) policy.
    RATE_LIMIT_AUTH_FAILURES = "MCP_RATE_LIMIT_AUTH_FAILURES", "rate_limit_auth_failures";
    /// `open` or `closed` when the rate-limit backend fails.
    RATE_LIMIT_FAIL = "MCP_RATE_LIMIT_FAIL", "rate_limit_fail";
    /// Which rate-limit headers: `standard`, `draft`, `legacy`.
    RATE_LIMIT_HEADERS = "MCP_RATE_LIMIT_HEADERS", "rate_limit_headers";
    /// Proxies whose `X-Forwarded-For` / `Forwarded` are believed.
    TRUSTED_PROXIES = "MCP_TRUSTED_PROXIES", "trusted_proxies";
    /// The one forwarding header read from trusted proxies:
    /// `x-forwarded-for` or `forwarded`.
    FORWARDED_HEADER = "MCP_FORWARDED_HEADER", "forwarded_header";
    /// CORS: unset/`false`, `*`, or a comma list of origins.
    CORS_ORIGIN = "MCP_CORS_ORIGIN", "cors_origin";
    /// Host names the server answers to.
    ALLOWED_HOSTS = "MCP_ALLOWED_HOSTS", "allowed_hosts";
    /// `on` (default) or `off`: the Host/Origin guard.
    ORIGIN_GUARD = "MCP_ORIGIN_GUARD", "origin_guard";
    /// Whether `Origin: null` passes the guard.
    ALLOW_NULL_ORIGIN = "MCP_ALLOW_NULL_ORIGIN", "allow_null_origin";
    /// `on` (default) or `off`: the OAuth authorization server.
    OAUTH = "MCP_OAUTH", "oauth";
    /// `on` (default) or `off`: dynamic client registration.
    OAUTH_REGISTRATION = "MCP_OAUTH_REGISTRATION", "oauth_registration";
    /// Tests only: client metadata documents over http, on loopback or
    /// private addresses, with any certificate.
    OAUTH_INSECURE_CLIENT_URLS = "MCP_OAUTH_INSECURE_CLIENT_URLS", "oauth_insecure_client_urls";
    /// Where audit events go: `database`, `stdout` or `off`.
    AUDIT_SINK = "MCP_AUDIT_SINK", "audit_sink";
    /// How long audit events are kept in the database.
    AUDIT_RETENTION = "MCP_AUDIT_RETENTION", "audit_retention";
}
