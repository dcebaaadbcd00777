-- Agents registered by users. A user's agents go with the user.
CREATE TABLE agents (
    id           BLOB PRIMARY KEY NOT NULL,
    owner_id     BLOB NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    type         TEXT NOT NULL,
    capabilities TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'error')),
    metadata     TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

CREATE INDEX agents_owner ON agents (owner_id, id);
