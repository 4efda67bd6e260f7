-- no-transaction
-- The newest-first index carries each task's protocol (issue 13): a protocol-prefix search reads
-- the creation range its prefix implies newest first and keeps the protocols that match, from
-- the index alone (an index-only scan once autovacuum has marked the pages visible), then reads
-- the page's 50 tasks. Without the protocol in the index it read every task of the range's tail
-- from the table to drop it: 5,000 rows for a day's prefix in the 1,000,000-task bench, p99 26 ms
-- with a cold cache; from the index, about 45 index pages.
--
-- Built concurrently, so the table's writes go on while it builds (dw_eventstore::migrate polls
-- the migration lock, so replicas starting together do not deadlock with the build); one
-- statement per file, because Postgres runs a file's statements in one transaction. An invalid
-- index an interrupted build left is dropped before the next attempt. 0009 drops the index this
-- one replaces.
CREATE INDEX CONCURRENTLY IF NOT EXISTS tasks_newest_protocol_idx
    ON tasks (tenant_id, created_at DESC, task_id DESC) INCLUDE (protocol);
