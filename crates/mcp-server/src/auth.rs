//! The server's authentication: its own tokens (signed with the configured
//! or generated key), an optional external issuer, and the check that a
//! token's user still exists with the same role.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;
use http::request::Parts;
use mcp_auth::{
    AuthError, AuthLayer, Authenticator, BoxFuture, Challenge, ExternalClaimsMapper, JwksKeys,
    JwtAuthenticator, KeyPair, KeyPairError, ProtectedResourceMetadata, TokenIssuer, TrustedIssuer,
};
use mcp_core::{Principal, SharedClock};
use uuid::Uuid;

use crate::StartError;
use crate::config::{Config, ConfigError, Origin, SigningConfig, settings};
use crate::db::{Database, Db};
use crate::users::{self, Role, User};

/// The settings-table key of a generated signing secret.
const GENERATED_SECRET_KEY: &str = "jwt_secret";

/// The scopes this server knows.
/// A parent grants what is below it (`agents` grants `agents:read` and
/// `agents:write`).
pub const SCOPES: &[&str] = &[
    "keys",
    "keys:read",
    "keys:write",
    "agents",
    "agents:read",
    "agents:write",
    "mcp",
    "metrics",
    "admin",
];

/// Everything authentication needs at request time.
#[derive(Clone)]
pub struct Auth {
    /// Runs the authenticator chain (required mode).
    pub layer: AuthLayer,
    /// Signs the tokens login hands out.
    pub issuer: TokenIssuer,
    /// The `WWW-Authenticate` details.
    pub challenge: Challenge,
    /// RFC 9728 metadata: naming this server (with OAuth on) and the
    /// external issuer (when one is configured); `None` without either.
    pub metadata: Option<ProtectedResourceMetadata>,
    /// Who each user is now, for a bounded time.
    pub users: UserCache,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

fn key_error(setting: crate::config::Setting, error: mcp_auth::KeyError) -> StartError {
    StartError::Config(ConfigError::Invalid {
        setting,
        origin: Origin::Env,
        value: None,
        reason: error.to_string(),
    })
}

impl Auth {
    /// Builds the key pair (generating and storing an HMAC secret when none
    /// is configured), the authenticators and the issuer.
    pub async fn setup(
        config: &Config,
        db: &Db,
        keys: Arc<mcp_apikeys::ApiKeyService>,
        clock: SharedClock,
        grants: Option<crate::oauth::GrantCache>,
    ) -> Result<Auth, StartError> {
        let jwt = &config.jwt;
        let pair = match &jwt.signing {
            SigningConfig::Hmac { algorithm, secret } => {
                let secret = match secret {
                    Some(secret) => secret.clone(),
                    None => generated_secret(db).await?,
                };
                KeyPair::hmac(&secret)
                    .and_then(|k| k.with_algorithm(*algorithm))
                    .map_err(|e| key_error(settings::JWT_SECRET, e))?
            }
            SigningConfig::KeyPair {
                algorithm,
                private_pem,
                public_pem,
            } => KeyPair::pem(*algorithm, private_pem, public_pem).map_err(|e| match e {
                KeyPairError::Verifying(e) => key_error(settings::JWT_PUBLIC_KEY_FILE, e),
                KeyPairError::Signing(e) => key_error(settings::JWT_PRIVATE_KEY_FILE, e),
                other => StartError::KeyPair(other),
            })?,
        };
        let pair = match &jwt.key_id {
            Some(kid) => pair.with_kid(kid),
            None => pair,
        };
        // A mismatched pair or a missing crypto backend stops the server
        // here instead of failing every login.
        pair.check(clock.clone())?;
        let (signing, verifying) = pair.into_parts();

        let own_issuer = config.public_url.clone();
        let mut builder = JwtAuthenticator::builder()
            .trust(TrustedIssuer::new(&own_issuer, &jwt.audience).key(verifying))
            .leeway(jwt.leeway)
            .clock(clock.clone());
        let mut authorization_servers = Vec::new();
        if grants.is_some() {
            authorization_servers.push(own_issuer.clone());
        }
        if let Some((issuer, jwks_url)) = &jwt.external {
            if *issuer == own_issuer {
                // Its tokens would be checked as this server's own and its
                // subjects taken for local user ids.
                return Err(StartError::Config(ConfigError::Invalid {
                    setting: settings::JWT_ISSUER,
                    origin: Origin::Env,
                    value: Some(issuer.clone()),
                    reason: "is this server's own issuer (MCP_PUBLIC_URL)".to_owned(),
                }));
            }
            let jwks = JwksKeys::new(jwks_url).map_err(|error| {
                StartError::Config(ConfigError::Invalid {
                    setting: settings::JWT_JWKS_URL,
                    origin: Origin::Env,
                    value: Some(jwks_url.clone()),
                    reason: error.to_string(),
                })
            })?;
            let jwks = Arc::new(jwks.clock(clock.clone()));
            builder = builder.trust(
                TrustedIssuer::new(issuer, &jwt.audience)
                    .jwks(jwks)
                    .mapper(external_mapper(&jwt.role_map)),
            );
            authorization_servers.push(issuer.clone());
        }
        let mut challenge = Challenge::new("mcp");
        let mut metadata = None;
        if !authorization_servers.is_empty() {
            let document = authorization_servers
                .iter()
                .fold(
                    ProtectedResourceMetadata::new(&jwt.audience),
                    |doc, issuer| doc.authorization_server(issuer),
                )
                .scopes(SCOPES.iter().copied())
                .resource_name("mcp-server");
            // Every `401` points MCP clients at it (RFC 9728 §5.1).
            challenge = challenge.resource_metadata(document.well_known_url());
            metadata = Some(document);
        }
        let jwt_authenticator = builder.build()?;
        let users = UserCache::new(db.clone(), config.user_cache_ttl, keys.clone());
        // Bearer JWTs first: a bearer token wins over an X-API-Key beside it.
        let api_keys = mcp_apikeys::ApiKeyAuthenticator::new(keys)
            .owners(crate::keys::UserOwners {
                users: users.clone(),
            })
            .ttl(config.user_cache_ttl);
        let layer = AuthLayer::new(UserCheckedJwt {
            jwt: jwt_authenticator,
            own_issuer: own_issuer.clone(),
            users: users.clone(),
            grants,
        })
        .or(api_keys)
        .challenge(challenge.clone());
        let issuer = TokenIssuer::new(signing, own_issuer, &jwt.audience)
            .ttl(jwt.ttl)
            .clock(clock);
        Ok(Auth {
            layer,
            issuer,
            challenge,
            metadata,
            users,
        })
    }
}

/// How an external issuer's claims become a principal here: its subject is
/// qualified by the issuer (`<iss>#<sub>`), so it never matches a local user
/// (not in `/api/auth/me`, not as the owner of keys or agents); its role
/// values grant local roles only through `MCP_JWT_ROLE_MAP`, and the least
/// one, `user`, otherwise.
fn external_mapper(role_map: &[(String, String)]) -> ExternalClaimsMapper {
    role_map
        .iter()
        .fold(ExternalClaimsMapper::new(), |mapper, (claim, role)| {
            mapper.map_role(claim, role)
        })
        .default_role(Role::User.as_str())
}

/// The HMAC secret kept in the database, generated on first start.
async fn generated_secret(db: &Db) -> Result<Vec<u8>, StartError> {
    let fresh: [u8; 32] = rand::random();
    let fresh = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(fresh);
    let kept = db
        .setting_or_insert(GENERATED_SECRET_KEY, &fresh)
        .await
        .map_err(StartError::Migrate)?;
    if kept == fresh {
        tracing::warn!(
            "MCP_JWT_SECRET is not set: generated a signing secret and stored it in the \
             database; set MCP_JWT_SECRET to manage it yourself"
        );
    } else {
        tracing::warn!(
            "MCP_JWT_SECRET is not set: using the signing secret stored in the database"
        );
    }
    Ok(kept.into_bytes())
}

/// Who each user is now, cached for `ttl`, so that a deleted or demoted
/// user's tokens and keys stop working within `ttl` on every replica, and at
/// once on the one that made the change ([`UserCache::forget`]).
#[derive(Clone, Debug)]
pub struct UserCache {
    db: Db,
    /// `Arc`: each hit is a reference count, not a copy of the strings.
    /// The sync cache: a hit is a lookup, where the future cache's `get`
    /// is a future with its own bookkeeping (this is read twice on every
    /// `GET /api/auth/me`). Ids come from verified credentials, never from
    /// a caller's text, so foldhash is safe.
    cache: moka::sync::Cache<Uuid, Option<Arc<User>>, foldhash::fast::RandomState>,
    /// Bumped by every `forget`: a lookup that read the database before it
    /// does not cache what it read (it could be the old role).
    generation: Arc<AtomicU64>,
    /// The key service, whose cached key principals carry the owner's role.
    keys: Arc<mcp_apikeys::ApiKeyService>,
}

impl UserCache {
    fn new(db: Db, ttl: Duration, keys: Arc<mcp_apikeys::ApiKeyService>) -> Self {
        UserCache {
            db,
            cache: moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(ttl)
                .build_with_hasher(foldhash::fast::RandomState::default()),
            generation: Arc::new(AtomicU64::new(0)),
            keys,
        }
    }

