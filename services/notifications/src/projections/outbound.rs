//! What the consumers queue for the delivery workers, in the projection's transaction (so once
//! per event): a webhook delivery per subscribed endpoint, a browser push per subscription.

use chrono::Utc;
use sqlx::{PgConnection, Row};

/// Queues one delivery per enabled endpoint subscribed to `event_type` (and, for `template.sent`,
/// the endpoint registered under the send's own webhook URL).
pub async fn enqueue_webhooks(
    conn: &mut PgConnection,
    tenant: &str,
    event_type: &str,
    send_url: Option<&str>,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT webhook_id FROM webhooks WHERE tenant_id = $1 AND enabled \
         AND ($2 = ANY(event_types) OR ($3::text IS NOT NULL AND url = $3))",
    )
    .bind(tenant)
    .bind(event_type)
    .bind(send_url)
    .fetch_all(&mut *conn)
    .await?;
    let now = Utc::now();
    let body = serde_json::json!({"type": event_type, "timestamp": now, "data": data}).to_string();
    for row in &rows {
        let webhook_id: uuid::Uuid = row.try_get("webhook_id")?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, tenant_id, webhook_id, event_type, body, status, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', now())",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(tenant)
        .bind(webhook_id)
        .bind(event_type)
        .bind(&body)
        .execute(&mut *conn)
        .await?;
    }
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
