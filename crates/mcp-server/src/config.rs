//! Configuration: `MCP_*` environment variables over an optional TOML file
//! over defaults.
//!
//! Every setting has an environment name (`MCP_BIND`) and a file key
//! (`bind`). A value that cannot be used stops start-up with one line naming
//! the setting, where it came from and what is wrong; a secret's value is
//! never echoed. An unknown `MCP_*` variable is a warning (it may belong to a
//! newer version); an unknown key in the file is an error (the file is ours
//! alone, so it is a typo).
//!
//! `docs/configuration.md` lists every setting.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

/// One setting: its environment variable and its key in the TOML file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Setting {
    /// Environment variable name, such as `MCP_BIND`.
    pub env: &'static str,
    /// Key in the TOML file, such as `bind`.
    pub key: &'static str,
    /// A secret: its value never appears in an error or a log.
    pub secret: bool,
}

/// Declares each setting once: its constant and its place in
/// [`ALL`](settings::ALL).
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

/// The settings this version knows, in the order of the docs.
pub mod settings {
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
    }
}

/// Environment variables that are not settings but are ours all the same.
const OTHER_KNOWN_ENV: &[&str] = &["MCP_CONFIG"];

/// Where a value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// The built-in default.
    Default,
    /// The environment.
    Env,
    /// The TOML file at this path.
    File(PathBuf),
}

/// Why the configuration cannot be used. Each renders as one line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A setting's value is unusable.
    #[error("invalid setting {}: {reason}", describe(.setting, .origin, .value.as_deref()))]
    Invalid {
        /// The setting.
        setting: Setting,
        /// Where the value came from.
        origin: Origin,
        /// The value, unless the setting is secret.
        value: Option<String>,
        /// What is wrong with it.
        reason: String,
    },
    /// The file cannot be read or parsed.
    #[error("config file {}: {message}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong, on one line.
        message: String,
    },
    /// The file has a key that is not a setting.
    #[error("config file {}: unknown setting `{key}`", .path.display())]
    UnknownKey {
        /// The file.
        path: PathBuf,
        /// The key.
        key: String,
    },
}

fn describe(setting: &Setting, origin: &Origin, value: Option<&str>) -> String {
    let shown = value.map(|v| format!("={v:?}")).unwrap_or_default();
    match origin {
        Origin::Env => format!("{}{shown} (from the environment)", setting.env),
        Origin::File(path) => format!("`{}`{shown} in {}", setting.key, path.display()),
        Origin::Default => format!("{}{shown} (default)", setting.env),
    }
}

/// Which database, from `DATABASE_URL`.
#[derive(Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (or `sqlite::memory:`).
    Sqlite(String),
    /// A PostgreSQL server.
    Postgres(String),
}

impl DatabaseUrl {
    /// The URL as given.
    pub fn as_str(&self) -> &str {
        match self {
            DatabaseUrl::Sqlite(url) | DatabaseUrl::Postgres(url) => url,
        }
    }

    /// The URL with any password replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        match url::Url::parse(self.as_str()) {
            Ok(mut url) if url.password().is_some() => {
                // Only fails for URLs that cannot have a password.
                let _ = url.set_password(Some("***"));
                url.to_string()
            }
            _ => self.as_str().to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(value: &str) -> Result<Self, String> {
        let scheme = value
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .ok_or_else(|| "expected a URL such as sqlite://mcp-server.db".to_owned())?;
        match scheme.as_str() {
            "sqlite" => Ok(DatabaseUrl::Sqlite(value.to_owned())),
            "postgres" | "postgresql" => Ok(DatabaseUrl::Postgres(value.to_owned())),
            other => Err(format!(
                "unsupported scheme {other:?}; use sqlite:// or postgres://"
            )),
        }
    }
}

/// Log output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How the server signs its tokens.
#[derive(Clone)]
pub enum SigningConfig {
    /// An HMAC secret: from `MCP_JWT_SECRET`, or generated and kept in the
    /// database when `None`.
    Hmac {
        /// `HS256`, `HS384` or `HS512`.
        algorithm: mcp_auth::Algorithm,
        /// The secret, at least 32 bytes.
        secret: Option<Vec<u8>>,
    },
    /// A key pair from PEM files.
    KeyPair {
        /// `RS256`, `ES256` or `EdDSA`.
        algorithm: mcp_auth::Algorithm,
        /// The private key, PEM.
        private_pem: Vec<u8>,
        /// The public key, PEM.
        public_pem: Vec<u8>,
    },
}

impl fmt::Debug for SigningConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SigningConfig::Hmac { algorithm, secret } => f
                .debug_struct("Hmac")
                .field("algorithm", algorithm)
                .field("secret", &secret.as_ref().map(|_| "***"))
                .finish(),
            SigningConfig::KeyPair { algorithm, .. } => f
                .debug_struct("KeyPair")
                .field("algorithm", algorithm)
                .finish_non_exhaustive(),
        }
    }
}

/// Token settings.
#[derive(Clone, Debug)]
pub struct JwtConfig {
    /// The signing key.
    pub signing: SigningConfig,
    /// `kid` of issued tokens.
    pub key_id: Option<String>,
    /// Lifetime of issued tokens (1 h).
    pub ttl: Duration,
    /// Clock-skew tolerance (30 s).
    pub leeway: Duration,
    /// The audience every accepted token must carry (`<public_url>/mcp`).
    pub audience: String,
    /// An external issuer and its JWKS URL, whose tokens are accepted too.
    pub external: Option<(String, String)>,
    /// The external issuer's role values and the local role (`user` or
    /// `admin`) each grants; its principals without one are `user`.
    pub role_map: Vec<(String, String)>,
}

