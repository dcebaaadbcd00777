//! The configuration's tests: every setting through `Config::load`.

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
    let (config, _) = Config::load(Some(file.path()), env(&[("MCP_BODY_LIMIT", "2048")])).unwrap();
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

proptest::proptest! {
    /// Durations and sizes over generated text: a bare number is seconds
    /// (or bytes), a unit multiplies, the minimum holds, and any text is
    /// answered with a value or a message, never a panic.
    #[test]
    fn durations_and_sizes_read_as_written(
        n in 0u64..10_000_000,
        unit in proptest::sample::select(vec![("ms", 1u64), ("s", 1_000), ("m", 60_000), ("h", 3_600_000), ("d", 86_400_000)]),
        min_ms in 0u64..100_000,
        text in "\\PC{0,40}",
    ) {
        let min = Duration::from_millis(min_ms);
        let expected = Duration::from_secs(n);
        proptest::prop_assert_eq!(parse_duration(&n.to_string(), min).is_ok(), expected >= min);
        let with_unit = Duration::from_millis(n * unit.1);
        let parsed = parse_duration(&format!("{n}{}", unit.0), min);
        if with_unit >= min {
            proptest::prop_assert_eq!(parsed, Ok(with_unit));
        } else {
            proptest::prop_assert!(parsed.is_err());
        }
        if let Ok(duration) = parse_duration(&text, min) {
            proptest::prop_assert!(duration >= min);
        }
        let bytes = n % (1 << 30) + 1;
        proptest::prop_assert_eq!(parse_byte_size(&bytes.to_string()), Ok(usize::try_from(bytes).unwrap()));
        if let Ok(size) = parse_byte_size(&text) {
            proptest::prop_assert!((1..=1 << 30).contains(&size));
        }
    }
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
