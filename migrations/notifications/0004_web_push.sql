-- Browser push subscriptions and the pushes owed to them.
CREATE TABLE push_subscriptions (
    tenant_id  TEXT NOT NULL,
    agent_id   TEXT NOT NULL,
    endpoint   TEXT NOT NULL,
    p256dh     TEXT NOT NULL,
    auth       TEXT NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, endpoint)
);
CREATE INDEX push_subscriptions_agent_idx ON push_subscriptions (tenant_id, agent_id);

CREATE TABLE push_jobs (
    job_id          UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    endpoint        TEXT NOT NULL,
    payload         TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'dropped', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    sent_at         TIMESTAMPTZ,
    last_status     INTEGER
);
CREATE INDEX push_jobs_due_idx ON push_jobs (next_attempt_at) WHERE status = 'pending';
