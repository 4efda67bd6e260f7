//! The log from messaging's events: a row per send, moved forward by its statuses; a webhook
//! delivery queued per status for the endpoints subscribed to it, and for the send's own webhook
//! when it asked for one; failed sends told to their agent.

use dw_bus::{InboundEvent, Projection, ProjectionError};
use dw_proto::messaging::v1 as messaging;
use sqlx::{PgConnection, Row};

use super::outbound::{SendWebhook, enqueue_send_webhook, enqueue_webhooks, remember_send_webhook};
use super::{Note, notify_agent, time, uuid_of};
use crate::domain::notification::{Kind, channel_name};

/// A client erased in messaging (`ClientDataErased`): the copies kept here of the messages sent
/// to them lose the client (phone, rendered texts, variables, additional information) in the
/// log, in the webhook deliveries not sent yet or kept for the delivery log, and in the agents'
/// failed-send notices; statuses, times and counts stay.
async fn erase_send_copies(conn: &mut PgConnection, tenant: &str, message_ids: &[String]) -> Result<(), sqlx::Error> {
    let ids: Vec<uuid::Uuid> = message_ids.iter().filter_map(|id| uuid::Uuid::parse_str(id).ok()).collect();
    if ids.is_empty() {
        return Ok(());
    }
    let texts: Vec<String> = ids.iter().map(uuid::Uuid::to_string).collect();
    // The notices name the phone ("<template> to <phone>: …"): taken out before the log forgets it.
    sqlx::query(
        "UPDATE agent_notifications a SET body = replace(a.body, s.recipient_phone, '(erased)') \
         FROM single_notifications s \
         WHERE a.tenant_id = $1 AND a.message_id = ANY($2) AND s.tenant_id = a.tenant_id \
           AND s.message_id = a.message_id AND s.recipient_phone <> ''",
    )
    .bind(tenant)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE single_notifications SET recipient_phone = '', rendered_body = '', rendered_header = '', \
             additional_information = '' \
         WHERE tenant_id = $1 AND message_id = ANY($2)",
    )
    .bind(tenant)
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET body = jsonb_set(body::jsonb, '{data}', (body::jsonb -> 'data') || \
             '{\"recipient_phone\": \"\", \"rendered_body\": \"\", \"variables\": [], \"additional_information\": \"\"}'::jsonb)::text \
         WHERE tenant_id = $1 AND body::jsonb -> 'data' ->> 'message_id' = ANY($2) \
           AND body::jsonb -> 'data' ? 'recipient_phone'",
    )
    .bind(tenant)
    .bind(&texts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// messaging's events: the log, and failed sends for their agents.
#[derive(Clone, Default)]
pub struct MessagingProjection;

impl Projection for MessagingProjection {
    type Contract = messaging::Event;

    async fn apply(
        &self,
        conn: &mut PgConnection,
        event: &InboundEvent,
        decoded: messaging::Event,
    ) -> Result<(), ProjectionError> {
        use messaging::Event as E;
        let tenant = event.tenant_id.as_str();
        let (message_id, status, at, detail) = match decoded {
            E::MessageRequested(m) => {
                let Some(message) = m.message else { return Ok(()) };
                let requested_at = time(message.requested_at.as_ref(), event.time);
                let timeline = serde_json::json!([{"status": "requested", "at": requested_at, "detail": ""}]);
                sqlx::query(
                    "INSERT INTO single_notifications (tenant_id, message_id, channel, status, template_id, template_name, \
                         agent_id, department_id, recipient_phone, rendered_body, timeline, requested_at, updated_at, \
                         contact_id, rendered_header, header_image_url, metadata, additional_information, webhook_url) \
                     VALUES ($1, $2, $3, 'requested', $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, $14, $15, $16, $17) \
                     ON CONFLICT DO NOTHING",
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
                .bind(&message.contact_id)
                .bind(&message.rendered_header)
                .bind(&message.header_image_url)
                .bind(sqlx::types::Json(&message.metadata))
                .bind(&message.additional_information)
                .bind(&message.webhook_url)
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
                let message_id = uuid_of(&message.message_id);
                if let (Some(message_id), false) = (message_id, message.webhook_url.is_empty()) {
                    let send = SendWebhook { message_id, url: &message.webhook_url };
                    remember_send_webhook(conn, tenant, &send).await?;
                }
                enqueue_webhooks(conn, tenant, "template.sent", data.clone()).await?;
                enqueue_send_webhook(conn, tenant, message_id, "template.sent", data).await?;
                return Ok(());
            }
            E::MessageDispatched(m) => {
                // The provider's id whatever the status: a delivery receipt may have come first.
                sqlx::query(
                    "UPDATE single_notifications SET provider_message_id = $3 WHERE tenant_id = $1 AND message_id = $2",
                )
                .bind(tenant)
                .bind(uuid_of(&m.message_id))
                .bind(&m.provider_message_id)
                .execute(&mut *conn)
                .await?;
                let detail = format!("{} attempt(s), provider id {}", m.attempts, m.provider_message_id);
                (m.message_id, "dispatched", time(m.dispatched_at.as_ref(), event.time), detail)
            }
            E::MessageDelivered(m) => {
                (m.message_id, "delivered", time(m.delivered_at.as_ref(), event.time), String::new())
            }
            E::MessageRead(m) => (m.message_id, "read", time(m.read_at.as_ref(), event.time), String::new()),
            E::MessageFailed(m) => {
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
                enqueue_webhooks(conn, tenant, "message.failed", data.clone()).await?;
                enqueue_send_webhook(conn, tenant, id, "message.failed", data).await?;
                if let Some(row) = row {
                    let agent: String = row.try_get("agent_id")?;
                    let template: String = row.try_get("template_name")?;
                    let phone: String = row.try_get("recipient_phone")?;
                    let body = format!("{template} to {phone}: {} ({})", m.reason, m.code);
                    let note = Note { kind: Kind::SendFailed, task_id: None, message_id: id, body: &body };
                    notify_agent(conn, tenant, &agent, note).await?;
                }
                return Ok(());
            }
            // The log is of sends; the subject filter (`*.message.>`) lets little else through.
            E::InboundMessageReceived(_)
            | E::TemplateCreated(_)
            | E::TemplateUpdated(_)
            | E::TemplateArchived(_)
            | E::ContactUpserted(_)
            | E::ContactOptedOut(_)
            | E::ContactOptedIn(_)
            | E::ProviderConfigChanged(_) => return Ok(()),
            E::ClientDataErased(m) => {
                erase_send_copies(conn, tenant, &m.message_ids).await?;
                return Ok(());
            }
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
        let event_type = format!("message.{status}");
        enqueue_webhooks(conn, tenant, &event_type, data.clone()).await?;
        enqueue_send_webhook(conn, tenant, uuid_of(&message_id), &event_type, data).await?;
        Ok(())
    }
}
