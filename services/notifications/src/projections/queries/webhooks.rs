//! Reads of webhook endpoints and of their deliveries with every attempt, shared by the list RPCs
//! and by the mutations that answer with an endpoint or a delivery.

use chrono::{DateTime, Utc};
use dw_proto::notifications::v1 as pb;
use dw_proto::time::timestamp;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};

use crate::domain::webhook::{DeliveryStatus, message_id};

/// The columns [`webhook_from_row`] reads, from `webhooks`.
pub(crate) const WEBHOOK_COLUMNS: &str =
    "webhook_id, url, description, event_types, enabled, disabled_reason, created_at, for_sends";

/// The columns [`delivery_view`] reads, from `webhook_deliveries d` joined with `webhooks w`: a
/// delivery of a send's own webhook goes to the send's URL, any other to its endpoint's.
pub(crate) const DELIVERY_COLUMNS: &str = "d.delivery_id, d.webhook_id, COALESCE(d.url, w.url) AS url, d.event_type, \
     d.status, d.next_attempt_at, d.created_at";

pub(crate) fn webhook_from_row(row: &PgRow) -> Result<pb::Webhook, sqlx::Error> {
    let id: uuid::Uuid = row.try_get("webhook_id")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    Ok(pb::Webhook {
        webhook_id: id.to_string(),
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: row.try_get("event_types")?,
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get::<Option<String>, _>("disabled_reason")?.unwrap_or_default(),
        created_at: Some(timestamp(created_at)),
        for_sends: row.try_get("for_sends")?,
    })
}

/// A row's place in a list ordered by creation time, then id (an endpoint, a delivery), which a
/// page token carries: the creation time in microseconds (what Postgres keeps) and the id.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CreatedKey {
    pub created_at: DateTime<Utc>,
    pub id: uuid::Uuid,
}

impl CreatedKey {
    /// The key of a listed row: its `created_at` and its id.
    pub fn of(created_at: Option<&prost_types::Timestamp>, id: uuid::Uuid) -> Option<Self> {
        let created_at = created_at?;
        let nanos = u32::try_from(created_at.nanos).ok()?;
        Some(Self { created_at: DateTime::from_timestamp(created_at.seconds, nanos)?, id })
    }

    pub fn parts(&self) -> [String; 2] {
        [self.created_at.timestamp_micros().to_string(), self.id.to_string()]
    }

    /// The key of [`parts`](Self::parts); `None` for anything else.
    pub fn parse(parts: &[&str]) -> Option<Self> {
        let [micros, id] = parts else { return None };
        Some(Self {
            created_at: DateTime::from_timestamp_micros(micros.parse().ok()?)?,
            id: uuid::Uuid::parse_str(id).ok()?,
        })
    }
}

/// A page of the tenant's endpoints, oldest first: `limit` after `after`.
pub async fn list_webhooks(
    pool: &PgPool,
    tenant: &str,
    after: Option<CreatedKey>,
    limit: i64,
) -> Result<Vec<pb::Webhook>, sqlx::Error> {
    let sql = format!(
        "SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 \
         AND ($2::timestamptz IS NULL OR (created_at, webhook_id) > ($2, $3::uuid)) \
         ORDER BY created_at, webhook_id LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(after.map(|key| key.created_at))
        .bind(after.map(|key| key.id))
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(webhook_from_row).collect()
}

/// A page of an endpoint's deliveries, newest first: `limit` after `after`.
pub async fn list_deliveries(
    pool: &PgPool,
    tenant: &str,
    webhook_id: uuid::Uuid,
    after: Option<CreatedKey>,
    limit: i64,
) -> Result<Vec<pb::Delivery>, sqlx::Error> {
    let sql = format!(
        "SELECT {DELIVERY_COLUMNS} \
         FROM webhook_deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
         WHERE d.tenant_id = $1 AND d.webhook_id = $2 \
         AND ($4::timestamptz IS NULL OR (d.created_at, d.delivery_id) < ($4, $5::uuid)) \
         ORDER BY d.created_at DESC, d.delivery_id DESC LIMIT $3"
    );
    // One snapshot for the deliveries and their attempts: read apart, a delivery attempted in
    // between would show its attempt with the status it had before it.
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(webhook_id)
        .bind(limit)
        .bind(after.map(|key| key.created_at))
        .bind(after.map(|key| key.id))
        .fetch_all(&mut *tx)
        .await?;
    let mut deliveries = Vec::with_capacity(rows.len());
    for row in &rows {
        deliveries.push(delivery_view(&mut tx, row).await?);
    }
    tx.commit().await?;
    Ok(deliveries)
}

/// A delivery of a row with [`DELIVERY_COLUMNS`], with its attempts.
pub(crate) async fn delivery_view(conn: &mut PgConnection, row: &PgRow) -> Result<pb::Delivery, sqlx::Error> {
    let delivery_id: uuid::Uuid = row.try_get("delivery_id")?;
    let webhook_id: uuid::Uuid = row.try_get("webhook_id")?;
    let next: Option<DateTime<Utc>> = row.try_get("next_attempt_at")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    let attempts = sqlx::query(
        "SELECT at, status_code, latency_ms, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(delivery_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|a| {
        let at: DateTime<Utc> = a.try_get("at")?;
        Ok(pb::DeliveryAttempt {
            at: Some(timestamp(at)),
            status_code: a.try_get("status_code")?,
            latency_ms: a.try_get("latency_ms")?,
            error: a.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let status: String = row.try_get("status")?;
    Ok(pb::Delivery {
        delivery_id: message_id(delivery_id),
        webhook_id: webhook_id.to_string(),
        url: row.try_get("url")?,
        event_type: row.try_get("event_type")?,
        next_attempt_at: next.filter(|_| status == DeliveryStatus::Pending.as_str()).map(timestamp),
        status,
        attempts,
        created_at: Some(timestamp(created_at)),
    })
}
