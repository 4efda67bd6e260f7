//! The read models, fed by durable consumers (each event applied once, in stream order):
//! messaging's events build the single-notifications log and tell agents their sends failed;
//! distribution's events tell agents about their tasks and their clients' messages.

use chrono::{DateTime, Utc};
use dw_bus::{InboundEvent, Projection, ProjectionError};
use dw_proto::distribution::v1 as distribution;
use dw_proto::messaging::v1 as messaging;
use prost::Message;
use sqlx::{PgConnection, Row};

/// The channel every new agent notification is announced on (payload `tenant\tagent`).
pub const CHANNEL: &str = "dw_agent_notifications";

fn decode<M: Message + Default>(event: &InboundEvent) -> Result<M, ProjectionError> {
    M::decode(event.payload.as_ref()).map_err(|e| ProjectionError::Permanent(format!("{}: {e}", event.event_type)))
}

fn time(ts: Option<&prost_types::Timestamp>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ts.and_then(dw_proto::time::datetime).unwrap_or(fallback)
}

pub fn status_from_name(name: &str) -> messaging::MessageStatus {
    match name {
        "requested" => messaging::MessageStatus::Requested,
        "dispatched" => messaging::MessageStatus::Dispatched,
        "delivered" => messaging::MessageStatus::Delivered,
        "read" => messaging::MessageStatus::Read,
        "failed" => messaging::MessageStatus::Failed,
        _ => messaging::MessageStatus::Unspecified,
    }
}

pub fn channel_name(channel: i32) -> &'static str {
    match messaging::Channel::try_from(channel) {
        Ok(messaging::Channel::Whatsapp) => "whatsapp",
        Ok(messaging::Channel::Sms) => "sms",
        _ => "unspecified",
    }
}

/// What an agent is told.
pub struct Note<'a> {
    pub kind: &'a str,
    pub task_id: Option<uuid::Uuid>,
    pub message_id: Option<uuid::Uuid>,
    pub title: &'a str,
    pub body: &'a str,
}

