use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use http::header::AUTHORIZATION;
use http::request::Parts;
use jsonwebtoken::Algorithm;
use mcp_core::{AuthMethod, Principal, SharedClock, SystemClock};
use serde::Deserialize;

use crate::keys::{VerifyingKey, install_crypto_provider};
use crate::{AuthError, Authenticator, BoxFuture};

/// The claims of a verified token, as [`ClaimsMapper`]s see them.
///
/// Standard and common claims have fields, borrowed from the decoded payload
/// where possible; any other claim is read with [`Claims::get`].
#[derive(Clone, Debug, Default, Deserialize)]
#[non_exhaustive]
pub struct Claims<'a> {
    /// Subject (an absent one is refused before mapping).
    #[serde(default, borrow)]
    pub sub: Cow<'a, str>,
    /// Issuer (already checked against the trusted issuer).
    #[serde(default, borrow)]
    pub iss: Option<Cow<'a, str>>,
    /// Audiences (a string or an array; already checked).
    #[serde(default, borrow, deserialize_with = "one_or_many")]
    pub aud: Option<Vec<Cow<'a, str>>>,
    /// Expiry, seconds since the epoch (already checked).
    #[serde(default, deserialize_with = "numeric_date")]
    pub exp: Option<u64>,
    /// Not before, seconds since the epoch (already checked).
    #[serde(default, deserialize_with = "numeric_date")]
    pub nbf: Option<u64>,
    /// Issued at, seconds since the epoch.
    #[serde(default, deserialize_with = "numeric_date")]
    pub iat: Option<u64>,
    /// Token id.
    #[serde(default, borrow)]
    pub jti: Option<Cow<'a, str>>,
    /// E-mail address.
    #[serde(default, borrow)]
    pub email: Option<Cow<'a, str>>,
    /// One role.
    #[serde(default, borrow)]
    pub role: Option<Cow<'a, str>>,
    /// Several roles (an array or a space-separated string).
    #[serde(default, borrow, deserialize_with = "space_separated")]
    pub roles: Option<Vec<Cow<'a, str>>>,
    /// OAuth scopes, space-separated.
    #[serde(default, borrow)]
    pub scope: Option<Cow<'a, str>>,
    /// Scopes as an array (or a space-separated string), as some issuers
    /// write them.
    #[serde(default, borrow, deserialize_with = "space_separated")]
    pub scp: Option<Vec<Cow<'a, str>>>,
    /// The OAuth client the token was issued to (RFC 9068).
    #[serde(default, borrow)]
    pub client_id: Option<Cow<'a, str>>,
    /// The session or grant the token belongs to.
    #[serde(default, borrow)]
    pub sid: Option<Cow<'a, str>>,
    /// The decoded payload, for [`Claims::get`].
    #[serde(skip)]
    raw: &'a [u8],
}

// The visitors below read the flexible claim forms without serde's
// `untagged` buffering, which would cost more than the signature check.

/// A NumericDate: an integer or a float; anything else reads as absent, and
/// an absent `exp` is refused as missing.
fn numeric_date<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    struct Visitor;
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<u64>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a NumericDate")
        }
        fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
            Ok(Some(v))
        }
        fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
            Ok(u64::try_from(v).ok())
        }
        fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
            Ok((v.is_finite() && v >= 0.0 && v < u64::MAX as f64).then_some(v as u64))
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            while seq.next_element::<serde::de::IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while map
                .next_entry::<serde::de::IgnoredAny, serde::de::IgnoredAny>()?
                .is_some()
            {}
            Ok(None)
        }
    }
    d.deserialize_any(Visitor)
}