/// Database settings.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// Which database.
    pub url: DatabaseUrl,
    /// Most connections the pool opens.
    pub max_connections: u32,
    /// How long a request waits for a connection before `503 unavailable`.
    pub acquire_timeout: Duration,
}

/// The server's whole configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (`127.0.0.1:8080`).
    pub bind: SocketAddr,
    /// The server's own origin, without a trailing slash
    /// (`http://127.0.0.1:8080`).
    pub public_url: String,
    /// The database.
    pub database: DatabaseConfig,
    /// Largest request body in bytes (102,400).
    pub body_limit: usize,
    /// Longest a request may take to produce its response head (30 s).
    pub request_timeout: Duration,
    /// How long in-flight requests may finish after SIGINT/SIGTERM (30 s).
    pub shutdown_timeout: Duration,
    /// How often a WebSocket connection is pinged (30 s).
    pub ws_ping_interval: Duration,
    /// How long a WebSocket connection may be silent before it is closed
    /// (120 s).
    pub ws_idle_timeout: Duration,
    /// Most WebSocket connections one user may hold open (16).
    pub ws_max_connections_per_principal: usize,
    /// Timeouts and caps of client connections.
    pub connections: ConnectionConfig,
    /// `tracing` filter directives (`info`).
    pub log_filter: String,
    /// Log format (`text`).
    pub log_format: LogFormat,
    /// Tokens.
    pub jwt: JwtConfig,
    /// Whether `POST /api/auth/register` exists (false).
    pub allow_registration: bool,
    /// Upper bound for a deleted or demoted user's tokens to stop working
    /// on another replica (10 s; at once on the replica that made the change).
    pub user_cache_ttl: Duration,
    /// Pepper of API key hashes.
    pub api_key_pepper: Option<Secret>,
    /// E-mail of the admin created on first start (`admin@localhost`).
    pub admin_email: String,
    /// Rate limits.
    pub rate_limits: RateLimitConfig,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: mcp_ratelimit::TrustedProxyIp,
    /// The one header read from them (`X-Forwarded-For`).
    pub forwarded_header: mcp_ratelimit::ForwardedHeader,
    /// CORS.
    pub cors: mcp_cors::CorsPolicy,
    /// The Host/Origin guard (built from `cors`), `None` when turned off.
    pub guard: Option<mcp_cors::HostOriginGuardLayer>,
    /// The hosts the guard allows, normalised, for rmcp's own check.
    pub allowed_hosts: Vec<String>,
}

/// `scheme://host:port` of `url`, the port always written (rmcp's origin
/// format).
pub fn origin_with_port(url: &str) -> Option<String> {
    mcp_cors::Origin::parse(url.trim_end_matches('/').as_bytes()).map(|o| o.with_port())
}

/// Timeouts and caps of client connections, against slow and greedy
/// clients: `mcp-serve`'s limits, whose defaults are the server's.
pub use mcp_serve::ConnectionLimits as ConnectionConfig;

/// The rate-limit policies and their backend.
#[derive(Clone, Debug)]
pub struct RateLimitConfig {
    /// `REDIS_URL`: shared limits; `None`: in process.
    pub redis_url: Option<Secret>,
    /// Redis key prefix (`mcp:rl`).
    pub prefix: String,
    /// `/api/**` and `/mcp` (100/60s).
    pub api: mcp_ratelimit::Quota,
    /// Login and register per e-mail (10/900s).
    pub auth: mcp_ratelimit::Quota,
    /// WebSocket messages (1000/60s).
    pub ws: mcp_ratelimit::Quota,
    /// Refused credentials per IP (30/60s).
    pub auth_failures: mcp_ratelimit::Quota,
    /// Refuse (503) instead of letting through when the backend fails.
    pub fail_closed: bool,
    /// Which headers.
    pub headers: mcp_ratelimit::HeaderStyle,
}

