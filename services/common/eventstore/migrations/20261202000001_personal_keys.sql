-- Crypto-shredding: the personal fields of events (a client's name, phone, message text) are
-- sealed with a key per data subject (e.g. `phone:+5511…`) kept here. Erasing the subject deletes
-- its row: every event sealed with the key then reads as erased, in replays and rebuilds alike.
-- The subject column names the person, so it goes with the row.
CREATE TABLE personal_keys (
    tenant_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    key_id     UUID NOT NULL UNIQUE,
    key        BYTEA NOT NULL CHECK (length(key) = 32),
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, subject)
);

-- The bus copy of an event whose stored payload has sealed fields: published by the relay
-- instead of the stored payload (other services read the fields in the clear), and gone with the
-- outbox row once JetStream has it.
ALTER TABLE outbox ADD COLUMN payload BYTEA;