/// A string or an array of strings. With `split`, a string is a
/// space-separated list (scopes, roles); without, one item (an audience).
fn strings<'de, D: serde::Deserializer<'de>>(
    d: D,
    split: bool,
) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    struct Visitor(bool);
    impl<'de> serde::de::Visitor<'de> for Visitor {
        type Value = Option<Vec<Cow<'de, str>>>;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a string or an array of strings")
        }
        fn visit_unit<E>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
            Ok(Some(if self.0 {
                v.split_whitespace().map(Cow::Borrowed).collect()
            } else {
                vec![Cow::Borrowed(v)]
            }))
        }
        fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(if self.0 {
                v.split_whitespace()
                    .map(|s| Cow::Owned(s.to_owned()))
                    .collect()
            } else {
                vec![Cow::Owned(v.to_owned())]
            }))
        }
        fn visit_seq<A: serde::de::SeqAccess<'de>>(
            self,
            mut seq: A,
        ) -> Result<Self::Value, A::Error> {
            #[derive(Deserialize)]
            struct Item<'a>(#[serde(borrow)] Cow<'a, str>);
            let mut items = Vec::new();
            while let Some(Item(item)) = seq.next_element::<Item<'de>>()? {
                items.push(item);
            }
            Ok(Some(items))
        }
    }
    d.deserialize_any(Visitor(split))
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    strings(d, false)
}

fn space_separated<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<Cow<'de, str>>>, D::Error> {
    strings(d, true)
}

impl Claims<'_> {
    /// Any claim by name, deserialized as `T`; `None` when absent or of
    /// another type. Parses the payload again, so mappers that need many
    /// claims should call [`Claims::all`] once instead.
    pub fn get<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        let mut all = self.all();
        all.remove(name)
            .and_then(|v| serde_json::from_value(v).ok())
    }

    /// Every claim of the payload.
    pub fn all(&self) -> serde_json::Map<String, serde_json::Value> {
        serde_json::from_slice(self.raw).unwrap_or_default()
    }

    /// The scope restriction: `scope` (space-separated) or `scp`; `None`
    /// when the token carries neither, meaning unrestricted.
    pub fn scopes(&self) -> Option<Vec<&str>> {
        match (&self.scope, &self.scp) {
            (Some(scope), _) => Some(scope.split_whitespace().collect()),
            (None, Some(scp)) => Some(scp.iter().map(|s| s.as_ref()).collect()),
            (None, None) => None,
        }
    }

    /// `role` and `roles` together.
    pub fn all_roles(&self) -> impl Iterator<Item = &str> {
        self.role
            .as_deref()
            .into_iter()
            .chain(self.roles.iter().flatten().map(|r| r.as_ref()))
    }
}

/// Turns verified claims into a [`Principal`]: the hook for issuers whose
/// tokens say things differently.
///
/// ```
/// use mcp_auth::{AuthError, Claims, ClaimsMapper};
/// use mcp_core::{AuthMethod, Principal};
///
/// /// Keycloak-style tokens keep roles under `realm_access.roles`.
/// fn keycloak(claims: &Claims<'_>) -> Result<Principal, AuthError> {
///     let access: Option<serde_json::Value> = claims.get("realm_access");
///     let roles = access
///         .as_ref()
///         .and_then(|a| a["roles"].as_array())
///         .map(|r| r.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect::<Vec<_>>())
///         .unwrap_or_default();
///     Ok(Principal::builder(claims.sub.as_ref(), AuthMethod::Jwt).roles(roles).build())
/// }
/// let _mapper: &dyn ClaimsMapper = &keycloak;
/// ```
pub trait ClaimsMapper: Send + Sync + 'static {
    /// The principal for `claims`, or a refusal.
    fn map(&self, claims: &Claims<'_>) -> Result<Principal, AuthError>;
}