/// A secret setting; `Debug` never shows it.
#[derive(Clone)]
pub struct Secret(pub Vec<u8>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// The raw values, before parsing: environment over file.
struct Sources {
    file_path: Option<PathBuf>,
    file: BTreeMap<String, String>,
    env: BTreeMap<String, String>,
}

impl Sources {
    fn get(&self, setting: &Setting) -> Option<(&str, Origin)> {
        if let Some(value) = self.env.get(setting.env) {
            return Some((value, Origin::Env));
        }
        let path = self.file_path.clone()?;
        self.file
            .get(setting.key)
            .map(|value| (value.as_str(), Origin::File(path)))
    }

    /// Parses `setting` with `parse`, or returns `default` when it is unset.
    fn parse<T>(
        &self,
        setting: Setting,
        default: impl FnOnce() -> T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Result<T, ConfigError> {
        match self.get(&setting) {
            None => Ok(default()),
            Some((raw, origin)) => parse(raw.trim()).map_err(|reason| ConfigError::Invalid {
                setting,
                origin,
                value: (!setting.secret).then(|| raw.to_owned()),
                reason,
            }),
        }
    }
}

impl Config {
    /// Loads the configuration from the process environment and, when given,
    /// a TOML file. Returns warnings to log once logging is up.
    pub fn from_env(file: Option<&Path>) -> Result<(Config, Vec<String>), ConfigError> {
        Self::load(file, std::env::vars_os())
    }

    /// Loads the configuration from `env` and, when given, a TOML file.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (OsString, OsString)>,
    ) -> Result<(Config, Vec<String>), ConfigError> {
        let mut warnings = Vec::new();
        let env = read_env(env, &mut warnings)?;
        let (file_path, file) = match file {
            Some(path) => (Some(path.to_owned()), read_file(path)?),
            None => (None, BTreeMap::new()),
        };
        let sources = Sources {
            file_path,
            file,
            env,
        };
        let config = Config::parse(&sources)?;
        Ok((config, warnings))
    }

    fn parse(s: &Sources) -> Result<Config, ConfigError> {
        use settings::*;

        let bind = s.parse(
            BIND,
            || SocketAddr::from(([127, 0, 0, 1], 8080)),
            |v| {
                v.parse::<SocketAddr>().map_err(|_| {
                    "not a socket address; expected ip:port such as 127.0.0.1:8080".to_owned()
                })
            },
        )?;
        let public_url = s.parse(PUBLIC_URL, || format!("http://{bind}"), parse_public_url)?;
        let url = s.parse(
            DATABASE_URL,
            || DatabaseUrl::Sqlite("sqlite://mcp-server.db".to_owned()),
            DatabaseUrl::from_str,
        )?;
        let max_connections = s.parse(
            DB_MAX_CONNECTIONS,
            || 10,
            |v| match v.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("expected a whole number from 1 to 1000".to_owned()),
            },
        )?;
        let acquire_timeout = s.parse(
            DB_ACQUIRE_TIMEOUT,
            || Duration::from_secs(5),
            |v| parse_duration(v, Duration::from_millis(10)),
        )?;
        let body_limit = s.parse(BODY_LIMIT, || 100 * 1024, parse_byte_size)?;
        let request_timeout = s.parse(
            REQUEST_TIMEOUT,
            || Duration::from_secs(30),
            |v| parse_duration(v, Duration::from_millis(1)),
        )?;
        let shutdown_timeout = s.parse(
            SHUTDOWN_TIMEOUT,
            || Duration::from_secs(30),
            |v| parse_duration(v, Duration::ZERO),
        )?;
        let ws_ping_interval = s.parse(
            WS_PING_INTERVAL,
            || Duration::from_secs(30),
            |v| parse_duration(v, Duration::from_millis(10)),
        )?;
        let ws_idle_timeout = s.parse(
            WS_IDLE_TIMEOUT,
            || Duration::from_secs(120),
            |v| parse_duration(v, Duration::from_millis(10)),
        )?;
        let ws_max_connections_per_principal = s.parse(
            WS_MAX_CONNECTIONS_PER_PRINCIPAL,
            || 16,
            |v| match v.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err("expected a whole number of at least 1".to_owned()),
            },
        )?;
        let connections = parse_connections(s)?;
        let log_filter = s.parse(
            LOG,
            || "info".to_owned(),
            |v| {
                tracing_subscriber::EnvFilter::try_new(v)
                    .map(|_| v.to_owned())
                    .map_err(|e| format!("not a log filter: {e}"))
            },
        )?;
        let log_format = s.parse(
            LOG_FORMAT,
            || LogFormat::Text,
            |v| match v.to_ascii_lowercase().as_str() {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err("expected `text` or `json`".to_owned()),
            },
        )?;
        let jwt = parse_jwt(s, &public_url)?;
        let allow_registration = s.parse(ALLOW_REGISTRATION, || false, parse_bool)?;
        let user_cache_ttl = s.parse(
            USER_CACHE_TTL,
            || Duration::from_secs(10),
            |v| parse_duration(v, Duration::ZERO),
        )?;
        let api_key_pepper = s.parse(
            API_KEY_PEPPER,
            || None,
            |v| {
                if v.len() < 16 {
                    Err("must be at least 16 bytes".to_owned())
                } else {
                    Ok(Some(Secret(v.as_bytes().to_vec())))
                }
            },
        )?;
        let admin_email = s.parse(
            ADMIN_EMAIL,
            || "admin@localhost".to_owned(),
            |v| {
                let v = v.trim().to_lowercase();
                if v.contains('@') && !v.starts_with('@') && !v.ends_with('@') && v.len() <= 254 {
                    Ok(v)
                } else {
                    Err("expected an e-mail address".to_owned())
                }
            },
        )?;
        let rate_limits = parse_rate_limits(s)?;
        let cors = s.parse(CORS_ORIGIN, mcp_cors::CorsPolicy::disabled, |v| {
            v.parse::<mcp_cors::CorsPolicy>().map_err(|e| e.to_string())
        })?;
        let (guard, allowed_hosts) = parse_guard(s, bind, &public_url, &cors)?;
        let trusted_proxies = s.parse(
            TRUSTED_PROXIES,
            || mcp_ratelimit::TrustedProxyIp::new([]),
            |v| {
                v.parse()
                    .map_err(|e: mcp_ratelimit::ProxyListError| e.to_string())
            },
        )?;
        let forwarded_header = s.parse(FORWARDED_HEADER, Default::default, |v| {
            v.parse::<mcp_ratelimit::ForwardedHeader>()
                .map_err(|e| e.to_string())
        })?;
        Ok(Config {
            cors,
            guard,
            allowed_hosts,
            rate_limits,
            trusted_proxies,
            forwarded_header,
            jwt,
            allow_registration,
            user_cache_ttl,
            api_key_pepper,
            admin_email,
            bind,
            public_url,
            database: DatabaseConfig {
                url,
                max_connections,
                acquire_timeout,
            },
            body_limit,
            request_timeout,
            shutdown_timeout,
            ws_ping_interval,
            ws_idle_timeout,
            ws_max_connections_per_principal,
            connections,
            log_filter,
            log_format,
        })
    }
}

