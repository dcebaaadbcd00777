//! CORS from one setting, on tower-http's CORS layer.

mod layer;
mod origin;

use std::str::FromStr;
use std::time::Duration;

use http::Method;
use http::header::{HeaderName, HeaderValue};
use tower_http::cors::{AllowOrigin, CorsLayer as TowerCorsLayer};

pub use layer::{Cors, CorsLayer, ResponseFuture};
pub(crate) use origin::canonical_host;
pub use origin::{Origin, OriginError};
use origin::{default_port, origin_text, split_port};

/// Why a CORS setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid CORS origin {entry:?}: {reason}")]
pub struct CorsError {
    entry: String,
    reason: &'static str,
}

/// One allowed origin: exact, or with a wildcard for subdomains.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Pattern {
    /// `https://app.example.com` (lower-cased, without a default port).
    Exact(String),
    /// `https://*.example.com`: `scheme://` + `.example.com` + optional
    /// `:port`; matches one or more labels in place of the `*`.
    Subdomains {
        scheme: String,
        suffix: String,
        port: Option<u16>,
    },
}

impl Pattern {
    fn parse(entry: &str) -> Result<Pattern, CorsError> {
        let error = |reason| CorsError {
            entry: entry.to_owned(),
            reason,
        };
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or_else(|| error("expected scheme://host[:port]"))?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") {
            return Err(error("the scheme must be http or https"));
        }
        if rest.contains(['/', '?', '#', '@']) || rest.is_empty() {
            return Err(error("an origin has no path, query, fragment or user"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| error("bad port"))?;
        let host = host.to_ascii_lowercase();
        if let Some(suffix) = host.strip_prefix("*.") {
            let valid = !suffix.starts_with('[') && canonical_host(suffix).is_some();
            if suffix.contains('*') || !valid || !suffix.contains('.') {
                return Err(error(
                    "a wildcard must be the whole left-most label of a domain with at least two labels",
                ));
            }
            let port = port.filter(|p| Some(*p) != default_port(&scheme));
            return Ok(Pattern::Subdomains {
                scheme,
                suffix: format!(".{suffix}"),
                port,
            });
        }
        let host = match canonical_host(&host) {
            Some(host) if !host.contains('*') => host,
            _ => return Err(error("not a host name or address")),
        };
        Ok(Pattern::Exact(origin_text(&scheme, &host, port)))
    }

    fn matches(&self, origin: &Origin) -> bool {
        match self {
            Pattern::Exact(text) => *text == origin.text,
            Pattern::Subdomains {
                scheme,
                suffix,
                port,
            } => {
                *scheme == origin.scheme
                    && *port == origin.port
                    && origin.host.len() > suffix.len()
                    && origin.host.ends_with(suffix.as_str())
                    // The part before the suffix is one or more whole labels.
                    && !origin.host[..origin.host.len() - suffix.len()].ends_with('.')
            }
        }
    }
}

/// The CORS policy, from one setting with the original design's meaning.
///
/// - unset, empty or `false`: no CORS headers at all;
/// - `*`: any origin, `Access-Control-Allow-Origin: *`, credentials off
///   (an arbitrary origin is never reflected together with credentials);
/// - a comma list of origins, exact (`https://app.example.com`) or for
///   subdomains (`https://*.example.com`: `a.example.com`,
///   `a.b.example.com`, never `example.com` or `evil-example.com`): the
///   request's origin is reflected when it matches, with credentials and
///   `Vary: Origin`.
///
/// `null` cannot be listed: it is the origin of sandboxed and `file:` pages,
/// never to be trusted with credentials.
///
/// ```
/// use mcp_cors::CorsPolicy;
///
/// let policy: CorsPolicy = "https://app.example.com, https://*.example.org".parse().unwrap();
/// assert!(policy.allows(b"https://app.example.com"));
/// assert!(policy.allows(b"https://a.b.example.org"));
/// assert!(!policy.allows(b"https://evil-example.org"));
/// assert!(!policy.allows(b"https://example.org"));
/// assert!("false".parse::<CorsPolicy>().unwrap().is_disabled());
/// let layer = policy.layer(); // a `CorsLayer`, a no-op when disabled
/// # let _ = layer;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorsPolicy {
    kind: Kind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Kind {
    Disabled,
    Any,
    List(Vec<Pattern>),
}

impl FromStr for CorsPolicy {
    type Err = CorsError;