impl<F> ClaimsMapper for F
where
    F: Fn(&Claims<'_>) -> Result<Principal, AuthError> + Send + Sync + 'static,
{
    fn map(&self, claims: &Claims<'_>) -> Result<Principal, AuthError> {
        self(claims)
    }
}

/// The default mapping: `sub` is the subject, roles from `role`/`roles`,
/// scopes from `scope`/`scp` (absent = unrestricted), `email`, `iss`, and
/// `exp` as the principal's expiry (a mapper of your own should keep it, so
/// long-lived connections end with the token).
#[derive(Clone, Copy, Debug, Default)]
pub struct DefaultClaimsMapper;

impl ClaimsMapper for DefaultClaimsMapper {
    fn map(&self, claims: &Claims<'_>) -> Result<Principal, AuthError> {
        let mut builder = Principal::builder(claims.sub.as_ref(), AuthMethod::Jwt)
            .roles(claims.all_roles())
            .scope_set(
                claims
                    .scopes()
                    .map(|s| s.into_iter().map(str::to_owned).collect()),
            );
        if let Some(email) = &claims.email {
            builder = builder.email(email.as_ref());
        }
        if let Some(issuer) = &claims.iss {
            builder = builder.issuer(issuer.as_ref());
        }
        if let Some(session) = &claims.sid {
            builder = builder.session(session.as_ref());
        }
        // An `exp` past what the clock can represent is as good as none.
        if let Some(at) = claims
            .exp
            .and_then(|exp| std::time::UNIX_EPOCH.checked_add(std::time::Duration::from_secs(exp)))
        {
            builder = builder.expires_at(at);
        }
        Ok(builder.build())
    }
}

impl std::fmt::Debug for TrustedIssuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrustedIssuer")
            .field("issuer", &self.issuer)
            .field("audiences", &self.audiences)
            .field("keys", &self.keys)
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JwtAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticator")
            .field(
                "issuers",
                &self
                    .issuers
                    .iter()
                    .map(|e| e.issuer.as_str())
                    .collect::<Vec<_>>(),
            )
            .field("leeway", &self.leeway)
            .field("require_at_jwt", &self.require_at_jwt)
            .field("cached", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for JwtAuthenticatorBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtAuthenticatorBuilder")
            .field("issuers", &self.issuers)
            .field("leeway", &self.leeway)
            .field("require_at_jwt", &self.require_at_jwt)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Where an issuer's keys come from.
#[derive(Clone, Debug)]
enum KeySource {
    Static(Vec<VerifyingKey>),
    #[cfg(feature = "jwks")]
    Jwks(Arc<crate::jwks::JwksKeys>),
}

impl KeySource {
    fn generation(&self) -> u64 {
        match self {
            KeySource::Static(_) => 0,
            #[cfg(feature = "jwks")]
            KeySource::Jwks(jwks) => jwks.generation(),
        }
    }
}

/// An issuer whose tokens are accepted: its `iss`, the audiences that count
/// as us, its keys, its algorithms and how its claims map to a principal.
///
/// ```
/// use mcp_auth::{TrustedIssuer, VerifyingKey};
///
/// let issuer = TrustedIssuer::new("https://mcp.example.com", "https://mcp.example.com/mcp")
///     .key(VerifyingKey::hmac(&[7; 32]).unwrap().with_kid("2026-11"));
/// ```
#[derive(Clone)]
pub struct TrustedIssuer {
    issuer: String,
    audiences: Vec<String>,
    keys: KeySource,
    algorithms: Option<Vec<Algorithm>>,
    mapper: Arc<dyn ClaimsMapper>,
}

impl TrustedIssuer {
    /// Tokens from `issuer` for `audience` (the canonical URI of the
    /// protected resource, such as `https://mcp.example.com/mcp`).
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TrustedIssuer {
            issuer: issuer.into(),
            audiences: vec![audience.into()],
            keys: KeySource::Static(Vec::new()),
            algorithms: None,
            mapper: Arc::new(DefaultClaimsMapper),
        }
    }

    /// Accepts another audience.
    #[must_use]
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// Adds a static key.
    #[must_use]
    pub fn key(mut self, key: VerifyingKey) -> Self {
        match &mut self.keys {
            KeySource::Static(keys) => keys.push(key),
            #[cfg(feature = "jwks")]
            KeySource::Jwks(_) => self.keys = KeySource::Static(vec![key]),
        }
        self
    }

    /// Takes the keys from a JWKS endpoint instead of static keys.
    /// A `JwksKeys` or an `Arc` of one (to share it with other code).
    #[cfg(feature = "jwks")]
    #[cfg_attr(docsrs, doc(cfg(feature = "jwks")))]
    #[must_use]
    pub fn jwks(mut self, jwks: impl Into<Arc<crate::jwks::JwksKeys>>) -> Self {
        self.keys = KeySource::Jwks(jwks.into());
        self
    }

    /// The explicit algorithm allow-list. Default: the algorithms of the
    /// static keys, or `RS256`, `ES256` and `EdDSA` for a JWKS.
    #[must_use]
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        self.algorithms = Some(algorithms.into_iter().collect());
        self
    }

    /// Maps claims with `mapper` instead of [`DefaultClaimsMapper`].
    #[must_use]
    pub fn mapper(mut self, mapper: impl ClaimsMapper) -> Self {
        self.mapper = Arc::new(mapper);
        self
    }
}