fn parse_guard(
    s: &Sources,
    bind: SocketAddr,
    public_url: &str,
    cors: &mcp_cors::CorsPolicy,
) -> Result<(Option<mcp_cors::HostOriginGuardLayer>, Vec<String>), ConfigError> {
    use settings::*;
    let enabled = s.parse(
        ORIGIN_GUARD,
        || true,
        |v| match v.to_ascii_lowercase().as_str() {
            "on" | "true" => Ok(true),
            "off" | "false" => Ok(false),
            _ => Err("expected on or off".to_owned()),
        },
    )?;
    if !enabled {
        return Ok((None, Vec::new()));
    }
    let allow_null = s.parse(ALLOW_NULL_ORIGIN, || false, parse_bool)?;
    let mut hosts = s.parse(
        ALLOWED_HOSTS,
        || {
            let mut hosts = mcp_cors::AllowedHosts::loopback();
            if !bind.ip().is_unspecified() {
                // A socket address is always a valid host.
                hosts.extend(bind.to_string().parse::<mcp_cors::AllowedHost>().ok());
            }
            hosts
        },
        |v| {
            v.parse::<mcp_cors::AllowedHosts>()
                .map_err(|e| e.to_string())
        },
    )?;
    // The public URL's host and origin are always ours.
    let public = url::Url::parse(public_url).ok();
    if let Some(host) = public.as_ref().and_then(|u| {
        let host = u.host_str()?;
        Some(match u.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        })
    }) {
        let host = host
            .parse::<mcp_cors::AllowedHost>()
            .map_err(|e| ConfigError::Invalid {
                setting: ALLOWED_HOSTS,
                origin: Origin::Default,
                value: None,
                reason: e.to_string(),
            })?;
        hosts.push(host);
    }
    let mut guard = mcp_cors::HostOriginGuardLayer::new(cors.clone())
        .only_hosts(hosts)
        .allow_null_origin(allow_null);
    if let Ok(origin) = public_url.trim_end_matches('/').parse::<mcp_cors::Origin>() {
        guard = guard.own_origin(origin);
    }
    // rmcp checks `Host` again behind the guard, from the same list.
    let rmcp_hosts = guard.exact_hosts();
    Ok((Some(guard), rmcp_hosts))
}

fn parse_rate_limits(s: &Sources) -> Result<RateLimitConfig, ConfigError> {
    use settings::*;
    let quota = |setting: Setting, default: &str| {
        s.parse(
            setting,
            || {
                default
                    .parse()
                    .unwrap_or_else(|_| unreachable!("valid default"))
            },
            |v| {
                v.parse::<mcp_ratelimit::Quota>()
                    .map_err(|e| format!("{e} (such as 100/60s)"))
            },
        )
    };
    let api = quota(RATE_LIMIT_API, "100/60s")?;
    let auth = quota(RATE_LIMIT_AUTH, "10/900s")?;
    let ws = quota(RATE_LIMIT_WS, "1000/60s")?;
    let auth_failures = quota(RATE_LIMIT_AUTH_FAILURES, "30/60s")?;
    let fail_closed = s.parse(
        RATE_LIMIT_FAIL,
        || false,
        |v| {
            v.parse::<mcp_ratelimit::FailurePolicy>()
                .map(|policy| matches!(policy, mcp_ratelimit::FailurePolicy::Closed))
                .map_err(|e| e.to_string())
        },
    )?;
    let headers = s.parse(
        RATE_LIMIT_HEADERS,
        mcp_ratelimit::HeaderStyle::default,
        |v| {
            v.parse::<mcp_ratelimit::HeaderStyle>()
                .map_err(|e| e.to_string())
        },
    )?;
    let redis_url = s.parse(
        REDIS_URL,
        || None,
        |v| {
            let url = url::Url::parse(v).map_err(|_| "expected a redis:// URL".to_owned())?;
            if matches!(url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                Ok(Some(Secret(v.as_bytes().to_vec())))
            } else {
                Err("expected a redis:// URL".to_owned())
            }
        },
    )?;
    let prefix = s.parse(
        RATE_LIMIT_PREFIX,
        || "mcp:rl".to_owned(),
        |v| {
            if v.is_empty() || v.len() > 64 || v.chars().any(|c| c.is_whitespace()) {
                Err("expected 1 to 64 characters without spaces".to_owned())
            } else {
                Ok(v.to_owned())
            }
        },
    )?;
    Ok(RateLimitConfig {
        redis_url,
        prefix,
        api,
        auth,
        ws,
        auth_failures,
        fail_closed,
        headers,
    })
}

fn parse_connections(s: &Sources) -> Result<ConnectionConfig, ConfigError> {
    use settings::*;
    let defaults = ConnectionConfig::default();
    let count = |v: &str| match v.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 1000000".to_owned()),
    };
    Ok(ConnectionConfig {
        header_read_timeout: s.parse(
            HEADER_READ_TIMEOUT,
            || defaults.header_read_timeout,
            |v| parse_duration(v, Duration::from_millis(10)),
        )?,
        keep_alive_timeout: s.parse(
            KEEP_ALIVE_TIMEOUT,
            || defaults.keep_alive_timeout,
            |v| parse_duration(v, Duration::from_millis(10)),
        )?,
        max_connections: s.parse(MAX_CONNECTIONS, || defaults.max_connections, count)?,
        max_connections_per_ip: s.parse(
            MAX_CONNECTIONS_PER_IP,
            || defaults.max_connections_per_ip,
            count,
        )?,
        max_header_bytes: s.parse(
            MAX_HEADER_BYTES,
            || defaults.max_header_bytes,
            |v| match parse_byte_size(v)? {
                // hyper's read buffer (about 400 KB) caps heads anyway.
                bytes if (1024..=256 * 1024).contains(&bytes) => Ok(bytes),
                _ => Err("must be from 1KiB to 256KiB".to_owned()),
            },
        )?,
    })
}

