//! The audit trail: events from `mcp-audit`, kept in the `audit_events`
//! table (or written to stdout), read back by `GET /api/audit` and
//! `mcp-server audit list`, purged after the retention.

use std::net::IpAddr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::FromRequestParts;
use http::request::Parts;
use mcp_audit::{AuditError, AuditSink, AuditWriter, Auditor, AuditorSettings, BoxFuture, Event};
use mcp_core::{FieldError, Page, Problem};
use serde::Deserialize;
use sqlx::types::Json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::AppState;
use crate::config::{AuditSinkKind, Config};
use crate::db::{Db, DbError};
use crate::with_pool;

/// The sink of `MCP_AUDIT_SINK=database`: one transaction per batch.
#[derive(Clone, Debug)]
pub struct DbSink(pub Db);

impl AuditSink for DbSink {
    fn write<'a>(&'a self, events: &'a [Event]) -> BoxFuture<'a, Result<(), AuditError>> {
        Box::pin(async move {
            insert(&self.0, events)
                .await
                .map_err(|e| AuditError(e.to_string()))
        })
    }
}

/// One statement per batch: a round trip per batch, not per event.
///
/// On PostgreSQL the batch goes in as five arrays through one constant
/// statement, prepared once per connection: a `VALUES` list with a row of
/// parameters per event is a new statement text for every batch size,
/// which PostgreSQL parsed and planned again (its CPU, under load, was the
/// audit trail's main cost), and a bind per value on our side. SQLite
/// plans in process, so it keeps the `VALUES` list.
async fn insert(db: &Db, events: &[Event]) -> Result<(), DbError> {
    if events.is_empty() {
        return Ok(());
    }
    match db {
        Db::Postgres(pool) => {
            let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
            let ats: Vec<OffsetDateTime> = events.iter().map(|e| e.at).collect();
            let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
            let subjects: Vec<Option<&str>> = events
                .iter()
                .map(|e| e.actor.as_ref().map(|a| a.subject.as_str()))
                .collect();
            // As text, cast to `json` by PostgreSQL: `Json` binds `jsonb`,
            // which PostgreSQL parses into its binary form, and a cast from
            // it to `json` would render it back; text to `json` only checks.
            let bodies = events
                .iter()
                .map(serde_json::to_string)
                .collect::<Result<Vec<String>, _>>()
                .map_err(|e| DbError::Query(sqlx::Error::Encode(Box::new(e))))?;
            sqlx::query(
                "INSERT INTO audit_events (id, at, type, subject, event) \
                 SELECT id, at, type, subject, event::json \
                 FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[]) \
                 AS batch (id, at, type, subject, event) \
                 ON CONFLICT (id) DO NOTHING",
            )
            .bind(ids)
            .bind(ats)
            .bind(kinds)
            .bind(subjects)
            .bind(bodies)
            .execute(pool)
            .await?;
        }
        Db::Sqlite(pool) => {
            let mut insert =
                sqlx::QueryBuilder::new("INSERT INTO audit_events (id, at, type, subject, event) ");
            insert.push_values(events, |mut row, event| {
                row.push_bind(event.id)
                    .push_bind(event.at)
                    .push_bind(event.kind.as_str())
                    .push_bind(event.actor.as_ref().map(|a| a.subject.as_str()))
                    .push_bind(Json(event));
            });
            insert.push(" ON CONFLICT (id) DO NOTHING");
            insert.build().execute(pool).await?;
        }
    }
    Ok(())
}

/// Starts the audit trail `config` asks for; the writer is flushed at
/// shutdown.
pub fn start(config: &Config, db: &Db) -> (Auditor, Option<AuditWriter>) {
    let settings = AuditorSettings::default();
    let (auditor, writer) = match config.audit_sink {
        AuditSinkKind::Off => return (Auditor::off(), None),
        AuditSinkKind::Stdout => Auditor::start(mcp_audit::StdoutSink, settings),
        AuditSinkKind::Database => Auditor::start(DbSink(db.clone()), settings),
    };
    (auditor, Some(writer))
}

/// The smallest UUIDv7 of the millisecond `at`: ids are made from their
/// event's time, so a time range is an id range (and uses the primary key).
fn id_bound(at: SystemTime) -> Uuid {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .min((1 << 48) - 1);
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x70;
    bytes[8] = 0x80;
    Uuid::from_bytes(bytes)
}

/// Deletes events older than `before`; how many.
pub async fn purge(db: &Db, before: SystemTime) -> Result<u64, DbError> {
    let bound = id_bound(before);
    let affected = with_pool!(db, |pool| {
        sqlx::query("DELETE FROM audit_events WHERE id < $1")
            .bind(bound)
            .execute(pool)
            .await
            .map(|r| r.rows_affected())
    })?;
    Ok(affected)
}

/// Purges events past `retention` now and then every hour.
pub fn start_purge(state: &AppState) -> Option<tokio::task::JoinHandle<()>> {
    if state.config.audit_sink != AuditSinkKind::Database {
        return None;
    }
    let (db, clock, retention) = (
        state.db.clone(),
        state.clock.clone(),
        state.config.audit_retention,
    );
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let before = clock.now().checked_sub(retention).unwrap_or(UNIX_EPOCH);
            match purge(&db, before).await {
                Ok(0) => {}
                Ok(purged) => tracing::info!(purged, "old audit events purged"),
                Err(error) => tracing::warn!(%error, "could not purge old audit events"),
            }
        }
    }))
}

/// What `GET /api/audit` and `audit list` select.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Events of this type.
    pub kind: Option<String>,
    /// Events whose actor is this subject.
    pub subject: Option<String>,
    /// At or after.
    pub since: Option<SystemTime>,
    /// Before.
    pub until: Option<SystemTime>,
}

