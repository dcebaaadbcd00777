-- Agents registered by users. A user's agents go with the user.
CREATE TABLE agents (
    id           UUID PRIMARY KEY,
    owner_id     UUID NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    type         TEXT NOT NULL,
    capabilities JSONB NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('active', 'inactive', 'error')),
    metadata     JSONB NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL
);

CREATE INDEX agents_owner ON agents (owner_id, id);
