-- Raised by a command's writes sent as one statement (`dw_eventstore::writes`) when a stream it
-- appends to moved since the command read it: the error undoes the whole statement (events,
-- outbox rows, read models, idempotency record), and the command is attempted again.
CREATE FUNCTION dw_stream_moved(stream_id TEXT) RETURNS BIGINT LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'stream % moved since it was read', stream_id USING ERRCODE = 'DW409';
END
$$;
