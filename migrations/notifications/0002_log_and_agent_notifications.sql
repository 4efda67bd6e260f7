-- The single-notifications log (from messaging's events) and agents' notifications (from
-- distribution's and messaging's events), each applied once by its consumer.

CREATE TABLE single_notifications (
    tenant_id       TEXT NOT NULL,
    message_id      UUID NOT NULL,
    channel         TEXT NOT NULL,
    status          TEXT NOT NULL,
    template_id     TEXT NOT NULL,
    template_name   TEXT NOT NULL,
    agent_id        TEXT NOT NULL,
    department_id   TEXT,
    recipient_phone TEXT NOT NULL,
    rendered_body   TEXT NOT NULL,
    failure_code    TEXT,
    failure_reason  TEXT,
    timeline        JSONB NOT NULL DEFAULT '[]',
    requested_at    TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
CREATE INDEX single_notifications_newest_idx ON single_notifications (tenant_id, requested_at DESC, message_id DESC);
CREATE INDEX single_notifications_agent_idx ON single_notifications (tenant_id, agent_id, requested_at DESC);
CREATE INDEX single_notifications_channel_idx ON single_notifications (tenant_id, channel, requested_at DESC);

-- Who holds each task (from distribution's events), to address client messages.
CREATE TABLE task_holders (
    tenant_id TEXT NOT NULL,
    task_id   UUID NOT NULL,
    agent_id  TEXT,
    PRIMARY KEY (tenant_id, task_id)
);

-- Per-agent gap-free sequence: taken under this row's lock in the inserting transaction.
CREATE TABLE agent_cursors (
    tenant_id TEXT NOT NULL,
    agent_id  TEXT NOT NULL,
    last_seq  BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE agent_notifications (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    kind       TEXT NOT NULL,
    task_id    UUID,
    message_id UUID,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id, seq)
);

-- From agent-sessions' events: who may see the log (notifications.view).
CREATE TABLE agent_permissions (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, permission)
);
