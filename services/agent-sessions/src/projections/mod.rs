//! agent-sessions' own read models. The `apply_*` functions run inside the command's
//! transaction, so a caller reads its own writes; [`queries`] reads them.

mod batch;
pub mod queries;
pub mod rebuild;

use dw_eventstore::{Write, Writes};
use sqlx::PgConnection;

use crate::domain::service_day::{Event as DayEvent, Status};
use crate::domain::tenant_settings::Event as SettingsEvent;
use crate::domain::{AgentId, agent};

pub async fn apply_settings(
    conn: &mut PgConnection,
    tenant: &str,
    event: &SettingsEvent,
    version: i64,
) -> Result<(), sqlx::Error> {
    let SettingsEvent::Changed(settings) = event;
    let exit_reasons = serde_json::to_value(&settings.exit_reasons).unwrap_or_default();
    let break_reasons = serde_json::to_value(&settings.break_reasons).unwrap_or_default();
    sqlx::query(
        "INSERT INTO tenant_settings (tenant_id, auto_distribution_enabled, exit_reasons, break_reasons, \
                                      ticket_workspace_url, version, updated_at, time_zone, break_reason_optional) \
         VALUES ($1, $2, $3, $4, $5, $6, now(), $7, $8) \
         ON CONFLICT (tenant_id) DO UPDATE SET auto_distribution_enabled = EXCLUDED.auto_distribution_enabled, \
             exit_reasons = EXCLUDED.exit_reasons, break_reasons = EXCLUDED.break_reasons, \
             ticket_workspace_url = EXCLUDED.ticket_workspace_url, version = EXCLUDED.version, updated_at = now(), \
             time_zone = EXCLUDED.time_zone, break_reason_optional = EXCLUDED.break_reason_optional",
    )
    .bind(tenant)
    .bind(settings.auto_distribution_enabled)
    .bind(exit_reasons)
    .bind(break_reasons)
    .bind(&settings.ticket_workspace_url)
    .bind(version)
    .bind(settings.time_zone.name())
    .bind(settings.break_reason_optional)
    .execute(conn)
    .await?;
    Ok(())
}

