//! Users: records, storage on either database, and passwords (argon2id).

use std::fmt;
use std::sync::Arc;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier, phc::PasswordHash};
use mcp_core::Problem;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::db::{Db, DbError};
use crate::with_pool;

/// What a user may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Their own keys, agents and record.
    User,
    /// Everything.
    Admin,
}

impl Role {
    /// `user` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
        }
    }

    fn parse(text: &str) -> Result<Role, DbError> {
        match text {
            "user" => Ok(Role::User),
            "admin" => Ok(Role::Admin),
            _ => Err(DbError::Query(sqlx::Error::Decode(
                format!("unknown role {text:?}").into(),
            ))),
        }
    }
}

/// A user record as the API shows it: never the password hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// Stable id (UUID v7, so ids sort by creation).
    pub id: Uuid,
    /// Lower-cased e-mail address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[derive(sqlx::FromRow)]
struct UserRow {
    id: Uuid,
    email: String,
    name: String,
    role: String,
    password_hash: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl UserRow {
    fn into_user(self) -> Result<(User, PasswordHashText), DbError> {
        Ok((
            User {
                id: self.id,
                email: self.email,
                name: self.name,
                role: Role::parse(&self.role)?,
                created_at: self.created_at,
                updated_at: self.updated_at,
            },
            PasswordHashText(self.password_hash),
        ))
    }
}

/// A stored password hash. Its `Debug` output hides it.
#[derive(Clone)]
pub struct PasswordHashText(String);

impl fmt::Debug for PasswordHashText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHashText(***)")
    }
}

/// A new user, its password already hashed.
#[derive(Debug)]
pub struct NewUser {
    /// Lower-cased e-mail address.
    pub email: String,
    /// Display name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// From [`Passwords::hash`].
    pub password_hash: PasswordHashText,
}

/// Changes to a user; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct UserChanges {
    /// New lower-cased e-mail address.
    pub email: Option<String>,
    /// New name.
    pub name: Option<String>,
    /// New role.
    pub role: Option<Role>,
    /// New password hash.
    pub password_hash: Option<PasswordHashText>,
}

/// A page of users, oldest first.
pub type Page = mcp_core::Page<User, Uuid>;

/// Database timestamps keep microseconds; so do we, so that what is written
/// reads back equal.
pub fn now(clock: &dyn mcp_core::Clock) -> OffsetDateTime {
    let now = OffsetDateTime::from(clock.now());
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

const COLUMNS: &str = "id, email, name, role, password_hash, created_at, updated_at";

/// Creates a user; [`DbError::Conflict`] when the e-mail address is taken.
pub async fn create(db: &Db, new: NewUser, at: OffsetDateTime) -> Result<User, DbError> {
    let id = Uuid::now_v7();
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, UserRow>(
            "INSERT INTO users (id, email, name, role, password_hash, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $6) \
             RETURNING id, email, name, role, password_hash, created_at, updated_at",
        )
        .bind(id)
        .bind(&new.email)
        .bind(&new.name)
        .bind(new.role.as_str())
        .bind(&new.password_hash.0)
        .bind(at)
        .fetch_one(pool)
        .await
    })?;
    Ok(row.into_user()?.0)
}

/// The user with `id`.
pub async fn find(db: &Db, id: Uuid) -> Result<Option<User>, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    })?;
    row.map(|r| r.into_user().map(|(user, _)| user)).transpose()
}

/// The user with `email` (lower-cased) and its password hash.
pub async fn find_by_email(
    db: &Db,
    email: &str,
) -> Result<Option<(User, PasswordHashText)>, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE email = $1"
        )))
        .bind(email)
        .fetch_optional(pool)
        .await
    })?;
    row.map(UserRow::into_user).transpose()
}

/// The password hash of the user with `id`.
pub async fn password_hash(db: &Db, id: Uuid) -> Result<Option<PasswordHashText>, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM users WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(pool)
        .await
    })?;
    Ok(row.map(|r| PasswordHashText(r.password_hash)))
}