/// Why a [`JwtAuthenticator`] cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JwtConfigError {
    /// No issuer was trusted.
    #[error("no trusted issuer")]
    NoIssuer,
    /// An issuer has neither keys nor a JWKS.
    #[error("issuer {0} has no keys")]
    NoKeys(String),
    /// An issuer's allow-list is empty.
    #[error("issuer {0} allows no algorithm")]
    NoAlgorithms(String),
}

struct IssuerEntry {
    issuer: String,
    audiences: Vec<String>,
    keys: KeySource,
    algorithms: Vec<Algorithm>,
    mapper: Arc<dyn ClaimsMapper>,
}

/// Verifies `Authorization: Bearer <jwt>` against trusted issuers.
///
/// Checks, in order: one `Authorization` header of at most 8 KiB; a JWS
/// compact token; no `crit` header (none is understood); `typ` when required;
/// a trusted `iss`; an allowed `alg` bound to the selected key (so neither
/// `alg: none` nor algorithm confusion pass); the signature; `exp` present;
/// `sub`, `iss` and `aud` present and right; then `exp` and `nbf` against the
/// injected clock with the leeway (30 s by default). `jku`, `x5u` and `jwk`
/// headers are ignored: keys come only from configuration or the issuer's
/// configured JWKS. Tokens in query strings are never read.
///
/// A bearer token that is not shaped like a JWT is left to the next
/// authenticator (an API key, say).
pub struct JwtAuthenticator {
    issuers: Vec<IssuerEntry>,
    leeway: u64,
    clock: SharedClock,
    require_at_jwt: bool,
    /// Keyed by the whole token: foldhash (seeded per process) hashes a
    /// 500-byte token in a tenth of SipHash's time, and only tokens whose
    /// signature was checked are ever inserted, so no caller can choose
    /// the keys that collide.
    cache: Option<moka::sync::Cache<String, Verified, foldhash::fast::RandomState>>,
}

/// A token that passed every check, remembered with what is time-dependent.
#[derive(Clone)]
struct Verified {
    principal: Principal,
    exp: u64,
    nbf: Option<u64>,
    /// Which issuer, and the generation of its key set, vouched for it: a
    /// JWKS refresh that changes the keys makes the entry re-verify.
    issuer: usize,
    generation: u64,
}

/// Builds a [`JwtAuthenticator`].
#[must_use]
pub struct JwtAuthenticatorBuilder {
    issuers: Vec<TrustedIssuer>,
    leeway: Duration,
    clock: SharedClock,
    require_at_jwt: bool,
    cache: Option<(u64, Duration)>,
}

/// Tokens longer than this are refused before any decoding.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

impl JwtAuthenticator {
    /// Starts a builder: trust at least one issuer, then build.
    pub fn builder() -> JwtAuthenticatorBuilder {
        JwtAuthenticatorBuilder {
            issuers: Vec::new(),
            leeway: Duration::from_secs(30),
            clock: SystemClock::shared(),
            require_at_jwt: false,
            cache: Some((10_000, Duration::from_secs(60))),
        }
    }

