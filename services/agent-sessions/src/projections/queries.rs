//! Reads of agent-sessions' read models, shaped as the API answers them.

use chrono::{DateTime, NaiveDate, Utc};
use dw_proto::agentsessions::v1 as pb;
use dw_tenant_time::{DateRange, InstantRange, TenantZone};
use sqlx::{PgPool, Row};

use crate::codec::{duration_ms, reasons_to_pb, timestamp};
use crate::domain::service_day::{ExitCloseCause, Status};
use crate::domain::tenant_settings::TenantSettings;
use crate::domain::{AgentId, Reason};

pub fn status_to_pb(status: Status) -> pb::AgentStatus {
    match status {
        Status::Off => pb::AgentStatus::Off,
        Status::Working => pb::AgentStatus::Working,
        Status::OnBreak => pb::AgentStatus::OnBreak,
        Status::ExitNotified => pb::AgentStatus::ExitNotified,
    }
}

/// The tenant's settings and their version (defaults, version 0, when never set).
pub async fn tenant_settings(pool: &PgPool, tenant: &str) -> Result<(TenantSettings, i64), sqlx::Error> {
    let row = sqlx::query(
        "SELECT auto_distribution_enabled, exit_reasons, break_reasons, ticket_workspace_url, version, \
                time_zone, break_reason_optional \
         FROM tenant_settings WHERE tenant_id = $1",
    )
    .bind(tenant)
    .fetch_optional(pool)
    .await?;
    let Some(row) = row else {
        return Ok((TenantSettings::default(), 0));
    };
    let exit_reasons: serde_json::Value = row.try_get("exit_reasons")?;
    let break_reasons: serde_json::Value = row.try_get("break_reasons")?;
    let time_zone: String = row.try_get("time_zone")?;
    let time_zone = TenantZone::from_stored(&time_zone).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
    let settings = TenantSettings {
        auto_distribution_enabled: row.try_get("auto_distribution_enabled")?,
        exit_reasons: serde_json::from_value::<Vec<Reason>>(exit_reasons).unwrap_or_default(),
        break_reasons: serde_json::from_value::<Vec<Reason>>(break_reasons).unwrap_or_default(),
        ticket_workspace_url: row.try_get("ticket_workspace_url")?,
        time_zone,
        break_reason_optional: row.try_get("break_reason_optional")?,
    };
    Ok((settings, row.try_get("version")?))
}

pub fn settings_to_pb(settings: &TenantSettings, version: i64) -> pb::TenantSettings {
    pb::TenantSettings {
        auto_distribution_enabled: settings.auto_distribution_enabled,
        exit_reasons: reasons_to_pb(&settings.exit_reasons),
        break_reasons: reasons_to_pb(&settings.break_reasons),
        ticket_workspace_url: settings.ticket_workspace_url.clone().unwrap_or_default(),
        version: version.max(0) as u64,
        time_zone: settings.time_zone.name().to_owned(),
        break_reason_optional: settings.break_reason_optional,
    }
}

pub async fn agent(pool: &PgPool, tenant: &str, agent_id: &AgentId) -> Result<Option<pb::Agent>, sqlx::Error> {
    let row =
        sqlx::query("SELECT display_name, registered_at, version FROM agents WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant)
            .bind(agent_id.as_str())
            .fetch_optional(pool)
            .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let registered_at: DateTime<Utc> = row.try_get("registered_at")?;
    let version: i64 = row.try_get("version")?;
    Ok(Some(pb::Agent {
        agent_id: agent_id.to_string(),
        display_name: row.try_get("display_name")?,
        department_ids: departments(pool, tenant, agent_id).await?,
        permissions: permissions(pool, tenant, agent_id).await?.into_iter().map(|p| p.permission).collect(),
        registered_at: Some(timestamp(registered_at)),
        version: version.max(0) as u64,
    }))
}

pub async fn departments(pool: &PgPool, tenant: &str, agent_id: &AgentId) -> Result<Vec<String>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT department_id FROM agent_departments WHERE tenant_id = $1 AND agent_id = $2 ORDER BY department_id",
    )
    .bind(tenant)
    .bind(agent_id.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter().map(|r| r.try_get("department_id")).collect()
}

