//! What the consumers queue for the delivery workers, in the projection's transaction (so once
//! per event): a webhook delivery per subscribed endpoint and one for the send's own webhook
//! (through the tenant's sends endpoint, to the send's URL), a browser push per subscription.
//!
//! A send's webhook URL is not judged here: messaging-templates admitted it under the tenant's
//! `send_webhooks` policy before it accepted the send (the send is refused synchronously, so the
//! service that answers it decides, on its own copy of the policy). The delivery worker still
//! judges every connection by the destination policy (a name rebound to a private address).

use chrono::Utc;
use rand::Rng as _;
use sqlx::{PgConnection, Row};

use crate::domain::webhook::secret_from_key;

/// Queues one delivery per enabled endpoint subscribed to `event_type`.
pub async fn enqueue_webhooks(
    conn: &mut PgConnection,
    tenant: &str,
    event_type: &str,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT webhook_id FROM webhooks WHERE tenant_id = $1 AND enabled AND NOT for_sends AND $2 = ANY(event_types)",
    )
    .bind(tenant)
    .bind(event_type)
    .fetch_all(&mut *conn)
    .await?;
    let body = delivery_body(event_type, data);
    for row in &rows {
        let webhook_id: uuid::Uuid = row.try_get("webhook_id")?;
        insert_delivery(conn, tenant, webhook_id, None, event_type, &body).await?;
    }
    Ok(())
}

/// Where a send's events go when the send asked for its own webhook.
pub struct SendWebhook<'a> {
    pub message_id: uuid::Uuid,
    /// The send's `webhook_url`, as messaging-templates admitted it under the tenant's policy.
    pub url: &'a str,
}

/// Remembers that a send asked for its own webhook (its later statuses go there too); once per
/// send, the first event wins.
pub async fn remember_send_webhook(
    conn: &mut PgConnection,
    tenant: &str,
    send: &SendWebhook<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO send_webhooks (tenant_id, message_id, url) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING")
        .bind(tenant)
        .bind(send.message_id)
        .bind(send.url)
        .execute(conn)
        .await?;
    Ok(())
}

/// Queues `event_type` of the send `message_id` for the send's own webhook, when it asked for one.
pub async fn enqueue_send_webhook(
    conn: &mut PgConnection,
    tenant: &str,
    message_id: Option<uuid::Uuid>,
    event_type: &str,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let Some(message_id) = message_id else { return Ok(()) };
    let url: Option<String> =
        sqlx::query_scalar("SELECT url FROM send_webhooks WHERE tenant_id = $1 AND message_id = $2")
            .bind(tenant)
            .bind(message_id)
            .fetch_optional(&mut *conn)
            .await?;
    let Some(url) = url else { return Ok(()) };
    let webhook_id = sends_endpoint(conn, tenant).await?;
    let body = delivery_body(event_type, data);
    insert_delivery(conn, tenant, webhook_id, Some(&url), event_type, &body).await
}

/// The tenant's sends endpoint, made with a new secret when there is none yet: a send's webhook
/// is never dropped for want of one (a manager rotates its secret to learn it).
async fn sends_endpoint(conn: &mut PgConnection, tenant: &str) -> Result<uuid::Uuid, sqlx::Error> {
    let existing: Option<uuid::Uuid> =
        sqlx::query_scalar("SELECT webhook_id FROM webhooks WHERE tenant_id = $1 AND for_sends AND enabled")
            .bind(tenant)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(webhook_id) = existing {
        return Ok(webhook_id);
    }
    let secret = secret_from_key(&rand::rng().random());
    sqlx::query(
        "INSERT INTO webhooks (tenant_id, webhook_id, url, description, event_types, secret, for_sends) \
         VALUES ($1, $2, '', $3, '{}', $4, TRUE) ON CONFLICT (tenant_id) WHERE for_sends AND enabled DO NOTHING",
    )
    .bind(tenant)
    .bind(uuid::Uuid::now_v7())
    .bind(SENDS_ENDPOINT_DESCRIPTION)
    .bind(&secret)
    .execute(&mut *conn)
    .await?;
    sqlx::query_scalar("SELECT webhook_id FROM webhooks WHERE tenant_id = $1 AND for_sends AND enabled")
        .bind(tenant)
        .fetch_one(conn)
        .await
}

/// The description of a sends endpoint notifications made itself.
pub const SENDS_ENDPOINT_DESCRIPTION: &str =
    "the webhooks of sends (SendTemplate.webhook_url); made at the first one: rotate the secret to learn it";

fn delivery_body(event_type: &str, data: serde_json::Value) -> String {
    serde_json::json!({"type": event_type, "timestamp": Utc::now(), "data": data}).to_string()
}

async fn insert_delivery(
    conn: &mut PgConnection,
    tenant: &str,
    webhook_id: uuid::Uuid,
    url: Option<&str>,
    event_type: &str,
    body: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO webhook_deliveries \
             (delivery_id, tenant_id, webhook_id, url, event_type, body, status, next_attempt_at, traceparent) \
         VALUES ($1, $2, $3, $4, $5, $6, 'pending', now(), $7)",
    )
    .bind(uuid::Uuid::now_v7())
    .bind(tenant)
    .bind(webhook_id)
    .bind(url)
    .bind(event_type)
    .bind(body)
    // The consumer's span: a child of the event's trace, so the delivery joins it.
    .bind(dw_telemetry::current_traceparent())
    .execute(conn)
    .await?;
    Ok(())
}

/// Queues a push of `payload` to each of the agent's subscriptions, with the current trace
/// context: the worker's push span continues it.
pub async fn enqueue_push(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO push_jobs (job_id, tenant_id, endpoint, payload, status, next_attempt_at, traceparent) \
         SELECT gen_random_uuid(), tenant_id, endpoint, $3, 'pending', now(), $4 FROM push_subscriptions \
         WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(tenant)
    .bind(agent)
    .bind(payload.to_string())
    .bind(dw_telemetry::current_traceparent())
    .execute(conn)
    .await?;
    Ok(())
}
