//! The hosts the guard lets in.

use std::fmt;
use std::str::FromStr;

use crate::cors::canonical_host;

/// Why a host setting was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// An entry is not `name`, `name:port`, `[ipv6]` or `[ipv6]:port`.
    #[error("invalid host {0:?}")]
    Invalid(String),
    /// A host list with no entry.
    #[error("expected a comma list of host names")]
    Empty,
}

/// One allowed `Host`: a name or address, with or without a port.
///
/// The syntax is the CORS origin's (DNS labels of letters, digits and inner
/// hyphens, at most 253 bytes; IPv6 in brackets), compared case-blind and
/// IPv6 in canonical form (`[0:0::1]` is `[::1]`).
///
/// Ports: an entry without a port allows any port. An entry with a port
/// allows `Host` with that port; an entry with port 80 or 443 also allows a
/// `Host` without a port, which is how a client writes its scheme's default
/// port (the guard does not know the scheme, so both defaults count). Any
/// other port must be written in `Host`.
///
/// ```
/// use mcp_cors::AllowedHost;
///
/// let host: AllowedHost = "MCP.Example.com:443".parse().unwrap();
/// assert_eq!(host.to_string(), "mcp.example.com:443");
/// assert!("[0:0::1]".parse::<AllowedHost>().unwrap() == "[::1]".parse().unwrap());
/// assert!("exa mple.com".parse::<AllowedHost>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct AllowedHost {
    name: String,
    port: Option<u16>,
}

impl AllowedHost {
    /// The name or bracketed IPv6 address, normalised.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The port, if the entry names one.
    pub fn port(&self) -> Option<u16> {
        self.port
    }

    /// Parses a `Host` header value (or an authority); `None` when it is not
    /// a host.
    pub(crate) fn parse(text: &str) -> Option<AllowedHost> {
        let text = text.trim();
        // A name of 253 bytes, `:` and a port of 5 digits; longer is refused
        // before any parsing.
        if text.is_empty() || text.len() > 260 {
            return None;
        }
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (inner, after) = rest.split_once(']')?;
            let port = match after.strip_prefix(':') {
                Some(port) => Some(port.parse().ok()?),
                None if after.is_empty() => None,
                None => return None,
            };
            (&text[..inner.len() + 2], port)
        } else {
            match text.rsplit_once(':') {
                Some((host, port)) => (host, Some(port.parse().ok()?)),
                None => (text, None),
            }
        };
        let name = canonical_host(host)?;
        Some(AllowedHost { name, port })
    }

    /// Whether a request's `Host` is this entry.
    pub(crate) fn allows(&self, host: &AllowedHost) -> bool {
        self.allows_parts(&host.name, host.port)
    }

    fn allows_parts(&self, name: &str, port: Option<u16>) -> bool {
        self.name == name
            && match (self.port, port) {
                (None, _) => true,
                (Some(allowed), Some(port)) => allowed == port,
                (Some(allowed), None) => allowed == 80 || allowed == 443,
            }
    }
}

impl FromStr for AllowedHost {
    type Err = HostError;

    fn from_str(text: &str) -> Result<AllowedHost, HostError> {
        AllowedHost::parse(text).ok_or_else(|| HostError::Invalid(text.to_owned()))
    }
}

