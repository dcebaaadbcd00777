-- The audit trail: the whole event as JSON, and the columns its filters use.
CREATE TABLE audit_events (
    id      UUID PRIMARY KEY,
    at      TIMESTAMPTZ NOT NULL,
    type    TEXT NOT NULL,
    subject TEXT,
    event   JSONB NOT NULL
);

CREATE INDEX audit_events_at ON audit_events (at);
CREATE INDEX audit_events_type ON audit_events (type, id);
CREATE INDEX audit_events_subject ON audit_events (subject, id);
