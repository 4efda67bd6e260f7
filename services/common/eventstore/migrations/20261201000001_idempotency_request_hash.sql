-- What the first request under a key asked for (SHA-256 of its encoded body): a retry with the
-- same request id and another body is refused instead of answered with the first response.
-- Rows written before this column existed have no hash and are matched by operation only.
ALTER TABLE idempotency_keys ADD COLUMN request_hash BYTEA;
