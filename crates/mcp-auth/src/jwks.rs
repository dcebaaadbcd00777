//! Keys from an issuer's JWKS endpoint, cached, refreshed on rotation.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use jsonwebtoken::Algorithm;
use jsonwebtoken::jwk::{Jwk, JwkSet};
use mcp_core::{SharedClock, SystemClock};

use crate::AuthError;
use crate::keys::VerifyingKey;

/// The largest JWKS document read, in bytes.
const MAX_JWKS_BYTES: usize = 256 * 1024;

#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
/// Why a JWKS could not be fetched.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JwksError {
    /// The request failed or timed out.
    #[error("fetching the JWKS failed: {0}")]
    Fetch(#[from] reqwest::Error),
    /// The endpoint did not answer 200.
    #[error("the JWKS endpoint answered {0}")]
    Status(http::StatusCode),
    /// The document is larger than 256 KiB.
    #[error("the JWKS document is too large")]
    TooLarge,
    /// The document is not a JWKS.
    #[error("the JWKS document is malformed: {0}")]
    Malformed(String),
}

#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
/// Why a JWKS URL is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwksUrlError {
    /// Not a URL with a host.
    #[error("the JWKS URL is not a URL with a host: {0}")]
    Malformed(String),
    /// Neither `https` nor `http`.
    #[error("the JWKS URL must use https, not {0}")]
    UnsupportedScheme(String),
    /// Plain `http` to a host that is not loopback: whoever is on the path
    /// could hand out their own keys.
    #[error("the JWKS URL uses plain http to {0}, which is not a loopback address; use https")]
    InsecureScheme(String),
}

struct State {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// Keys without a `kid`, selectable only by algorithm.
    unnamed: Vec<Arc<VerifyingKey>>,
    /// The usable JWKs as published, to tell whether a refetch changed
    /// anything: a kid may come back with other key material.
    published: HashSet<Jwk>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<SystemTime>,
    /// When a fetch was last tried, successful or not.
    attempted_at: Option<SystemTime>,
}

#[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
/// An issuer's signing keys, fetched from its JWKS URL.
///
/// - Keys are selected by the token's `kid`.
/// - The set is refetched when it is older than `max_age` (10 min), and when
///   a token names an unknown `kid` (a rotation), but at most once per
///   `min_refetch_interval` (30 s): a flood of tokens with random `kid`s
///   costs the issuer one request per interval, not one per token.
/// - A refetch replaces the set: a key the issuer removed stops working.
/// - When a refetch fails the previous keys stay in use; only when none was
///   ever fetched is the answer `503 unavailable`.
///
/// ```no_run
/// use std::sync::Arc;
/// use mcp_auth::{JwksKeys, JwtAuthenticator, TrustedIssuer};
///
/// let jwks = Arc::new(JwksKeys::new("https://auth.example.com/.well-known/jwks.json").unwrap());
/// let jwt = JwtAuthenticator::builder()
///     .trust(TrustedIssuer::new("https://auth.example.com", "https://mcp.example.com/mcp").jwks(jwks))
///     .build()
///     .unwrap();
/// ```
pub struct JwksKeys {
    url: String,
    client: reqwest::Client,
    clock: SharedClock,
    min_refetch_interval: Duration,
    max_age: Duration,
    state: RwLock<State>,
    fetching: tokio::sync::Mutex<()>,
    /// Bumped whenever a fetch changes the set of keys.
    generation: AtomicU64,
}