    /// Verifies `token` (without the `Bearer ` prefix).
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::invalid_token("the token is too large"));
        }
        if let Some(hit) = self.cache.as_ref().and_then(|cache| cache.get(token))
            && self.issuers[hit.issuer].keys.generation() == hit.generation
        {
            self.check_times(hit.exp, hit.nbf)?;
            return Ok(hit.principal);
        }
        let verified = self.verify_uncached(token).await?;
        let principal = verified.principal.clone();
        if let Some(cache) = &self.cache {
            cache.insert(token.to_owned(), verified);
        }
        Ok(principal)
    }

    fn check_times(&self, exp: u64, nbf: Option<u64>) -> Result<(), AuthError> {
        let now = self.clock.unix_seconds();
        if now > exp.saturating_add(self.leeway) {
            return Err(AuthError::TokenExpired);
        }
        if nbf.is_some_and(|nbf| nbf > now.saturating_add(self.leeway)) {
            return Err(AuthError::invalid_token("the token is not valid yet"));
        }
        Ok(())
    }

    async fn verify_uncached(&self, token: &str) -> Result<Verified, AuthError> {
        let malformed = || AuthError::invalid_token("malformed token");
        let (message, signature) = token.rsplit_once('.').ok_or_else(malformed)?;
        let (header, payload) = message.split_once('.').ok_or_else(malformed)?;
        let header = b64_decode(header)?;
        let header: JoseHeader<'_> = serde_json::from_slice(&header).map_err(|_| malformed())?;
        if header.crit.is_some() {
            return Err(AuthError::invalid_token("unsupported critical header"));
        }
        let typ_ok = match header.typ.as_deref() {
            None => !self.require_at_jwt,
            Some(typ) if typ.eq_ignore_ascii_case("at+jwt") => true,
            Some(typ) if typ.eq_ignore_ascii_case("application/at+jwt") => true,
            Some(typ) if typ.eq_ignore_ascii_case("jwt") => !self.require_at_jwt,
            Some(_) => false,
        };
        if !typ_ok {
            return Err(AuthError::invalid_token("wrong token type"));
        }
        let payload = b64_decode(payload)?;
        let (issuer, entry) = self.issuer_for(&payload)?;
        let generation = entry.keys.generation();
        if !entry.algorithms.contains(&header.alg) {
            return Err(AuthError::invalid_token("algorithm not allowed"));
        }
        let key = entry.key_for(header.kid.as_deref(), header.alg).await?;
        // The key's own algorithm, never the header's, decides how to check:
        // this is what defeats algorithm confusion.
        if !key.verify_signature(message.as_bytes(), signature)? {
            return Err(AuthError::invalid_token("bad signature"));
        }
        // Only now, with the signature checked, are the claims read.
        let mut claims: Claims<'_> = serde_json::from_slice(&payload).map_err(|_| malformed())?;
        claims.raw = &payload;
        let exp = self.check_claims(entry, &claims)?;
        Ok(Verified {
            principal: entry.mapper.map(&claims)?,
            exp,
            nbf: claims.nbf,
            issuer,
            generation,
        })
    }

    /// Checks the claims; returns `exp`.
    fn check_claims(&self, entry: &IssuerEntry, claims: &Claims<'_>) -> Result<u64, AuthError> {
        let exp = claims
            .exp
            .ok_or_else(|| AuthError::invalid_token("missing exp"))?;
        if claims.sub.is_empty() {
            return Err(AuthError::invalid_token("missing sub"));
        }
        match claims.iss.as_deref() {
            None => return Err(AuthError::invalid_token("missing iss")),
            Some(iss) if iss != entry.issuer => {
                return Err(AuthError::invalid_token("wrong issuer"));
            }
            Some(_) => {}
        }
        match &claims.aud {
            None => return Err(AuthError::invalid_token("missing aud")),
            Some(aud)
                if !aud
                    .iter()
                    .any(|a| entry.audiences.iter().any(|ours| ours == a)) =>
            {
                return Err(AuthError::invalid_token("wrong audience"));
            }
            Some(_) => {}
        }
        self.check_times(exp, claims.nbf)?;
        Ok(exp)
    }

    fn issuer_for(&self, payload: &[u8]) -> Result<(usize, &IssuerEntry), AuthError> {
        if let [only] = self.issuers.as_slice() {
            // The claims check compares `iss` once the signature is good.
            return Ok((0, only));
        }
        #[derive(Deserialize)]
        struct IssOnly {
            iss: Option<String>,
        }
        // Reading `iss` before the signature only picks whose keys to check
        // it with; nothing is trusted until that check passes.
        let peek: IssOnly = serde_json::from_slice(payload)
            .map_err(|_| AuthError::invalid_token("malformed token"))?;
        let iss = peek
            .iss
            .ok_or_else(|| AuthError::invalid_token("missing iss"))?;
        self.issuers
            .iter()
            .enumerate()
            .find(|(_, entry)| entry.issuer == iss)
            .ok_or_else(|| AuthError::invalid_token("untrusted issuer"))
    }
}

/// The JOSE header fields that matter here. Any other member (`jku`, `x5u`,
/// `jwk`, ...) is ignored: keys never come from the token.
#[derive(Deserialize)]
struct JoseHeader<'a> {
    alg: Algorithm,
    #[serde(default, borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    kid: Option<Cow<'a, str>>,
    #[serde(default)]
    crit: Option<serde::de::IgnoredAny>,
}

