//! Sending a template: `SendTemplate` validates, renders and records `MessageRequested` (the
//! answer comes at once); the dispatcher, a consumer of the service's own `MessageRequested`
//! events, hands the message to the provider after the response, so a crash after the answer
//! loses nothing; permissions arrive from agent-sessions' events.

use dw_ids::TenantId;

use chrono::{DateTime, SubsecRound, Utc};
use dw_bus::{InboundEvent, Projection, ProjectionError};
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::personal;
use dw_eventstore::{EventMetadata, store};
use dw_proto::messaging::v1 as pb;
use sqlx::{PgConnection, PgPool, Row};

use super::message_status::{self, load_message};
use super::{App, AppError, CommandContext, load_template};
use crate::codec;
use crate::domain::message::{Event, Failure};
use crate::domain::send::{self, Permission, Refusal, Resolved, SendFacts};
use crate::domain::send_webhook::AllowedHosts;
use crate::domain::template::{Channel, parse_url};
use crate::domain::{DomainError, PhoneNumber};
use crate::projections;
use crate::providers::{Outcome, Providers};
use dw_eventstore::writes::Write;

pub use crate::domain::send::{Recipient, SendInput, send_permission};

impl App {
    /// `privileged`: managers and services send without the channel's permission.
    pub async fn send(
        &self,
        ctx: &CommandContext,
        privileged: bool,
        input: SendInput,
    ) -> Result<pb::Message, AppError> {
        let local_webhook_hosts = &self.local_webhook_hosts;
        let send = SendCommand { ctx, privileged, input, limits: self.limits, local_webhook_hosts };
        command::execute(&self.pool, ctx, &send).await
    }
}

struct SendCommand<'c> {
    ctx: &'c CommandContext,
    privileged: bool,
    input: SendInput,
    limits: crate::domain::preview::Limits,
    local_webhook_hosts: &'c [String],
}

impl Attempt<DomainError> for SendCommand<'_> {
    type Response = pb::Message;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Message, AppError> {
        let tenant = &self.ctx.tenant;
        let input = &self.input;
        let (template, _) = load_template(conn, tenant, input.template_id)
            .await?
            .ok_or_else(|| DomainError::TemplateNotFound(input.template_id.to_string()))?;
        let permission = if self.privileged {
            Permission::Privileged
        } else {
            let needed = send_permission(template.channel);
            Permission::Agent { granted: projections::has_permission(conn, tenant, &self.ctx.actor, needed).await? }
        };
        let recipient = match &input.recipient {
            Recipient::Phone(phone) => Resolved::Phone(phone.clone()),
            Recipient::Contact(id) => match projections::contact(conn, tenant, *id).await? {
                Some(contact) => Resolved::Contact {
                    contact_id: *id,
                    phone: PhoneNumber::parse(&contact.phone).map_err(AppError::Corrupt)?,
                },
                None => Resolved::UnknownContact(*id),
            },
        };
        let opted_out = match &recipient {
            Resolved::Phone(phone) | Resolved::Contact { phone, .. } if template.channel == Channel::Sms => {
                sms_opted_out(conn, tenant, phone).await?
            }
            _ => false,
        };
        // The tenant's policy for a send's own webhook, read in the send's transaction: a send
        // with a webhook the tenant does not allow is refused now, never accepted and dropped.
        let wants_webhook = input.webhook_url.is_some() || template.content.default_webhook_url.is_some();
        let webhook_hosts =
            if wants_webhook { send_webhook_hosts(conn, tenant).await? } else { AllowedHosts::default() };
        let facts = SendFacts {
            template: &template,
            permission,
            recipient,
            opted_out,
            limits: self.limits,
            webhook_hosts,
            local_webhook_hosts: self.local_webhook_hosts,
        };
        let message = send::decide(facts, input, &self.ctx.actor, uuid::Uuid::now_v7(), now)?;
        let event = Event::Requested(Box::new(message.clone()));
        let stream_id = codec::message_stream(tenant, message.message_id);
        let snapshot = serde_json::to_value(&message).ok();
        // The recipient's key (locked until commit: an erasure of the client waits for this send
        // and then erases it too).
        let key = personal::subject_key(conn, tenant, &codec::client_subject(&message.phone)).await?;
        store::append(
            conn,
            tenant,
            &stream_id,
            0,
            vec![codec::message_event(message.message_id, &event, Some(&key))],
            snapshot,
            &self.ctx.metadata,
        )
        .await?;
        projections::save_message(conn, tenant, &message, 1).await?;
        Ok(codec::message_to_pb(&message))
    }
}

impl From<Refusal> for AppError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rule(rule) => AppError::Rule(rule),
            Refusal::Invalid(problems) => AppError::Invalid(problems),
        }
    }
}