    fn from_str(setting: &str) -> Result<CorsPolicy, CorsError> {
        let setting = setting.trim();
        let kind = match setting {
            "" | "false" | "off" | "none" => Kind::Disabled,
            "*" => Kind::Any,
            list => {
                let mut patterns = Vec::new();
                for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
                    if entry == "*" {
                        return Err(CorsError {
                            entry: entry.to_owned(),
                            reason: "`*` must be the whole setting, not part of a list",
                        });
                    }
                    if entry.eq_ignore_ascii_case("null") {
                        return Err(CorsError {
                            entry: entry.to_owned(),
                            reason: "the null origin is never allowed with credentials",
                        });
                    }
                    patterns.push(Pattern::parse(entry)?);
                }
                if patterns.is_empty() {
                    Kind::Disabled
                } else {
                    Kind::List(patterns)
                }
            }
        };
        Ok(CorsPolicy { kind })
    }
}

/// The methods of the contract.
pub const ALLOWED_METHODS: [Method; 6] = [
    Method::GET,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];

/// How long a browser may keep a preflight's answer (`Access-Control-Max-Age`).
const MAX_AGE_SECS: u32 = 86_400;

/// The request headers a browser may send.
pub fn allowed_headers() -> Vec<HeaderName> {
    [
        "accept",
        "content-type",
        "authorization",
        "x-api-key",
        "mcp-session-id",
        "mcp-protocol-version",
        "mcp-method",
        "mcp-name",
        "last-event-id",
    ]
    .into_iter()
    .map(HeaderName::from_static)
    .collect()
}

/// The response headers a browser may read.
pub fn exposed_headers() -> Vec<HeaderName> {
    [
        "content-length",
        "content-type",
        "mcp-session-id",
        "www-authenticate",
        "retry-after",
        "ratelimit-limit",
        "ratelimit-remaining",
        "ratelimit-reset",
        "ratelimit-policy",
        "ratelimit",
        "x-ratelimit-limit",
        "x-ratelimit-remaining",
        "x-ratelimit-reset",
        "x-request-id",
    ]
    .into_iter()
    .map(HeaderName::from_static)
    .collect()
}

impl Default for CorsPolicy {
    /// Disabled, like an unset setting.
    fn default() -> Self {
        CorsPolicy::disabled()
    }
}

impl CorsPolicy {
    /// No CORS.
    pub fn disabled() -> CorsPolicy {
        CorsPolicy {
            kind: Kind::Disabled,
        }
    }

    /// Whether CORS is off.
    pub fn is_disabled(&self) -> bool {
        self.kind == Kind::Disabled
    }

    /// Whether any origin may call (`*`).
    pub fn allows_any(&self) -> bool {
        self.kind == Kind::Any
    }

    /// The allowed origins written out with explicit ports
    /// (`https://app.example.com:443`), for components that take a plain
    /// list (rmcp's own origin check): `None` for `*` or when the list has
    /// wildcards, which a plain list cannot express; empty when disabled.
    pub fn exact_origins(&self) -> Option<Vec<String>> {
        match &self.kind {
            Kind::Disabled => Some(Vec::new()),
            Kind::Any => None,
            Kind::List(patterns) => patterns
                .iter()
                .map(|pattern| match pattern {
                    Pattern::Exact(text) => Origin::parse(text.as_bytes()).map(|o| o.with_port()),
                    Pattern::Subdomains { .. } => None,
                })
                .collect(),
        }
    }

    /// Whether an `Origin` header value is allowed.
    pub fn allows(&self, origin: &[u8]) -> bool {
        match &self.kind {
            Kind::Disabled => false,
            Kind::Any => true,
            Kind::List(patterns) => {
                // Browsers send origins in the canonical form the exact
                // patterns are kept in: equal bytes match without parsing
                // (and allocating); anything else is parsed and compared.
                patterns
                    .iter()
                    .any(|p| matches!(p, Pattern::Exact(text) if text.as_bytes() == origin))
                    || Origin::parse(origin).is_some_and(|o| patterns.iter().any(|p| p.matches(&o)))
            }
        }
    }

