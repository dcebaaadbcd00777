use std::fmt;
use std::str::FromStr;
use std::task::{Context, Poll};
use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tower_http::cors::{AllowOrigin, CorsLayer as TowerCorsLayer};
use tower_layer::Layer;
use tower_service::Service;

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
            if suffix.contains('*') || !valid_host(suffix) || !suffix.contains('.') {
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
        if host.contains('*') || !valid_host(&host) {
            return Err(error("not a host name or address"));
        }
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

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host` and `port` of `authority`, IPv6 in brackets.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(port.parse().ok()?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((&authority[..host.len() + 2], port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(port.parse().ok()?))),
        None => Some((authority, None)),
    }
}

fn valid_host(host: &str) -> bool {
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn origin_text(scheme: &str, host: &str, port: Option<u16>) -> String {
    match port.filter(|p| Some(*p) != default_port(scheme)) {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}

/// A request's `Origin`, parsed and normalised (lower case, default port
/// dropped). `null` and anything malformed are `None`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: Option<u16>,
    text: String,
}

impl Origin {
    /// Parses an `Origin` header value.
    pub fn parse(value: &[u8]) -> Option<Origin> {
        let text = std::str::from_utf8(value).ok()?;
        if text.len() > 512 {
            return None;
        }
        let (scheme, rest) = text.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "http" | "https") || rest.contains(['/', '?', '#', '@']) {
            return None;
        }
        let (host, port) = split_port(rest)?;
        let host = host.to_ascii_lowercase();
        if !valid_host(&host) {
            return None;
        }
        let port = port.filter(|p| Some(*p) != default_port(&scheme));
        let text = origin_text(&scheme, &host, port);
        Some(Origin {
            scheme,
            host,
            port,
            text,
        })
    }

    /// `scheme://host[:port]`, normalised.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// `scheme://host:port`, the port always written.
    pub fn with_port(&self) -> String {
        let port = self
            .port
            .or_else(|| default_port(&self.scheme))
            .unwrap_or(0);
        format!("{}://{}:{port}", self.scheme, self.host)
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
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
/// assert!("false".parse::<CorsPolicy>().unwrap().layer().is_none());
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
                Origin::parse(origin).is_some_and(|o| patterns.iter().any(|p| p.matches(&o)))
            }
        }
    }

    /// The CORS layer (`None` when disabled): tower-http's, configured with
    /// the contract's methods, headers, exposed headers and a max age of
    /// 86400 s, answering preflights with `204`.
    pub fn layer(&self) -> Option<CorsLayer> {
        let base = TowerCorsLayer::new()
            .allow_methods(ALLOWED_METHODS.to_vec())
            .allow_headers(allowed_headers())
            .expose_headers(exposed_headers())
            .max_age(Duration::from_secs(86_400));
        let layer = match &self.kind {
            Kind::Disabled => return None,
            Kind::Any => base.allow_origin(AllowOrigin::any()),
            Kind::List(_) => {
                let policy = self.clone();
                base.allow_origin(AllowOrigin::predicate(move |origin, _| {
                    policy.allows(origin.as_bytes())
                }))
                .allow_credentials(true)
            }
        };
        Some(CorsLayer { inner: layer })
    }
}

/// tower-http's CORS layer, with preflights answered `204 No Content` and no
/// CORS header at all on a response to a disallowed origin.
#[derive(Clone, Debug)]
pub struct CorsLayer {
    inner: TowerCorsLayer,
}

impl<S> Layer<S> for CorsLayer {
    type Service = CorsFinish<tower_http::cors::Cors<S>>;

    fn layer(&self, inner: S) -> Self::Service {
        CorsFinish {
            inner: self.inner.layer(inner),
        }
    }
}

/// Finishes tower-http's answer: the `200` it gives a preflight becomes
/// `204`, and when it did not allow the origin the other CORS headers it
/// sends unconditionally (credentials, exposed headers) are removed.
#[derive(Clone, Debug)]
pub struct CorsFinish<S> {
    inner: S,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for CorsFinish<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = PreflightFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<ReqBody>) -> Self::Future {
        let preflight = request.method() == Method::OPTIONS
            && request.headers().contains_key(header::ORIGIN)
            && request
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
        PreflightFuture {
            inner: self.inner.call(request),
            preflight,
        }
    }
}

pin_project_lite::pin_project! {
    /// Response future of [`CorsFinish`].
    pub struct PreflightFuture<F> {
        #[pin]
        inner: F,
        preflight: bool,
    }
}

impl<F, B, E> std::future::Future for PreflightFuture<F>
where
    F: std::future::Future<Output = Result<Response<B>, E>>,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = std::task::ready!(this.inner.poll(cx))?;
        let headers = response.headers_mut();
        if !headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            for name in [
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::ACCESS_CONTROL_MAX_AGE,
            ] {
                headers.remove(name);
            }
        }
        if *this.preflight && response.status() == StatusCode::OK {
            *response.status_mut() = StatusCode::NO_CONTENT;
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
        }
        Poll::Ready(Ok(response))
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
