-- Outbound webhooks: endpoints, deliveries (one per event per endpoint; the webhook-id) and
-- every attempt.

CREATE TABLE webhooks (
    tenant_id       TEXT NOT NULL,
    webhook_id      UUID NOT NULL,
    url             TEXT NOT NULL,
    description     TEXT NOT NULL,
    event_types     TEXT[] NOT NULL,
    secret          TEXT NOT NULL,
    enabled         BOOLEAN NOT NULL DEFAULT TRUE,
    disabled_reason TEXT,
    failing_since   TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, webhook_id)
);
CREATE INDEX webhooks_url_idx ON webhooks (tenant_id, url) WHERE enabled;

CREATE TABLE webhook_deliveries (
    delivery_id     UUID PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    webhook_id      UUID NOT NULL,
    event_type      TEXT NOT NULL,
    body            TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'succeeded', 'failed', 'gave_up')),
    attempt_count   INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX webhook_deliveries_due_idx ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_webhook_idx ON webhook_deliveries (tenant_id, webhook_id, created_at DESC);

CREATE TABLE webhook_attempts (
    delivery_id UUID NOT NULL,
    attempt     INTEGER NOT NULL,
    at          TIMESTAMPTZ NOT NULL,
    status_code INTEGER NOT NULL,
    latency_ms  BIGINT NOT NULL,
    error       TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