impl fmt::Debug for JwksKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwksKeys")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl JwksKeys {
    /// Keys from `url`, fetched on first use.
    ///
    /// `url` must be `https`, or plain `http` to a loopback address
    /// (`127.0.0.0/8`, `::1`, `localhost`), as for a local development
    /// issuer: anywhere else, plain http would let anyone on the path sign
    /// tokens this server accepts.
    pub fn new(url: impl Into<String>) -> Result<Self, JwksUrlError> {
        let url = url.into();
        Self::check_url(&url)?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Ok(JwksKeys {
            url,
            client,
            clock: SystemClock::shared(),
            min_refetch_interval: Duration::from_secs(30),
            max_age: Duration::from_secs(600),
            state: RwLock::new(State {
                keys: HashMap::new(),
                unnamed: Vec::new(),
                published: HashSet::new(),
                fetched_at: None,
                attempted_at: None,
            }),
            fetching: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        })
    }

    /// Whether [`new`](Self::new) accepts `url`: `https`, or plain `http`
    /// to a loopback host. For configuration checks that run before any
    /// key set is built.
    pub fn check_url(url: &str) -> Result<(), JwksUrlError> {
        check_url(url)
    }

    /// The time source for `max_age` and `min_refetch_interval`.
    #[must_use]
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The shortest time between two fetches (default 30 s).
    #[must_use]
    pub fn min_refetch_interval(mut self, interval: Duration) -> Self {
        self.min_refetch_interval = interval;
        self
    }

    /// How long a fetched set is used before it is fetched again (10 min).
    #[must_use]
    pub fn max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// Changes whenever a fetch changes the keys (a kid added or removed,
    /// or new key material under a kid already known); caches of verified
    /// tokens compare it.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The key for a token's `kid` and `alg`.
    pub async fn key_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<Arc<VerifyingKey>, AuthError> {
        let now = self.clock.now();
        let (found, stale, may_refetch) = self.lookup(kid, algorithm, now);
        if let Some(key) = found.as_ref().filter(|_| !stale) {
            return Ok(key.clone());
        }
        if may_refetch || stale {
            self.refresh_if_due(now).await;
            let (found, _, _) = self.lookup(kid, algorithm, now);
            if let Some(key) = found {
                return Ok(key);
            }
        } else if let Some(key) = found {
            return Ok(key);
        }
        if self.read().fetched_at.is_none() {
            return Err(AuthError::Unavailable(
                "the issuer's keys cannot be fetched".into(),
            ));
        }
        Err(AuthError::invalid_token(if kid.is_some() {
            "unknown key id"
        } else {
            "no key for this algorithm"
        }))
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The matching key, whether the set is stale, and whether a refetch is
    /// allowed now.
    fn lookup(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
        now: SystemTime,
    ) -> (Option<Arc<VerifyingKey>>, bool, bool) {
        let state = self.read();
        let found = match kid {
            Some(kid) => state.keys.get(kid).cloned(),
            None => {
                let mut candidates = state
                    .keys
                    .values()
                    .chain(state.unnamed.iter())
                    .filter(|k| k.algorithm() == algorithm);
                match (candidates.next(), candidates.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }
        .filter(|key| key.algorithm() == algorithm);
        let elapsed =
            |at: Option<SystemTime>| at.map(|at| now.duration_since(at).unwrap_or_default());
        let stale = elapsed(state.fetched_at).is_none_or(|age| age >= self.max_age);
        let may_refetch =
            elapsed(state.attempted_at).is_none_or(|age| age >= self.min_refetch_interval);
        (found, stale, may_refetch)
    }

    async fn refresh_if_due(&self, now: SystemTime) {
        // One fetch at a time; whoever waited re-checks whether it is still due.
        let _guard = self.fetching.lock().await;
        {
            let state = self.read();
            if let Some(attempted) = state.attempted_at {
                let age = now.duration_since(attempted).unwrap_or_default();
                if age < self.min_refetch_interval {
                    return;
                }
            }
        }
        let result = self.fetch().await;
        let mut state = self.state.write().unwrap_or_else(|p| p.into_inner());
        state.attempted_at = Some(now);
        match result {
            Ok(set) => {
                let mut keys = HashMap::new();
                let mut unnamed = Vec::new();
                let mut published = HashSet::new();
                for jwk in set.keys {
                    match VerifyingKey::from_jwk(&jwk) {
                        Ok(key) => {
                            match key.kid() {
                                Some(kid) => {
                                    keys.insert(kid.to_owned(), Arc::new(key));
                                }
                                None => unnamed.push(Arc::new(key)),
                            }
                            published.insert(jwk);
                        }
                        Err(error) => {
                            tracing::warn!(url = %self.url, %error, "skipping unusable JWK");
                        }
                    }
                }
                tracing::info!(url = %self.url, keys = keys.len() + unnamed.len(), "JWKS fetched");
                // The whole JWKs, not only their kids: an issuer may put new
                // material under an old kid, and a token verified with the
                // old material must then be verified again.
                if published != state.published {
                    self.generation.fetch_add(1, Ordering::AcqRel);
                }
                state.keys = keys;
                state.unnamed = unnamed;
                state.published = published;
                state.fetched_at = Some(now);
            }
            Err(error) => {
                tracing::warn!(url = %self.url, %error, "JWKS fetch failed; keeping the previous keys");
            }
        }
    }

    async fn fetch(&self) -> Result<JwkSet, JwksError> {
        // `new` checked the URL; redirects are not followed, so the
        // request cannot leave for a plain-http host either.
        let mut response = self.client.get(&self.url).send().await?;
        if response.status() != http::StatusCode::OK {
            return Err(JwksError::Status(response.status()));
        }
        if response
            .content_length()
            .is_some_and(|len| len > MAX_JWKS_BYTES as u64)
        {
            return Err(JwksError::TooLarge);
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(JwksError::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        serde_json::from_slice(&body).map_err(|e| JwksError::Malformed(e.to_string()))
    }
}

/// `https`, or `http` to a loopback host.
fn check_url(url: &str) -> Result<(), JwksUrlError> {
    let parsed = reqwest::Url::parse(url).map_err(|e| JwksUrlError::Malformed(e.to_string()))?;
    let scheme = parsed.scheme();
    if scheme != "https" && scheme != "http" {
        return Err(JwksUrlError::UnsupportedScheme(scheme.to_owned()));
    }
    let host = parsed
        .host_str()
        .filter(|host| !host.is_empty())
        .ok_or_else(|| JwksUrlError::Malformed("no host".to_owned()))?;
    if scheme == "http" && !is_loopback(host) {
        return Err(JwksUrlError::InsecureScheme(host.to_owned()));
    }
    Ok(())
}

/// `localhost` or a loopback address (IPv6 in brackets, as URLs write it).
fn is_loopback(host: &str) -> bool {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        // The URL parser lower-cases host names.
        Err(_) => bare == "localhost",
    }
}