fn parse_bool(value: &str) -> Result<bool, String> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err("expected true or false".to_owned()),
    }
}

fn parse_jwt(s: &Sources, public_url: &str) -> Result<JwtConfig, ConfigError> {
    use mcp_auth::Algorithm;
    use settings::*;

    let algorithm = s.parse(
        JWT_ALGORITHM,
        || Algorithm::HS256,
        |v| {
            v.parse::<mcp_auth::SigningAlgorithm>()
                .map(Algorithm::from)
                .map_err(|e| e.to_string())
        },
    )?;
    let read_pem = |v: &str| std::fs::read(v).map_err(|e| format!("cannot read the key file: {e}"));
    let private_pem = s.parse(JWT_PRIVATE_KEY_FILE, || None, |v| read_pem(v).map(Some))?;
    let public_pem = s.parse(JWT_PUBLIC_KEY_FILE, || None, |v| read_pem(v).map(Some))?;
    let secret = s.parse(
        JWT_SECRET,
        || None,
        |v| {
            if v.len() < mcp_auth::MIN_HMAC_SECRET_BYTES {
                Err(format!(
                    "must be at least {} bytes",
                    mcp_auth::MIN_HMAC_SECRET_BYTES
                ))
            } else {
                Ok(Some(v.as_bytes().to_vec()))
            }
        },
    )?;
    let invalid = |setting: Setting, reason: &str| ConfigError::Invalid {
        origin: if s.env.contains_key(setting.env) {
            Origin::Env
        } else {
            s.file_path.clone().map_or(Origin::Default, Origin::File)
        },
        setting,
        value: None,
        reason: reason.to_owned(),
    };
    let signing = match algorithm {
        Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
            SigningConfig::Hmac { algorithm, secret }
        }
        _ => {
            let private_pem = private_pem.ok_or_else(|| {
                invalid(
                    JWT_PRIVATE_KEY_FILE,
                    "required by an asymmetric MCP_JWT_ALGORITHM",
                )
            })?;
            let public_pem = public_pem.ok_or_else(|| {
                invalid(
                    JWT_PUBLIC_KEY_FILE,
                    "required by an asymmetric MCP_JWT_ALGORITHM",
                )
            })?;
            SigningConfig::KeyPair {
                algorithm,
                private_pem,
                public_pem,
            }
        }
    };
    let key_id = s.parse(JWT_KEY_ID, || None, |v| Ok(Some(v.to_owned())))?;
    let ttl = s.parse(
        JWT_TTL,
        || Duration::from_secs(3600),
        |v| parse_duration(v, Duration::from_secs(1)),
    )?;
    let leeway = s.parse(
        JWT_LEEWAY,
        || Duration::from_secs(30),
        |v| parse_duration(v, Duration::ZERO),
    )?;
    let audience = s.parse(
        JWT_AUDIENCE,
        || format!("{public_url}/mcp"),
        |v| Ok(v.to_owned()),
    )?;
    let issuer = s.parse(JWT_ISSUER, || None, |v| Ok(Some(v.to_owned())))?;
    let jwks = s.parse(
        JWT_JWKS_URL,
        || None,
        |v| {
            mcp_auth::JwksKeys::check_url(v)
                .map(|()| Some(v.to_owned()))
                .map_err(|e| e.to_string())
        },
    )?;
    let role_map = s.parse(JWT_ROLE_MAP, Vec::new, parse_role_map)?;
    let external = match (issuer, jwks) {
        (Some(issuer), Some(jwks)) => Some((issuer, jwks)),
        (None, None) => None,
        (Some(_), None) => {
            return Err(invalid(JWT_JWKS_URL, "required with MCP_JWT_ISSUER"));
        }
        (None, Some(_)) => return Err(invalid(JWT_ISSUER, "required with MCP_JWT_JWKS_URL")),
    };
    if external.is_none() && !role_map.is_empty() {
        return Err(invalid(JWT_ROLE_MAP, "needs MCP_JWT_ISSUER"));
    }
    Ok(JwtConfig {
        signing,
        key_id,
        ttl,
        leeway,
        audience,
        external,
        role_map,
    })
}

/// `claim=role` pairs, comma-separated (a TOML list of them joins the same
/// way); each role is `user` or `admin`.
fn parse_role_map(value: &str) -> Result<Vec<(String, String)>, String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (claim, role) = pair
                .split_once('=')
                .map(|(c, r)| (c.trim(), r.trim()))
                .filter(|(c, _)| !c.is_empty())
                .ok_or_else(|| format!("expected claim=role pairs, got {pair:?}"))?;
            match role {
                "user" | "admin" => Ok((claim.to_owned(), role.to_owned())),
                _ => Err(format!("unknown role {role:?}; expected user or admin")),
            }
        })
        .collect()
}

