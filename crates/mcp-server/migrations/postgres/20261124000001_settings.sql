-- Server-wide values the server generates once and must keep, such as the
-- JWT signing secret when MCP_JWT_SECRET is unset.
CREATE TABLE settings (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
