//! Outbox entries the relay set aside because JetStream would refuse them for good (see
//! [`crate::outbox_relay`]): listed and released by an operator with the service binary
//! (`<service> quarantine list|release`). A released entry goes back to the relay, which
//! publishes it and the events of its stream that waited behind it, in order (or sets it aside
//! again if it still cannot be published).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::store::RecordedEvent;

/// One held outbox entry.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Held {
    /// The outbox position: what `release` takes.
    pub position: i64,
    pub stream_id: String,
    pub tenant_id: String,
    pub event_id: Uuid,
    pub event_type: String,
    pub reason: String,
    pub held_at: DateTime<Utc>,
    /// Later events of the same stream waiting behind this one.
    pub waiting: i64,
}

/// Sets the outbox entry at `position` aside, with why.
pub(crate) async fn hold(
    conn: &mut PgConnection,
    position: i64,
    event: &RecordedEvent,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO outbox_quarantine (position, global_position, stream_id, tenant_id, event_id, event_type, reason) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (position) DO NOTHING",
    )
    .bind(position)
    .bind(event.global_position)
    .bind(&event.stream_id)
    .bind(&event.tenant_id)
    .bind(event.event_id)
    .bind(&event.event_type)
    .bind(reason)
    .execute(conn)
    .await?;
    Ok(())
}

/// How many entries are held.
pub async fn count(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query("SELECT count(*) AS n FROM outbox_quarantine").fetch_one(conn).await?.try_get("n")
}

/// Every held entry, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Held>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT q.position, q.stream_id, q.tenant_id, q.event_id, q.event_type, q.reason, q.held_at, \
                (SELECT count(*) FROM outbox o JOIN events e ON e.global_position = o.global_position \
                 WHERE e.stream_id = q.stream_id AND o.position > q.position) AS waiting \
         FROM outbox_quarantine q ORDER BY q.position",
    )
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(Held {
                position: row.try_get("position")?,
                stream_id: row.try_get("stream_id")?,
                tenant_id: row.try_get("tenant_id")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                reason: row.try_get("reason")?,
                held_at: row.try_get("held_at")?,
                waiting: row.try_get("waiting")?,
            })
        })
        .collect()
}

/// Gives the entry at `position` back to the relay; `false` when nothing is held there.
pub async fn release(pool: &PgPool, position: i64) -> Result<bool, sqlx::Error> {
    let released =
        sqlx::query("DELETE FROM outbox_quarantine WHERE position = $1").bind(position).execute(pool).await?;
    Ok(released.rows_affected() == 1)
}

/// Gives every held entry back to the relay; how many there were.
pub async fn release_all(pool: &PgPool) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query("DELETE FROM outbox_quarantine").execute(pool).await?.rows_affected())
}