/// `?type=&subject=&since=&until=&limit=&cursor=` of `GET /api/audit`.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(rename = "type")]
    kind: Option<String>,
    subject: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<String>,
    cursor: Option<String>,
}

/// Longest `type` or `subject` filter.
const FILTER_MAX: usize = 200;

impl AuditQuery {
    /// A query of these filters (the command line's).
    pub fn new(
        kind: Option<String>,
        subject: Option<String>,
        since: Option<String>,
        until: Option<String>,
    ) -> Self {
        AuditQuery {
            kind,
            subject,
            since,
            until,
            ..AuditQuery::default()
        }
    }

    /// The filter, limit and cursor, every bad field listed at once.
    pub fn checked(&self) -> Result<(Filter, u32, Option<Uuid>), Problem> {
        let mut errors = Vec::new();
        let list = crate::api::ListQuery::from_parts(self.limit.clone(), self.cursor.clone());
        let (limit, cursor) = match list.checked() {
            Ok(checked) => checked,
            Err(problem) => {
                errors.extend(problem.errors().iter().cloned());
                (50, None)
            }
        };
        let mut time = |field: &str, value: &Option<String>| {
            let text = value.as_deref()?;
            match OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339) {
                Ok(at) => Some(SystemTime::from(at)),
                Err(_) => {
                    errors.push(FieldError::new(
                        field,
                        "format",
                        "expected an RFC 3339 time such as 2026-12-01T00:00:00Z",
                    ));
                    None
                }
            }
        };
        let since = time("since", &self.since);
        let until = time("until", &self.until);
        for (field, value) in [("type", &self.kind), ("subject", &self.subject)] {
            if value.as_deref().is_some_and(|v| v.len() > FILTER_MAX) {
                errors.push(FieldError::new(field, "length", "at most 200 characters"));
            }
        }
        if !errors.is_empty() {
            return Err(Problem::validation_failed(errors));
        }
        let filter = Filter {
            kind: self.kind.clone().filter(|k| !k.is_empty()),
            subject: self.subject.clone().filter(|s| !s.is_empty()),
            since,
            until,
        };
        Ok((filter, limit, cursor))
    }
}

/// Up to `limit` events of `filter` after `cursor`, oldest first.
pub async fn list(
    db: &Db,
    filter: &Filter,
    limit: u32,
    cursor: Option<Uuid>,
) -> Result<Page<Event, Uuid>, DbError> {
    let after = cursor.unwrap_or(Uuid::nil());
    let since = filter.since.map_or(Uuid::nil(), id_bound);
    let until = filter.until.map_or(Uuid::max(), id_bound);
    let rows: Vec<(Json<Event>,)> = with_pool!(db, |pool| {
        // Absent filters bind NULL and match everything: one statement.
        sqlx::query_as(
            "SELECT event FROM audit_events \
             WHERE id > $1 AND id >= $2 AND id < $3 \
               AND ($4 IS NULL OR type = $4) AND ($5 IS NULL OR subject = $5) \
             ORDER BY id LIMIT $6",
        )
        .bind(after)
        .bind(since)
        .bind(until)
        .bind(filter.kind.as_deref())
        .bind(filter.subject.as_deref())
        .bind(i64::from(limit) + 1)
        .fetch_all(pool)
        .await
    })?;
    let events = rows.into_iter().map(|(Json(event),)| event).collect();
    Ok(Page::from_overfetch(events, limit as usize, |e: &Event| {
        e.id
    }))
}

/// An `authz.denied` event for every `403` behind authentication: put
/// right inside each authentication layer.
pub fn refusals_layer(state: &AppState) -> mcp_audit::AuditRefusalsLayer {
    let lookup = state.clone();
    mcp_audit::AuditRefusalsLayer::new(state.audit.clone())
        .clock(state.clock.clone())
        .client_ip(std::sync::Arc::new(move |headers, extensions| {
            lookup.limits.client_ip(headers, extensions)
        }))
}

/// Where a request came from, for the events its handler records: the
/// request id and the client address (the trusted-proxy rule of the rate
/// limits).
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `X-Request-Id`.
    pub request_id: Option<String>,
    /// The client address.
    pub ip: Option<IpAddr>,
}

impl Context {
    /// The context of a request head.
    pub fn of(state: &AppState, headers: &http::HeaderMap, extensions: &http::Extensions) -> Self {
        Context {
            request_id: headers
                .get(mcp_audit::REQUEST_ID)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            ip: state.limits.client_ip(headers, extensions),
        }
    }

    /// `event` with this context.
    pub fn on(&self, event: Event) -> Event {
        let event = event.ip(self.ip);
        match &self.request_id {
            Some(id) => event.request_id(id),
            None => event,
        }
    }
}

impl FromRequestParts<AppState> for Context {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        Ok(Context::of(state, &parts.headers, &parts.extensions))
    }
}

impl crate::Services {
    /// Records `event` (at the server clock's time) with `context`.
    pub fn audit(&self, context: &Context, event: Event) {
        self.audit.record(context.on(event));
    }

    /// An event of `kind` now.
    pub fn event(&self, kind: &str, outcome: mcp_audit::Outcome) -> Event {
        Event::new(kind, outcome, self.clock.now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_bounds_order_like_the_ids_of_their_events() {
        let t = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        let at = Event::new("x", mcp_audit::Outcome::Success, t).id;
        let before = Event::new(
            "x",
            mcp_audit::Outcome::Success,
            t - Duration::from_millis(1),
        )
        .id;
        assert!(id_bound(t) <= at);
        assert!(before < id_bound(t));
        assert!(at < id_bound(t + Duration::from_millis(1)));
        assert_eq!(id_bound(UNIX_EPOCH).as_bytes()[..6], [0; 6]);
    }
}
