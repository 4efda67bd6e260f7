-- SMS consent per number (opt-out keywords arrive on the inbound SMS webhook).
CREATE TABLE sms_opt_outs (
    tenant_id  TEXT NOT NULL,
    phone      TEXT NOT NULL,
    opted_out  BOOLEAN NOT NULL,
    keyword    TEXT,
    updated_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, phone)
);
