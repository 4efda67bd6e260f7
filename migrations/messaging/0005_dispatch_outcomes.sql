-- The provider's answer is kept as soon as it arrives, in its own transaction: if recording the
-- dispatch then fails (the database restarts, the process dies), the redelivered request records
-- that answer instead of giving up with OUTCOME_UNKNOWN.
ALTER TABLE message_dispatch DROP CONSTRAINT message_dispatch_state_check;
ALTER TABLE message_dispatch ADD CONSTRAINT message_dispatch_state_check
    CHECK (state IN ('sending', 'accepted', 'rejected', 'done'));
ALTER TABLE message_dispatch
    ADD COLUMN provider_message_id TEXT,
    ADD COLUMN failure_code TEXT,
    ADD COLUMN failure_reason TEXT,
    ADD COLUMN failure_terminal BOOLEAN;

-- Statuses a provider reported for an id we have not recorded yet (its webhook can overtake the
-- commit of the dispatch). They are applied when the dispatch is recorded; statuses for ids that
-- never become ours (other systems on the same number) are dropped after 7 days.
CREATE TABLE parked_statuses (
    tenant_id           TEXT NOT NULL,
    provider_message_id TEXT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('delivered', 'read', 'failed')),
    failure_code        TEXT,
    failure_reason      TEXT,
    at                  TIMESTAMPTZ NOT NULL,
    received_at         TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, provider_message_id, status)
);
CREATE INDEX parked_statuses_received_idx ON parked_statuses (received_at);
