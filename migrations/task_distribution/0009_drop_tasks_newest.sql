-- no-transaction
-- Replaced by tasks_newest_protocol_idx (0008), which every query that used it can use.
DROP INDEX CONCURRENTLY IF EXISTS tasks_newest_idx;