fn b64_decode(part: &str) -> Result<Vec<u8>, AuthError> {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .map_err(|_| AuthError::invalid_token("malformed token"))
}

impl IssuerEntry {
    async fn key_for(
        &self,
        kid: Option<&str>,
        algorithm: Algorithm,
    ) -> Result<KeyRef<'_>, AuthError> {
        match &self.keys {
            KeySource::Static(keys) => {
                let found = match kid {
                    Some(kid) => keys.iter().find(|k| k.kid() == Some(kid)).or_else(|| {
                        // Keys configured without a name take any kid.
                        keys.iter()
                            .find(|k| k.kid().is_none() && k.algorithm() == algorithm)
                    }),
                    None => keys.iter().find(|k| k.algorithm() == algorithm),
                };
                match found {
                    Some(key) if key.algorithm() == algorithm => Ok(KeyRef::Borrowed(key)),
                    Some(_) => Err(AuthError::invalid_token("algorithm not allowed")),
                    None => Err(AuthError::invalid_token("unknown key id")),
                }
            }
            #[cfg(feature = "jwks")]
            KeySource::Jwks(jwks) => Ok(KeyRef::Shared(jwks.key_for(kid, algorithm).await?)),
        }
    }
}

/// A static key borrowed from the configuration, or one shared with a JWKS
/// cache that may replace it meanwhile.
enum KeyRef<'a> {
    Borrowed(&'a VerifyingKey),
    #[cfg(feature = "jwks")]
    Shared(Arc<VerifyingKey>),
}

impl std::ops::Deref for KeyRef<'_> {
    type Target = VerifyingKey;

    fn deref(&self) -> &VerifyingKey {
        match self {
            KeyRef::Borrowed(key) => key,
            #[cfg(feature = "jwks")]
            KeyRef::Shared(key) => key,
        }
    }
}

impl JwtAuthenticatorBuilder {
    /// Accepts tokens from `issuer`.
    pub fn trust(mut self, issuer: TrustedIssuer) -> Self {
        self.issuers.push(issuer);
        self
    }

    /// Tolerance for clock skew on `exp` and `nbf` (default 30 s).
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The time source for `exp` and `nbf`.
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Remembers up to `capacity` verified tokens for at most `ttl`, so a
    /// client that reuses its token costs one lookup instead of a signature
    /// check (default: 10,000 tokens, 60 s). `exp` and `nbf` are still
    /// checked on every request; only tokens that passed every check are
    /// remembered, so refused tokens cannot fill it; a JWKS refresh that
    /// changes an issuer's keys makes its remembered tokens verify again.
    pub fn cache(mut self, capacity: u64, ttl: Duration) -> Self {
        self.cache = Some((capacity, ttl));
        self
    }

    /// Verifies every token in full, every time.
    pub fn no_cache(mut self) -> Self {
        self.cache = None;
        self
    }

    /// Accepts only tokens whose `typ` is `at+jwt` (RFC 9068 access tokens).
    pub fn require_access_token_type(mut self, required: bool) -> Self {
        self.require_at_jwt = required;
        self
    }

    /// Checks the configuration and builds.
    pub fn build(self) -> Result<JwtAuthenticator, JwtConfigError> {
        install_crypto_provider();
        if self.issuers.is_empty() {
            return Err(JwtConfigError::NoIssuer);
        }
        let mut entries = Vec::with_capacity(self.issuers.len());
        for trusted in self.issuers {
            let algorithms = match (&trusted.algorithms, &trusted.keys) {
                (Some(algorithms), _) => algorithms.clone(),
                (None, KeySource::Static(keys)) => {
                    let mut algorithms: Vec<Algorithm> =
                        keys.iter().map(VerifyingKey::algorithm).collect();
                    algorithms.dedup();
                    algorithms
                }
                #[cfg(feature = "jwks")]
                (None, KeySource::Jwks(_)) => {
                    vec![Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA]
                }
            };
            if let KeySource::Static(keys) = &trusted.keys
                && keys.is_empty()
            {
                return Err(JwtConfigError::NoKeys(trusted.issuer));
            }
            if algorithms.is_empty() {
                return Err(JwtConfigError::NoAlgorithms(trusted.issuer));
            }
            entries.push(IssuerEntry {
                issuer: trusted.issuer,
                audiences: trusted.audiences,
                keys: trusted.keys,
                algorithms,
                mapper: trusted.mapper,
            });
        }
        Ok(JwtAuthenticator {
            issuers: entries,
            leeway: self.leeway.as_secs(),
            clock: self.clock,
            require_at_jwt: self.require_at_jwt,
            cache: self.cache.map(|(capacity, ttl)| {
                moka::sync::Cache::builder()
                    .max_capacity(capacity)
                    .time_to_live(ttl)
                    .build_with_hasher(foldhash::fast::RandomState::default())
            }),
        })
    }
}

