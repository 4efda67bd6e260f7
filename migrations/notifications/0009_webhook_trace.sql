-- The trace of the event that queued a webhook delivery, so every attempt joins the trace of the
-- user action behind it (as push_jobs.traceparent does for Web Push).
ALTER TABLE webhook_deliveries ADD COLUMN traceparent TEXT;
