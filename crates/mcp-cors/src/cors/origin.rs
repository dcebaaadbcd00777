//! What an origin and a host name are: the one syntax the CORS policy and
//! the Host/Origin guard share.

use std::fmt;
use std::net::Ipv6Addr;
use std::str::FromStr;

/// An origin setting (the server's own origin) that is not
/// `http(s)://host[:port]`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid origin {0:?}")]
pub struct OriginError(String);

/// A request's `Origin`, parsed and normalised: lower case, IPv6 addresses in
/// their canonical form (`[0:0::1]` is `[::1]`), the scheme's default port
/// dropped.
///
/// ```
/// use mcp_cors::Origin;
///
/// let origin: Origin = "HTTPS://Mcp.Example.com:443".parse().unwrap();
/// assert_eq!(origin.as_str(), "https://mcp.example.com");
/// assert_eq!(origin.with_port(), "https://mcp.example.com:443");
/// assert!("null".parse::<Origin>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Origin {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
    pub(crate) text: String,
}

impl Origin {
    /// Parses an `Origin` header value; `null` and anything malformed are
    /// `None`.
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
        let host = canonical_host(host)?;
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

    /// `scheme://host:port`, the port always written (rmcp's format).
    pub fn with_port(&self) -> String {
        let port = self
            .port
            .or_else(|| default_port(&self.scheme))
            .unwrap_or(0);
        format!("{}://{}:{port}", self.scheme, self.host)
    }
}

impl FromStr for Origin {
    type Err = OriginError;

    /// The same rules as [`Origin::parse`]; `null` is refused.
    fn from_str(text: &str) -> Result<Origin, OriginError> {
        Origin::parse(text.as_bytes()).ok_or_else(|| OriginError(text.to_owned()))
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

pub(crate) fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

/// `host` and `port` of `authority`, IPv6 in brackets. `None` when the port
/// is empty, not a number or out of range, or text follows the brackets.
pub(crate) fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(port) => Some(parse_port(port)?),
            None if after.is_empty() => None,
            None => return None,
        };
        return Some((&authority[..host.len() + 2], port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, Some(parse_port(port)?))),
        None => Some((authority, None)),
    }
}

fn parse_port(port: &str) -> Option<u16> {
    port.parse().ok()
}

/// The host in its one comparable form, or `None` when it is not a host:
/// a DNS name of 1 to 253 bytes in labels of 1 to 63 letters, digits and
/// inner hyphens (lower-cased), or an IPv6 address in brackets (its
/// canonical text, so `[0:0::1]` and `[::1]` are one host).
pub(crate) fn canonical_host(host: &str) -> Option<String> {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<Ipv6Addr>().ok().map(|ip| format!("[{ip}]"));
    }
    let valid = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    valid.then(|| host.to_ascii_lowercase())
}

pub(crate) fn origin_text(scheme: &str, host: &str, port: Option<u16>) -> String {
    match port.filter(|p| Some(*p) != default_port(scheme)) {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    }
}
