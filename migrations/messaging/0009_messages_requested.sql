-- The messages still waiting for the providers, per tenant: SendTemplate counts them to refuse
-- a tenant's sends while its backlog is full (DW_SEND_BACKLOG_LIMIT).
CREATE INDEX messages_requested_idx ON messages (tenant_id) WHERE status = 'requested';
