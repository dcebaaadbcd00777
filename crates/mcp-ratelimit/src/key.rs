//! Who a request counts against: key extractors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;

use http::header::{HeaderMap, HeaderName};
use http::{Extensions, Method, Uri};
use ipnet::IpNet;
use mcp_core::Principal;

/// What a request is counted against. IP keys take no allocation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RateKey {
    /// An IPv4 client.
    V4([u8; 4]),
    /// An IPv6 client's /56 network (the first 7 bytes).
    V6([u8; 7]),
    /// Anything else: a principal, a header value, a body field.
    Text(Box<str>),
}

impl RateKey {
    /// The key of client address `ip`: IPv4 as is (IPv4-mapped IPv6
    /// included), IPv6 grouped by /56, the usual allocation of one
    /// subscriber, so rotating addresses inside it does not help.
    pub fn ip(ip: IpAddr) -> RateKey {
        match ip {
            IpAddr::V4(v4) => RateKey::V4(v4.octets()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => RateKey::V4(v4.octets()),
                None => {
                    let mut net = [0u8; 7];
                    net.copy_from_slice(&v6.octets()[..7]);
                    RateKey::V6(net)
                }
            },
        }
    }

    /// A text key.
    pub fn text(text: impl Into<Box<str>>) -> RateKey {
        RateKey::Text(text.into())
    }

    /// The key of `principal`: its [`identity`](Principal::identity)
    /// (`key:<id>`, `sub:<issuer>|<subject>` or `sub:<subject>`), the one
    /// rule for keying state by caller.
    ///
    /// ```
    /// use mcp_core::{AuthMethod, Principal};
    /// use mcp_ratelimit::RateKey;
    ///
    /// let key = Principal::builder("alice", AuthMethod::ApiKey).key_id("k1").build();
    /// assert_eq!(RateKey::principal(&key).to_string(), "key:k1");
    /// ```
    pub fn principal(principal: &Principal) -> RateKey {
        RateKey::text(principal.identity())
    }
}

impl fmt::Display for RateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RateKey::V4(o) => write!(f, "ip:{}", Ipv4Addr::from(*o)),
            RateKey::V6(net) => {
                let mut octets = [0u8; 16];
                octets[..7].copy_from_slice(net);
                write!(f, "ip:{}/56", Ipv6Addr::from(octets))
            }
            RateKey::Text(text) => f.write_str(text),
        }
    }
}

/// The parts of a request an extractor may look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestInfo<'a> {
    /// Method.
    pub method: &'a Method,
    /// URI.
    pub uri: &'a Uri,
    /// Headers.
    pub headers: &'a HeaderMap,
    /// Extensions (the peer address, the [`Principal`]).
    pub extensions: &'a Extensions,
}

impl<'a> RequestInfo<'a> {
    /// The view of `request`.
    pub fn of<B>(request: &'a http::Request<B>) -> Self {
        RequestInfo {
            method: request.method(),
            uri: request.uri(),
            headers: request.headers(),
            extensions: request.extensions(),
        }
    }

    /// The socket peer: a [`SocketAddr`] in the extensions (hyper users put
    /// it there), or axum's `ConnectInfo<SocketAddr>` (feature `axum`).
    pub fn peer(&self) -> Option<IpAddr> {
        if let Some(addr) = self.extensions.get::<SocketAddr>() {
            return Some(addr.ip());
        }
        #[cfg(feature = "axum")]
        if let Some(axum::extract::ConnectInfo(addr)) = self
            .extensions
            .get::<axum::extract::ConnectInfo<SocketAddr>>()
        {
            return Some(addr.ip());
        }
        None
    }
}

/// Why an extractor cannot key a request because the layer is
/// misconfigured (not because the request lacks something): the layer
/// answers `500` and logs this, never counting every client in one bucket.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The request carries no socket peer address.
    #[error(
        "the request carries no peer address: serve the app with \
         `into_make_service_with_connect_info::<SocketAddr>()` (axum, with \
         mcp-ratelimit's `axum` feature) or insert the peer's `SocketAddr` \
         into the request extensions"
    )]
    NoPeerAddress,
    /// A custom extractor's misconfiguration, and its fix.
    #[error("{0}")]
    Misconfigured(String),
}

/// Picks the key a request counts against.
///
/// `Ok(None)` when the request has none (such requests share one bucket, so
/// a missing key is never a way around the limit); `Err` when the layer
/// cannot key any request as configured (no peer address for [`PeerIp`]),
/// which the layers answer with `500` and an error log line.
///
/// A closure returning `Option<RateKey>` is an extractor:
///
/// ```
/// use mcp_ratelimit::{KeyExtractor, RateKey, RequestInfo};
///
/// let tenant = |request: &RequestInfo<'_>| {
///     request.headers.get("x-tenant").and_then(|v| v.to_str().ok()).map(RateKey::text)
/// };
/// let request = http::Request::builder().header("x-tenant", "acme").body(()).unwrap();
/// assert_eq!(tenant.extract(&RequestInfo::of(&request)), Ok(Some(RateKey::text("acme"))));
/// ```
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `request`.
    fn extract(&self, request: &RequestInfo<'_>) -> Result<Option<RateKey>, KeyError>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestInfo<'_>) -> Option<RateKey> + Send + Sync + 'static,
{
    fn extract(&self, request: &RequestInfo<'_>) -> Result<Option<RateKey>, KeyError> {
        Ok(self(request))
    }
}

