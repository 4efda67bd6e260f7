-- Event store, outbox and consumer bookkeeping shared by every service (dw-eventstore, dw-bus).
-- Each service has its own database and carries this schema in its own migration folder.

-- One row per stream: the optimistic-concurrency guard and an optional state snapshot, updated in
-- the same transaction as the append.
CREATE TABLE streams (
    stream_id   TEXT PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    version     BIGINT NOT NULL CHECK (version >= 0),
    snapshot    JSONB,
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Append-only log of every domain event.
CREATE TABLE events (
    global_position BIGSERIAL PRIMARY KEY,
    event_id        UUID NOT NULL UNIQUE,
    tenant_id       TEXT NOT NULL,
    stream_id       TEXT NOT NULL,
    version         BIGINT NOT NULL CHECK (version > 0),
    event_type      TEXT NOT NULL,
    -- `<aggregate>.<event>`: the NATS subject is `<prefix>.<tenant>.<subject>`.
    subject         TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    correlation_id  TEXT,
    causation_id    TEXT,
    traceparent     TEXT,
    recorded_at     TIMESTAMPTZ NOT NULL,
    CONSTRAINT events_stream_version_key UNIQUE (stream_id, version)
);
CREATE INDEX events_tenant_position_idx ON events (tenant_id, global_position);

-- Events committed but not yet confirmed by JetStream; the relay deletes a row after the ack.
CREATE TABLE outbox (
    position        BIGSERIAL PRIMARY KEY,
    global_position BIGINT NOT NULL REFERENCES events (global_position)
);

-- Responses of mutating RPCs by client-chosen request id (idempotent retries).
CREATE TABLE idempotency_keys (
    tenant_id   TEXT NOT NULL,
    principal   TEXT NOT NULL,
    request_id  TEXT NOT NULL,
    operation   TEXT NOT NULL,
    response    BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, principal, request_id)
);
CREATE INDEX idempotency_keys_created_idx ON idempotency_keys (created_at);

-- Events a consumer has applied (effectively-once projections).
CREATE TABLE processed_events (
    consumer     TEXT NOT NULL,
    event_id     UUID NOT NULL,
    processed_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);

-- Last stream sequence applied per consumer (lag and rebuild bookkeeping).
CREATE TABLE consumer_positions (
    consumer        TEXT PRIMARY KEY,
    stream_sequence BIGINT NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);

-- Events a consumer gave up on after max_deliver attempts (or could not decode).
CREATE TABLE dead_letters (
    id              BIGSERIAL PRIMARY KEY,
    consumer        TEXT NOT NULL,
    stream          TEXT NOT NULL,
    stream_sequence BIGINT NOT NULL,
    subject         TEXT NOT NULL,
    event_id        TEXT,
    event_type      TEXT,
    tenant_id       TEXT,
    headers         JSONB NOT NULL,
    payload         BYTEA NOT NULL,
    error           TEXT NOT NULL,
    deliveries      BIGINT NOT NULL,
    failed_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    replayed_at     TIMESTAMPTZ
);
CREATE INDEX dead_letters_consumer_idx ON dead_letters (consumer, id);
