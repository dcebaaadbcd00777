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
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

mod sections;
pub mod settings;
mod sources;
#[cfg(test)]
mod tests;

use sections::*;
use sources::*;
pub use sources::{ConfigError, Origin, Setting};

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

/// Settings of the OAuth authorization server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OAuthConfig {
    /// Whether it runs (`MCP_OAUTH`, on).
    pub enabled: bool,
    /// Whether `POST /oauth/register` exists (`MCP_OAUTH_REGISTRATION`, on).
    pub registration: bool,
    /// Client metadata documents also over `http`, on loopback and private
    /// addresses, with any certificate (`MCP_OAUTH_INSECURE_CLIENT_URLS`,
    /// off): for tests only.
    pub insecure_client_urls: bool,
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
    /// The OAuth authorization server.
    pub oauth: OAuthConfig,
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
    /// Where audit events go (`database`).
    pub audit_sink: AuditSinkKind,
    /// How long the database keeps audit events (90 days).
    pub audit_retention: Duration,
    /// Who may call which MCP method and tool, and how often: the
    /// built-in rules with the file's `[mcp]` table over them.
    pub mcp_policy: mcp_endpoint::McpPolicy,
}

/// The server's MCP policy with the file's `[mcp]` table over it; an
/// unknown scope, a malformed quota or pattern is one line naming the entry.
fn mcp_policy(path: &Path, table: toml::Value) -> Result<mcp_endpoint::McpPolicy, ConfigError> {
    let file_error = |message: String| ConfigError::File {
        path: path.to_owned(),
        message,
    };
    let config = mcp_endpoint::PolicyConfig::deserialize(table).map_err(|e| {
        let message = e.message().lines().next().unwrap_or("invalid").to_owned();
        file_error(format!("[mcp]: {message}"))
    })?;
    crate::mcp::policy()
        .overridden_by(
            &config,
            |scope| crate::auth::SCOPES.contains(&scope),
            crate::mcp::BASE_SCOPES,
        )
        .map_err(|e| file_error(e.to_string()))
}

/// Where audit events go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuditSinkKind {
    /// The `audit_events` table, read by `GET /api/audit`.
    Database,
    /// JSON lines on standard output, for a log shipper.
    Stdout,
    /// Nowhere.
    Off,
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
        let (file_path, (file, mcp)) = match file {
            Some(path) => (Some(path.to_owned()), read_file(path)?),
            None => (None, (BTreeMap::new(), None)),
        };
        let mcp_policy = match (&file_path, mcp) {
            (Some(path), Some(table)) => mcp_policy(path, table)?,
            _ => crate::mcp::policy(),
        };
        let sources = Sources {
            file_path,
            file,
            env,
        };
        let mut config = Config::parse(&sources)?;
        config.mcp_policy = mcp_policy;
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
        let oauth = OAuthConfig {
            enabled: s.parse(OAUTH, || true, parse_bool)?,
            registration: s.parse(OAUTH_REGISTRATION, || true, parse_bool)?,
            insecure_client_urls: s.parse(OAUTH_INSECURE_CLIENT_URLS, || false, parse_bool)?,
        };
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
        let audit_sink = s.parse(
            AUDIT_SINK,
            || AuditSinkKind::Database,
            |v| match v.to_ascii_lowercase().as_str() {
                "database" => Ok(AuditSinkKind::Database),
                "stdout" => Ok(AuditSinkKind::Stdout),
                "off" => Ok(AuditSinkKind::Off),
                _ => Err("expected `database`, `stdout` or `off`".to_owned()),
            },
        )?;
        let audit_retention = s.parse(
            AUDIT_RETENTION,
            || Duration::from_secs(90 * 86_400),
            |v| parse_duration(v, Duration::from_secs(60)),
        )?;
        Ok(Config {
            audit_sink,
            audit_retention,
            cors,
            guard,
            allowed_hosts,
            mcp_policy: crate::mcp::policy(),
            rate_limits,
            trusted_proxies,
            forwarded_header,
            jwt,
            allow_registration,
            oauth,
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