/// The key shared by requests without one.
pub(crate) fn keyless() -> RateKey {
    RateKey::text("none")
}

/// The socket peer's address ([`RequestInfo::peer`]); without one the
/// layer is misconfigured ([`KeyError::NoPeerAddress`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    fn extract(&self, request: &RequestInfo<'_>) -> Result<Option<RateKey>, KeyError> {
        request
            .peer()
            .map(|ip| Some(RateKey::ip(ip)))
            .ok_or(KeyError::NoPeerAddress)
    }
}

/// Which forwarding header [`TrustedProxyIp`] reads: exactly one, never
/// both.
///
/// Configure the one your proxy *appends to*. A proxy that writes one header
/// passes the other through from the client untouched, so reading both (or
/// preferring one when present) would let the client choose its own address.
///
/// ```
/// use mcp_ratelimit::ForwardedHeader;
///
/// assert_eq!(ForwardedHeader::default(), ForwardedHeader::XForwardedFor);
/// assert_eq!("Forwarded".parse::<ForwardedHeader>(), Ok(ForwardedHeader::Forwarded));
/// assert_eq!(ForwardedHeader::XForwardedFor.to_string(), "x-forwarded-for");
/// assert!("both".parse::<ForwardedHeader>().is_err());
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1` (the default; what nginx, HAProxy
    /// and most load balancers append to).
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=client, for=proxy1` (its `for=` values).
    Forwarded,
}

impl ForwardedHeader {
    /// The header's name, lower case: `x-forwarded-for` or `forwarded`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ForwardedHeader::XForwardedFor => "x-forwarded-for",
            ForwardedHeader::Forwarded => "forwarded",
        }
    }

    fn name(&self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => http::header::FORWARDED,
        }
    }
}

impl fmt::Display for ForwardedHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a [`ForwardedHeader`] name was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("expected `x-forwarded-for` or `forwarded`")]
pub struct ForwardedHeaderError(());

impl FromStr for ForwardedHeader {
    type Err = ForwardedHeaderError;

    /// `x-forwarded-for` or `forwarded`, in any case.
    fn from_str(text: &str) -> Result<ForwardedHeader, ForwardedHeaderError> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("x-forwarded-for") {
            Ok(ForwardedHeader::XForwardedFor)
        } else if text.eq_ignore_ascii_case("forwarded") {
            Ok(ForwardedHeader::Forwarded)
        } else {
            Err(ForwardedHeaderError(()))
        }
    }
}

/// An entry of a trusted-proxy list that is neither an address nor a CIDR
/// network.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an address or CIDR network")]
pub struct ProxyListError(String);

impl FromStr for TrustedProxyIp {
    type Err = ProxyListError;

    /// A comma list of addresses and CIDR networks (`10.0.0.0/8, ::1`);
    /// empty entries are skipped, so `""` trusts no proxy.
    ///
    /// ```
    /// use mcp_ratelimit::TrustedProxyIp;
    ///
    /// let proxies: TrustedProxyIp = "10.0.0.0/8, 192.0.2.1".parse().unwrap();
    /// assert_eq!(proxies.proxies().len(), 2);
    /// assert!("10.0.0.0/33".parse::<TrustedProxyIp>().is_err());
    /// ```
    fn from_str(list: &str) -> Result<TrustedProxyIp, ProxyListError> {
        let proxies = list
            .split(',')
            .map(str::trim)
            .filter(|entry| !entry.is_empty())
            .map(|entry| {
                entry
                    .parse::<IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from))
                    .map_err(|_| ProxyListError(entry.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxyIp::new(proxies))
    }
}

/// Who a request came from, as [`TrustedProxyIp`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ClientAddr {
    /// The client's address: the socket peer, or a hop a trusted proxy
    /// wrote.
    Ip(IpAddr),
    /// The first hop that is not a trusted proxy does not parse (`unknown`,
    /// an obfuscated `_name`, garbage): a client hiding behind `via`, the
    /// last trusted hop.
    Hidden {
        /// The trusted proxy the hidden client reached.
        via: IpAddr,
    },
}

impl ClientAddr {
    /// The address, unless the client is hidden.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            ClientAddr::Ip(ip) => Some(*ip),
            ClientAddr::Hidden { .. } => None,
        }
    }

    /// The rate-limit key: [`RateKey::ip`] of the address; for a hidden
    /// client `hidden-via:<proxy>`, one bucket shared by every hidden client
    /// behind that proxy. It is neither the proxy's own bucket (which hidden
    /// clients could otherwise exhaust for it) nor one named by the hop's
    /// text (which the client wrote, so it could pick a fresh bucket per
    /// request).
    ///
    /// ```
    /// use mcp_ratelimit::ClientAddr;
    ///
    /// let via = "10.0.0.2".parse().unwrap();
    /// assert_eq!(ClientAddr::Hidden { via }.key().to_string(), "hidden-via:10.0.0.2");
    /// assert_eq!(ClientAddr::Ip(via).key().to_string(), "ip:10.0.0.2");
    /// ```
    pub fn key(&self) -> RateKey {
        match self {
            ClientAddr::Ip(ip) => RateKey::ip(*ip),
            ClientAddr::Hidden { via } => RateKey::text(format!("hidden-via:{via}")),
        }
    }
}

