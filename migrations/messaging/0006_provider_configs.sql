-- Each tenant's provider accounts: what its webhooks must name (the WhatsApp phone number id, the
-- SMS account sid) and the secrets they are verified with. Set by SetProviderConfig (role
-- manager), read by the webhook handlers. This table is the state of the `providers:<tenant>`
-- stream, whose ProviderConfigChanged events carry no secret: the secrets live only here.
--
-- The secrets are AES-256-GCM ciphertexts under DW_PROVIDER_SECRETS_KEY: a format byte (1), the
-- 12-byte random nonce, then the ciphertext and its tag; the tenant id and the column name are
-- the associated data, so a value copied to another row or column does not decrypt.
--
-- No uniqueness across tenants on the account ids: a tenant naming another's phone number id
-- gains nothing (webhooks are verified on the path's tenant and its own secret), while a unique
-- index would let one tenant squat another's id and learn which ids are in use.
CREATE TABLE provider_configs (
    tenant_id                TEXT PRIMARY KEY,
    whatsapp_phone_number_id TEXT,
    whatsapp_app_secret      BYTEA,
    whatsapp_verify_token    BYTEA,
    sms_account_sid          TEXT,
    sms_auth_token           BYTEA,
    version                  BIGINT NOT NULL,
    updated_at               TIMESTAMPTZ NOT NULL,
    updated_by               TEXT NOT NULL,
    CONSTRAINT provider_configs_whatsapp_complete CHECK (
        (whatsapp_phone_number_id IS NULL) = (whatsapp_app_secret IS NULL)
        AND (whatsapp_app_secret IS NULL) = (whatsapp_verify_token IS NULL)),
    CONSTRAINT provider_configs_sms_complete CHECK ((sms_account_sid IS NULL) = (sms_auth_token IS NULL))
);
