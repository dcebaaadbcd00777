//! The request bodies of the contract, as garde-validated types.
//!
//! Names and e-mail addresses are trimmed; e-mail addresses are lower-cased
//! (they compare case-insensitively). `null` is refused where a field cannot
//! be cleared. Passwords are [`Secret`]s: `Debug` shows `[redacted]`, and
//! they are wiped from memory when dropped.

use garde::Validate;
use mcp_validate::Secret;
use serde::{Deserialize, Deserializer};

use crate::users::Role;

/// Longest e-mail address (RFC 5321 path limit).
const EMAIL_MAX: usize = 254;
/// Longest name.
const NAME_MAX: usize = 200;
/// Longest password: argon2 reads all of it, so an unbounded one is a
/// denial of service.
const PASSWORD_MAX: usize = 1024;

fn trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(String::deserialize(d)?.trim().to_owned())
}

fn email<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(String::deserialize(d)?.trim().to_lowercase())
}

/// Absent is `None`; `null` is an error (the field cannot be cleared).
fn some<'de, D, T, F>(d: D, map: F) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
    F: FnOnce(T) -> T,
{
    match Option::<T>::deserialize(d)? {
        Some(value) => Ok(Some(map(value))),
        None => Err(serde::de::Error::custom("must not be null")),
    }
}

fn some_trimmed<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    some(d, |s: String| s.trim().to_owned())
}

fn some_email<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    some(d, |s: String| s.trim().to_lowercase())
}

fn some_plain<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    some(d, |v| v)
}

/// `POST /api/auth/login`.
#[derive(Debug, Deserialize, Validate)]
pub struct Login {
    /// E-mail address.
    #[serde(deserialize_with = "email")]
    #[garde(email, length(max = EMAIL_MAX))]
    pub email: String,
    /// Password.
    #[garde(length(min = 1, max = PASSWORD_MAX))]
    pub password: Secret,
}

/// `POST /api/users` and `POST /api/auth/register`.
#[derive(Debug, Deserialize, Validate)]
pub struct UserCreate {
    /// E-mail address.
    #[serde(deserialize_with = "email")]
    #[garde(email, length(max = EMAIL_MAX))]
    pub email: String,
    /// Password, at least 8 characters.
    #[garde(length(chars, min = 8, max = PASSWORD_MAX))]
    pub password: Secret,
    /// Display name.
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = NAME_MAX))]
    pub name: String,
    /// Role (`user` by default; ignored by register).
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(skip)]
    pub role: Option<Role>,
}

