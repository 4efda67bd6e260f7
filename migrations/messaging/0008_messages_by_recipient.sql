-- An erasure of a client (EraseClientData) finds the messages sent to their phone.
CREATE INDEX messages_recipient_idx ON messages (tenant_id, recipient);