pub async fn permissions(
    pool: &PgPool,
    tenant: &str,
    agent_id: &AgentId,
) -> Result<Vec<pb::PermissionGrant>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT permission, granted_at, granted_by FROM agent_permissions \
         WHERE tenant_id = $1 AND agent_id = $2 ORDER BY permission",
    )
    .bind(tenant)
    .bind(agent_id.as_str())
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let granted_at: DateTime<Utc> = r.try_get("granted_at")?;
            Ok(pb::PermissionGrant {
                permission: r.try_get("permission")?,
                granted_at: Some(timestamp(granted_at)),
                granted_by: r.try_get("granted_by")?,
            })
        })
        .collect()
}

const STATUS_VIEW_SQL: &str = "SELECT s.agent_id, a.display_name, s.status, s.status_since, s.day_id, s.reason_id, \
            s.reason_label, \
            COALESCE((SELECT array_agg(d.department_id ORDER BY d.department_id) FROM agent_departments d \
                      WHERE d.tenant_id = s.tenant_id AND d.agent_id = s.agent_id), '{}') AS department_ids \
     FROM agent_status s JOIN agents a ON a.tenant_id = s.tenant_id AND a.agent_id = s.agent_id";

fn status_view_from_row(row: &sqlx::postgres::PgRow) -> Result<pb::AgentStatusView, sqlx::Error> {
    let status: String = row.try_get("status")?;
    let status = Status::parse(&status).map(status_to_pb).unwrap_or(pb::AgentStatus::Unspecified);
    let since: DateTime<Utc> = row.try_get("status_since")?;
    let day_id: Option<uuid::Uuid> = row.try_get("day_id")?;
    Ok(pb::AgentStatusView {
        agent_id: row.try_get("agent_id")?,
        display_name: row.try_get("display_name")?,
        status: status as i32,
        status_since: Some(timestamp(since)),
        day_id: day_id.map(|d| d.to_string()).unwrap_or_default(),
        reason_id: row.try_get::<Option<String>, _>("reason_id")?.unwrap_or_default(),
        reason_label: row.try_get::<Option<String>, _>("reason_label")?.unwrap_or_default(),
        department_ids: row.try_get("department_ids")?,
        heartbeat: false,
    })
}

