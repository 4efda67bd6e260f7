-- A send's own webhook (SendTemplate.webhook_url): its events are delivered through the tenant's
-- sends endpoint (webhooks.for_sends: its secret signs them, ListDeliveries shows them), each
-- delivery to the send's URL (webhook_deliveries.url; NULL: the endpoint's own url).

ALTER TABLE webhooks ADD COLUMN for_sends BOOLEAN NOT NULL DEFAULT FALSE;
-- One enabled sends endpoint per tenant (a deleted one may be replaced).
CREATE UNIQUE INDEX webhooks_for_sends_idx ON webhooks (tenant_id) WHERE for_sends AND enabled;

ALTER TABLE webhook_deliveries ADD COLUMN url TEXT;

-- Which sends asked for a webhook, and where: the later statuses of a send go there too.
CREATE TABLE send_webhooks (
    tenant_id  TEXT NOT NULL,
    message_id UUID NOT NULL,
    url        TEXT NOT NULL,
    PRIMARY KEY (tenant_id, message_id)
);
