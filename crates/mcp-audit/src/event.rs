//! What an audit event holds.

use std::net::IpAddr;
use std::time::SystemTime;

use mcp_core::Principal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use uuid::Uuid;

/// How the audited action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It was done.
    Success,
    /// It was refused: a wrong password, a missing scope, a lock-out.
    Denied,
    /// It failed on the server's side.
    Error,
}

impl Outcome {
    /// `success`, `denied` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Denied => "denied",
            Outcome::Error => "error",
        }
    }

    /// The outcome named `text`.
    pub fn parse(text: &str) -> Option<Outcome> {
        match text {
            "success" => Some(Outcome::Success),
            "denied" => Some(Outcome::Denied),
            "error" => Some(Outcome::Error),
            _ => None,
        }
    }
}

/// Who acted: the principal's identity, never its credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Actor {
    /// The user id, or the token's `sub`.
    pub subject: String,
    /// `jwt`, `api_key`, ...
    pub auth_method: String,
    /// The API key's id, when one was used.
    pub key_id: Option<String>,
    /// The token's issuer, for an external one.
    pub issuer: Option<String>,
}

impl Actor {
    /// The actor of `principal`.
    pub fn of(principal: &Principal) -> Actor {
        Actor {
            subject: principal.subject().to_owned(),
            auth_method: principal.auth_method().as_str().to_owned(),
            key_id: principal.key_id().map(str::to_owned),
            issuer: principal.issuer().map(str::to_owned),
        }
    }

    /// An actor known by subject alone (a login, before any principal).
    pub fn subject(subject: impl Into<String>, auth_method: impl Into<String>) -> Actor {
        Actor {
            subject: subject.into(),
            auth_method: auth_method.into(),
            key_id: None,
            issuer: None,
        }
    }
}

/// What was acted on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// `user`, `key`, `route`, `tool`, ...
    pub kind: String,
    /// Its id (or name).
    pub id: String,
}

/// Longest text kept of any field a client can influence.
const MAX_TEXT: usize = 200;

/// `text`, cut at [`MAX_TEXT`] bytes on a character boundary.
pub(crate) fn bounded(text: &str) -> String {
    if text.len() <= MAX_TEXT {
        return text.to_owned();
    }
    let mut end = MAX_TEXT;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// One audit event: `{id,at,type,outcome,actor,ip,requestId,target,detail}`.
///
/// Events are built by the code that acts, from what it knows: ids, names,
/// outcomes. Nothing in this type carries a credential, and nothing a
/// caller sends reaches it except ids and names, each cut to 200 bytes.
///
/// ```
/// use std::time::SystemTime;
/// use mcp_audit::{Event, Outcome};
/// use mcp_core::{AuthMethod, Principal};
///
/// let who = Principal::builder("u1", AuthMethod::ApiKey).key_id("k1").build();
/// let event = Event::new("key.deleted", Outcome::Success, SystemTime::now())
///     .actor(&who)
///     .target("key", "k2")
///     .request_id("0190d8a4-7c5e-7a51-9a7e-3f0a3c2b1d00");
/// let json = serde_json::to_value(&event).unwrap();
/// assert_eq!(json["type"], "key.deleted");
/// assert_eq!(json["actor"]["keyId"], "k1");
/// assert_eq!(json["target"], serde_json::json!({"kind": "key", "id": "k2"}));
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// A UUIDv7: events sort by it in time order.
    pub id: Uuid,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// `auth.login`, `key.created`, `mcp.tool_call`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Who.
    pub actor: Option<Actor>,
    /// From where (the client address as the server's trusted proxies
    /// resolve it).
    pub ip: Option<String>,
    /// The response's `X-Request-Id`.
    pub request_id: Option<String>,
    /// On what.
    pub target: Option<Target>,
    /// What else the event type records.
    pub detail: Map<String, Value>,
}

impl Event {
    /// `text` cut to the 200 bytes any client-given text keeps in an event.
    pub fn bounded(text: &str) -> String {
        bounded(text)
    }