pub async fn agent_status(
    pool: &PgPool,
    tenant: &str,
    agent_id: &str,
) -> Result<Option<pb::AgentStatusView>, sqlx::Error> {
    let sql = format!("{STATUS_VIEW_SQL} WHERE s.tenant_id = $1 AND s.agent_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(agent_id).fetch_optional(pool).await?;
    row.as_ref().map(status_view_from_row).transpose()
}

/// A page of the board ordered by agent id, after `after_agent_id`.
pub async fn agent_statuses(
    pool: &PgPool,
    tenant: &str,
    department: Option<&str>,
    after_agent_id: &str,
    limit: i64,
) -> Result<Vec<pb::AgentStatusView>, sqlx::Error> {
    let sql = format!(
        "{STATUS_VIEW_SQL} WHERE s.tenant_id = $1 AND s.agent_id > $2 AND ($3::text IS NULL OR EXISTS \
         (SELECT 1 FROM agent_departments d WHERE d.tenant_id = s.tenant_id AND d.agent_id = s.agent_id \
          AND d.department_id = $3)) ORDER BY s.agent_id LIMIT $4"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(after_agent_id)
        .bind(department)
        .bind(limit)
        .fetch_all(pool)
        .await?;
    rows.iter().map(status_view_from_row).collect()
}

/// Which days `GetMyInformation` covers.
#[derive(Debug, Clone, Copy)]
pub enum DayRange {
    /// The current day, or the last one.
    Latest,
    /// Days started in `[from, to)` and dated (tenant's zone) in `dates`, each bound optional,
    /// newest first.
    Between { started: InstantRange, dates: DateRange },
}

/// Days returned by one range query at most.
pub const MAX_DAYS: i64 = 400;

pub async fn service_days(
    pool: &PgPool,
    tenant: &str,
    agent_id: &AgentId,
    range: DayRange,
    now: DateTime<Utc>,
) -> Result<Vec<pb::ServiceDay>, sqlx::Error> {
    // Open-ended bounds are NULL: Postgres cannot represent chrono's extreme dates.
    let (started, dates, limit) = match range {
        DayRange::Latest => (InstantRange::default(), DateRange::default(), 1),
        DayRange::Between { started, dates } => (started, dates, MAX_DAYS),
    };
    let day_rows = sqlx::query(
        "SELECT day_id, started_at, ended_at, total_break_ms, service_date FROM service_days \
         WHERE tenant_id = $1 AND agent_id = $2 AND ($3::timestamptz IS NULL OR started_at >= $3) \
           AND ($4::timestamptz IS NULL OR started_at < $4) \
           AND ($6::date IS NULL OR service_date >= $6) AND ($7::date IS NULL OR service_date <= $7) \
         ORDER BY started_at DESC LIMIT $5",
    )
    .bind(tenant)
    .bind(agent_id.as_str())
    .bind(started.from)
    .bind(started.to)
    .bind(limit)
    .bind(dates.from)
    .bind(dates.to)
    .fetch_all(pool)
    .await?;
    let mut days = Vec::with_capacity(day_rows.len());
    for row in &day_rows {
        let day_id: uuid::Uuid = row.try_get("day_id")?;
        let started_at: DateTime<Utc> = row.try_get("started_at")?;
        let ended_at: Option<DateTime<Utc>> = row.try_get("ended_at")?;
        let service_date: NaiveDate = row.try_get("service_date")?;
        let breaks = day_breaks(pool, tenant, day_id, now).await?;
        // An ended day has its total recorded; an open one counts its breaks so far (the open
        // one up to now).
        let total_ms = if ended_at.is_some() {
            row.try_get::<i64, _>("total_break_ms")?
        } else {
            breaks
                .iter()
                .filter_map(|b| b.duration.as_ref())
                .map(|d| d.seconds * 1000 + i64::from(d.nanos / 1_000_000))
                .sum()
        };
        days.push(pb::ServiceDay {
            day_id: day_id.to_string(),
            started_at: Some(timestamp(started_at)),
            ended_at: ended_at.map(timestamp),
            breaks,
            exits: day_exits(pool, tenant, day_id).await?,
            total_break_time: Some(duration_ms(total_ms)),
            service_date: service_date.to_string(),
        });
    }
    Ok(days)
}

async fn day_breaks(
    pool: &PgPool,
    tenant: &str,
    day_id: uuid::Uuid,
    now: DateTime<Utc>,
) -> Result<Vec<pb::BreakRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT started_at, ended_at, duration_ms, reason_id, reason_label FROM service_day_breaks \
         WHERE tenant_id = $1 AND day_id = $2 ORDER BY seq",
    )
    .bind(tenant)
    .bind(day_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let started_at: DateTime<Utc> = r.try_get("started_at")?;
            let ended_at: Option<DateTime<Utc>> = r.try_get("ended_at")?;
            let stored_ms: Option<i64> = r.try_get("duration_ms")?;
            let ms = stored_ms.unwrap_or_else(|| (now - started_at).num_milliseconds().max(0));
            Ok(pb::BreakRecord {
                started_at: Some(timestamp(started_at)),
                ended_at: ended_at.map(timestamp),
                duration: Some(duration_ms(ms)),
                reason_id: r.try_get::<Option<String>, _>("reason_id")?.unwrap_or_default(),
                reason_label: r.try_get::<Option<String>, _>("reason_label")?.unwrap_or_default(),
            })
        })
        .collect()
}

async fn day_exits(pool: &PgPool, tenant: &str, day_id: uuid::Uuid) -> Result<Vec<pb::ExitRecord>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT reason_id, reason_label, notified_at, closed_at, close_cause FROM service_day_exits \
         WHERE tenant_id = $1 AND day_id = $2 ORDER BY seq",
    )
    .bind(tenant)
    .bind(day_id)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|r| {
            let notified_at: DateTime<Utc> = r.try_get("notified_at")?;
            let closed_at: Option<DateTime<Utc>> = r.try_get("closed_at")?;
            let cause: Option<String> = r.try_get("close_cause")?;
            let cause = cause
                .as_deref()
                .and_then(ExitCloseCause::parse)
                .map(crate::codec::close_cause_to_pb)
                .unwrap_or(pb::ExitCloseCause::Unspecified);
            Ok(pb::ExitRecord {
                reason_id: r.try_get("reason_id")?,
                reason_label: r.try_get("reason_label")?,
                notified_at: Some(timestamp(notified_at)),
                closed_at: closed_at.map(timestamp),
                close_cause: cause as i32,
            })
        })
        .collect()
}
