//! The `tasks` read model: the queue, the agents' open tasks and the protocol search index.

use chrono::{DateTime, NaiveDate, Utc};
use dw_eventstore::writes::Write;
use dw_ids::TenantId;
use sqlx::{PgConnection, Row};

use crate::domain::task::{Event, Task};
use crate::domain::{PhoneNumber, TaskId};

/// How a change moves the task in its department's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueChange {
    /// Position unchanged (or first queued at creation).
    Keep,
    /// Re-queued after its agent left: ahead of everything else, in its original age order.
    ToFront,
    /// Transferred into a queue: behind what already waits there.
    ToBack,
}

impl QueueChange {
    /// How `events` (one command's, or one stored event in a rebuild) move their task.
    pub fn of(events: &[Event]) -> Self {
        if events.iter().any(|e| matches!(e, Event::Requeued { .. })) {
            Self::ToFront
        } else if events.iter().any(|e| matches!(e, Event::Transferred { to_agent: None, .. })) {
            Self::ToBack
        } else {
            Self::Keep
        }
    }
}

/// The task's row as `task` leaves it at `version` (its queue position moved as `queue` says), as
/// a write of the command's statement ([`Writes`](dw_eventstore::writes::Writes)).
pub fn save_write(tenant: &TenantId, task: &Task, version: i64, queue: QueueChange, now: DateTime<Utc>) -> Write {
    let content = &task.content;
    let (front, queued_at) = match queue {
        QueueChange::Keep => (None, None),
        QueueChange::ToFront => (Some(true), Some(task.created_at)),
        QueueChange::ToBack => (Some(false), Some(now)),
    };
    Write::new(
        "tasks",
        "INSERT INTO tasks (tenant_id, task_id, protocol, department_id, channel, client_name, client_phone, contact_id, \
                            priority, subject, status, agent_id, created_at, assigned_at, closed_at, queue_front, \
                            queued_at, message_count, last_message_at, version, waiting_since) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, COALESCE($16, FALSE), \
                 COALESCE($17, $13), $18, $19, $20, $21) \
         ON CONFLICT (tenant_id, task_id) DO UPDATE SET department_id = EXCLUDED.department_id, \
             status = EXCLUDED.status, agent_id = EXCLUDED.agent_id, assigned_at = EXCLUDED.assigned_at, \
             closed_at = EXCLUDED.closed_at, queue_front = COALESCE($16, tasks.queue_front), \
             queued_at = COALESCE($17, tasks.queued_at), message_count = EXCLUDED.message_count, \
             last_message_at = EXCLUDED.last_message_at, version = EXCLUDED.version, \
             waiting_since = EXCLUDED.waiting_since",
    )
    .bind(tenant.clone())
    .bind(content.task_id.0)
    .bind(content.protocol.as_str().to_owned())
    .bind(task.department.as_str().to_owned())
    .bind(content.channel.as_str().to_owned())
    .bind(content.contact.name.clone())
    .bind(content.contact.phone.as_str().to_owned())
    .bind(content.contact.contact_id.clone())
    .bind(content.priority.value())
    .bind(content.subject.clone())
    .bind(task.status.as_str().to_owned())
    .bind(task.agent.as_ref().map(|a| a.as_str().to_owned()))
    .bind(task.created_at)
    .bind(task.assigned_at)
    .bind(task.closed_at)
    .bind(front)
    .bind(queued_at)
    .bind(task.message_count)
    .bind(task.last_message_at)
    .bind(version)
    .bind(task.waiting_since)
}

/// The client phone on a task's row (`None` when the task has no row or its client was erased).
pub async fn client_phone(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
) -> Result<Option<PhoneNumber>, sqlx::Error> {
    let row = sqlx::query("SELECT client_phone FROM tasks WHERE tenant_id = $1 AND task_id = $2")
        .bind(tenant)
        .bind(task_id.0)
        .fetch_optional(conn)
        .await?;
    let phone: Option<String> = row.map(|row| row.try_get("client_phone")).transpose()?;
    Ok(phone.and_then(|phone| PhoneNumber::parse(&phone).ok()))
}

