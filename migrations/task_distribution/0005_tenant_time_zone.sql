-- The tenant's time zone, kept from agent-sessions' TenantSettingsChanged (issue 12): protocols
-- are dated, and their daily sequence counted, in the tenant's local calendar.
ALTER TABLE distribution_settings ADD COLUMN time_zone TEXT NOT NULL DEFAULT 'UTC';
