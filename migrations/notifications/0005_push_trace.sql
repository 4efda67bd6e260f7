-- The trace of the event that queued a push, so the push joins the user action's trace.
ALTER TABLE push_jobs ADD COLUMN traceparent TEXT;