/// The bearer token of `parts`: `Ok(None)` without an `Authorization`
/// header or with another scheme.
pub fn bearer_token(parts: &Parts) -> Result<Option<&str>, AuthError> {
    let mut values = parts.headers.get_all(AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AuthError::invalid_token(
            "more than one Authorization header",
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| AuthError::invalid_token("malformed Authorization header"))?;
    let Some((scheme, token)) = value.split_once(' ') else {
        return Ok(None);
    };
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Ok(None);
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(AuthError::invalid_token("empty bearer token"));
    }
    Ok(Some(token))
}

/// Whether `token` is shaped like a JWS compact serialization: three
/// dot-separated parts. Anything else belongs to another authenticator.
fn looks_like_jwt(token: &str) -> bool {
    memchr::memchr_iter(b'.', token.as_bytes()).take(3).count() == 2
}

impl Authenticator for JwtAuthenticator {
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            let Some(token) = bearer_token(parts)? else {
                return Ok(None);
            };
            if token.len() > MAX_TOKEN_BYTES {
                return Err(AuthError::invalid_token("the token is too large"));
            }
            if !looks_like_jwt(token) {
                return Ok(None);
            }
            self.verify(token).await.map(Some)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_accept_both_scope_forms_and_role_forms() {
        let text = r#"{"sub": "u1", "scp": ["a", "b"], "role": "user", "roles": "admin ops",
            "exp": 1.7e9, "aud": "x", "custom": {"x": 1}}"#;
        let mut claims: Claims<'_> = serde_json::from_str(text).unwrap();
        claims.raw = text.as_bytes();
        assert_eq!(claims.get::<serde_json::Value>("custom").unwrap()["x"], 1);
        assert_eq!(claims.aud.as_deref(), Some(&["x".into()][..]));
        assert_eq!(claims.scopes(), Some(vec!["a", "b"]));
        assert_eq!(
            claims.all_roles().collect::<Vec<_>>(),
            ["user", "admin", "ops"]
        );
        assert_eq!(claims.exp, Some(1_700_000_000));

        let claims: Claims<'_> =
            serde_json::from_str(r#"{"sub": "u1", "scope": "mcp  keys:read"}"#).unwrap();
        assert_eq!(claims.scopes(), Some(vec!["mcp", "keys:read"]));
        let claims: Claims<'_> = serde_json::from_str(r#"{"sub": "u1", "exp": "x"}"#).unwrap();
        assert_eq!(claims.exp, None);
        assert_eq!(claims.scopes(), None);
    }