/// The most hops read from the right.
const MAX_HOPS: usize = 32;

/// The client address as reported by trusted proxies.
///
/// If the socket peer is not a trusted proxy, it is the client. Otherwise
/// exactly one header is read ([`ForwardedHeader`], `X-Forwarded-For` by
/// default; the other is ignored), right to left, skipping trusted proxies:
/// the first hop that is not a trusted proxy is the client, and so is the
/// first hop that does not parse ([`ClientAddr::Hidden`]: proxies write
/// addresses, so such a hop was written by, or hides, the client). Nothing
/// left of the client is read, and at most 32 hops are. When every hop is a
/// trusted proxy, the left-most one is the client; with no header at all, the
/// peer is (a request of the proxy's own).
///
/// ```
/// use std::net::SocketAddr;
/// use mcp_ratelimit::{ClientAddr, ForwardedHeader, RequestInfo, TrustedProxyIp};
///
/// let ip = TrustedProxyIp::new(["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
/// let mut request = http::Request::new(());
/// request.extensions_mut().insert("10.0.0.2:443".parse::<SocketAddr>().unwrap());
/// request.headers_mut().insert("x-forwarded-for", "6.6.6.6, 198.51.100.7".parse().unwrap());
/// request.headers_mut().insert("forwarded", "for=203.0.113.1".parse().unwrap());
/// assert_eq!(
///     ip.client(&RequestInfo::of(&request)),
///     Some(ClientAddr::Ip("198.51.100.7".parse().unwrap()))
/// );
/// let ip = ip.header(ForwardedHeader::Forwarded);
/// assert_eq!(
///     ip.client(&RequestInfo::of(&request)),
///     Some(ClientAddr::Ip("203.0.113.1".parse().unwrap()))
/// );
/// ```
#[derive(Clone, Debug)]
pub struct TrustedProxyIp {
    proxies: Arc<[IpNet]>,
    header: ForwardedHeader,
}

impl TrustedProxyIp {
    /// Proxies in `proxies` (CIDR networks) are trusted; `X-Forwarded-For`
    /// is read.
    pub fn new(proxies: impl IntoIterator<Item = IpNet>) -> Self {
        TrustedProxyIp {
            proxies: proxies.into_iter().collect(),
            header: ForwardedHeader::default(),
        }
    }

    /// Reads `header` instead (only it).
    #[must_use]
    pub fn header(mut self, header: ForwardedHeader) -> Self {
        self.header = header;
        self
    }

    /// The trusted proxies.
    pub fn proxies(&self) -> &[IpNet] {
        &self.proxies
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client of `request`; `None` without a socket peer.
    pub fn client(&self, request: &RequestInfo<'_>) -> Option<ClientAddr> {
        let peer = canonical(request.peer()?);
        if !self.trusted(peer) {
            return Some(ClientAddr::Ip(peer));
        }
        Some(self.walk(peer, request.headers))
    }

    fn walk(&self, peer: IpAddr, headers: &HeaderMap) -> ClientAddr {
        let mut via = peer;
        let mut read = 0;
        // The last header line is the one the nearest proxy wrote.
        for value in headers.get_all(self.header.name()).iter().rev() {
            let Ok(value) = value.to_str() else {
                return ClientAddr::Hidden { via };
            };
            // Quoted commas are not looked for: an address never has one,
            // and the halves of a split quoted value carry a stray quote, so
            // they do not parse and count as a hidden client.
            for element in value.rsplit(',') {
                let element = element.trim();
                // Empty list elements are not hops (RFC 9110, section 5.6.1).
                if element.is_empty() {
                    continue;
                }
                read += 1;
                if read > MAX_HOPS {
                    return ClientAddr::Ip(via);
                }
                let hop = match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(element),
                    ForwardedHeader::Forwarded => forwarded_for(element).and_then(parse_node),
                };
                match hop.map(canonical) {
                    Some(ip) if self.trusted(ip) => via = ip,
                    Some(ip) => return ClientAddr::Ip(ip),
                    None => return ClientAddr::Hidden { via },
                }
            }
        }
        ClientAddr::Ip(via)
    }
}