/// The hosts the tenant allows for a send's own webhook (`SetProviderConfig.send_webhooks`).
async fn send_webhook_hosts(conn: &mut PgConnection, tenant: &TenantId) -> Result<AllowedHosts, sqlx::Error> {
    let hosts: Option<Vec<String>> =
        sqlx::query_scalar("SELECT send_webhook_hosts FROM provider_configs WHERE tenant_id = $1")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
    Ok(AllowedHosts::from_stored(hosts.unwrap_or_default()))
}

/// Whether `phone` sent STOP to the tenant's SMS number (and not START since).
async fn sms_opted_out(conn: &mut PgConnection, tenant: &TenantId, phone: &PhoneNumber) -> Result<bool, sqlx::Error> {
    let opted_out: Option<bool> =
        sqlx::query_scalar("SELECT opted_out FROM sms_opt_outs WHERE tenant_id = $1 AND phone = $2")
            .bind(tenant)
            .bind(phone.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    Ok(opted_out == Some(true))
}

/// Validates a send's webhook at the edge (its form); whether the tenant allows its host is the
/// send's rule ([`crate::domain::send_webhook`]).
pub fn parse_webhook(value: &str) -> Result<Option<String>, String> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    parse_url(value.trim()).map(Some)
}

fn metadata_of(event: &InboundEvent) -> EventMetadata {
    EventMetadata {
        correlation_id: event.correlation_id.clone(),
        causation_id: Some(event.event_id.to_string()),
        traceparent: dw_telemetry::current_traceparent(),
    }
}

fn transient(error: impl std::fmt::Display) -> ProjectionError {
    ProjectionError::Transient(error.to_string())
}

/// Hands each requested message to its provider, at most once.
#[derive(Clone)]
pub struct Dispatcher {
    pub pool: PgPool,
    pub providers: Providers,
}