    /// User `id` as it is now (within the TTL); `None` when there is no
    /// such user. Authentication and `GET /api/auth/me` read it from here:
    /// one query per user per TTL, not one per request.
    pub async fn user(&self, id: Uuid) -> Result<Option<Arc<User>>, AuthError> {
        if let Some(user) = self.cache.get(&id) {
            return Ok(user);
        }
        let generation = self.generation.load(Ordering::SeqCst);
        let user = users::find(&self.db, id)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "cannot check the token's user");
                AuthError::Unavailable("the user store is unreachable".into())
            })?
            .map(Arc::new);
        if self.generation.load(Ordering::SeqCst) == generation {
            self.cache.insert(id, user.clone());
            // A `forget` between the check and the insert: undo the insert.
            if self.generation.load(Ordering::SeqCst) != generation {
                self.cache.invalidate(&id);
            }
        }
        Ok(user)
    }

    /// Drops what is cached of `id` (after an update or delete), here and in
    /// the principals of the user's API keys.
    pub async fn forget(&self, id: Uuid) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.cache.invalidate(&id);
        self.keys.invalidate_owner(&id.to_string());
    }

    /// The principal of user `id`, checked: `None` when the user is gone,
    /// otherwise `principal` with the user's current role.
    pub async fn current(
        &self,
        id: Uuid,
        principal: Principal,
    ) -> Result<Option<Principal>, AuthError> {
        Ok(self.user(id).await?.map(|user| {
            let role = user.role;
            if principal.roles().len() == 1 && principal.has_role(role.as_str()) {
                principal
            } else {
                principal.with_roles([role.as_str()])
            }
        }))
    }
}