    /// The CORS layer: tower-http's, configured with the contract's
    /// methods, headers, exposed headers and a max age of 86400 s, answering
    /// preflights with `204`. When the policy is disabled the layer passes
    /// every request and response through untouched (no CORS header, no
    /// preflight answered), so it can always be applied.
    pub fn layer(&self) -> CorsLayer {
        let base = TowerCorsLayer::new()
            .allow_methods(ALLOWED_METHODS.to_vec())
            .allow_headers(allowed_headers())
            .expose_headers(exposed_headers())
            .max_age(Duration::from_secs(MAX_AGE_SECS.into()))
            // `Vary` is added by our layer, from a value made once.
            .vary(Vec::<http::HeaderName>::new());
        let layer = match &self.kind {
            Kind::Disabled => return CorsLayer::disabled(),
            Kind::Any => base.allow_origin(AllowOrigin::any()),
            Kind::List(_) => {
                let policy = self.clone();
                base.allow_origin(AllowOrigin::predicate(move |origin, _| {
                    policy.allows(origin.as_bytes())
                }))
                .allow_credentials(true)
            }
        };
        CorsLayer::enabled(layer, self.preflight())
    }

    /// The preflight answer's values, joined as tower-http joins them.
    fn preflight(&self) -> layer::Preflight {
        let methods: Vec<&str> = ALLOWED_METHODS.iter().map(Method::as_str).collect();
        let headers: Vec<HeaderName> = allowed_headers();
        let headers: Vec<&str> = headers.iter().map(HeaderName::as_str).collect();
        layer::Preflight {
            origins: self.clone(),
            // Method and header names are tokens: always valid values.
            methods: HeaderValue::from_str(&methods.join(","))
                .unwrap_or_else(|_| HeaderValue::from_static("GET")),
            headers: HeaderValue::from_str(&headers.join(","))
                .unwrap_or_else(|_| HeaderValue::from_static("content-type")),
            max_age: HeaderValue::from(MAX_AGE_SECS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        for bad in [
            "ftp://x.com",
            "https://x.com/path",
            "https://*.com",
            "https://a.*.example.com",
            "https://*example.com",
            "https://x.com:99999",
            "null",
            "https://a.com, *",
            "https://user@x.com",
            "example.com",
        ] {
            assert!(bad.parse::<CorsPolicy>().is_err(), "{bad}");
        }
        assert!("".parse::<CorsPolicy>().unwrap().is_disabled());
        assert!("false".parse::<CorsPolicy>().unwrap().is_disabled());
        assert!("*".parse::<CorsPolicy>().unwrap().allows_any());
    }

    #[test]
    fn matching() {
        let policy: CorsPolicy =
            "https://App.Example.com, https://*.example.org, http://localhost:3000"
                .parse()
                .unwrap();
        for good in [
            "https://app.example.com",
            "https://APP.example.com:443",
            "https://a.example.org",
            "https://a.b.example.org",
            "http://localhost:3000",
        ] {
            assert!(policy.allows(good.as_bytes()), "{good}");
        }
        for bad in [
            "http://app.example.com",
            "https://app.example.com:8443",
            "https://example.org",
            "https://evil-example.org",
            "https://example.org.evil.net",
            "https://a.example.org.evil.net",
            "https://.example.org",
            "http://localhost:3001",
            "http://localhost",
            "null",
            "https://app.example.com/",
            "",
            "\u{7f}",
        ] {
            assert!(!policy.allows(bad.as_bytes()), "{bad}");
        }
    }

    #[test]
    fn exact_origins_for_plain_lists() {
        let policy: CorsPolicy = "https://a.example.com, http://localhost:3000"
            .parse()
            .unwrap();
        assert_eq!(
            policy.exact_origins().unwrap(),
            ["https://a.example.com:443", "http://localhost:3000"]
        );
        assert_eq!("*".parse::<CorsPolicy>().unwrap().exact_origins(), None);
        assert_eq!(
            "https://*.x.com"
                .parse::<CorsPolicy>()
                .unwrap()
                .exact_origins(),
            None
        );
        assert_eq!(CorsPolicy::disabled().exact_origins(), Some(vec![]));
    }

    #[test]
    fn origins_normalise() {
        let o = Origin::parse(b"HTTPS://Example.COM:443").unwrap();
        assert_eq!(o.as_str(), "https://example.com");
        let o = Origin::parse(b"http://[::1]:8080").unwrap();
        assert_eq!(o.as_str(), "http://[::1]:8080");
        assert!(Origin::parse(b"http://[::1").is_none());
        assert!(Origin::parse(&[0xff, 0xfe]).is_none());
    }
}
