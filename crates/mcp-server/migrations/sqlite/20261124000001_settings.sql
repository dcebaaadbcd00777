-- Server-wide values the server generates once and must keep, such as the
-- JWT signing secret when MCP_JWT_SECRET is unset.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY NOT NULL,
    value      TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);
