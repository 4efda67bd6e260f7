-- What the send carried, on its log entry (SingleNotification fields 15-21), so callers need no
-- GetMessage: filled from MessageRequested (and the provider id from MessageDispatched). Sends
-- logged before keep empty values: constant defaults, so adding them rewrites no row.
ALTER TABLE single_notifications
    ADD COLUMN contact_id             TEXT  NOT NULL DEFAULT '',
    ADD COLUMN rendered_header        TEXT  NOT NULL DEFAULT '',
    ADD COLUMN header_image_url       TEXT  NOT NULL DEFAULT '',
    ADD COLUMN metadata               JSONB NOT NULL DEFAULT '{}',
    ADD COLUMN additional_information TEXT  NOT NULL DEFAULT '',
    ADD COLUMN webhook_url            TEXT  NOT NULL DEFAULT '',
    ADD COLUMN provider_message_id    TEXT  NOT NULL DEFAULT '';
