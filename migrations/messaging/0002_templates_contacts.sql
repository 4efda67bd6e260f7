-- messaging-templates' read models: templates and CRM contacts.

CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE EXTENSION IF NOT EXISTS unaccent;

-- Case- and accent-insensitive search text (see task_distribution's migration for why).
CREATE FUNCTION dw_search_text(value text) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE STRICT
    AS $$ SELECT lower(public.unaccent('public.unaccent'::regdictionary, value)) $$;

CREATE TABLE templates (
    tenant_id           TEXT NOT NULL,
    template_id         UUID NOT NULL,
    channel             TEXT NOT NULL CHECK (channel IN ('whatsapp', 'sms')),
    name                TEXT NOT NULL,
    department_id       TEXT,
    archived            BOOLEAN NOT NULL DEFAULT FALSE,
    -- The whole template as the API returns it (protobuf JSON is not needed: the domain's JSON).
    state               JSONB NOT NULL,
    version             BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, template_id)
);
CREATE UNIQUE INDEX templates_active_name_key ON templates (tenant_id, channel, name) WHERE NOT archived;
CREATE INDEX templates_listing_idx ON templates (tenant_id, name, template_id);

CREATE TABLE contacts (
    tenant_id     TEXT NOT NULL,
    contact_id    UUID NOT NULL,
    name          TEXT NOT NULL,
    phone         TEXT NOT NULL,
    external_id   TEXT,
    tags          TEXT[] NOT NULL DEFAULT '{}',
    sms_opted_out BOOLEAN NOT NULL DEFAULT FALSE,
    version       BIGINT NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, contact_id),
    CONSTRAINT contacts_phone_key UNIQUE (tenant_id, phone)
);
CREATE INDEX contacts_name_trgm_idx ON contacts USING gin (dw_search_text(name) gin_trgm_ops);
