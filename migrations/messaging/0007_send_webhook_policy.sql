-- The tenant's destination policy for the webhooks of its sends (SetProviderConfig's
-- send_webhooks): the hosts a SendTemplate's webhook_url (or its template's default) may name.
-- Empty: every send with a webhook is refused. Read by SendTemplate in its own transaction, so a
-- policy change applies to the next send at once.
ALTER TABLE provider_configs ADD COLUMN send_webhook_hosts TEXT[] NOT NULL DEFAULT '{}';