impl Dispatcher {
    /// Keeps the provider's answer in its own transaction, retrying through a database outage
    /// for up to about two minutes: a redelivery then records this answer instead of giving up.
    async fn keep_outcome(&self, tenant: &TenantId, message_id: uuid::Uuid, report: &Event) {
        let (state, provider_id, attempts, failure) = match report {
            Event::Dispatched { provider_message_id, attempts, .. } => {
                ("accepted", Some(provider_message_id.as_str()), *attempts, None)
            }
            Event::Failed { failure, attempts, .. } => ("rejected", None, *attempts, Some(failure)),
            _ => return,
        };
        let mut delay = std::time::Duration::from_millis(100);
        for _ in 0..70 {
            let kept = sqlx::query(
                "UPDATE message_dispatch SET state = $3, provider_message_id = $4, attempts = $5, \
                     failure_code = $6, failure_reason = $7, failure_terminal = $8 \
                 WHERE tenant_id = $1 AND message_id = $2 AND state = 'sending'",
            )
            .bind(tenant)
            .bind(message_id)
            .bind(state)
            .bind(provider_id)
            .bind(i32::try_from(attempts).unwrap_or(i32::MAX))
            .bind(failure.map(|f| f.code.as_str()))
            .bind(failure.map(|f| f.reason.as_str()))
            .bind(failure.map(|f| f.terminal))
            .execute(&self.pool)
            .await;
            match kept {
                Ok(_) => return,
                Err(error) => {
                    tracing::warn!(%error, %message_id, "keeping the provider's answer failed; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(std::time::Duration::from_secs(2));
                }
            }
        }
        tracing::error!(%message_id, "the provider's answer could not be kept; a redelivery records OUTCOME_UNKNOWN");
    }
}

/// What an earlier hand-over of a redelivered request left in `message_dispatch`.
enum Kept {
    /// Recorded already.
    Done,
    /// The provider's answer, kept before an interruption: record it.
    Answer(Event),
    /// Interrupted before the answer was kept.
    Unknown,
}

fn kept_report(row: &sqlx::postgres::PgRow, now: DateTime<Utc>) -> Result<Kept, sqlx::Error> {
    let attempts = u32::try_from(row.try_get::<i32, _>("attempts")?).unwrap_or(1);
    let text = |column: &str| -> Result<String, sqlx::Error> {
        Ok(row.try_get::<Option<String>, _>(column)?.unwrap_or_default())
    };
    Ok(match row.try_get::<String, _>("state")?.as_str() {
        "done" => Kept::Done,
        "accepted" => {
            Kept::Answer(Event::Dispatched { provider_message_id: text("provider_message_id")?, attempts, at: now })
        }
        "rejected" => Kept::Answer(Event::Failed {
            failure: Failure {
                code: text("failure_code")?,
                reason: text("failure_reason")?,
                terminal: row.try_get::<Option<bool>, _>("failure_terminal")?.unwrap_or(true),
            },
            attempts,
            at: now,
        }),
        _ => Kept::Unknown,
    })
}

/// The provider may have the message: never send it twice.
fn outcome_unknown(now: DateTime<Utc>) -> Event {
    let failure = Failure {
        code: "OUTCOME_UNKNOWN".into(),
        reason: "the dispatcher stopped during the hand-over; not sent again".into(),
        terminal: true,
    };
    Event::Failed { failure, attempts: 1, at: now }
}

impl Projection for Dispatcher {
    type Contract = pb::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: pb::Event,
    ) -> Result<(), ProjectionError> {
        use pb::Event as E;
        let requested = match decoded {
            E::MessageRequested(requested) => requested,
            // Only a request is handed to a provider; the subject filter lets only requests through.
            E::InboundMessageReceived(_)
            | E::TemplateCreated(_)
            | E::TemplateUpdated(_)
            | E::TemplateArchived(_)
            | E::ContactUpserted(_)
            | E::MessageDispatched(_)
            | E::MessageDelivered(_)
            | E::MessageRead(_)
            | E::MessageFailed(_)
            | E::ContactOptedOut(_)
            | E::ContactOptedIn(_)
            | E::ProviderConfigChanged(_)
            | E::ClientDataErased(_) => return Ok(()),
        };
        let message_id = requested
            .message
            .and_then(|m| uuid::Uuid::parse_str(&m.message_id).ok())
            .ok_or_else(|| ProjectionError::Permanent("MessageRequested without a message id".into()))?;
        let tenant = &event.tenant_id;
        let metadata = metadata_of(event);

        // Mark the hand-over before making it, in its own committed transaction.
        let claimed = sqlx::query(
            "INSERT INTO message_dispatch (tenant_id, message_id, state) VALUES ($1, $2, 'sending') \
             ON CONFLICT DO NOTHING RETURNING 1 AS one",
        )
        .bind(tenant)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?
        .is_some();
        let now = Utc::now().trunc_subsecs(6);
        // The message's stream row is locked until the outcome is recorded: an erasure of the
        // recipient empties the snapshot before the hand-over reads it or after the outcome is
        // recorded, never between (it waits for the provider's answer, at most its timeout).
        let (report, loaded) = if claimed {
            let Some(loaded) = load_message(conn, tenant, message_id, true).await.map_err(transient)? else {
                return Err(ProjectionError::Permanent(format!("message {message_id} not found")));
            };
            let message = &loaded.0;
            let report = if message.phone.is_erased() {
                // The recipient was erased before the hand-over: there is no one to send to.
                let failure = Failure {
                    code: "RECIPIENT_ERASED".into(),
                    reason: "the recipient's personal data was erased before the message was sent".into(),
                    terminal: true,
                };
                Event::Failed { failure, attempts: 0, at: Utc::now().trunc_subsecs(6) }
            } else {
                match self.providers.send(message).await {
                    Outcome::Accepted { provider_message_id, attempts } => {
                        Event::Dispatched { provider_message_id, attempts, at: Utc::now().trunc_subsecs(6) }
                    }
                    Outcome::Rejected { failure, attempts } => {
                        Event::Failed { failure, attempts, at: Utc::now().trunc_subsecs(6) }
                    }
                }
            };
            self.keep_outcome(tenant, message_id, &report).await;
            (report, loaded)
        } else {
            let kept = sqlx::query(
                "SELECT state, provider_message_id, attempts, failure_code, failure_reason, failure_terminal \
                 FROM message_dispatch WHERE tenant_id = $1 AND message_id = $2",
            )
            .bind(tenant)
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await?;
            let report = match kept {
                Some(row) => match kept_report(&row, now)? {
                    Kept::Done => return Ok(()),
                    Kept::Answer(report) => report,
                    Kept::Unknown => outcome_unknown(now),
                },
                None => outcome_unknown(now),
            };
            let Some(loaded) = load_message(conn, tenant, message_id, true).await.map_err(transient)? else {
                return Err(transient(DomainError::MessageNotFound(message_id.to_string())));
            };
            (report, loaded)
        };
        let provider_id = match &report {
            Event::Dispatched { provider_message_id, .. } => Some(provider_message_id.clone()),
            _ => None,
        };
        // The outcome, the statuses its provider reported before it was recorded (parked) and the
        // hand-over's end in one statement.
        let mut reports = vec![report];
        if let Some(provider_id) = &provider_id {
            message_status::lock_provider_id(conn, tenant, provider_id).await?;
            reports.extend(message_status::take_parked(conn, tenant, provider_id).await.map_err(transient)?);
        }
        let done = Write::new(
            "message_dispatch",
            "UPDATE message_dispatch SET state = 'done' WHERE tenant_id = $1 AND message_id = $2",
        )
        .bind(tenant.clone())
        .bind(message_id);
        message_status::record_reports(conn, tenant, message_id, loaded, reports, &metadata, vec![done])
            .await
            .map_err(transient)?;
        Ok(())
    }
}

pub use dw_bus::permissions::PermissionsProjection;
