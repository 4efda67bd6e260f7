//! Reads of the single-notifications log (filtered, paged newest first) and of agents'
//! notifications (by sequence).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use dw_proto::notifications::v1 as pb;
use dw_proto::time::timestamp;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{QueryBuilder, Row};

use crate::domain::notification::{Kind, channel_from_name, status_from_name};
use crate::domain::paging::PageToken;

const COLUMNS: &str = "message_id, channel, status, template_id, template_name, agent_id, department_id, recipient_phone, \
     rendered_body, failure_code, failure_reason, timeline, requested_at, updated_at, contact_id, rendered_header, \
     header_image_url, metadata, additional_information, webhook_url, provider_message_id";

/// Which sends of a tenant's log to list, already parsed.
pub struct LogFilter {
    pub tenant: String,
    /// Only this agent's own sends (an agent reading the log).
    pub own_agent: Option<String>,
    pub channel: Option<&'static str>,
    pub status: Option<String>,
    pub agent_id: String,
    pub template_id: String,
    pub department_id: String,
    pub recipient_phone: String,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub after: Option<PageToken>,
    pub limit: i64,
}

/// A page of the log, and where the next one starts when there is one.
pub struct LogPage {
    pub notifications: Vec<pb::SingleNotification>,
    pub next: Option<PageToken>,
}

pub async fn list_log(pool: &PgPool, filter: &LogFilter) -> Result<LogPage, sqlx::Error> {
    let mut query = QueryBuilder::new(format!("SELECT {COLUMNS} FROM single_notifications WHERE tenant_id = "));
    query.push_bind(filter.tenant.clone());
    if let Some(agent) = &filter.own_agent {
        query.push(" AND agent_id = ").push_bind(agent.clone());
    }
    if let Some(channel) = filter.channel {
        query.push(" AND channel = ").push_bind(channel);
    }
    if let Some(status) = &filter.status {
        query.push(" AND status = ").push_bind(status.clone());
    }
    for (column, value) in [
        ("agent_id", &filter.agent_id),
        ("template_id", &filter.template_id),
        ("department_id", &filter.department_id),
        ("recipient_phone", &filter.recipient_phone),
    ] {
        if !value.is_empty() {
            query.push(format!(" AND {column} = ")).push_bind(value.clone());
        }
    }
    if let Some(from) = filter.from {
        query.push(" AND requested_at >= ").push_bind(from);
    }
    if let Some(to) = filter.to {
        query.push(" AND requested_at < ").push_bind(to);
    }
    if let Some(after) = filter.after {
        query
            .push(" AND (requested_at, message_id) < (")
            .push_bind(after.requested_at)
            .push(", ")
            .push_bind(after.message_id)
            .push(")");
    }
    query.push(" ORDER BY requested_at DESC, message_id DESC LIMIT ").push_bind(filter.limit + 1);
    let rows = query.build().fetch_all(pool).await?;
    let mut notifications = rows.iter().map(single_from_row).collect::<Result<Vec<_>, _>>()?;
    let has_more = notifications.len() as i64 > filter.limit;
    if !has_more {
        return Ok(LogPage { notifications, next: None });
    }
    notifications.truncate(filter.limit as usize);
    let next = notifications.last().and_then(|last| {
        let requested_at = last.requested_at.as_ref().and_then(dw_proto::time::datetime)?;
        Some(PageToken { requested_at, message_id: uuid::Uuid::parse_str(&last.message_id).ok()? })
    });
    Ok(LogPage { notifications, next })
}

pub async fn get_log_entry(
    pool: &PgPool,
    tenant: &str,
    message_id: uuid::Uuid,
) -> Result<Option<pb::SingleNotification>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM single_notifications WHERE tenant_id = $1 AND message_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(message_id).fetch_optional(pool).await?;
    row.as_ref().map(single_from_row).transpose()
}

/// Whether a manager granted the agent `notifications.view` (from agent-sessions' events).
pub async fn may_view_log(pool: &PgPool, tenant: &dw_ids::TenantId, agent: &str) -> Result<bool, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    dw_bus::permissions::has_permission(&mut conn, tenant, agent, "notifications.view").await
}

