//! Command handlers: templates and contacts, each run idempotently (by `request_id`) with its
//! events, snapshot and read-model row in one transaction.

pub mod erasure;
pub mod inbound;
pub mod message_status;
pub mod provider_config;
mod reads;
pub mod send;
pub mod send_backlog;

use chrono::{DateTime, Utc};
use dw_eventstore::aggregate::{self, Aggregate, Loaded};
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::{NewEvent, RecordedEvent, personal, store};
use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;
use sqlx::{PgConnection, PgPool, Row};

use crate::codec;
use crate::domain::DomainError;
use crate::domain::contact::{self, Contact, ContactInput};
use crate::domain::template::{self, Channel, Content, Template};
use crate::projections;

/// Every command's error: one of the domain's rules, or the kernel's.
pub type AppError = dw_eventstore::CommandError<DomainError>;

pub use dw_grpc_kit::command::CommandContext;

#[derive(Clone)]
pub struct App {
    pool: PgPool,
    limits: crate::domain::preview::Limits,
    /// Hosts a send's webhook may name despite being local (`DW_WEBHOOK_ALLOWED_HOSTS`).
    local_webhook_hosts: std::sync::Arc<[String]>,
    /// Refuses a tenant's sends while too many of its messages wait for the providers.
    send_backlog: std::sync::Arc<send_backlog::SendBacklog>,
}

impl App {
    pub fn new(pool: PgPool, limits: crate::domain::preview::Limits) -> Self {
        Self {
            pool,
            limits,
            local_webhook_hosts: std::sync::Arc::new([]),
            send_backlog: std::sync::Arc::new(send_backlog::SendBacklog::new(send_backlog::DEFAULT_LIMIT)),
        }
    }

    /// The same, refusing a tenant's sends past the backlog's limit of messages waiting for the
    /// providers.
    pub fn with_send_backlog(self, backlog: send_backlog::SendBacklog) -> Self {
        Self { send_backlog: std::sync::Arc::new(backlog), ..self }
    }

    /// Whether the tenant may send one more message now ([`send_backlog`]).
    pub async fn admit_send(&self, tenant: &dw_ids::TenantId) -> Result<(), send_backlog::AdmitError> {
        self.send_backlog.admit(&self.pool, tenant).await
    }

    /// The same, letting sends' webhooks reach these local hosts (a local cluster, tests) when
    /// the tenant's policy lists them.
    pub fn with_local_webhook_hosts(self, hosts: &[String]) -> Self {
        Self { local_webhook_hosts: hosts.into(), ..self }
    }

    /// What a send may render in this deployment.
    pub fn limits(&self) -> &crate::domain::preview::Limits {
        &self.limits
    }

    pub async fn create_template(
        &self,
        ctx: &CommandContext,
        channel: Channel,
        name: String,
        content: Content,
    ) -> Result<pb::Template, AppError> {
        command::execute(&self.pool, ctx, &CreateTemplate { ctx, channel, name, content }).await
    }

    pub async fn update_template(
        &self,
        ctx: &CommandContext,
        template_id: uuid::Uuid,
        change: TemplateChange,
    ) -> Result<pb::Template, AppError> {
        command::execute(&self.pool, ctx, &ChangeTemplate { ctx, template_id, change }).await
    }

    pub async fn upsert_contact(&self, ctx: &CommandContext, input: ContactInput) -> Result<pb::Contact, AppError> {
        command::execute(&self.pool, ctx, &UpsertContact { ctx, input }).await
    }
}

fn is_unique_violation(error: &sqlx::Error, constraint: &str) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}

/// One template's stream; the state is `None` until its `TemplateCreated`. `actor` is who
/// changes it (the events carry it).
pub struct TemplateStream<'a> {
    pub tenant: &'a TenantId,
    pub template_id: uuid::Uuid,
    pub actor: &'a str,
}

impl Aggregate for TemplateStream<'_> {
    type State = Option<Template>;
    type Event = template::Event;

    fn stream_id(&self) -> String {
        codec::template_stream(self.tenant, self.template_id)
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<template::Event, String> {
        codec::decode_template(recorded).map_err(|e| e.to_string())
    }

    fn encode(&self, event: &template::Event) -> NewEvent {
        codec::encode_template(self.template_id, self.actor, event)
    }

    fn evolve(state: Option<Template>, event: &template::Event) -> Option<Template> {
        template::evolve(state, event)
    }
}

/// A template and its stream version, if it exists in the tenant: its snapshot, or a replay of
/// its stream when there is none or it no longer decodes.
pub async fn load_template(
    conn: &mut PgConnection,
    tenant: &TenantId,
    template_id: uuid::Uuid,
) -> Result<Option<(Template, i64)>, AppError> {
    // A read encodes no event: no actor.
    let loaded = aggregate::load(conn, &TemplateStream { tenant, template_id, actor: "" }).await?;
    Ok(loaded.state.map(|template| (template, loaded.version)))
}

struct CreateTemplate<'c> {
    ctx: &'c CommandContext,
    channel: Channel,
    name: String,
    content: Content,
}