/// Adds a notification for an agent with the next sequence number, announced at commit.
pub async fn notify_agent(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    note: Note<'_>,
) -> Result<(), sqlx::Error> {
    let Note { kind, task_id, message_id, title, body } = note;
    let seq: i64 = sqlx::query(
        "INSERT INTO agent_cursors (tenant_id, agent_id, last_seq) VALUES ($1, $2, 1) \
         ON CONFLICT (tenant_id, agent_id) DO UPDATE SET last_seq = agent_cursors.last_seq + 1 RETURNING last_seq",
    )
    .bind(tenant)
    .bind(agent)
    .fetch_one(&mut *conn)
    .await?
    .try_get("last_seq")?;
    sqlx::query(
        "INSERT INTO agent_notifications (tenant_id, agent_id, seq, kind, task_id, message_id, title, body) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant)
    .bind(agent)
    .bind(seq)
    .bind(kind)
    .bind(task_id)
    .bind(message_id)
    .bind(title)
    .bind(body)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(format!("{tenant}\t{agent}")).execute(conn).await?;
    Ok(())
}

fn uuid_of(value: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(value).ok()
}

/// messaging's events: the log, and failed sends for their agents.
#[derive(Clone, Default)]
pub struct MessagingProjection;

impl Projection for MessagingProjection {
    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent) -> Result<(), ProjectionError> {
        let tenant = event.tenant_id.as_str();
        let (message_id, status, at, detail) = match event.event_type.as_str() {
            "dw.messaging.v1.MessageRequested" => {
                let m: messaging::MessageRequested = decode(event)?;
                let Some(message) = m.message else { return Ok(()) };
                let requested_at = time(message.requested_at.as_ref(), event.time);
                let timeline = serde_json::json!([{"status": "requested", "at": requested_at, "detail": ""}]);
                sqlx::query(
                    "INSERT INTO single_notifications (tenant_id, message_id, channel, status, template_id, template_name, \
                         agent_id, department_id, recipient_phone, rendered_body, timeline, requested_at, updated_at) \
                     VALUES ($1, $2, $3, 'requested', $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT DO NOTHING",
                )
                .bind(tenant)
                .bind(uuid_of(&message.message_id))
                .bind(channel_name(message.channel))
                .bind(&message.template_id)
                .bind(&message.template_name)
                .bind(&message.agent_id)
                .bind(Some(message.department_id.clone()).filter(|d| !d.is_empty()))
                .bind(&message.recipient_phone)
                .bind(&message.rendered_body)
                .bind(timeline)
                .bind(requested_at)
                .execute(&mut *conn)
                .await?;
                let data = serde_json::json!({
                    "message_id": message.message_id,
                    "template_id": message.template_id,
                    "template_name": message.template_name,
                    "channel": channel_name(message.channel),
                    "recipient_phone": message.recipient_phone,
                    "contact_id": message.contact_id,
                    "rendered_body": message.rendered_body,
                    "variables": message.variables,
                    "department_id": message.department_id,
                    "agent_id": message.agent_id,
                    "metadata": message.metadata,
                    "additional_information": message.additional_information,
                    "requested_at": requested_at,
                });
                let send_url = Some(message.webhook_url.as_str()).filter(|u| !u.is_empty());
                crate::webhooks::enqueue(conn, tenant, "template.sent", send_url, data).await?;
                return Ok(());
            }
            "dw.messaging.v1.MessageDispatched" => {
                let m: messaging::MessageDispatched = decode(event)?;
                let detail = format!("{} attempt(s), provider id {}", m.attempts, m.provider_message_id);
                (m.message_id, "dispatched", time(m.dispatched_at.as_ref(), event.time), detail)
            }
            "dw.messaging.v1.MessageDelivered" => {
                let m: messaging::MessageDelivered = decode(event)?;
                (m.message_id, "delivered", time(m.delivered_at.as_ref(), event.time), String::new())
            }
            "dw.messaging.v1.MessageRead" => {
                let m: messaging::MessageRead = decode(event)?;
                (m.message_id, "read", time(m.read_at.as_ref(), event.time), String::new())
            }
            "dw.messaging.v1.MessageFailed" => {
                let m: messaging::MessageFailed = decode(event)?;
                let at = time(m.failed_at.as_ref(), event.time);
                let id = uuid_of(&m.message_id);
                let row = sqlx::query(
                    "UPDATE single_notifications SET status = 'failed', failure_code = $3, failure_reason = $4, \
                         timeline = timeline || jsonb_build_array(jsonb_build_object('status', 'failed', 'at', $5::timestamptz, 'detail', $4)), \
                         updated_at = $5 \
                     WHERE tenant_id = $1 AND message_id = $2 RETURNING agent_id, template_name, recipient_phone",
                )
                .bind(tenant)
                .bind(id)
                .bind(&m.code)
                .bind(&m.reason)
                .bind(at)
                .fetch_optional(&mut *conn)
                .await?;
                let data =
                    serde_json::json!({"message_id": m.message_id, "code": m.code, "reason": m.reason, "at": at});
                crate::webhooks::enqueue(conn, tenant, "message.failed", None, data).await?;
                if let Some(row) = row {
                    let agent: String = row.try_get("agent_id")?;
                    let template: String = row.try_get("template_name")?;
                    let phone: String = row.try_get("recipient_phone")?;
                    let body = format!("{template} to {phone}: {} ({})", m.reason, m.code);
                    let note = Note {
                        kind: "send_failed",
                        task_id: None,
                        message_id: id,
                        title: "A send failed",
                        body: &body,
                    };
                    notify_agent(conn, tenant, &agent, note).await?;
                }
                return Ok(());
            }
            _ => return Ok(()),
        };
        // Forward only: late or repeated statuses change nothing.
        sqlx::query(
            "UPDATE single_notifications SET status = $3, \
                 timeline = timeline || jsonb_build_array(jsonb_build_object('status', $3, 'at', $4::timestamptz, 'detail', $5)), \
                 updated_at = $4 \
             WHERE tenant_id = $1 AND message_id = $2 AND status <> 'failed' \
               AND array_position(ARRAY['requested', 'dispatched', 'delivered', 'read'], status) \
                 < array_position(ARRAY['requested', 'dispatched', 'delivered', 'read'], $3::text)",
        )
        .bind(tenant)
        .bind(uuid_of(&message_id))
        .bind(status)
        .bind(at)
        .bind(&detail)
        .execute(&mut *conn)
        .await?;
        let data = serde_json::json!({"message_id": message_id, "status": status, "at": at, "detail": detail});
        crate::webhooks::enqueue(conn, tenant, &format!("message.{status}"), None, data).await?;
        Ok(())
    }
}