fn read_env(
    env: impl IntoIterator<Item = (OsString, OsString)>,
    warnings: &mut Vec<String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut known = BTreeMap::new();
    for (name, value) in env {
        let Some(name) = name.to_str() else { continue };
        let setting = settings::ALL.iter().find(|s| s.env == name);
        match (setting, value.into_string()) {
            (Some(_), Ok(value)) => {
                known.insert(name.to_owned(), value);
            }
            (Some(setting), Err(_)) => {
                return Err(ConfigError::Invalid {
                    setting: *setting,
                    origin: Origin::Env,
                    value: None,
                    reason: "not valid UTF-8".to_owned(),
                });
            }
            (None, _) if name.starts_with("MCP_") && !OTHER_KNOWN_ENV.contains(&name) => {
                warnings.push(format!("unknown setting {name} ignored"));
            }
            (None, _) => {}
        }
    }
    Ok(known)
}

fn read_file(path: &Path) -> Result<BTreeMap<String, String>, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let line = e
            .span()
            .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
        let message = e
            .message()
            .lines()
            .next()
            .unwrap_or("invalid TOML")
            .to_owned();
        file_error(match line {
            Some(line) => format!("line {line}: {message}"),
            None => message,
        })
    })?;
    let mut values = BTreeMap::new();
    for (key, value) in table {
        if !settings::ALL.iter().any(|s| s.key == key) {
            return Err(ConfigError::UnknownKey {
                path: path.to_owned(),
                key,
            });
        }
        let text = toml_scalar(&value).ok_or_else(|| {
            file_error(format!(
                "`{key}` must be a string, number, boolean or list of strings"
            ))
        })?;
        values.insert(key, text);
    }
    Ok(values)
}

/// A TOML value as the text an environment variable would hold.
fn toml_scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(i) => Some(i.to_string()),
        toml::Value::Float(f) => Some(f.to_string()),
        toml::Value::Boolean(b) => Some(b.to_string()),
        toml::Value::Array(items) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<Vec<_>>>()
            .map(|items| items.join(",")),
        toml::Value::Datetime(_) | toml::Value::Table(_) => None,
    }
}

/// A duration such as `30s`, `500ms`, `15m`; a bare number is seconds.
fn parse_duration(value: &str, min: Duration) -> Result<Duration, String> {
    let duration = match value.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => humantime::parse_duration(value)
            .map_err(|_| "expected a duration such as 30s, 500ms or 15m".to_owned())?,
    };
    if duration < min {
        return Err(format!(
            "must be at least {}",
            humantime::format_duration(min)
        ));
    }
    Ok(duration)
}

/// A size such as `100KiB`, `1MiB` or `102400` (bytes).
fn parse_byte_size(value: &str) -> Result<usize, String> {
    let size = value
        .parse::<bytesize::ByteSize>()
        .map_err(|_| "expected a size such as 100KiB, 1MiB or 102400".to_owned())?;
    match usize::try_from(size.as_u64()) {
        Ok(bytes) if (1..=1 << 30).contains(&bytes) => Ok(bytes),
        _ => Err("must be from 1 byte to 1GiB".to_owned()),
    }
}