    #[test]
    fn the_default_mapper_carries_exp_and_survives_any_exp() {
        let mapped = |text: &str| {
            let mut claims: Claims<'_> = serde_json::from_str(text).unwrap();
            claims.raw = text.as_bytes();
            DefaultClaimsMapper.map(&claims).unwrap()
        };
        let principal = mapped(r#"{"sub": "u1", "exp": 1700000000}"#);
        assert_eq!(
            principal.expires_at(),
            Some(std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000))
        );
        // A signed token may carry any exp: one past the clock's range
        // must not panic (it never expires, as far as a clock can tell).
        let far = mapped(r#"{"sub": "u1", "exp": 18446744073709551615}"#);
        assert_eq!(far.subject(), "u1");
        assert_eq!(mapped(r#"{"sub": "u1"}"#).expires_at(), None);
    }

    /// A NumericDate is a non-negative integer or float within `u64`;
    /// anything else (a negative or huge number, a string, a list, an
    /// object) reads as absent, and never fails the whole claim set.
    #[test]
    fn numeric_dates_read_numbers_in_range_and_nothing_else() {
        let exp = |value: &str| {
            let text =
                format!(r#"{{"sub": "u1", "exp": {value}, "nbf": {value}, "iat": {value}}}"#);
            let claims: Claims<'_> =
                serde_json::from_str(&text).unwrap_or_else(|e| panic!("{value}: {e}"));
            assert_eq!(claims.exp, claims.nbf, "{value}");
            assert_eq!(claims.exp, claims.iat, "{value}");
            claims.exp
        };
        assert_eq!(exp("1700000000"), Some(1_700_000_000));
        assert_eq!(exp("1700000000.9"), Some(1_700_000_000));
        assert_eq!(exp("0"), Some(0));
        assert_eq!(exp("0.0"), Some(0));
        for absent in [
            "-1",
            "-1.5",
            "-1e300",
            "1e20",
            "1.8446744073709552e19",
            "null",
            "true",
            "\"1700000000\"",
            "[1700000000]",
            "[1, 2]",
            "{\"t\": 1700000000}",
        ] {
            assert_eq!(exp(absent), None, "{absent}");
        }
        // Formats that hand integers over as i64 (not JSON, which uses u64
        // for every non-negative one) read the same.
        use serde::de::value::{BytesDeserializer, Error, I64Deserializer};
        assert_eq!(
            numeric_date(I64Deserializer::<Error>::new(1_700_000_000)),
            Ok(Some(1_700_000_000))
        );
        assert_eq!(numeric_date(I64Deserializer::<Error>::new(-1)), Ok(None));
        // What no reading accepts is an error that says what was expected.
        let error = numeric_date(BytesDeserializer::<Error>::new(b"x")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid type: byte array, expected a NumericDate"
        );
    }

    /// Audiences, roles and `scp` read alike whether or not a string holds
    /// escapes (which JSON cannot hand over borrowed); a value that is
    /// neither a string nor a list of strings is an error saying so.
    #[test]
    fn string_claims_read_escaped_strings_too() {
        let text = r#"{"sub": "u1", "aud": "https:\/\/mcp.example.com\/mcp",
            "roles": "admin\u0020ops", "scp": "a\tb"}"#;
        let claims: Claims<'_> = serde_json::from_str(text).unwrap();
        assert_eq!(
            claims.aud.as_deref(),
            Some(&["https://mcp.example.com/mcp".into()][..])
        );
        assert_eq!(
            claims.roles.as_deref(),
            Some(&["admin".into(), "ops".into()][..])
        );
        assert_eq!(claims.scopes(), Some(vec!["a", "b"]));
        let claims: Claims<'_> =
            serde_json::from_str(r#"{"sub": "u1", "aud": null, "roles": null}"#).unwrap();
        assert_eq!((claims.aud, claims.roles), (None, None));

        let error = serde_json::from_str::<Claims<'_>>(r#"{"sub": "u1", "aud": 5}"#).unwrap_err();
        assert!(
            error
                .to_string()
                .starts_with("invalid type: integer `5`, expected a string or an array of strings"),
            "{error}"
        );
    }

    #[test]
    fn bearer_parsing() {
        let parts = |values: &[&str]| {
            let mut builder = http::Request::builder();
            for v in values {
                builder = builder.header(AUTHORIZATION, *v);
            }
            builder.body(()).unwrap().into_parts().0
        };
        assert_eq!(bearer_token(&parts(&[])).unwrap(), None);
        assert_eq!(bearer_token(&parts(&["Basic abc"])).unwrap(), None);
        assert_eq!(bearer_token(&parts(&["bearer abc "])).unwrap(), Some("abc"));
        assert!(bearer_token(&parts(&["Bearer  "])).is_err());
        assert!(bearer_token(&parts(&["Bearer a", "Bearer b"])).is_err());
    }

    #[test]
    fn jwt_shape() {
        assert!(looks_like_jwt("eyJ.eyJ.sig"));
        assert!(!looks_like_jwt("mcp_abc"));
        assert!(!looks_like_jwt("a.b"));
        assert!(!looks_like_jwt("a.b.c.d"));
    }
}
