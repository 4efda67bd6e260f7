-- task-distribution's read models: the task queue and search index, agent availability (from
-- agent-sessions' events), protocol counters and assignment decisions.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Case- and accent-insensitive search text. `unaccent` is only STABLE; pinning its dictionary
-- makes this wrapper safe to index.
CREATE FUNCTION dw_search_text(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$;

CREATE TABLE distribution_settings (
    tenant_id                 TEXT PRIMARY KEY,
    default_capacity          INTEGER NOT NULL DEFAULT 3 CHECK (default_capacity BETWEEN 1 AND 100),
    auto_distribution_enabled BOOLEAN NOT NULL DEFAULT FALSE,
    inbound_department_id     TEXT,
    updated_at                TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Availability of each agent, projected from agent-sessions' events, and their load.
CREATE TABLE agents (
    tenant_id         TEXT NOT NULL,
    agent_id          TEXT NOT NULL,
    day_open          BOOLEAN NOT NULL DEFAULT FALSE,
    on_break          BOOLEAN NOT NULL DEFAULT FALSE,
    exit_notified     BOOLEAN NOT NULL DEFAULT FALSE,
    break_started_at  TIMESTAMPTZ,
    capacity_override INTEGER CHECK (capacity_override BETWEEN 1 AND 100),
    active_tasks      INTEGER NOT NULL DEFAULT 0 CHECK (active_tasks >= 0),
    -- Since when the agent has been without a new task (day start, or last assignment).
    idle_since        TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE agent_departments (
    tenant_id     TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    department_id TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, department_id)
);
CREATE INDEX agent_departments_department_idx ON agent_departments (tenant_id, department_id, agent_id);

CREATE TABLE agent_permissions (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    permission TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, permission)
);

-- Gap-free daily protocol sequence per tenant: incremented in the creating transaction.
CREATE TABLE protocol_counters (
    tenant_id TEXT NOT NULL,
    day       DATE NOT NULL,
    last_seq  INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, day)
);

CREATE TABLE tasks (
    tenant_id        TEXT NOT NULL,
    task_id          UUID NOT NULL,
    protocol         TEXT NOT NULL,
    department_id    TEXT NOT NULL,
    channel          TEXT NOT NULL,
    client_name      TEXT NOT NULL,
    client_phone     TEXT NOT NULL,
    contact_id       TEXT,
    priority         INTEGER NOT NULL,
    subject          TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('queued', 'assigned', 'completed', 'cancelled')),
    agent_id         TEXT,
    created_at       TIMESTAMPTZ NOT NULL,
    assigned_at      TIMESTAMPTZ,
    closed_at        TIMESTAMPTZ,
    -- Queue order: re-queued tasks of a departed agent first, then priority, then age.
    queue_front      BOOLEAN NOT NULL DEFAULT FALSE,
    queued_at        TIMESTAMPTZ NOT NULL,
    message_count    INTEGER NOT NULL DEFAULT 0,
    last_message_at  TIMESTAMPTZ,
    version          BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, task_id),
    CONSTRAINT tasks_protocol_key UNIQUE (tenant_id, protocol)
);
CREATE INDEX tasks_queue_idx ON tasks (tenant_id, department_id, queue_front DESC, priority DESC, queued_at, task_id)
    WHERE status = 'queued';
CREATE INDEX tasks_agent_open_idx ON tasks (tenant_id, agent_id) WHERE status = 'assigned';
CREATE INDEX tasks_open_client_idx ON tasks (tenant_id, client_phone, channel) WHERE status IN ('queued', 'assigned');
CREATE INDEX tasks_newest_idx ON tasks (tenant_id, created_at DESC, task_id DESC);
CREATE INDEX tasks_protocol_prefix_idx ON tasks (tenant_id, protocol text_pattern_ops);
CREATE INDEX tasks_phone_idx ON tasks (tenant_id, client_phone, created_at DESC);
CREATE INDEX tasks_department_idx ON tasks (tenant_id, department_id, created_at DESC);
CREATE INDEX tasks_agent_idx ON tasks (tenant_id, agent_id, created_at DESC);
CREATE INDEX tasks_status_idx ON tasks (tenant_id, status, created_at DESC);
CREATE INDEX tasks_client_name_trgm_idx ON tasks USING gin (dw_search_text(client_name) gin_trgm_ops);

-- Every assignment decision: the candidates and why the others were not chosen.
CREATE TABLE assignment_decisions (
    decision_id     UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    task_id         UUID NOT NULL,
    decided_at      TIMESTAMPTZ NOT NULL,
    chosen_agent_id TEXT,
    trigger         TEXT NOT NULL,
    candidates      JSONB NOT NULL
);
CREATE INDEX assignment_decisions_task_idx ON assignment_decisions (tenant_id, task_id, decided_at);