/// The sequence of the agent's latest notification (0 before the first).
pub async fn last_sequence(pool: &PgPool, tenant: &str, agent: &str) -> Result<i64, sqlx::Error> {
    let last: Option<i64> =
        sqlx::query_scalar("SELECT last_seq FROM agent_cursors WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant)
            .bind(agent)
            .fetch_optional(pool)
            .await?;
    Ok(last.unwrap_or(0))
}

/// The rows an agent's stream reads at once.
pub const BATCH: i64 = 500;

/// The agent's notifications after sequence `after`, oldest first, at most [`BATCH`]; `full` when
/// there may be more. A row that does not decode is skipped.
pub struct Batch {
    pub notifications: Vec<pb::AgentNotification>,
    pub full: bool,
}

pub async fn notifications_after(pool: &PgPool, tenant: &str, agent: &str, after: i64) -> Result<Batch, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, kind, task_id, message_id, title, body, created_at FROM agent_notifications \
         WHERE tenant_id = $1 AND agent_id = $2 AND seq > $3 ORDER BY seq LIMIT $4",
    )
    .bind(tenant)
    .bind(agent)
    .bind(after)
    .bind(BATCH)
    .fetch_all(pool)
    .await?;
    let full = rows.len() as i64 == BATCH;
    let notifications = rows.iter().filter_map(|row| notification_from_row(row).ok()).collect();
    Ok(Batch { notifications, full })
}

fn single_from_row(row: &PgRow) -> Result<pb::SingleNotification, sqlx::Error> {
    let id: uuid::Uuid = row.try_get("message_id")?;
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let requested_at: DateTime<Utc> = row.try_get("requested_at")?;
    let updated_at: DateTime<Utc> = row.try_get("updated_at")?;
    let timeline: serde_json::Value = row.try_get("timeline")?;
    let history: Vec<pb::StatusChange> = timeline
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| pb::StatusChange {
            status: status_from_name(entry["status"].as_str().unwrap_or_default()) as i32,
            at: entry["at"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
                .map(|t| timestamp(t.with_timezone(&Utc))),
            detail: entry["detail"].as_str().unwrap_or_default().to_owned(),
        })
        .collect();
    let sqlx::types::Json(metadata) = row.try_get::<sqlx::types::Json<BTreeMap<String, String>>, _>("metadata")?;
    Ok(pb::SingleNotification {
        message_id: id.to_string(),
        channel: channel_from_name(&channel) as i32,
        status: status_from_name(&status) as i32,
        template_id: row.try_get("template_id")?,
        template_name: row.try_get("template_name")?,
        agent_id: row.try_get("agent_id")?,
        department_id: row.try_get::<Option<String>, _>("department_id")?.unwrap_or_default(),
        recipient_phone: row.try_get("recipient_phone")?,
        rendered_body: row.try_get("rendered_body")?,
        requested_at: Some(timestamp(requested_at)),
        updated_at: Some(timestamp(updated_at)),
        failure_code: row.try_get::<Option<String>, _>("failure_code")?.unwrap_or_default(),
        failure_reason: row.try_get::<Option<String>, _>("failure_reason")?.unwrap_or_default(),
        // The same list under both names: `timeline` is deprecated, kept for older callers.
        timeline: history.clone(),
        history,
        contact_id: row.try_get("contact_id")?,
        rendered_header: row.try_get("rendered_header")?,
        header_image_url: row.try_get("header_image_url")?,
        metadata,
        additional_information: row.try_get("additional_information")?,
        webhook_url: row.try_get("webhook_url")?,
        provider_message_id: row.try_get("provider_message_id")?,
    })
}

fn notification_from_row(row: &PgRow) -> Result<pb::AgentNotification, sqlx::Error> {
    let seq: i64 = row.try_get("seq")?;
    let kind: String = row.try_get("kind")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    Ok(pb::AgentNotification {
        sequence: seq.max(0) as u64,
        kind: Kind::pb_from_name(&kind) as i32,
        at: Some(timestamp(created_at)),
        task_id: row.try_get::<Option<uuid::Uuid>, _>("task_id")?.map(|t| t.to_string()).unwrap_or_default(),
        message_id: row.try_get::<Option<uuid::Uuid>, _>("message_id")?.map(|m| m.to_string()).unwrap_or_default(),
        title: row.try_get("title")?,
        body: row.try_get("body")?,
        heartbeat: false,
    })
}
