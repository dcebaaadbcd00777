//! Who a request counts against: key extractors.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
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

/// Picks the key a request counts against; `None` when it has none (such
/// requests share one bucket, so a missing key is never a way around the
/// limit).
pub trait KeyExtractor: Send + Sync + 'static {
    /// The key of `request`.
    fn extract(&self, request: &RequestInfo<'_>) -> Option<RateKey>;
}

impl<F> KeyExtractor for F
where
    F: Fn(&RequestInfo<'_>) -> Option<RateKey> + Send + Sync + 'static,
{
    fn extract(&self, request: &RequestInfo<'_>) -> Option<RateKey> {
        self(request)
    }
}

/// The key shared by requests without one.
pub(crate) fn keyless() -> RateKey {
    RateKey::text("none")
}

/// The socket peer's address.
#[derive(Clone, Copy, Debug, Default)]
pub struct PeerIp;

impl KeyExtractor for PeerIp {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<RateKey> {
        request.peer().map(RateKey::ip)
    }
}

/// The client address as reported by trusted proxies.
///
/// Starting from the socket peer, while the current hop is a trusted proxy
/// the next address to the left in `Forwarded` (`for=`), or else in
/// `X-Forwarded-For`, is taken; the first untrusted hop is the client. An
/// address an untrusted party wrote (anything left of it) is never read, and
/// a hop that does not parse ends the walk at the last good hop. At most 32
/// hops are read.
///
/// ```
/// use mcp_ratelimit::TrustedProxyIp;
///
/// let ip = TrustedProxyIp::new(["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()]);
/// ```
#[derive(Clone, Debug)]
pub struct TrustedProxyIp {
    proxies: Arc<[IpNet]>,
}

impl TrustedProxyIp {
    /// Proxies in `proxies` (CIDR networks) are trusted.
    pub fn new(proxies: impl IntoIterator<Item = IpNet>) -> Self {
        TrustedProxyIp {
            proxies: proxies.into_iter().collect(),
        }
    }

    fn trusted(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.proxies.iter().any(|net| net.contains(&ip))
    }

    /// The client address of `request`.
    pub fn client(&self, request: &RequestInfo<'_>) -> Option<IpAddr> {
        let peer = canonical(request.peer()?);
        if !self.trusted(peer) {
            return Some(peer);
        }
        let hops = forwarded_hops(request.headers);
        let mut client = peer;
        for hop in hops.iter().rev().take(32) {
            match hop {
                Some(ip) => {
                    client = canonical(*ip);
                    if !self.trusted(client) {
                        return Some(client);
                    }
                }
                None => return Some(client),
            }
        }
        Some(client)
    }
}

impl KeyExtractor for TrustedProxyIp {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<RateKey> {
        self.client(request).map(RateKey::ip)
    }
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The hops of `Forwarded` (its `for=` values) if present, else of every
/// `X-Forwarded-For` header, left to right; `None` for a hop that does not
/// parse. Bounded: only the last 64 hops are kept.
fn forwarded_hops(headers: &HeaderMap) -> Vec<Option<IpAddr>> {
    let mut hops = Vec::new();
    let forwarded = headers.get_all(http::header::FORWARDED);
    if forwarded.iter().next().is_some() {
        for value in forwarded {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            for element in value.split(',') {
                let node = element.split(';').find_map(|pair| {
                    let (name, value) = pair.split_once('=')?;
                    name.trim()
                        .eq_ignore_ascii_case("for")
                        .then_some(value.trim())
                });
                hops.push(node.and_then(parse_node));
            }
        }
    } else {
        for value in headers.get_all(HeaderName::from_static("x-forwarded-for")) {
            let Ok(value) = value.to_str() else {
                hops.push(None);
                continue;
            };
            hops.extend(value.split(',').map(|hop| parse_node(hop.trim())));
        }
    }
    if hops.len() > 64 {
        hops.drain(..hops.len() - 64);
    }
    hops
}

/// `1.2.3.4`, `1.2.3.4:80`, `"[2001:db8::1]:443"`, `2001:db8::1`.
fn parse_node(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    let (inner, _port) = text.strip_prefix('[')?.split_once(']')?;
    inner.parse().ok()
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

/// The key of a principal: its API key, else its issuer and subject.
pub fn principal_key(principal: &Principal) -> RateKey {
    match (principal.key_id(), principal.issuer()) {
        (Some(key), _) => RateKey::text(format!("key:{key}")),
        (None, Some(issuer)) => RateKey::text(format!("sub:{issuer}|{}", principal.subject())),
        (None, None) => RateKey::text(format!("sub:{}", principal.subject())),
    }
}

impl<I: KeyExtractor> KeyExtractor for PrincipalOrIp<I> {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<RateKey> {
        match request.extensions.get::<Principal>() {
            Some(principal) => Some(principal_key(principal)),
            None => self.fallback.extract(request),
        }
    }
}

/// A header's value (at most 256 bytes of it), such as a tenant id.
#[derive(Clone, Debug)]
pub struct HeaderKey(pub HeaderName);

impl KeyExtractor for HeaderKey {
    fn extract(&self, request: &RequestInfo<'_>) -> Option<RateKey> {
        let value = request.headers.get(&self.0)?.as_bytes();
        let value = &value[..value.len().min(256)];
        Some(RateKey::text(format!(
            "h:{}",
            String::from_utf8_lossy(value)
        )))
    }
}

/// A string field of a JSON body, lower-cased (the login policy keys on the
/// e-mail address), read from at most `max_bytes` of body; `fallback` when
/// the body is longer, not JSON, or without the field. The body is handed on
/// to the service intact.
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

    /// The key of a buffered body.
    pub(crate) fn key_of_body(&self, body: &[u8]) -> Option<RateKey> {
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
        let extractor = TrustedProxyIp::new(proxies.iter().map(|p| p.parse().unwrap()));
        extractor.extract(&info).map(|k| k.to_string())
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
        // Forwarded wins over X-Forwarded-For.
        assert_eq!(
            client(
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
        // Garbage right of the trusted hop: stop at the proxy.
        assert_eq!(
            client(
                &["10.0.0.0/8"],
                "10.0.0.2:1",
                &[("x-forwarded-for", "1.1.1.1, not-an-ip")]
            )
            .unwrap(),
            "ip:10.0.0.2"
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
        // Empty and odd values.
        for value in ["", ",,,", "unknown", "[::1", "999.1.1.1"] {
            assert_eq!(
                client(&["10.0.0.0/8"], "10.0.0.2:1", &[("x-forwarded-for", value)]).unwrap(),
                "ip:10.0.0.2",
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
    fn principals_key_by_api_key_then_subject() {
        let key = Principal::builder("u1", mcp_core::AuthMethod::ApiKey)
            .key_id("k9")
            .build();
        assert_eq!(principal_key(&key).to_string(), "key:k9");
        let jwt = Principal::builder("u1", mcp_core::AuthMethod::Jwt)
            .issuer("https://iss")
            .build();
        assert_eq!(principal_key(&jwt).to_string(), "sub:https://iss|u1");
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
}
