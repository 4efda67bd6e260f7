//! The read models, fed by durable consumers (each event applied once, in stream order, in one
//! transaction with its position): [`messaging`]'s events build the single-notifications log,
//! queue webhook deliveries and tell agents their sends failed; [`distribution`]'s events tell
//! agents about their tasks and their clients' messages and queue browser pushes; [`tenants`]
//! keeps each tenant's time zone from agent-sessions' settings. [`queries`]
//! reads the read models for the gRPC layer.

pub mod distribution;
pub mod messaging;
pub mod outbound;
pub mod queries;
pub mod tenants;

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, Row};

use crate::domain::notification::Kind;

pub use distribution::DistributionProjection;
pub use messaging::MessagingProjection;
pub use tenants::TenantZonesProjection;

/// The channel every new agent notification is announced on (payload: [`agent_key`]).
pub const CHANNEL: &str = "dw_agent_notifications";

/// The payload announcing news for an agent on [`CHANNEL`].
pub fn agent_key(tenant: &str, agent: &str) -> String {
    format!("{tenant}\t{agent}")
}

fn time(ts: Option<&prost_types::Timestamp>, fallback: DateTime<Utc>) -> DateTime<Utc> {
    ts.and_then(dw_proto::time::datetime).unwrap_or(fallback)
}

fn uuid_of(value: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::parse_str(value).ok()
}

/// What an agent is told (its title comes with its kind).
pub struct Note<'a> {
    pub kind: Kind,
    pub task_id: Option<uuid::Uuid>,
    pub message_id: Option<uuid::Uuid>,
    pub body: &'a str,
}

/// Adds a notification for an agent with the next sequence number, announced at commit.
pub async fn notify_agent(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    note: Note<'_>,
) -> Result<(), sqlx::Error> {
    let Note { kind, task_id, message_id, body } = note;
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
    .bind(kind.as_str())
    .bind(task_id)
    .bind(message_id)
    .bind(kind.title())
    .bind(body)
    .execute(&mut *conn)
    .await?;
    sqlx::query("SELECT pg_notify($1, $2)").bind(CHANNEL).bind(agent_key(tenant, agent)).execute(conn).await?;
    Ok(())
}