/// Up to `limit` users after `cursor`, oldest first.
pub async fn list(db: &Db, limit: u32, cursor: Option<Uuid>) -> Result<Page, DbError> {
    let fetch = i64::from(limit) + 1;
    let rows = with_pool!(db, |pool| {
        match cursor {
            Some(cursor) => {
                sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM users WHERE id > $1 ORDER BY id LIMIT $2"
                )))
                .bind(cursor)
                .bind(fetch)
                .fetch_all(pool)
                .await
            }
            None => {
                sqlx::query_as::<_, UserRow>(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLUMNS} FROM users ORDER BY id LIMIT $1"
                )))
                .bind(fetch)
                .fetch_all(pool)
                .await
            }
        }
    })?;
    let items = rows
        .into_iter()
        .map(|r| r.into_user().map(|(user, _)| user))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Page::from_overfetch(items, limit as usize, |u| u.id))
}

/// Applies `changes`; `None` when there is no such user.
pub async fn update(
    db: &Db,
    id: Uuid,
    changes: UserChanges,
    at: OffsetDateTime,
) -> Result<Option<User>, DbError> {
    let row = with_pool!(db, |pool| {
        sqlx::query_as::<_, UserRow>(
            "UPDATE users SET \
               email = COALESCE($2, email), \
               name = COALESCE($3, name), \
               role = COALESCE($4, role), \
               password_hash = COALESCE($5, password_hash), \
               updated_at = $6 \
             WHERE id = $1 \
             RETURNING id, email, name, role, password_hash, created_at, updated_at",
        )
        .bind(id)
        .bind(changes.email.as_deref())
        .bind(changes.name.as_deref())
        .bind(changes.role.map(Role::as_str))
        .bind(changes.password_hash.as_ref().map(|h| h.0.as_str()))
        .bind(at)
        .fetch_optional(pool)
        .await
    })?;
    row.map(|r| r.into_user().map(|(user, _)| user)).transpose()
}

/// Deletes the user; `false` when there was none.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool, DbError> {
    let affected = with_pool!(db, |pool| {
        sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(id)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(affected > 0)
}

/// How many users exist.
pub async fn count(db: &Db) -> Result<i64, DbError> {
    let count = with_pool!(db, |pool| {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM users")
            .fetch_one(pool)
            .await
    })?;
    Ok(count)
}

/// Hashes and checks passwords with argon2id (OWASP parameters: 19 MiB,
/// 2 passes), off the async threads.
///
/// Checking a login for an unknown e-mail address verifies the password
/// against a dummy hash made with the same parameters, so both failures take
/// the same time and the answer does not reveal which addresses exist.
#[derive(Clone)]
pub struct Passwords {
    dummy: Arc<String>,
}

impl fmt::Debug for Passwords {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Passwords")
    }
}

impl Passwords {
    /// Prepares the dummy hash (one argon2 run).
    pub fn new() -> Self {
        let random: [u8; 16] = rand::random();
        let dummy = Argon2::default()
            .hash_password(&random)
            .map(|h| h.to_string())
            .unwrap_or_default();
        Passwords {
            dummy: Arc::new(dummy),
        }
    }

    /// The argon2id PHC string of `password`.
    pub async fn hash(
        &self,
        password: impl Into<mcp_validate::Secret>,
    ) -> Result<PasswordHashText, Problem> {
        let password = password.into();
        tokio::task::spawn_blocking(move || {
            Argon2::default()
                .hash_password(password.expose().as_bytes())
                .map(|h| PasswordHashText(h.to_string()))
        })
        .await
        .ok()
        .and_then(Result::ok)
        .ok_or_else(|| {
            tracing::error!("password hashing failed");
            Problem::internal()
        })
    }

    /// Whether `password` matches `hash`; with no hash (unknown user) it
    /// checks the dummy and answers `false`, taking the same time.
    pub async fn verify(
        &self,
        password: impl Into<mcp_validate::Secret>,
        hash: Option<PasswordHashText>,
    ) -> bool {
        let password = password.into();
        let known = hash.is_some();
        let hash = hash.map_or_else(|| self.dummy.as_str().to_owned(), |h| h.0);
        let matched = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash).ok().is_some_and(|parsed| {
                Argon2::default()
                    .verify_password(password.expose().as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await
        .unwrap_or(false);
        known && matched
    }
}

impl Default for Passwords {
    fn default() -> Self {
        Self::new()
    }
}
