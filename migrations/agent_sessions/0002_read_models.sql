-- agent-sessions' own read models, updated in the same transaction as the events they reflect.

CREATE TABLE tenant_settings (
    tenant_id                 TEXT PRIMARY KEY,
    auto_distribution_enabled BOOLEAN NOT NULL,
    exit_reasons              JSONB NOT NULL,
    break_reasons             JSONB NOT NULL,
    ticket_workspace_url      TEXT,
    version                   BIGINT NOT NULL,
    updated_at                TIMESTAMPTZ NOT NULL
);

CREATE TABLE agents (
    tenant_id     TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    display_name  TEXT NOT NULL,
    registered_at TIMESTAMPTZ NOT NULL,
    version       BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE agent_departments (
    tenant_id     TEXT NOT NULL,
    agent_id      TEXT NOT NULL,
    department_id TEXT NOT NULL,
    linked_at     TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, department_id)
);
CREATE INDEX agent_departments_department_idx ON agent_departments (tenant_id, department_id, agent_id);

CREATE TABLE agent_permissions (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    permission TEXT NOT NULL,
    granted_at TIMESTAMPTZ NOT NULL,
    granted_by TEXT NOT NULL,
    PRIMARY KEY (tenant_id, agent_id, permission)
);

-- The supervisor's live board: one row per registered agent.
CREATE TABLE agent_status (
    tenant_id    TEXT NOT NULL,
    agent_id     TEXT NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('off', 'working', 'on_break', 'exit_notified')),
    status_since TIMESTAMPTZ NOT NULL,
    day_id       UUID,
    reason_id    TEXT,
    reason_label TEXT,
    version      BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, agent_id)
);

CREATE TABLE service_days (
    tenant_id      TEXT NOT NULL,
    day_id         UUID NOT NULL,
    agent_id       TEXT NOT NULL,
    started_at     TIMESTAMPTZ NOT NULL,
    ended_at       TIMESTAMPTZ,
    total_break_ms BIGINT NOT NULL DEFAULT 0,
    department_ids JSONB NOT NULL DEFAULT '[]',
    PRIMARY KEY (tenant_id, day_id)
);
CREATE INDEX service_days_agent_idx ON service_days (tenant_id, agent_id, started_at DESC);

CREATE TABLE service_day_breaks (
    tenant_id    TEXT NOT NULL,
    day_id       UUID NOT NULL,
    seq          INTEGER NOT NULL,
    started_at   TIMESTAMPTZ NOT NULL,
    ended_at     TIMESTAMPTZ,
    duration_ms  BIGINT,
    reason_id    TEXT,
    reason_label TEXT,
    PRIMARY KEY (tenant_id, day_id, seq)
);

CREATE TABLE service_day_exits (
    tenant_id    TEXT NOT NULL,
    day_id       UUID NOT NULL,
    seq          INTEGER NOT NULL,
    reason_id    TEXT NOT NULL,
    reason_label TEXT NOT NULL,
    notified_at  TIMESTAMPTZ NOT NULL,
    closed_at    TIMESTAMPTZ,
    close_cause  TEXT CHECK (close_cause IN ('cancelled', 'break_started', 'day_ended')),
    PRIMARY KEY (tenant_id, day_id, seq)
);
