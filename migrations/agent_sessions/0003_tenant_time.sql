-- Tenants' time zones and the break-reason rule (issue 12). Service days carry their date in the
-- tenant's zone; days recorded before zones existed keep the UTC date they were read with.
ALTER TABLE tenant_settings
    ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC',
    ADD COLUMN break_reason_optional BOOLEAN NOT NULL DEFAULT FALSE;

ALTER TABLE service_days ADD COLUMN service_date DATE;
UPDATE service_days SET service_date = (started_at AT TIME ZONE 'UTC')::date;
ALTER TABLE service_days ALTER COLUMN service_date SET NOT NULL;
CREATE INDEX service_days_agent_date_idx ON service_days (tenant_id, agent_id, service_date DESC);
