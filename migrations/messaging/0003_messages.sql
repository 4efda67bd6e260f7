-- Outbound messages, their dispatch bookkeeping, and the permissions this service enforces.

CREATE TABLE messages (
    tenant_id      TEXT NOT NULL,
    message_id     UUID NOT NULL,
    channel        TEXT NOT NULL,
    status         TEXT NOT NULL,
    agent_id       TEXT NOT NULL,
    recipient      TEXT NOT NULL,
    provider_message_id TEXT,
    requested_at   TIMESTAMPTZ NOT NULL,
    state          JSONB NOT NULL,
    version        BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX messages_provider_idx ON messages (provider_message_id) WHERE provider_message_id IS NOT NULL;

-- A message handed to a provider is marked here first, in its own committed transaction: a
-- dispatcher that restarts finds the mark and never sends the same message twice.
CREATE TABLE message_dispatch (
    tenant_id   TEXT NOT NULL,
    message_id  UUID NOT NULL,
    state       TEXT NOT NULL CHECK (state IN ('sending', 'done')),
    attempts    INTEGER NOT NULL DEFAULT 0,
    started_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, message_id)
);

-- From agent-sessions' events: who may send which channel.
CREATE TABLE agent_permissions (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, permission)
);