impl Attempt<DomainError> for CreateTemplate<'_> {
    type Response = pb::Template;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Template, AppError> {
        let tenant = &self.ctx.tenant;
        let template = Template {
            template_id: uuid::Uuid::now_v7(),
            channel: self.channel,
            name: self.name.clone(),
            content: self.content.clone(),
            archived: false,
            created_at: now,
            updated_at: now,
        };
        let stream = TemplateStream { tenant, template_id: template.template_id, actor: &self.ctx.actor };
        let events = [template::Event::Created(template)];
        let appended = aggregate::append(conn, tenant, &stream, Loaded::default(), &events, &self.ctx.metadata).await?;
        let created = appended.state.ok_or_else(|| AppError::corrupt("a created template has no state"))?;
        match projections::save_template(conn, tenant, &created, appended.version).await {
            Ok(()) => Ok(codec::template_to_pb(&created, appended.version)),
            Err(error) if is_unique_violation(&error, "templates_active_name_key") => {
                Err(DomainError::TemplateNameTaken(self.channel.as_str().to_owned(), self.name.clone()).into())
            }
            Err(error) => Err(error.into()),
        }
    }
}

/// What a manager does to an existing template.
pub enum TemplateChange {
    Update(Box<template::ContentUpdate>),
    Archive,
}

struct ChangeTemplate<'c> {
    ctx: &'c CommandContext,
    template_id: uuid::Uuid,
    change: TemplateChange,
}

impl Attempt<DomainError> for ChangeTemplate<'_> {
    type Response = pb::Template;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Template, AppError> {
        let tenant = &self.ctx.tenant;
        let stream = TemplateStream { tenant, template_id: self.template_id, actor: &self.ctx.actor };
        let loaded = aggregate::load(conn, &stream).await?;
        let Some(state) = &loaded.state else {
            return Err(DomainError::TemplateNotFound(self.template_id.to_string()).into());
        };
        let events = match &self.change {
            TemplateChange::Update(update) => {
                let current_version = u64::try_from(loaded.version).unwrap_or_default();
                template::update(state, current_version, update.as_ref().clone(), now)?
            }
            TemplateChange::Archive => template::archive(state, now)?,
        };
        if events.is_empty() {
            return Ok(codec::template_to_pb(state, loaded.version));
        }
        let appended = aggregate::append(conn, tenant, &stream, loaded, &events, &self.ctx.metadata).await?;
        let changed = appended.state.ok_or_else(|| AppError::corrupt(format!("template {} lost", self.template_id)))?;
        projections::save_template(conn, tenant, &changed, appended.version).await?;
        Ok(codec::template_to_pb(&changed, appended.version))
    }
}

struct UpsertContact<'c> {
    ctx: &'c CommandContext,
    input: ContactInput,
}

impl Attempt<DomainError> for UpsertContact<'_> {
    type Response = pb::Contact;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Contact, AppError> {
        let tenant = &self.ctx.tenant;
        let existing_id: Option<uuid::Uuid> =
            sqlx::query("SELECT contact_id FROM contacts WHERE tenant_id = $1 AND phone = $2")
                .bind(tenant)
                .bind(self.input.phone.as_str())
                .fetch_optional(&mut *conn)
                .await?
                .map(|row| row.try_get("contact_id"))
                .transpose()?;
        let existing = match existing_id {
            Some(id) => {
                let stream = store::load_stream(conn, &codec::contact_stream(tenant, id)).await?;
                let contact: Contact = stream
                    .snapshot
                    .and_then(|s| serde_json::from_value(s).ok())
                    .ok_or_else(|| AppError::Corrupt(format!("contact {id}")))?;
                Some((contact, stream.version))
            }
            None => None,
        };
        let version = existing.as_ref().map_or(0, |(_, v)| *v);
        let Some(contact) =
            contact::upsert(existing.as_ref().map(|(c, _)| c), self.input.clone(), uuid::Uuid::now_v7(), now)
        else {
            let (unchanged, version) = existing.ok_or(AppError::Corrupt("no contact".into()))?;
            return Ok(codec::contact_to_pb(&unchanged, version));
        };
        let new_version = version + 1;
        let view = codec::contact_to_pb(&contact, new_version);
        let key = personal::subject_key(conn, tenant, &codec::client_subject(&contact.phone)).await?;
        let event = codec::contact_upserted(&view, &self.ctx.actor, &key);
        let stream_id = codec::contact_stream(tenant, contact.contact_id);
        let snapshot = serde_json::to_value(&contact).ok();
        store::append(conn, tenant, &stream_id, version, vec![event], snapshot, &self.ctx.metadata).await?;
        match projections::save_contact(conn, tenant, &contact, new_version).await {
            Ok(()) => Ok(view),
            // Another request created this phone's contact first: retry finds it.
            Err(error) if is_unique_violation(&error, "contacts_phone_key") => Err(AppError::Conflict),
            Err(error) => Err(error.into()),
        }
    }
}