impl fmt::Display for AllowedHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.port {
            Some(port) => write!(f, "{}:{port}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// A list of allowed hosts, parsed from a comma list
/// (`mcp.example.com, 127.0.0.1:8080, [::1]`): the guard's hosts setting.
/// Every entry must be valid (a bad one is reported, not skipped) and the
/// list must not be empty.
///
/// ```
/// use mcp_cors::{AllowedHosts, HostError};
///
/// let hosts: AllowedHosts = "mcp.example.com, [::1]:8080".parse().unwrap();
/// assert_eq!(hosts.len(), 2);
/// assert_eq!(
///     "mcp.example.com, a..b".parse::<AllowedHosts>().unwrap_err(),
///     HostError::Invalid("a..b".to_owned())
/// );
/// assert_eq!(" , ".parse::<AllowedHosts>().unwrap_err(), HostError::Empty);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedHosts(Vec<AllowedHost>);

impl AllowedHosts {
    /// `localhost`, `127.0.0.1` and `[::1]`, any port: the guard's default.
    pub fn loopback() -> AllowedHosts {
        ["localhost", "127.0.0.1", "[::1]"]
            .into_iter()
            .filter_map(AllowedHost::parse)
            .collect()
    }

    /// Adds a host.
    pub fn push(&mut self, host: impl Into<AllowedHost>) {
        self.0.push(host.into());
    }

    /// The hosts.
    pub fn iter(&self) -> std::slice::Iter<'_, AllowedHost> {
        self.0.iter()
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the list is empty (the guard then allows no host).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn allows(&self, host: &AllowedHost) -> bool {
        self.0.iter().any(|allowed| allowed.allows(host))
    }

    /// Whether a `Host` value names an allowed host written exactly as it
    /// is kept (a lower-case name, an optional port): decided without
    /// parsing into owned strings. `false` only means "parse it": any other
    /// spelling (case, brackets, spaces) goes through [`AllowedHost::parse`].
    pub(crate) fn allows_verbatim(&self, raw: &str) -> bool {
        if raw.starts_with('[') {
            return false;
        }
        let (name, port) = match raw.rsplit_once(':') {
            // The same port syntax as `AllowedHost::parse`.
            Some((name, port)) => match port.parse::<u16>() {
                Ok(port) => (name, Some(port)),
                Err(_) => return false,
            },
            None => (raw, None),
        };
        self.0
            .iter()
            .any(|allowed| allowed.allows_parts(name, port))
    }
}

impl FromStr for AllowedHosts {
    type Err = HostError;

    fn from_str(list: &str) -> Result<AllowedHosts, HostError> {
        let hosts: AllowedHosts = list
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        if hosts.is_empty() {
            return Err(HostError::Empty);
        }
        Ok(hosts)
    }
}

impl fmt::Display for AllowedHosts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, host) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            host.fmt(f)?;
        }
        Ok(())
    }
}

impl FromIterator<AllowedHost> for AllowedHosts {
    fn from_iter<I: IntoIterator<Item = AllowedHost>>(iter: I) -> Self {
        AllowedHosts(iter.into_iter().collect())
    }
}

impl From<Vec<AllowedHost>> for AllowedHosts {
    fn from(hosts: Vec<AllowedHost>) -> Self {
        AllowedHosts(hosts)
    }
}

impl<const N: usize> From<[AllowedHost; N]> for AllowedHosts {
    fn from(hosts: [AllowedHost; N]) -> Self {
        AllowedHosts(hosts.into())
    }
}

impl From<AllowedHost> for AllowedHosts {
    fn from(host: AllowedHost) -> Self {
        AllowedHosts(vec![host])
    }
}

impl Extend<AllowedHost> for AllowedHosts {
    fn extend<I: IntoIterator<Item = AllowedHost>>(&mut self, iter: I) {
        self.0.extend(iter);
    }
}

impl<'a> IntoIterator for &'a AllowedHosts {
    type Item = &'a AllowedHost;
    type IntoIter = std::slice::Iter<'a, AllowedHost>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

impl IntoIterator for AllowedHosts {
    type Item = AllowedHost;
    type IntoIter = std::vec::IntoIter<AllowedHost>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The verbatim shortcut never lets in a host that parsing would
    /// refuse, and lets in the plain spellings of allowed ones.
    #[test]
    fn verbatim_matches_only_what_parsing_allows() {
        let hosts: AllowedHosts = "localhost, 127.0.0.1, example.com:8443, [::1]"
            .parse()
            .unwrap();
        let parsed = |raw: &str| AllowedHost::parse(raw).is_some_and(|h| hosts.allows(&h));
        for raw in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:3000",
            "example.com:8443",
            "example.com:443",
            "example.com",
            "LOCALHOST",
            "localhost.",
            " localhost",
            "localhost:",
            "localhost:99999",
            "localhost:+80",
            "evil.com",
            "localhost.evil.com",
            "[::1]:8080",
            "[0:0::1]",
            "127.0.0.1:80:80",
            "",
        ] {
            let verbatim = hosts.allows_verbatim(raw);
            assert!(!verbatim || parsed(raw), "{raw:?} let in verbatim only");
        }
        for plain in [
            "localhost",
            "localhost:8080",
            "127.0.0.1:3000",
            "example.com:8443",
        ] {
            assert!(hosts.allows_verbatim(plain), "{plain}");
        }
    }
}
