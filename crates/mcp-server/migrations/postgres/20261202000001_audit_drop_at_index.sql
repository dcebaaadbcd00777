-- Ids are UUIDv7 made from the event's time, so every time filter and the
-- purge are id ranges on the primary key; the index on `at` was used by no
-- query and cost each inserted event one more index entry.
DROP INDEX IF EXISTS audit_events_at;