/// `PATCH /api/users/{id}`.
#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct UserUpdate {
    /// New e-mail address.
    #[serde(default, deserialize_with = "some_email")]
    #[garde(inner(email, length(max = EMAIL_MAX)))]
    pub email: Option<String>,
    /// New display name.
    #[serde(default, deserialize_with = "some_trimmed")]
    #[garde(inner(length(chars, min = 1, max = NAME_MAX)))]
    pub name: Option<String>,
    /// New role (admins only, never one's own).
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(skip)]
    pub role: Option<Role>,
    /// New password.
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(inner(length(chars, min = 8, max = PASSWORD_MAX)))]
    pub password: Option<Secret>,
    /// The current password, needed to change one's own.
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(inner(length(max = PASSWORD_MAX)))]
    pub current_password: Option<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse;

    #[test]
    fn emails_are_trimmed_and_lower_cased_names_trimmed() {
        let user: UserCreate = parse(
            br#"{"email":"  Ada@Example.COM ","password":"correct horse","name":"  Ada  ","extra":1}"#,
        )
        .unwrap();
        assert_eq!(user.email, "ada@example.com");
        assert_eq!(user.name, "Ada");
        assert_eq!(user.role, None);
    }

    #[test]
    fn every_failing_field_is_listed() {
        let problem = parse::<UserCreate>(br#"{"email":"nope","password":"short","name":"   "}"#)
            .unwrap_err();
        assert_eq!(problem.code(), "validation_failed");
        let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields.len(), 3, "{fields:?}");
        for field in ["email", "password", "name"] {
            assert!(fields.contains(&field), "{fields:?}");
        }
    }

    #[test]
    fn debug_never_shows_a_password() {
        let login: Login =
            parse(br#"{"email":"a@example.com","password":"hunter2-login"}"#).unwrap();
        let create: UserCreate =
            parse(br#"{"email":"a@example.com","password":"hunter2-create","name":"A"}"#).unwrap();
        let update: UserUpdate =
            parse(br#"{"password":"hunter2-new","currentPassword":"hunter2-old"}"#).unwrap();
        for debug in [
            format!("{login:?}"),
            format!("{create:?}"),
            format!("{update:?}"),
            format!("{login:#?}"),
        ] {
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("[redacted]"), "{debug}");
        }
    }

    #[test]
    fn null_cannot_clear_a_required_field() {
        let problem = parse::<UserUpdate>(br#"{"name":null}"#).unwrap_err();
        assert_eq!(problem.code(), "validation_failed");
        assert_eq!(problem.errors()[0].field, "name");
        let ok: UserUpdate = parse(br#"{"currentPassword":"x","password":"longenough"}"#).unwrap();
        assert_eq!(ok.current_password.as_ref().map(Secret::expose), Some("x"));
    }
}

/// Present with a value: `Some(Some(v))`; present as `null`: `Some(None)`;
/// absent (with `#[serde(default)]`): `None`.
fn nullable<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// garde hands custom rules the field's own type.
#[allow(clippy::ptr_arg)]
fn known_scope(scope: &String, _: &()) -> garde::Result {
    if crate::auth::SCOPES.contains(&scope.as_str()) {
        Ok(())
    } else {
        Err(garde::Error::new(format!(
            "unknown scope; known scopes are {}",
            crate::auth::SCOPES.join(", ")
        )))
    }
}

/// Most scopes one key may list.
const SCOPES_MAX: usize = 20;
/// Longest key name.
const KEY_NAME_MAX: usize = 100;
/// Longest key lifetime, in days (10 years).
const EXPIRES_MAX_DAYS: u32 = 3650;

/// `POST /api/keys`.
#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct KeyCreate {
    /// Unique among the owner's keys.
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = KEY_NAME_MAX))]
    pub name: String,
    /// Absent or `null`: unrestricted within the owner's role.
    #[serde(default)]
    #[garde(inner(length(max = SCOPES_MAX), inner(custom(known_scope))))]
    pub scopes: Option<Vec<String>>,
    /// Absent or `null`: never expires.
    #[serde(default)]
    #[garde(inner(range(min = 1, max = EXPIRES_MAX_DAYS)))]
    pub expires_in_days: Option<u32>,
}

/// `PATCH /api/keys/{id}`.
#[derive(Debug, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct KeyUpdate {
    /// New name.
    #[serde(default, deserialize_with = "some_trimmed")]
    #[garde(inner(length(chars, min = 1, max = KEY_NAME_MAX)))]
    pub name: Option<String>,
    /// New scopes; `null` makes the key unrestricted.
    #[serde(default, deserialize_with = "nullable")]
    #[garde(inner(inner(length(max = SCOPES_MAX), inner(custom(known_scope)))))]
    pub scopes: Option<Option<Vec<String>>>,
    /// Activate or deactivate.
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(skip)]
    pub is_active: Option<bool>,
    /// New lifetime from now; `null` makes the key never expire.
    #[serde(default, deserialize_with = "nullable")]
    #[garde(inner(inner(range(min = 1, max = EXPIRES_MAX_DAYS))))]
    pub expires_in_days: Option<Option<u32>>,
}

/// `POST /api/keys/{id}/regenerate` (the body is optional).
#[derive(Debug, Default, Deserialize, Validate)]
#[serde(rename_all = "camelCase")]
pub struct Regenerate {
    /// How long the old secret keeps working (at most 7 days).
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(inner(range(max = 604_800)))]
    pub grace_period_seconds: Option<u64>,
}

#[cfg(test)]
mod key_tests {
    use super::*;
    use crate::extract::parse;

