-- The event is written once and read back whole, never queried inside:
-- `json` keeps the text as sent, where `jsonb` parsed and re-encoded every
-- event on insert, the main PostgreSQL cost of a tool call's audit event.
ALTER TABLE audit_events ALTER COLUMN event TYPE JSON USING event::json;