impl KeyExtractor for TrustedProxyIp {
    /// The client's key; without a socket peer the layer is misconfigured.
    fn extract(&self, request: &RequestInfo<'_>) -> Result<Option<RateKey>, KeyError> {
        self.client(request)
            .map(|client| Some(client.key()))
            .ok_or(KeyError::NoPeerAddress)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The `for=` node of one `Forwarded` element, unquoted; `None` when the
/// element is malformed or has no (or more than one) `for`.
fn forwarded_for(element: &str) -> Option<&str> {
    let mut found = None;
    for pair in element.split(';') {
        if pair.trim().is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=')?;
        if name.trim().eq_ignore_ascii_case("for") {
            if found.is_some() {
                return None;
            }
            found = Some(value.trim());
        }
    }
    let value = found?;
    match value.strip_prefix('"') {
        Some(rest) => rest
            .strip_suffix('"')
            .filter(|inner| !inner.contains(['"', '\\'])),
        None => (!value.contains('"')).then_some(value),
    }
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443`, `[2001:db8::1]`,
/// `2001:db8::1`; a port may be obfuscated (`1.2.3.4:_p`, RFC 7239).
fn parse_node(text: &str) -> Option<IpAddr> {
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = text.strip_prefix('[') {
        let (inner, port) = rest.split_once(']')?;
        if !(port.is_empty() || port.strip_prefix(':').is_some_and(node_port)) {
            return None;
        }
        return inner.parse::<Ipv6Addr>().ok().map(IpAddr::V6);
    }
    // Unbracketed IPv6 parsed above, so a colon here starts a port.
    let (host, port) = text.split_once(':')?;
    if !node_port(port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

/// A node's port (RFC 7239, section 6): up to five digits, or an
/// obfuscated `_name`. Anything else makes the whole node malformed, so a
/// hop such as `[::1]:80x` hides its client instead of naming `::1`.
fn node_port(port: &str) -> bool {
    match port.strip_prefix('_') {
        Some(name) => {
            !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        }
        None => (1..=5).contains(&port.len()) && port.bytes().all(|b| b.is_ascii_digit()),
    }
}

/// The authenticated principal (its API key id, or its issuer and subject),
/// falling back to `fallback` (an IP extractor) for anonymous requests.
#[derive(Clone, Debug)]
pub struct PrincipalOrIp<I = PeerIp> {
    fallback: I,
}

impl PrincipalOrIp<PeerIp> {
    /// Principals, else the socket peer.
    pub fn new() -> Self {
        PrincipalOrIp { fallback: PeerIp }
    }
}

impl Default for PrincipalOrIp<PeerIp> {
    fn default() -> Self {
        Self::new()
    }
}

impl<I: KeyExtractor> PrincipalOrIp<I> {
    /// Principals, else `fallback`.
    pub fn with_fallback(fallback: I) -> Self {
        PrincipalOrIp { fallback }
    }
}

impl<I: KeyExtractor> KeyExtractor for PrincipalOrIp<I> {
    fn extract(&self, request: &RequestInfo<'_>) -> Result<Option<RateKey>, KeyError> {
        match request.extensions.get::<Principal>() {
            Some(principal) => Ok(Some(RateKey::principal(principal))),
            None => self.fallback.extract(request),
        }
    }
}

/// A header's value (at most 256 bytes of it), such as a tenant id.
#[derive(Clone, Debug)]
pub struct HeaderKey(pub HeaderName);

impl KeyExtractor for HeaderKey {
    /// `None` without the header: the headerless share one bucket.
    fn extract(&self, request: &RequestInfo<'_>) -> Result<Option<RateKey>, KeyError> {
        let Some(value) = request.headers.get(&self.0) else {
            return Ok(None);
        };
        let value = value.as_bytes();
        let value = &value[..value.len().min(256)];
        Ok(Some(RateKey::text(format!(
            "h:{}",
            String::from_utf8_lossy(value)
        ))))
    }
}

/// A string field of a JSON body, lower-cased (the login policy keys on the
/// e-mail address), for [`BodyRateLimitLayer`](crate::BodyRateLimitLayer).
///
/// Only a body of at most `max_bytes` is parsed; a longer one gets the
/// `fallback` key without being parsed, as does a body that is not JSON or
/// lacks the field. The body is handed on to the service intact either way.
/// A client decides how long its body is, so it can always choose the
/// fallback's bucket: when the field's bucket must not be escapable (a
/// per-account login limit), make `max_bytes` as large as the layer's
/// buffer.
///
/// ```
/// use mcp_ratelimit::{JsonBodyField, PeerIp};
///
/// // The e-mail of login bodies up to 64 KiB, else the socket peer.
/// let email = JsonBodyField::new("email", 64 * 1024, PeerIp);
/// # let _ = email;
/// ```
#[derive(Clone)]
pub struct JsonBodyField {
    pub(crate) field: String,
    pub(crate) max_bytes: usize,
    pub(crate) fallback: Arc<dyn KeyExtractor>,
}

impl fmt::Debug for JsonBodyField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonBodyField")
            .field("field", &self.field)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl JsonBodyField {
    /// Field `field` of bodies up to `max_bytes`, else `fallback`.
    pub fn new(field: impl Into<String>, max_bytes: usize, fallback: impl KeyExtractor) -> Self {
        JsonBodyField {
            field: field.into(),
            max_bytes,
            fallback: Arc::new(fallback),
        }
    }

    /// The key of a buffered body; `None` (the fallback) for a body over
    /// `max_bytes`, which is not parsed at all.
    pub(crate) fn key_of_body(&self, body: &[u8]) -> Option<RateKey> {
        if body.len() > self.max_bytes {
            return None;
        }
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let field = value.get(&self.field)?.as_str()?.trim();
        if field.is_empty() || field.len() > 320 {
            return None;
        }
        Some(RateKey::text(format!(
            "{}:{}",
            self.field,
            field.to_lowercase()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proxy_list_parses_addresses_and_networks_and_names_a_bad_entry() {
        let proxies: TrustedProxyIp = " 10.0.0.0/8, ,192.0.2.1 ".parse().unwrap();
        assert_eq!(
            proxies.proxies(),
            [
                "10.0.0.0/8".parse::<IpNet>().unwrap(),
                "192.0.2.1/32".parse().unwrap()
            ]
        );
        assert!("".parse::<TrustedProxyIp>().unwrap().proxies().is_empty());
        let error = "10.0.0.0/8, proxy.internal"
            .parse::<TrustedProxyIp>()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            r#""proxy.internal" is not an address or CIDR network"#
        );
    }

    fn info_with<'a>(
        headers: &'a HeaderMap,
        extensions: &'a Extensions,
        method: &'a Method,
        uri: &'a Uri,
    ) -> RequestInfo<'a> {
        RequestInfo {
            method,
            uri,
            headers,
            extensions,
        }
    }

    fn client(proxies: &[&str], peer: &str, headers: &[(&str, &str)]) -> Option<String> {
        client_reading(ForwardedHeader::XForwardedFor, proxies, peer, headers)
    }

    fn client_reading(
        header: ForwardedHeader,
        proxies: &[&str],
        peer: &str,
        headers: &[(&str, &str)],
    ) -> Option<String> {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let mut extensions = Extensions::new();
        extensions.insert(peer.parse::<SocketAddr>().unwrap());
        let (method, uri) = (Method::GET, Uri::from_static("/"));
        let info = info_with(&map, &extensions, &method, &uri);
        let extractor =
            TrustedProxyIp::new(proxies.iter().map(|p| p.parse().unwrap())).header(header);
        extractor.extract(&info).unwrap().map(|k| k.to_string())
    }

    #[test]
    fn ipv6_is_grouped_by_56_and_mapped_v4_is_v4() {
        let a = RateKey::ip("2001:db8:aa:bb00::1".parse().unwrap());
        let b = RateKey::ip("2001:db8:aa:bbff:ffff::9".parse().unwrap());
        let c = RateKey::ip("2001:db8:aa:bc00::1".parse().unwrap());
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_eq!(a.to_string(), "ip:2001:db8:aa:bb00::/56");
        assert_eq!(
            RateKey::ip("::ffff:1.2.3.4".parse().unwrap()),
            RateKey::ip("1.2.3.4".parse().unwrap())
        );
    }

    #[test]
    fn untrusted_peers_are_the_client_whatever_they_claim() {
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "203.0.113.9:5000",
                &[("x-forwarded-for", "1.1.1.1")]
            )
            .unwrap(),
            "ip:203.0.113.9"
        );
    }

    #[test]
    fn trusted_proxies_are_read_from_the_right() {
        // The client spoofs a left-most entry; the proxy appended the real one.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7")]
            )
            .unwrap(),
            "ip:198.51.100.7"
        );
        // Two proxies deep.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.1.1")]
            )
            .unwrap(),
            "ip:198.51.100.7"
        );
        // Several headers are one list.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[
                    ("x-forwarded-for", "6.6.6.6"),
                    ("x-forwarded-for", "198.51.100.8")
                ]
            )
            .unwrap(),
            "ip:198.51.100.8"
        );
        // `Forwarded` when configured, and then only it.
        assert_eq!(
            client_reading(
                ForwardedHeader::Forwarded,
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[
                    (
                        "forwarded",
                        "for=6.6.6.6, for=\"[2001:db8::1]:443\";proto=https"
                    ),
                    ("x-forwarded-for", "7.7.7.7")
                ]
            )
            .unwrap(),
            "ip:2001:db8::/56"
        );
    }

    #[test]
    fn hostile_forwarding_headers() {
        // Garbage right of the trusted hop: a client hiding behind the proxy.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[("x-forwarded-for", "1.1.1.1, not-an-ip")]
            )
            .unwrap(),
            "hidden-via:10.0.0.2"
        );
        // A thousand entries: bounded, still the right-most untrusted.
        let many = (0..1000)
            .map(|i| format!("192.0.2.{}", i % 250))
            .collect::<Vec<_>>()
            .join(", ");
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.2:1", &[("x-forwarded-for", &many)]).unwrap(),
            "ip:192.0.2.249"
        );
        // Everything trusted: the left-most readable hop.
        assert_eq!(
            client(
                &["0.0.0.0/0"],
                "10.0.0.2:1",
                &[("x-forwarded-for", "10.9.9.9")]
            )
            .unwrap(),
            "ip:10.9.9.9"
        );
        // Empty lists are no hops: the proxy's own request.
        for value in ["", ",,,", " , "] {
            assert_eq!(
                client(&["10.0.0.0/8"], "10.0.0.2:1", &[("x-forwarded-for", value)]).unwrap(),
                "ip:10.0.0.2",
                "{value:?}"
            );
        }
        // Odd values are hidden clients.
        for value in [
            "unknown",
            "[::1",
            "999.1.1.1",
            "\"1.2.3.4\"",
            "1.2.3.4 5.6.7.8",
            "[1.2.3.4]",
            // Found by the property test: a port that is none (RFC 7239's
            // node-port is five digits or `_name`) makes the node malformed.
            "[::1]:80x",
            "1.2.3.4:",
            "1.2.3.4:123456",
            "1.2.3.4:_",
            "[::1]:_a b",
        ] {
            assert_eq!(
                client(&["10.0.0.0/8"], "10.0.0.2:1", &[("x-forwarded-for", value)]).unwrap(),
                "hidden-via:10.0.0.2",
                "{value:?}"
            );
        }
        // Forwarded: malformed and obfuscated nodes, quoted commas.
        for value in [
            "for=unknown",
            "for=_hidden",
            "proto=https",
            "for",
            "for=1.1.1.1;for=2.2.2.2",
            "for=\"x, for=198.51.100.1\"",
            "for=\"198.51.100.1",
            "for=198.51.100.1\"",
        ] {
            assert_eq!(
                client_reading(
                    ForwardedHeader::Forwarded,
                    &["10.0.0.0/8"],
                    "10.0.0.2:1",
                    &[("forwarded", value)]
                )
                .unwrap(),
                "hidden-via:10.0.0.2",
                "{value:?}"
            );
        }
        for (value, expected) in [
            ("for=198.51.100.1", "ip:198.51.100.1"),
            ("For=\"198.51.100.1:8080\";proto=https", "ip:198.51.100.1"),
            ("for=\"198.51.100.1:_p\"", "ip:198.51.100.1"),
            ("by=10.0.0.2;for=\"[2001:db8::1]\"", "ip:2001:db8::/56"),
            ("for=198.51.100.1, for=10.3.3.3", "ip:198.51.100.1"),
        ] {
            assert_eq!(
                client_reading(
                    ForwardedHeader::Forwarded,
                    &["10.0.0.0/8"],
                    "10.0.0.2:1",
                    &[("forwarded", value)]
                )
                .unwrap(),
                expected,
                "{value:?}"
            );
        }
        // IPv4-mapped peers match IPv4 proxy networks.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "[::ffff:10.0.0.2]:1",
                &[("x-forwarded-for", "198.51.100.1")]
            )
            .unwrap(),
            "ip:198.51.100.1"
        );
    }

    #[test]
    fn a_client_forwarded_header_does_not_override_the_proxy_xff() {
        // The proxy appends to X-Forwarded-For and passes the client's own
        // `Forwarded` through: only the configured header counts.
        for spoof in ["for=6.6.6.6", "for=_x", "for=\"[2001:db8::9]\"", "garbage"] {
            assert_eq!(
                client(
                    &["10.0.0.0/8"],
                    "10.0.0.2:1",
                    &[("forwarded", spoof), ("x-forwarded-for", "198.51.100.7")]
                )
                .unwrap(),
                "ip:198.51.100.7",
                "{spoof:?}"
            );
        }
    }

    #[test]
    fn with_forwarded_configured_xff_is_ignored() {
        for xff in ["198.51.100.1", "6.6.6.6", "_x"] {
            assert_eq!(
                client_reading(
                    ForwardedHeader::Forwarded,
                    &["10.0.0.0/8"],
                    "10.0.0.2:1",
                    &[("x-forwarded-for", xff)]
                )
                .unwrap(),
                "ip:10.0.0.2",
                "{xff:?}"
            );
            assert_eq!(
                client_reading(
                    ForwardedHeader::Forwarded,
                    &["10.0.0.0/8"],
                    "10.0.0.2:1",
                    &[("x-forwarded-for", xff), ("forwarded", "for=203.0.113.5")]
                )
                .unwrap(),
                "ip:203.0.113.5",
                "{xff:?}"
            );
        }
    }

    #[test]
    fn an_unparsable_hop_is_a_hidden_client_not_the_proxy() {
        // The proxy's own requests (no header) are its address.
        assert_eq!(
            client(&["10.0.0.0/8"], "10.0.0.2:1", &[]).unwrap(),
            "ip:10.0.0.2"
        );
        // A hop that does not parse is the client: never the proxy's bucket,
        // never a bucket named by the client's text.
        let hidden = client(
            &["10.0.0.0/8"],
            "10.0.0.2:1",
            &[("x-forwarded-for", "1.1.1.1, not-an-ip")],
        )
        .unwrap();
        assert_ne!(
            hidden, "ip:10.0.0.2",
            "the proxy's address must not stand in"
        );
        assert_ne!(hidden, "ip:1.1.1.1", "the walk must not go past the client");
        for value in ["_x", "_y", "unknown", "[::1", "999.1.1.1", "6.6.6.6, _z"] {
            assert_eq!(
                client(&["10.0.0.0/8"], "10.0.0.2:1", &[("x-forwarded-for", value)]).unwrap(),
                hidden,
                "{value:?}: one bucket per proxy, whatever the text"
            );
        }
        // Hidden behind another trusted hop: that hop's bucket of hidden clients.
        let deeper = client(
            &["10.0.0.0/8"],
            "10.0.0.2:1",
            &[("x-forwarded-for", "_x, 10.3.3.3")],
        )
        .unwrap();
        assert_ne!(deeper, hidden);
        assert_ne!(deeper, "ip:10.3.3.3");
        // A readable client behind the same proxy keeps its own bucket.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[("x-forwarded-for", "198.51.100.1")]
            )
            .unwrap(),
            "ip:198.51.100.1"
        );
    }

    #[test]
    fn json_field_reads_at_most_max_bytes() {
        let field = JsonBodyField::new("email", 40, PeerIp);
        let body = br#"{"email":"ada@example.com"}"#;
        assert!(body.len() <= 40);
        assert_eq!(
            field.key_of_body(body).unwrap().to_string(),
            "email:ada@example.com"
        );
        let exact = format!(r#"{{"email":"ada@example.com"{}}}"#, " ".repeat(40 - 27));
        assert_eq!(exact.len(), 40);
        assert!(
            field.key_of_body(exact.as_bytes()).is_some(),
            "max_bytes is inclusive"
        );
        let longer = format!(r#"{{"email":"ada@example.com"{}}}"#, " ".repeat(41 - 27));
        assert_eq!(longer.len(), 41);
        assert_eq!(
            field.key_of_body(longer.as_bytes()),
            None,
            "a body over max_bytes falls back"
        );
    }

    #[test]
    fn principals_key_by_api_key_then_subject() {
        let key = Principal::builder("u1", mcp_core::AuthMethod::ApiKey)
            .key_id("k9")
            .build();
        assert_eq!(RateKey::principal(&key).to_string(), "key:k9");
        let jwt = Principal::builder("u1", mcp_core::AuthMethod::Jwt)
            .issuer("https://iss")
            .build();
        assert_eq!(RateKey::principal(&jwt).to_string(), "sub:https://iss|u1");
    }

    #[test]
    fn json_field_keys() {
        let field = JsonBodyField::new("email", 1024, PeerIp);
        assert_eq!(
            field
                .key_of_body(br#"{"email":" Ada@Example.COM ","password":"x"}"#)
                .unwrap()
                .to_string(),
            "email:ada@example.com"
        );
        for body in [
            &b"{}"[..],
            b"[]",
            b"{\"email\":5}",
            b"not json",
            b"{\"email\":\"\"}",
            b"",
        ] {
            assert_eq!(field.key_of_body(body), None);
        }
    }

    #[test]
    fn forwarded_header_names_round_trip_and_nothing_else_parses() {
        for (header, name) in [
            (ForwardedHeader::XForwardedFor, "x-forwarded-for"),
            (ForwardedHeader::Forwarded, "forwarded"),
        ] {
            assert_eq!(header.as_str(), name);
            assert_eq!(header.to_string(), name);
            assert_eq!(header.name().as_str(), name, "the header read");
            assert_eq!(name.parse::<ForwardedHeader>(), Ok(header));
            assert_eq!(name.to_uppercase().parse::<ForwardedHeader>(), Ok(header));
            assert_eq!(format!("  {name}\t").parse::<ForwardedHeader>(), Ok(header));
        }
        assert_eq!(
            "X-Forwarded-For".parse::<ForwardedHeader>(),
            Ok(ForwardedHeader::XForwardedFor)
        );
        for garbage in [
            "",
            " ",
            "both",
            "x-forwarded",
            "forwarded-for",
            "x-forwarded-for,forwarded",
            "x_forwarded_for",
            "xyzzy",
        ] {
            let refused = garbage.parse::<ForwardedHeader>();
            assert_eq!(refused, Err(ForwardedHeaderError(())), "{garbage:?}");
            assert_eq!(
                refused.unwrap_err().to_string(),
                "expected `x-forwarded-for` or `forwarded`"
            );
        }
    }

    #[test]
    fn client_addr_ip_is_the_address_unless_hidden() {
        let ip: IpAddr = "198.51.100.7".parse().unwrap();
        let via: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!(ClientAddr::Ip(ip).ip(), Some(ip));
        assert_eq!(ClientAddr::Hidden { via }.ip(), None);
    }

    /// The client 198.51.100.7 behind `trusted` proxy hops (10.0.0.1 next to
    /// it, ..., 10.0.0.<trusted> right-most) and the trusted peer 10.255.0.1.
    fn behind(trusted: u8) -> String {
        let mut hops = vec!["198.51.100.7".to_owned()];
        hops.extend((1..=trusted).map(|i| format!("10.0.0.{i}")));
        let value = hops.join(", ");
        client(
            &["10.0.0.0/8"],
            "10.255.0.1:1",
            &[("x-forwarded-for", &value)],
        )
        .unwrap()
    }

    #[test]
    fn at_most_32_hops_are_read() {
        // The client as the 32nd hop from the right is still read.
        assert_eq!(behind(0), "ip:198.51.100.7");
        assert_eq!(behind(1), "ip:198.51.100.7");
        assert_eq!(behind(30), "ip:198.51.100.7");
        assert_eq!(behind(31), "ip:198.51.100.7");
        // As the 33rd it is not: the 32nd, the left-most hop read, a
        // trusted proxy, is the client.
        assert_eq!(behind(32), "ip:10.0.0.1");
        assert_eq!(behind(33), "ip:10.0.0.2");
        assert_eq!(behind(100), "ip:10.0.0.69");
        // Spread over several header lines, the same count.
        let mut lines = vec![("x-forwarded-for", "198.51.100.7".to_owned())];
        lines.extend((1..=32).map(|i| ("x-forwarded-for", format!("10.0.0.{i}"))));
        let lines: Vec<(&str, &str)> = lines.iter().map(|(n, v)| (*n, v.as_str())).collect();
        assert_eq!(
            client(&["10.0.0.0/8"], "10.255.0.1:1", &lines).unwrap(),
            "ip:10.0.0.1"
        );
        // Empty elements are not hops, so they do not use up the 32.
        let mut hops = vec!["198.51.100.7".to_owned()];
        hops.extend((1..=31).map(|i| format!("10.0.0.{i}, ")));
        let value = hops.join(", ");
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.255.0.1:1",
                &[("x-forwarded-for", &value)]
            )
            .unwrap(),
            "ip:198.51.100.7"
        );
    }

    fn request_with(headers: &[(&str, &str)]) -> String {
        let mut map = HeaderMap::new();
        for (name, value) in headers {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(value).unwrap(),
            );
        }
        let extensions = Extensions::new();
        let (method, uri) = (Method::POST, Uri::from_static("/mcp"));
        let info = info_with(&map, &extensions, &method, &uri);
        let by_tenant = HeaderKey(HeaderName::from_static("x-tenant"));
        match by_tenant.extract(&info).unwrap() {
            Some(key) => key.to_string(),
            None => "-".to_owned(),
        }
    }

    #[test]
    fn header_key_is_the_first_256_bytes_of_the_value() {
        assert_eq!(request_with(&[("x-tenant", "acme")]), "h:acme");
        assert_eq!(request_with(&[("X-Tenant", "globex")]), "h:globex");
        // The first line of several.
        assert_eq!(
            request_with(&[("x-tenant", "acme"), ("x-tenant", "globex")]),
            "h:acme"
        );
        // No header: no key (the layer's shared keyless bucket).
        assert_eq!(request_with(&[]), "-");
        assert_eq!(request_with(&[("x-other", "acme")]), "-");
        let exact = "a".repeat(256);
        assert_eq!(request_with(&[("x-tenant", &exact)]), format!("h:{exact}"));
        assert_eq!(
            request_with(&[("x-tenant", &format!("{exact}tail"))]),
            format!("h:{exact}")
        );
    }

    #[test]
    fn a_closure_is_a_key_extractor() {
        fn by_path(request: &RequestInfo<'_>) -> Option<RateKey> {
            (request.uri.path() != "/").then(|| RateKey::text(request.uri.path()))
        }
        let extractor: Arc<dyn KeyExtractor> = Arc::new(by_path);
        let (headers, extensions) = (HeaderMap::new(), Extensions::new());
        let method = Method::GET;
        let (tools, root) = (Uri::from_static("/tools"), Uri::from_static("/"));
        assert_eq!(
            extractor.extract(&info_with(&headers, &extensions, &method, &tools)),
            Ok(Some(RateKey::text("/tools")))
        );
        assert_eq!(
            extractor.extract(&info_with(&headers, &extensions, &method, &root)),
            Ok(None)
        );
    }

    #[test]
    fn json_field_of_at_most_320_bytes() {
        let field = JsonBodyField::new("email", 4096, PeerIp);
        let body = |value: &str| format!(r#"{{"email":"{value}"}}"#);
        let exact = format!("{}@example.com", "a".repeat(320 - 12));
        assert_eq!(exact.len(), 320);
        assert_eq!(
            field
                .key_of_body(body(&exact).as_bytes())
                .unwrap()
                .to_string(),
            format!("email:{exact}")
        );
        // Measured after trimming.
        assert!(
            field
                .key_of_body(body(&format!("  {exact} ")).as_bytes())
                .is_some()
        );
        let over = format!("a{exact}");
        assert_eq!(over.len(), 321);
        assert_eq!(field.key_of_body(body(&over).as_bytes()), None);
        assert_eq!(
            field.key_of_body(body("x").as_bytes()).unwrap().to_string(),
            "email:x"
        );
    }

    #[test]
    fn json_field_debug_shows_the_field_and_the_limit_only() {
        let field = JsonBodyField::new("email", 40, HeaderKey(HeaderName::from_static("x-secret")));
        assert_eq!(
            format!("{field:?}"),
            r#"JsonBodyField { field: "email", max_bytes: 40, .. }"#
        );
    }
}