fn parse_public_url(value: &str) -> Result<String, String> {
    let url = url::Url::parse(value)
        .map_err(|_| "expected an http(s) URL such as https://mcp.example.com".to_owned())?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err("expected an http(s) URL such as https://mcp.example.com".to_owned());
    }
    if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
        return Err("must not carry credentials, a query or a fragment".to_owned());
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn env(pairs: &[(&str, &str)]) -> Vec<(OsString, OsString)> {
        pairs
            .iter()
            .map(|(k, v)| (OsString::from(k), OsString::from(v)))
            .collect()
    }

    fn load(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        Config::load(None, env(pairs)).map(|(config, _)| config)
    }

    fn toml_file(text: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn defaults_need_nothing() {
        let config = load(&[]).unwrap();
        assert_eq!(config.bind.to_string(), "127.0.0.1:8080");
        assert_eq!(config.public_url, "http://127.0.0.1:8080");
        assert_eq!(
            config.database.url,
            DatabaseUrl::Sqlite("sqlite://mcp-server.db".into())
        );
        assert_eq!(config.body_limit, 102_400);
        assert_eq!(config.request_timeout, Duration::from_secs(30));
        assert_eq!(config.log_format, LogFormat::Text);
    }

    #[test]
    fn bad_bind_names_the_setting_on_one_line() {
        let err = load(&[("MCP_BIND", "nonsense")]).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("MCP_BIND=\"nonsense\""), "{line}");
        assert!(line.contains("expected ip:port"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn unknown_database_scheme_is_refused_without_echoing_the_secret() {
        let err = load(&[("DATABASE_URL", "mysql://root:hunter2@db/x")]).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("DATABASE_URL"), "{line}");
        assert!(line.contains("unsupported scheme \"mysql\""), "{line}");
        assert!(!line.contains("hunter2"), "{line}");
    }

    #[test]
    fn postgres_urls_are_recognised_and_redacted() {
        let config = load(&[("DATABASE_URL", "postgres://app:s3cret@db:5432/mcp")]).unwrap();
        assert!(matches!(config.database.url, DatabaseUrl::Postgres(_)));
        let shown = format!("{:?}", config);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@db:5432/mcp"), "{shown}");
    }

    #[test]
    fn env_wins_over_file_and_file_over_defaults() {
        let file =
            toml_file("bind = \"127.0.0.1:9000\"\nbody_limit = \"1MiB\"\nlog_format = \"json\"\n");
        let (config, _) =
            Config::load(Some(file.path()), env(&[("MCP_BODY_LIMIT", "2048")])).unwrap();
        assert_eq!(config.bind.port(), 9000);
        assert_eq!(config.public_url, "http://127.0.0.1:9000");
        assert_eq!(config.body_limit, 2048);
        assert_eq!(config.log_format, LogFormat::Json);
    }

    #[test]
    fn file_errors_name_the_key_and_file() {
        let file = toml_file("request_timeout = \"soon\"\n");
        let err = Config::load(Some(file.path()), env(&[])).unwrap_err();
        let line = err.to_string();
        assert!(line.contains("`request_timeout`=\"soon\" in"), "{line}");
        assert!(line.contains("expected a duration"), "{line}");
    }

    #[test]
    fn unknown_file_keys_are_errors_and_unknown_env_vars_warnings() {
        let file = toml_file("bnid = \"127.0.0.1:1\"\n");
        let err = Config::load(Some(file.path()), env(&[])).unwrap_err();
        assert!(err.to_string().contains("unknown setting `bnid`"));

        let (_, warnings) = Config::load(
            None,
            env(&[("MCP_BIDN", "x"), ("MCP_CONFIG", "y"), ("HOME", "/")]),
        )
        .unwrap();
        assert_eq!(
            warnings,
            vec!["unknown setting MCP_BIDN ignored".to_owned()]
        );
    }

    #[test]
    fn broken_toml_is_one_line_with_a_line_number() {
        let file = toml_file("bind = \"127.0.0.1:1\"\nthis is not toml\n");
        let line = Config::load(Some(file.path()), env(&[]))
            .unwrap_err()
            .to_string();
        assert!(line.contains("line 2"), "{line}");
        assert!(!line.contains('\n'), "{line}");
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = Config::load(Some(Path::new("/nonexistent/mcp.toml")), env(&[])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("config file /nonexistent/mcp.toml:")
        );
    }

    #[test]
    fn durations_and_sizes() {
        assert_eq!(
            parse_duration("30", Duration::ZERO),
            Ok(Duration::from_secs(30))
        );
        assert_eq!(
            parse_duration("250ms", Duration::ZERO),
            Ok(Duration::from_millis(250))
        );
        assert_eq!(
            parse_duration("15m", Duration::ZERO),
            Ok(Duration::from_secs(900))
        );
        assert!(parse_duration("-1s", Duration::ZERO).is_err());
        assert!(parse_duration("1ms", Duration::from_millis(10)).is_err());
        assert_eq!(parse_byte_size("100KiB"), Ok(102_400));
        assert_eq!(parse_byte_size("100 KiB"), Ok(102_400));
        assert_eq!(parse_byte_size("1MiB"), Ok(1 << 20));
        assert_eq!(parse_byte_size("512"), Ok(512));
        assert!(parse_byte_size("0").is_err());
        assert!(parse_byte_size("lots").is_err());
        assert!(parse_byte_size("5TiB").is_err());
    }

    #[test]
    fn public_url_is_validated_and_normalised() {
        let config = load(&[("MCP_PUBLIC_URL", "https://mcp.example.com/")]).unwrap();
        assert_eq!(config.public_url, "https://mcp.example.com");
        for bad in [
            "ftp://x",
            "not a url",
            "https://u:p@x.com",
            "https://x.com/?q=1",
        ] {
            assert!(load(&[("MCP_PUBLIC_URL", bad)]).is_err(), "{bad}");
        }
    }

    #[test]
    fn external_issuer_settings() {
        let issuer = ("MCP_JWT_ISSUER", "https://idp.example.com");
        let config = load(&[
            issuer,
            ("MCP_JWT_JWKS_URL", "https://idp.example.com/jwks.json"),
            ("MCP_JWT_ROLE_MAP", "mcp-admins=admin, staff = user"),
        ])
        .unwrap();
        assert_eq!(
            config.jwt.role_map,
            [
                ("mcp-admins".to_owned(), "admin".to_owned()),
                ("staff".to_owned(), "user".to_owned())
            ]
        );
        let local = load(&[issuer, ("MCP_JWT_JWKS_URL", "http://127.0.0.1:9/jwks")]).unwrap();
        assert!(local.jwt.role_map.is_empty());
        for (name, value) in [
            ("MCP_JWT_JWKS_URL", "http://idp.example.com/jwks.json"),
            ("MCP_JWT_ROLE_MAP", "admins=root"),
            ("MCP_JWT_ROLE_MAP", "admins"),
        ] {
            let mut env = vec![issuer, ("MCP_JWT_JWKS_URL", "https://idp.example.com/j")];
            env.push((name, value));
            let err = load(&env).unwrap_err();
            assert!(err.to_string().contains(name), "{value}: {err}");
        }
        let err = load(&[("MCP_JWT_ROLE_MAP", "a=admin")]).unwrap_err();
        assert!(err.to_string().contains("MCP_JWT_ROLE_MAP"), "{err}");
    }

    #[test]
    fn jwt_settings() {
        let config = load(&[]).unwrap();
        assert_eq!(config.jwt.audience, "http://127.0.0.1:8080/mcp");
        assert!(matches!(
            config.jwt.signing,
            SigningConfig::Hmac { secret: None, .. }
        ));
        let err = load(&[("MCP_JWT_SECRET", "too-short-and-secret")]).unwrap_err();
        let line = err.to_string();
        assert!(
            line.contains("MCP_JWT_SECRET") && line.contains("32 bytes"),
            "{line}"
        );
        assert!(!line.contains("too-short-and-secret"), "{line}");
        let err = load(&[("MCP_JWT_ALGORITHM", "ES256")]).unwrap_err();
        assert!(
            err.to_string().contains("MCP_JWT_PRIVATE_KEY_FILE"),
            "{err}"
        );
        let err = load(&[("MCP_JWT_ISSUER", "https://as.example.com")]).unwrap_err();
        assert!(err.to_string().contains("MCP_JWT_JWKS_URL"), "{err}");
        let err = load(&[("MCP_JWT_ALGORITHM", "none")]).unwrap_err();
        assert!(err.to_string().contains("MCP_JWT_ALGORITHM"), "{err}");
        let secret = "s".repeat(40);
        let config = load(&[
            ("MCP_JWT_SECRET", &secret),
            ("MCP_ALLOW_REGISTRATION", "true"),
        ])
        .unwrap();
        assert!(config.allow_registration);
        assert!(!format!("{config:?}").contains(&secret));
    }

    #[test]
    fn rate_limit_settings() {
        let config = load(&[]).unwrap();
        assert_eq!(config.rate_limits.api.to_string(), "100/60s");
        assert_eq!(config.rate_limits.auth.to_string(), "10/900s");
        assert!(!config.rate_limits.fail_closed);
        let config = load(&[
            ("MCP_RATE_LIMIT_API", "5/1s"),
            ("MCP_RATE_LIMIT_FAIL", "closed"),
            ("MCP_RATE_LIMIT_HEADERS", "draft,legacy"),
            ("MCP_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1"),
            ("REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
        ])
        .unwrap();
        assert_eq!(config.rate_limits.api.limit(), 5);
        assert!(config.rate_limits.fail_closed);
        assert!(config.rate_limits.headers.structured && !config.rate_limits.headers.draft_07);
        assert_eq!(config.trusted_proxies.proxies().len(), 2);
        assert_eq!(
            config.forwarded_header,
            mcp_ratelimit::ForwardedHeader::XForwardedFor
        );
        assert_eq!(
            load(&[("MCP_FORWARDED_HEADER", "Forwarded")])
                .unwrap()
                .forwarded_header,
            mcp_ratelimit::ForwardedHeader::Forwarded
        );
        assert!(!format!("{config:?}").contains("pw@"));
        for (name, value) in [
            ("MCP_RATE_LIMIT_API", "100"),
            ("MCP_RATE_LIMIT_AUTH", "0/60s"),
            ("MCP_RATE_LIMIT_FAIL", "sometimes"),
            ("MCP_RATE_LIMIT_HEADERS", "fancy"),
            ("MCP_TRUSTED_PROXIES", "10.0.0.0/33"),
            ("MCP_FORWARDED_HEADER", "both"),
            ("REDIS_URL", "http://x"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn browser_settings() {
        let config = load(&[]).unwrap();
        assert!(config.cors.is_disabled());
        assert!(config.guard.is_some());
        let config = load(&[
            ("MCP_ORIGIN_GUARD", "off"),
            ("MCP_CORS_ORIGIN", "https://*.example.com"),
        ])
        .unwrap();
        assert!(config.guard.is_none());
        assert!(config.cors.allows(b"https://a.example.com"));
        for (name, value) in [
            ("MCP_CORS_ORIGIN", "https://*.com"),
            ("MCP_CORS_ORIGIN", "null"),
            ("MCP_ALLOWED_HOSTS", "exa mple.com"),
            ("MCP_ORIGIN_GUARD", "maybe"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }

    #[test]
    fn connection_settings() {
        let config = load(&[]).unwrap();
        assert_eq!(config.connections, ConnectionConfig::default());
        assert_eq!(
            config.connections.header_read_timeout,
            Duration::from_secs(10)
        );
        assert_eq!(
            config.connections.keep_alive_timeout,
            Duration::from_secs(75)
        );
        assert_eq!(config.connections.max_connections, 10_000);
        assert_eq!(config.connections.max_connections_per_ip, 256);
        assert_eq!(config.connections.max_header_bytes, 16 * 1024);
        let file = toml_file(
            "header_read_timeout = \"300ms\"\nkeep_alive_timeout = 5\nmax_connections = 50\n\
             max_connections_per_ip = 2\nmax_header_bytes = \"8KiB\"\n",
        );
        let (config, _) = Config::load(Some(file.path()), env(&[])).unwrap();
        assert_eq!(
            config.connections,
            ConnectionConfig {
                header_read_timeout: Duration::from_millis(300),
                keep_alive_timeout: Duration::from_secs(5),
                max_connections: 50,
                max_connections_per_ip: 2,
                max_header_bytes: 8 * 1024,
            }
        );
        let err = load(&[("MCP_MAX_HEADER_BYTES", "1MiB")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid setting MCP_MAX_HEADER_BYTES=\"1MiB\" (from the environment): must be from 1KiB to 256KiB"
        );
    }

    #[test]
    fn other_bad_values() {
        for (name, value) in [
            ("MCP_DB_MAX_CONNECTIONS", "0"),
            ("MCP_DB_MAX_CONNECTIONS", "many"),
            ("MCP_LOG_FORMAT", "xml"),
            ("MCP_LOG", "info,[bad"),
            ("MCP_SHUTDOWN_TIMEOUT", "forever"),
            ("MCP_HEADER_READ_TIMEOUT", "1ms"),
            ("MCP_KEEP_ALIVE_TIMEOUT", "soon"),
            ("MCP_MAX_CONNECTIONS", "0"),
            ("MCP_MAX_CONNECTIONS_PER_IP", "-1"),
            ("MCP_MAX_HEADER_BYTES", "100"),
            ("MCP_MAX_HEADER_BYTES", "1MiB"),
            ("DATABASE_URL", "nonsense"),
        ] {
            let err = load(&[(name, value)]).unwrap_err();
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
    }
}