    /// An event of `kind` at `at`.
    pub fn new(kind: impl Into<String>, outcome: Outcome, at: SystemTime) -> Event {
        let at = OffsetDateTime::from(at);
        // The id's time is the event's, so ids sort as the events happened
        // even when a clock is injected.
        let millis = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap_or(0);
        let nanos = u32::try_from(at.unix_timestamp_nanos().rem_euclid(1_000_000)).unwrap_or(0);
        let timestamp = uuid::Timestamp::from_unix(
            uuid::NoContext,
            millis / 1000,
            u32::try_from(millis % 1000).unwrap_or(0) * 1_000_000 + nanos,
        );
        Event {
            id: Uuid::new_v7(timestamp),
            at,
            kind: kind.into(),
            outcome,
            actor: None,
            ip: None,
            request_id: None,
            target: None,
            detail: Map::new(),
        }
    }

    /// Acted by `principal`.
    #[must_use]
    pub fn actor(mut self, principal: &Principal) -> Event {
        self.actor = Some(Actor::of(principal));
        self
    }

    /// Acted by `actor`.
    #[must_use]
    pub fn actor_is(mut self, actor: Actor) -> Event {
        self.actor = Some(actor);
        self
    }

    /// From `ip`.
    #[must_use]
    pub fn ip(mut self, ip: Option<IpAddr>) -> Event {
        self.ip = ip.map(|ip| ip.to_string());
        self
    }

    /// Answered with `X-Request-Id: id`.
    #[must_use]
    pub fn request_id(mut self, id: &str) -> Event {
        self.request_id = Some(bounded(id));
        self
    }

    /// The request id of `headers`, if any.
    #[must_use]
    pub fn request_id_of(self, headers: &http::HeaderMap) -> Event {
        match headers.get(crate::REQUEST_ID).and_then(|v| v.to_str().ok()) {
            Some(id) => self.request_id(id),
            None => self,
        }
    }

    /// On the `kind` with `id`.
    #[must_use]
    pub fn target(mut self, kind: impl Into<String>, id: impl AsRef<str>) -> Event {
        self.target = Some(Target {
            kind: kind.into(),
            id: bounded(id.as_ref()),
        });
        self
    }

    /// Records `value` as `detail.<name>`.
    #[must_use]
    pub fn detail(mut self, name: &str, value: impl Into<Value>) -> Event {
        self.detail.insert(name.to_owned(), value.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn ids_sort_as_the_events_happened() {
        let base = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let ids: Vec<Uuid> = (0..50)
            .map(|i| Event::new("x", Outcome::Success, base + Duration::from_millis(i)).id)
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
        let event = Event::new("x", Outcome::Success, base);
        assert_eq!(event.at, OffsetDateTime::from(base));
    }

    #[test]
    fn short_text_is_kept_and_long_text_cut_at_a_character() {
        assert_eq!(Event::bounded("whoami"), "whoami");
        assert_eq!(Event::bounded(""), "");
        let exact = "a".repeat(MAX_TEXT);
        assert_eq!(Event::bounded(&exact), exact);
        let long = "a".repeat(MAX_TEXT + 1);
        assert_eq!(Event::bounded(&long), long[..MAX_TEXT]);
        // Two-byte characters: cut before the one that would not fit.
        let wide = "é".repeat(MAX_TEXT);
        let cut = Event::bounded(&wide);
        assert!(wide.starts_with(&cut) && cut.len() <= MAX_TEXT && cut.len() >= MAX_TEXT - 1);
    }

    #[test]
    fn client_text_is_bounded() {
        let long = "é".repeat(500);
        let event = Event::new("x", Outcome::Denied, SystemTime::now())
            .request_id(&long)
            .target("tool", &long);
        assert!(event.request_id.unwrap().len() <= MAX_TEXT);
        assert!(event.target.unwrap().id.len() <= MAX_TEXT);
    }
}
