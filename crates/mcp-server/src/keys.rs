//! API keys in the server: the store on the server's database, keys acting
//! as their owner (with the owner's current role), and the first-start admin.

use std::sync::Arc;

use mcp_apikeys::{ApiKeyRecord, ApiKeyService, KeyHasher, OwnerLookup, SqlStore};
use mcp_auth::{AuthError, BoxFuture};
use mcp_core::{Principal, SharedClock};
use uuid::Uuid;

use crate::StartError;
use crate::auth::UserCache;
use crate::config::Config;
use crate::db::Db;
use crate::users::{self, NewUser, Passwords, Role};

/// The key service over the server's database, its tables migrated.
pub async fn service(
    config: &Config,
    db: &Db,
    clock: SharedClock,
) -> Result<Arc<ApiKeyService>, StartError> {
    let store = SqlStore::new(db.clone());
    store
        .migrate()
        .await
        .map_err(|e| StartError::Migrate(crate::db::DbError::Migrate(e)))?;
    let hasher = match &config.api_key_pepper {
        Some(pepper) => KeyHasher::peppered(&pepper.0),
        None => KeyHasher::sha256(),
    };
    Ok(Arc::new(
        ApiKeyService::builder(store)
            .hasher(hasher)
            .clock(clock)
            .build(),
    ))
}

/// A key acts as its owner, with the owner's current role; a key whose
/// owner is gone is refused.
#[derive(Debug)]
pub struct UserOwners {
    /// The users, cached.
    pub users: UserCache,
}

impl OwnerLookup for UserOwners {
    fn principal<'a>(
        &'a self,
        key: &'a ApiKeyRecord,
    ) -> BoxFuture<'a, Result<Option<Principal>, AuthError>> {
        Box::pin(async move {
            let Ok(id) = Uuid::parse_str(&key.owner) else {
                return Ok(None);
            };
            Ok(self
                .users
                .user(id)
                .await?
                .map(|user| key.principal(Some(user.role.as_str()))))
        })
    }
}

/// On a database without users: creates the admin (`MCP_ADMIN_EMAIL`) and
/// one unrestricted key for it, and prints the key to stderr, once. When
/// replicas start together, the one that loses the race to create the admin
/// prints nothing.
pub async fn bootstrap(
    config: &Config,
    db: &Db,
    keys: &ApiKeyService,
    passwords: &Passwords,
    clock: &SharedClock,
) -> Result<(), StartError> {
    let fail = |e: String| StartError::Command(format!("first-start setup failed: {e}"));
    if users::count(db).await.map_err(|e| fail(e.to_string()))? > 0 {
        return Ok(());
    }
    // A password nobody knows: the admin signs in with the key, or gets a
    // password from `mcp-server users set-password`.
    let unusable = {
        use base64::Engine;
        let random: [u8; 32] = rand::random();
        base64::engine::general_purpose::STANDARD.encode(random)
    };
    let new = NewUser {
        email: config.admin_email.clone(),
        name: "Administrator".to_owned(),
        role: Role::Admin,
        password_hash: passwords
            .hash(unusable)
            .await
            .map_err(|_| fail("cannot hash a password".to_owned()))?,
    };
    let admin = match users::create(db, new, users::now(clock.as_ref())).await {
        Ok(admin) => admin,
        // Another replica got there first.
        Err(crate::db::DbError::Conflict(_)) => return Ok(()),
        Err(e) => return Err(fail(e.to_string())),
    };
    let (_, secret) = keys
        .create(&admin.id.to_string(), "bootstrap", None, None)
        .await
        .map_err(|e| fail(e.to_string()))?;
    tracing::warn!(user = %admin.id, email = %admin.email, "first start: created the admin user and its first API key (printed once on stderr)");
    let url = &config.public_url;
    eprintln!(
        "\n\
         ==================================================================\n\
         First start: created the admin user {email} and an API key for it.\n\
         The key is shown ONCE, now. Store it somewhere safe:\n\
         \n    {key}\n\n\
         Try it:  curl -H 'X-API-Key: {key}' {url}/api/auth/me\n\
         Give the admin a password: mcp-server users set-password --email {email}\n\
         ==================================================================\n",
        email = admin.email,
        key = secret.expose(),
    );
    Ok(())
}
