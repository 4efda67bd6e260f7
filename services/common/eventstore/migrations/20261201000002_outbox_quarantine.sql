-- Outbox entries JetStream refuses for good (e.g. larger than the server's max_payload), set
-- aside by the relay so every other aggregate's events keep flowing. The outbox row stays: the
-- entry and every later event of the same stream wait until an operator releases it
-- (`<service> quarantine release`), so no consumer sees that stream out of order.
CREATE TABLE outbox_quarantine (
    position        BIGINT PRIMARY KEY,
    global_position BIGINT NOT NULL REFERENCES events (global_position),
    stream_id       TEXT NOT NULL,
    tenant_id       TEXT NOT NULL,
    event_id        UUID NOT NULL,
    event_type      TEXT NOT NULL,
    reason          TEXT NOT NULL,
    held_at         TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX outbox_quarantine_stream_idx ON outbox_quarantine (stream_id, position);
