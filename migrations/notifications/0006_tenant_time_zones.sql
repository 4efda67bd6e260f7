-- Each tenant's time zone, kept from agent-sessions' TenantSettingsChanged (issue 12): the
-- single-notifications log's date filters are dates in it. A tenant without a row is on UTC.
CREATE TABLE tenant_time_zones (
    tenant_id  TEXT PRIMARY KEY,
    time_zone  TEXT NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