/// distribution's events: who holds which task; assignments and client messages for agents.
#[derive(Clone, Default)]
pub struct DistributionProjection;

async fn set_holder(conn: &mut PgConnection, tenant: &str, task: &str, agent: Option<&str>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO task_holders (tenant_id, task_id, agent_id) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, task_id) DO UPDATE SET agent_id = EXCLUDED.agent_id",
    )
    .bind(tenant)
    .bind(uuid_of(task))
    .bind(agent)
    .execute(conn)
    .await?;
    Ok(())
}

/// A browser push for a task that became the agent's (the agent may be in another tab).
async fn push_task_assigned(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    task_id: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    let payload = serde_json::json!({
        "kind": "task_assigned",
        "title": "Task assigned",
        "body": body,
        "task_id": task_id,
    });
    crate::push::enqueue(conn, tenant, agent, &payload).await
}

impl Projection for DistributionProjection {
    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent) -> Result<(), ProjectionError> {
        let tenant = event.tenant_id.as_str();
        match event.event_type.as_str() {
            "dw.distribution.v1.TaskAssigned" => {
                let m: distribution::TaskAssigned = decode(event)?;
                set_holder(conn, tenant, &m.task_id, Some(&m.agent_id)).await?;
                let body = format!("A task of {} is yours", m.department_id);
                let note = Note {
                    kind: "task_assigned",
                    task_id: uuid_of(&m.task_id),
                    message_id: None,
                    title: "Task assigned",
                    body: &body,
                };
                notify_agent(conn, tenant, &m.agent_id, note).await?;
                push_task_assigned(conn, tenant, &m.agent_id, &m.task_id, &body).await?;
            }
            "dw.distribution.v1.TaskClaimed" => {
                let m: distribution::TaskClaimed = decode(event)?;
                set_holder(conn, tenant, &m.task_id, Some(&m.agent_id)).await?;
            }
            "dw.distribution.v1.TaskTransferred" => {
                let m: distribution::TaskTransferred = decode(event)?;
                let to = Some(m.to_agent_id.as_str()).filter(|a| !a.is_empty());
                set_holder(conn, tenant, &m.task_id, to).await?;
                if let Some(agent) = to {
                    let body = format!("Transferred to you by {}", m.transferred_by);
                    let note = Note {
                        kind: "task_assigned",
                        task_id: uuid_of(&m.task_id),
                        message_id: None,
                        title: "Task assigned",
                        body: &body,
                    };
                    notify_agent(conn, tenant, agent, note).await?;
                    push_task_assigned(conn, tenant, agent, &m.task_id, &body).await?;
                }
            }
            "dw.distribution.v1.TaskRequeued" => {
                let m: distribution::TaskRequeued = decode(event)?;
                set_holder(conn, tenant, &m.task_id, None).await?;
            }
            "dw.distribution.v1.TaskCompleted" => {
                let m: distribution::TaskCompleted = decode(event)?;
                set_holder(conn, tenant, &m.task_id, None).await?;
            }
            "dw.distribution.v1.TaskCancelled" => {
                let m: distribution::TaskCancelled = decode(event)?;
                set_holder(conn, tenant, &m.task_id, None).await?;
            }
            "dw.distribution.v1.TaskMessageRecorded" => {
                let m: distribution::TaskMessageRecorded = decode(event)?;
                if !m.agent_id.is_empty() {
                    let text: String = m.text.chars().take(500).collect();
                    let note = Note {
                        kind: "client_message",
                        task_id: uuid_of(&m.task_id),
                        message_id: uuid_of(&m.message_id),
                        title: "New client message",
                        body: &text,
                    };
                    notify_agent(conn, tenant, &m.agent_id, note).await?;
                    let payload = serde_json::json!({
                        "kind": "client_message",
                        "title": "New client message",
                        "body": text,
                        "task_id": m.task_id,
                        "message_id": m.message_id,
                    });
                    crate::push::enqueue(conn, tenant, &m.agent_id, &payload).await?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}
