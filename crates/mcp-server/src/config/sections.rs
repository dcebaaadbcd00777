//! The parsers of the configuration's sections: guard, rate limits,
//! connections, JWTs.

use std::net::SocketAddr;
use std::time::Duration;

use super::settings;
use super::sources::*;
use super::*;

pub(super) fn parse_guard(
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

pub(super) fn parse_rate_limits(s: &Sources) -> Result<RateLimitConfig, ConfigError> {
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

pub(super) fn parse_connections(s: &Sources) -> Result<ConnectionConfig, ConfigError> {
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

pub(super) fn parse_jwt(s: &Sources, public_url: &str) -> Result<JwtConfig, ConfigError> {
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
pub(super) fn parse_role_map(value: &str) -> Result<Vec<(String, String)>, String> {
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

pub(super) fn parse_public_url(value: &str) -> Result<String, String> {
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