pub async fn apply_agent(
    conn: &mut PgConnection,
    tenant: &str,
    agent_id: &AgentId,
    event: &agent::Event,
    version: i64,
) -> Result<(), sqlx::Error> {
    use agent::Event as E;
    match event {
        E::Registered { display_name, at, .. } => {
            sqlx::query(
                "INSERT INTO agents (tenant_id, agent_id, display_name, registered_at, version) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(tenant)
            .bind(agent_id.as_str())
            .bind(display_name)
            .bind(at)
            .bind(version)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO agent_status (tenant_id, agent_id, status, status_since) VALUES ($1, $2, 'off', $3) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(agent_id.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::DepartmentLinked { department, at, .. } => {
            sqlx::query(
                "INSERT INTO agent_departments (tenant_id, agent_id, department_id, linked_at) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(agent_id.as_str())
            .bind(department.as_str())
            .bind(at)
            .execute(&mut *conn)
            .await?;
        }
        E::DepartmentUnlinked { department, .. } => {
            sqlx::query("DELETE FROM agent_departments WHERE tenant_id = $1 AND agent_id = $2 AND department_id = $3")
                .bind(tenant)
                .bind(agent_id.as_str())
                .bind(department.as_str())
                .execute(&mut *conn)
                .await?;
        }
        E::PermissionGranted { permission, by, at } => {
            sqlx::query(
                "INSERT INTO agent_permissions (tenant_id, agent_id, permission, granted_at, granted_by) \
                 VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            )
            .bind(tenant)
            .bind(agent_id.as_str())
            .bind(permission.as_str())
            .bind(at)
            .bind(by)
            .execute(&mut *conn)
            .await?;
        }
        E::PermissionRevoked { permission, .. } => {
            sqlx::query("DELETE FROM agent_permissions WHERE tenant_id = $1 AND agent_id = $2 AND permission = $3")
                .bind(tenant)
                .bind(agent_id.as_str())
                .bind(permission.as_str())
                .execute(&mut *conn)
                .await?;
        }
    }
    sqlx::query("UPDATE agents SET version = $3 WHERE tenant_id = $1 AND agent_id = $2")
        .bind(tenant)
        .bind(agent_id.as_str())
        .bind(version)
        .execute(conn)
        .await?;
    Ok(())
}

/// An agent's row on the board after an event.
struct StatusChange<'a> {
    status: Status,
    since: chrono::DateTime<chrono::Utc>,
    day_id: Option<uuid::Uuid>,
    reason: Option<(&'a str, &'a str)>,
}

fn set_status(tenant: &str, agent_id: &AgentId, change: StatusChange<'_>, version: i64) -> Write {
    let StatusChange { status, since, day_id, reason } = change;
    Write::new(
        "agent_status",
        "INSERT INTO agent_status (tenant_id, agent_id, status, status_since, day_id, reason_id, reason_label, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (tenant_id, agent_id) DO UPDATE SET status = EXCLUDED.status, \
             status_since = EXCLUDED.status_since, day_id = EXCLUDED.day_id, reason_id = EXCLUDED.reason_id, \
             reason_label = EXCLUDED.reason_label, version = EXCLUDED.version",
    )
    .bind(tenant.to_owned())
    .bind(agent_id.to_string())
    .bind(status.as_str())
    .bind(since)
    .bind(day_id)
    .bind(reason.map(|r| r.0.to_owned()))
    .bind(reason.map(|r| r.1.to_owned()))
    .bind(version)
}

/// What one service-day event writes: its day's, exit's or break's row, and the agent's row on
/// the board (`version`: the stream version the event has).
fn service_day_writes(tenant: &str, agent_id: &AgentId, event: &DayEvent, version: i64) -> [Write; 2] {
    let (tenant_owned, agent) = (tenant.to_owned(), agent_id.to_string());
    let status = |status, since, day_id: Option<uuid::Uuid>, reason| {
        set_status(tenant, agent_id, StatusChange { status, since, day_id, reason }, version)
    };
    match event {
        DayEvent::DayStarted { day_id, started_at, service_date, departments } => {
            let department_ids = serde_json::to_value(departments).unwrap_or_default();
            let row = Write::new(
                "service_days",
                "INSERT INTO service_days (tenant_id, day_id, agent_id, started_at, department_ids, service_date) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(tenant_owned)
            .bind(day_id.0)
            .bind(agent)
            .bind(*started_at)
            .bind(department_ids)
            .bind(*service_date);
            [row, status(Status::Working, *started_at, Some(day_id.0), None)]
        }
        DayEvent::ExitNotified { day_id, reason, notified_at } => {
            let row = Write::new(
                "service_day_exits",
                "INSERT INTO service_day_exits (tenant_id, day_id, seq, reason_id, reason_label, notified_at) \
                 SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5 FROM service_day_exits \
                 WHERE tenant_id = $1 AND day_id = $2",
            )
            .bind(tenant_owned)
            .bind(day_id.0)
            .bind(reason.id.to_string())
            .bind(reason.label.clone())
            .bind(*notified_at);
            let reason = Some((reason.id.as_str(), reason.label.as_str()));
            [row, status(Status::ExitNotified, *notified_at, Some(day_id.0), reason)]
        }
        DayEvent::ExitClosed { day_id, cause, closed_at } => {
            let row = Write::new(
                "service_day_exits",
                "UPDATE service_day_exits SET closed_at = $3, close_cause = $4 \
                 WHERE tenant_id = $1 AND day_id = $2 AND closed_at IS NULL",
            )
            .bind(tenant_owned)
            .bind(day_id.0)
            .bind(*closed_at)
            .bind(cause.as_str());
            [row, status(Status::Working, *closed_at, Some(day_id.0), None)]
        }
        DayEvent::BreakStarted { day_id, reason, started_at } => {
            let row = Write::new(
                "service_day_breaks",
                "INSERT INTO service_day_breaks (tenant_id, day_id, seq, started_at, reason_id, reason_label) \
                 SELECT $1, $2, COALESCE(MAX(seq), 0) + 1, $3, $4, $5 FROM service_day_breaks \
                 WHERE tenant_id = $1 AND day_id = $2",
            )
            .bind(tenant_owned)
            .bind(day_id.0)
            .bind(*started_at)
            .bind(reason.as_ref().map(|r| r.id.to_string()))
            .bind(reason.as_ref().map(|r| r.label.clone()));
            let reason = reason.as_ref().map(|r| (r.id.as_str(), r.label.as_str()));
            [row, status(Status::OnBreak, *started_at, Some(day_id.0), reason)]
        }
        DayEvent::BreakEnded { day_id, ended_at, duration_ms, .. } => {
            let row = Write::new(
                "service_day_breaks",
                // The open break is the day's last: found by the primary key's last entry,
                // not by reading every break of the day for the one without an end.
                "UPDATE service_day_breaks SET ended_at = $3, duration_ms = $4 \
                 WHERE tenant_id = $1 AND day_id = $2 AND ended_at IS NULL AND seq = \
                     (SELECT MAX(seq) FROM service_day_breaks WHERE tenant_id = $1 AND day_id = $2)",
            )
            .bind(tenant_owned)
            .bind(day_id.0)
            .bind(*ended_at)
            .bind(*duration_ms);
            [row, status(Status::Working, *ended_at, Some(day_id.0), None)]
        }
        DayEvent::DayEnded { day_id, ended_at, total_break_ms } => {
            let row = Write::new(
                "service_days",
                "UPDATE service_days SET ended_at = $3, total_break_ms = $4 WHERE tenant_id = $1 AND day_id = $2",
            )
            .bind(tenant_owned)
            .bind(day_id.0)
            .bind(*ended_at)
            .bind(*total_break_ms);
            [row, status(Status::Off, *ended_at, None, None)]
        }
    }
}

/// Applies one service-day event; `version` is the stream version the event has.
pub async fn apply_service_day(
    conn: &mut PgConnection,
    tenant: &str,
    agent_id: &AgentId,
    event: &DayEvent,
    version: i64,
) -> Result<(), sqlx::Error> {
    for write in service_day_writes(tenant, agent_id, event, version) {
        write.execute(conn).await?;
    }
    Ok(())
}

/// Stages the read-model rows of a command's service-day events (each with its stream version)
/// in the command's writes: each event's day, exit or break row, and the agent's row on the
/// board once, as the last event leaves it. What [`apply_service_day`] leaves, event by event.
pub fn stage_service_day<'e>(
    writes: &mut Writes,
    tenant: &str,
    agent_id: &AgentId,
    events: impl IntoIterator<Item = (&'e DayEvent, i64)>,
) {
    let mut last_status = None;
    for (event, version) in events {
        let [row, status] = service_day_writes(tenant, agent_id, event, version);
        writes.push(row);
        last_status = Some(status);
    }
    if let Some(status) = last_status {
        writes.push(status);
    }
}
