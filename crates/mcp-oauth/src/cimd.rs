//! Client ID Metadata Documents: a `client_id` that is an `https` URL names
//! a JSON document describing the client, fetched by the authorization
//! server. Fetching a URL a stranger chose is a request forgery waiting to
//! happen, so: `https` only, no address that is private, loopback,
//! link-local or otherwise not public (checked on every address the name
//! resolves to, and the connection goes only to those), no redirects, a
//! timeout, a size cap, and a cache so one client cannot make the server
//! fetch over and over.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use mcp_core::{SharedClock, SystemClock};
use serde::Deserialize;
use url::Url;

use crate::error::{ErrorCode, OAuthError};
use crate::redirect::redirect_uri_allowed;
use crate::store::Client;

/// Largest document read (64 KiB).
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;
/// How long a fetched document is reused.
const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most documents kept.
const CACHE_ENTRIES: usize = 1000;

/// Whether `ip` is an address a fetch may go to: a public unicast address.
/// Loopback, private (RFC 1918, unique local), link-local (the cloud
/// metadata service at 169.254.169.254 among them), shared (100.64/10),
/// unspecified, multicast, broadcast, documentation and IPv4-mapped forms
/// of any of these are refused.
///
/// ```
/// use mcp_oauth::is_public_address;
///
/// assert!(is_public_address("93.184.216.34".parse().unwrap()));
/// assert!(!is_public_address("127.0.0.1".parse().unwrap()));
/// assert!(!is_public_address("169.254.169.254".parse().unwrap()));
/// assert!(!is_public_address("::ffff:10.0.0.1".parse().unwrap()));
/// ```
pub fn is_public_address(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b))
                || (a == 192 && b == 0)
                || a >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_address(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00
                || (first & 0xffc0) == 0xfe80
                || first == 0x2001 && v6.segments()[1] == 0x0db8
                || first == 0x64 && v6.segments()[1] == 0xff9b)
        }
    }
}

/// Resolves names for the fetch, keeping only public addresses (so a name
/// that resolves to 127.0.0.1, or is rebound to it, is never connected to).
struct PublicOnly {
    allow_private: bool,
}

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| allow_private || is_public_address(a.ip()))
                .collect();
            if addrs.is_empty() {
                return Err("the name resolves to no public address".into());
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The fields of a metadata document this server uses.
#[derive(Deserialize)]
struct Document {
    client_id: String,
    #[serde(default)]
    redirect_uris: Vec<String>,
    client_name: Option<String>,
    token_endpoint_auth_method: Option<String>,
}

/// Fetches and checks Client ID Metadata Documents, with a cache.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use mcp_oauth::ClientMetadataFetcher;
///
/// let fetcher = ClientMetadataFetcher::new();
/// // Refused before any connection: not https, then not a public address.
/// assert!(fetcher.fetch("http://client.example/metadata.json").await.is_err());
/// assert!(fetcher.fetch("https://169.254.169.254/latest/meta-data").await.is_err());
/// # }
/// ```
#[derive(Clone)]
pub struct ClientMetadataFetcher {
    http: reqwest::Client,
    allow_insecure: bool,
    cache: Arc<Mutex<HashMap<String, (Client, SystemTime)>>>,
    clock: SharedClock,
}

impl std::fmt::Debug for ClientMetadataFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientMetadataFetcher")
            .field("allow_insecure", &self.allow_insecure)
            .finish_non_exhaustive()
    }
}

impl Default for ClientMetadataFetcher {
    fn default() -> Self {
        ClientMetadataFetcher::new()
    }
}

fn invalid(description: &'static str) -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, description)
}

impl ClientMetadataFetcher {
    /// `https` URLs on public addresses only, 5 s, 64 KiB.
    pub fn new() -> Self {
        ClientMetadataFetcher::build(false, Duration::from_secs(5))
    }

    /// Also `http`, private or loopback addresses, and certificates no
    /// authority signed: for tests, which serve documents on loopback
    /// (over `https` with a certificate of their own). Never in production.
    pub fn insecure_for_tests(timeout: Duration) -> Self {
        ClientMetadataFetcher::build(true, timeout)
    }