/// Empties the client's name and phone and the subject on every task of theirs; returns those
/// tasks.
pub async fn erase_client(
    conn: &mut PgConnection,
    tenant: &TenantId,
    phone: &PhoneNumber,
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE tasks SET client_name = '', client_phone = '', subject = '' WHERE tenant_id = $1 AND client_phone = $2 \
         RETURNING task_id",
    )
    .bind(tenant)
    .bind(phone.as_str())
    .fetch_all(conn)
    .await?;
    rows.iter().map(|row| row.try_get("task_id")).collect()
}

/// The next gap-free sequence number of `day` for the tenant (rolled back with the transaction).
pub async fn next_protocol_sequence(
    conn: &mut PgConnection,
    tenant: &TenantId,
    day: NaiveDate,
) -> Result<u32, sqlx::Error> {
    take_protocol_sequences(conn, tenant, day, 1).await
}

/// Takes the next `count` sequences of the tenant's `day` in one statement; returns the last
/// (the first is `count - 1` before it).
pub async fn take_protocol_sequences(
    conn: &mut PgConnection,
    tenant: &TenantId,
    day: NaiveDate,
    count: usize,
) -> Result<u32, sqlx::Error> {
    let count = i32::try_from(count).unwrap_or(i32::MAX);
    let row = sqlx::query(
        "INSERT INTO protocol_counters (tenant_id, day, last_seq) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, day) DO UPDATE SET last_seq = protocol_counters.last_seq + $3 RETURNING last_seq",
    )
    .bind(tenant)
    .bind(day)
    .bind(count)
    .fetch_one(conn)
    .await?;
    let sequence: i32 = row.try_get("last_seq")?;
    Ok(u32::try_from(sequence).unwrap_or(0))
}

/// Departments with queued tasks.
pub async fn departments_with_queue(conn: &mut PgConnection, tenant: &TenantId) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query("SELECT DISTINCT department_id FROM tasks WHERE tenant_id = $1 AND status = 'queued'")
        .bind(tenant)
        .fetch_all(conn)
        .await?;
    rows.iter().map(|r| r.try_get("department_id")).collect()
}

/// The agent's assigned tasks.
pub async fn open_tasks_of(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &str,
) -> Result<Vec<uuid::Uuid>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT task_id FROM tasks WHERE tenant_id = $1 AND agent_id = $2 AND status = 'assigned' ORDER BY created_at",
    )
    .bind(tenant)
    .bind(agent)
    .fetch_all(conn)
    .await?;
    rows.iter().map(|r| r.try_get("task_id")).collect()
}

/// The departments of the tasks `agent` holds.
pub async fn departments_of_open_tasks(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &str,
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT DISTINCT department_id FROM tasks WHERE tenant_id = $1 AND agent_id = $2 AND status = 'assigned'",
    )
    .bind(tenant)
    .bind(agent)
    .fetch_all(conn)
    .await
}

/// The client's open task on a channel, if any.
pub async fn open_task_of_client(
    conn: &mut PgConnection,
    tenant: &TenantId,
    phone: &str,
    channel: &str,
) -> Result<Option<uuid::Uuid>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT task_id FROM tasks WHERE tenant_id = $1 AND client_phone = $2 AND channel = $3 \
         AND status IN ('queued', 'assigned') ORDER BY created_at DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(phone)
    .bind(channel)
    .fetch_optional(conn)
    .await?;
    row.map(|r| r.try_get("task_id")).transpose()
}

/// One department's queue, for the queue gauges.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSample {
    pub tenant: String,
    pub department: String,
    pub depth: i64,
    /// How long the longest-waiting task of the queue has waited, by the database's clock.
    pub oldest_wait_seconds: f64,
}

/// Every non-empty queue of every tenant, in one grouped query over the queued tasks (the only
/// cross-tenant read: it feeds the operators' metrics, never an API answer).
pub async fn queue_samples(conn: &mut PgConnection) -> Result<Vec<QueueSample>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT tenant_id, department_id, count(*) AS depth, \
             GREATEST(EXTRACT(EPOCH FROM now() - min(COALESCE(waiting_since, queued_at))), 0)::float8 AS oldest_wait \
         FROM tasks WHERE status = 'queued' GROUP BY tenant_id, department_id",
    )
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(QueueSample {
                tenant: row.try_get("tenant_id")?,
                department: row.try_get("department_id")?,
                depth: row.try_get("depth")?,
                oldest_wait_seconds: row.try_get("oldest_wait")?,
            })
        })
        .collect()
}