    #[test]
    fn key_create_rules() {
        let key: KeyCreate =
            parse(br#"{"name":" ci ","scopes":["mcp"],"expiresInDays":30}"#).unwrap();
        assert_eq!(key.name, "ci");
        assert_eq!(key.scopes, Some(vec!["mcp".to_owned()]));
        let key: KeyCreate = parse(br#"{"name":"x","scopes":null,"expiresInDays":null}"#).unwrap();
        assert_eq!((key.scopes, key.expires_in_days), (None, None));
        let problem =
            parse::<KeyCreate>(br#"{"name":"","scopes":["mcp","root"],"expiresInDays":0}"#)
                .unwrap_err();
        let fields: Vec<&str> = problem.errors().iter().map(|e| e.field.as_str()).collect();
        assert!(fields.contains(&"name"), "{fields:?}");
        assert!(fields.contains(&"scopes[1]"), "{fields:?}");
        assert!(
            fields.contains(&"expires_in_days") || fields.contains(&"expiresInDays"),
            "{fields:?}"
        );
    }

    #[test]
    fn key_update_distinguishes_null_from_absent() {
        let update: KeyUpdate = parse(br#"{"expiresInDays":null}"#).unwrap();
        assert_eq!(update.expires_in_days, Some(None));
        assert_eq!(update.scopes, None);
        let update: KeyUpdate = parse(br#"{"scopes":null,"expiresInDays":5}"#).unwrap();
        assert_eq!(update.scopes, Some(None));
        assert_eq!(update.expires_in_days, Some(Some(5)));
        assert!(parse::<KeyUpdate>(br#"{"isActive":null}"#).is_err());
        assert!(parse::<KeyUpdate>(br#"{"name":null}"#).is_err());
    }
}

/// Most capabilities an agent lists.
const CAPABILITIES_MAX: usize = 50;
/// Largest metadata object, as JSON.
const METADATA_MAX_BYTES: usize = 16 * 1024;

// garde hands custom rules the field's own type.
#[allow(clippy::ptr_arg)]
fn metadata_size(metadata: &serde_json::Map<String, serde_json::Value>, _: &()) -> garde::Result {
    let size = serde_json::to_vec(metadata).map_or(usize::MAX, |v| v.len());
    if size > METADATA_MAX_BYTES {
        return Err(garde::Error::new(format!(
            "metadata is larger than {METADATA_MAX_BYTES} bytes"
        )));
    }
    Ok(())
}

fn trimmed_list<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    Ok(Vec::<String>::deserialize(d)?
        .into_iter()
        .map(|s| s.trim().to_owned())
        .collect())
}

fn some_trimmed_list<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    match Option::<Vec<String>>::deserialize(d)? {
        Some(list) => Ok(Some(
            list.into_iter().map(|s| s.trim().to_owned()).collect(),
        )),
        None => Err(serde::de::Error::custom("must not be null")),
    }
}

/// `POST /api/agents`.
#[derive(Debug, Deserialize, Validate)]
pub struct AgentCreate {
    /// Display name.
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = NAME_MAX))]
    pub name: String,
    /// What kind of agent.
    #[serde(deserialize_with = "trimmed")]
    #[garde(length(chars, min = 1, max = 100))]
    pub r#type: String,
    /// What it can do.
    #[serde(default, deserialize_with = "trimmed_list")]
    #[garde(length(max = CAPABILITIES_MAX), inner(length(chars, min = 1, max = 100)))]
    pub capabilities: Vec<String>,
    /// Free-form data (an object).
    #[serde(default)]
    #[garde(custom(metadata_size))]
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

/// `PATCH /api/agents/{id}`: nothing here can be `null`.
#[derive(Debug, Deserialize, Validate)]
pub struct AgentUpdate {
    /// New name.
    #[serde(default, deserialize_with = "some_trimmed")]
    #[garde(inner(length(chars, min = 1, max = NAME_MAX)))]
    pub name: Option<String>,
    /// New kind.
    #[serde(default, deserialize_with = "some_trimmed")]
    #[garde(inner(length(chars, min = 1, max = 100)))]
    pub r#type: Option<String>,
    /// New capabilities.
    #[serde(default, deserialize_with = "some_trimmed_list")]
    #[garde(inner(length(max = CAPABILITIES_MAX), inner(length(chars, min = 1, max = 100))))]
    pub capabilities: Option<Vec<String>>,
    /// New status.
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(skip)]
    pub status: Option<crate::agents::AgentStatus>,
    /// New metadata (replaces the old).
    #[serde(default, deserialize_with = "some_plain")]
    #[garde(inner(custom(metadata_size)))]
    pub metadata: Option<serde_json::Map<String, serde_json::Value>>,
}