    fn build(allow_insecure: bool, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PublicOnly {
                allow_private: allow_insecure,
            }))
            .no_proxy()
            .danger_accept_invalid_certs(allow_insecure)
            .build()
            .unwrap_or_default();
        ClientMetadataFetcher {
            http,
            allow_insecure,
            cache: Arc::new(Mutex::new(HashMap::new())),
            clock: SystemClock::shared(),
        }
    }

    /// Reads time from `clock` (the cache's five minutes).
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Whether `client_id` names a metadata document (an `https` URL, or
    /// `http` when insecure): then it is fetched instead of looked up.
    pub fn is_document_url(&self, client_id: &str) -> bool {
        client_id.starts_with("https://")
            || (self.allow_insecure && client_id.starts_with("http://"))
    }

    /// The client the document at `url` describes: its `client_id` must be
    /// `url` itself, its redirect URIs allowed ones, and it a public client.
    pub async fn fetch(&self, url: &str) -> Result<Client, OAuthError> {
        self.lookup(url).await.map(|(client, _)| client)
    }

    /// [`fetch`](Self::fetch), saying whether the document was fetched
    /// now (`true`) or came from the cache.
    pub(crate) async fn lookup(&self, url: &str) -> Result<(Client, bool), OAuthError> {
        let now = self.clock.now();
        if let Some((client, at)) = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(url)
            && now.duration_since(*at).is_ok_and(|age| age < CACHE_TTL)
        {
            return Ok((client.clone(), false));
        }
        let parsed = Url::parse(url).map_err(|_| invalid("the client_id is not a URL"))?;
        let scheme_ok =
            parsed.scheme() == "https" || (self.allow_insecure && parsed.scheme() == "http");
        if !scheme_ok {
            return Err(invalid(
                "a client metadata document must be served over https",
            ));
        }
        if !parsed.username().is_empty()
            || parsed.password().is_some()
            || parsed.fragment().is_some()
            || parsed.path() == "/"
        {
            return Err(invalid(
                "a client metadata URL has a path and no credentials or fragment",
            ));
        }
        // An address written in the URL is not resolved: check it here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(invalid("the client_id URL has no host")),
        };
        if literal.is_some_and(|ip| !self.allow_insecure && !is_public_address(ip)) {
            return Err(invalid(
                "the client metadata URL is not on a public address",
            ));
        }
        let mut response = self
            .http
            .get(parsed.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|error| {
                tracing::info!(%error, "cannot fetch a client metadata document");
                invalid("the client metadata document cannot be fetched")
            })?;
        if !response.status().is_success() {
            return Err(invalid("the client metadata document cannot be fetched"));
        }
        if response
            .content_length()
            .is_some_and(|n| n > MAX_DOCUMENT_BYTES as u64)
        {
            return Err(invalid("the client metadata document is too large"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|_| invalid("the client metadata document cannot be fetched"))?
        {
            if body.len() + chunk.len() > MAX_DOCUMENT_BYTES {
                return Err(invalid("the client metadata document is too large"));
            }
            body.extend_from_slice(&chunk);
        }
        let document: Document = serde_json::from_slice(&body)
            .map_err(|_| invalid("the client metadata document is not valid JSON metadata"))?;
        if document.client_id != url {
            return Err(invalid(
                "the client metadata document's client_id is not its own URL",
            ));
        }
        if document.redirect_uris.is_empty()
            || document.redirect_uris.len() > 10
            || document
                .redirect_uris
                .iter()
                .any(|u| !redirect_uri_allowed(u))
        {
            return Err(invalid(
                "the client metadata document's redirect_uris are missing or not allowed",
            ));
        }
        if document
            .token_endpoint_auth_method
            .as_deref()
            .is_some_and(|m| m != "none")
        {
            return Err(invalid(
                "a client metadata document describes a public client (token_endpoint_auth_method none)",
            ));
        }
        let client = Client {
            id: document.client_id,
            secret_hash: None,
            name: document
                .client_name
                .filter(|n| n.len() <= 200 && !n.chars().any(char::is_control)),
            redirect_uris: document.redirect_uris,
            created_at: now,
        };
        self.remember(url, &client, now);
        Ok((client, true))
    }

    /// Keeps `client` for [`CACHE_TTL`]. A full cache drops its expired
    /// entries first, and everything when none has expired: the cache is
    /// bounded, and a flood of new URLs costs refetches, not memory.
    fn remember(&self, url: &str, client: &Client, now: SystemTime) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_ENTRIES {
            cache.retain(|_, (_, at)| now.duration_since(*at).is_ok_and(|age| age < CACHE_TTL));
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
        }
        cache.insert(url.to_owned(), (client.clone(), now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcp_core::Clock;
    use reqwest::dns::Resolve;
    use std::str::FromStr;

    #[test]
    fn only_public_unicast_addresses_are_public() {
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.1.0.1",
            "223.255.255.255",
            "2606:4700::1111",
            "2001:db9::1",
            "::ffff:8.8.8.8",
            "fec0::1",
        ] {
            assert!(is_public_address(public.parse().unwrap()), "{public}");
        }
        for private in [
            "127.0.0.1",
            "127.255.255.254",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "192.0.0.1",
            "198.51.100.1",
            "203.0.113.1",
            "100.64.0.1",
            "100.127.255.255",
            "240.0.0.1",
            "::1",
            "::",
            "ff02::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "febf::1",
            "2001:db8::1",
            "64:ff9b::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
        ] {
            assert!(!is_public_address(private.parse().unwrap()), "{private}");
        }
    }

    #[tokio::test]
    async fn the_resolver_drops_what_is_not_public_unless_told_otherwise() {
        let name = || reqwest::dns::Name::from_str("localhost").unwrap();
        let strict = PublicOnly {
            allow_private: false,
        };
        assert!(strict.resolve(name()).await.is_err());
        let lax = PublicOnly {
            allow_private: true,
        };
        let addrs: Vec<SocketAddr> = lax.resolve(name()).await.unwrap().collect();
        assert!(addrs.iter().any(|a| a.ip().is_loopback()), "{addrs:?}");
    }

    #[test]
    fn the_cache_stays_bounded() {
        let clock = mcp_core::ManualClock::at_unix(1_800_000_000);
        let fetcher = ClientMetadataFetcher::new().clock(clock.shared());
        let client = |id: &str| Client {
            id: id.into(),
            secret_hash: None,
            name: None,
            redirect_uris: vec![],
            created_at: clock.now(),
        };
        let len = || fetcher.cache.lock().unwrap().len();
        fetcher.remember("old", &client("old"), clock.now());
        clock.advance(CACHE_TTL);
        for i in 1..CACHE_ENTRIES {
            let id = format!("u{i}");
            fetcher.remember(&id, &client(&id), clock.now());
        }
        assert_eq!(len(), CACHE_ENTRIES);
        // Full: the expired entry makes room.
        fetcher.remember("new", &client("new"), clock.now());
        assert_eq!(len(), CACHE_ENTRIES);
        assert!(!fetcher.cache.lock().unwrap().contains_key("old"));
        // Full of live entries: all go.
        fetcher.remember("newer", &client("newer"), clock.now());
        assert_eq!(len(), 1);
    }

    #[test]
    fn document_urls_and_debug() {
        let strict = ClientMetadataFetcher::new();
        assert!(strict.is_document_url("https://c.example/doc.json"));
        assert!(!strict.is_document_url("http://c.example/doc.json"));
        assert!(!strict.is_document_url("3f0c2a1e-uuid"));
        let lax = ClientMetadataFetcher::insecure_for_tests(Duration::from_secs(1));
        assert!(lax.is_document_url("http://127.0.0.1/doc.json"));
        assert!(!lax.is_document_url("urn:client"));
        assert!(format!("{lax:?}").contains("allow_insecure: true"));
    }
}
