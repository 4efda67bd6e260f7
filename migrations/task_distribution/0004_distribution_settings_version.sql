-- The version of a tenant's distribution settings (AIP-154): grows with every manager's change of
-- the settings this service owns, so an update can require the version its caller read.
ALTER TABLE distribution_settings ADD COLUMN version BIGINT NOT NULL DEFAULT 0;