/// JWTs, with tokens of this server checked against its users: a deleted
/// user's token is refused, a demoted user's token carries the new role.
/// Tokens of an external issuer name users of that issuer (their subject
/// qualified by it, their roles mapped: see [`external_mapper`]) and pass as
/// they are.
///
/// A token the OAuth server issued names its grant (`sid`): it is refused
/// once the grant is revoked, before it expires.
struct UserCheckedJwt {
    jwt: JwtAuthenticator,
    own_issuer: String,
    users: UserCache,
    grants: Option<crate::oauth::GrantCache>,
}

impl Authenticator for UserCheckedJwt {
    fn authenticate<'a>(
        &'a self,
        parts: &'a Parts,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            let Some(principal) = self.jwt.authenticate(parts).await? else {
                return Ok(None);
            };
            if principal.issuer() != Some(self.own_issuer.as_str()) {
                return Ok(Some(principal));
            }
            let id = Uuid::parse_str(principal.subject())
                .map_err(|_| AuthError::invalid_token("unknown subject"))?;
            if let Some(grant) = principal.session() {
                let live = match (&self.grants, Uuid::parse_str(grant)) {
                    (Some(grants), Ok(grant)) => grants.live(grant).await?,
                    // Without the authorization server no grant is live.
                    _ => false,
                };
                if !live {
                    return Err(AuthError::invalid_token("the grant was revoked"));
                }
            }
            match self.users.current(id, principal).await? {
                Some(principal) => Ok(Some(principal)),
                None => Err(AuthError::invalid_token("the user no longer exists")),
            }
        })
    }
}
