-- Since when a queued task has waited in its current queue: its creation, its re-queue (an agent's
-- day ended) or its transfer into the queue. `queued_at` keeps a re-queued task's original age for
-- the queue order; this column is what waiting is measured from (queue metrics, GetQueueStats).
-- NULL while the task is with an agent or closed, and for rows written before it existed
-- (readers fall back to `queued_at`).
ALTER TABLE tasks ADD COLUMN waiting_since TIMESTAMPTZ;
UPDATE tasks SET waiting_since = queued_at WHERE status = 'queued';
