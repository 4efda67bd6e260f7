//! Reads of task-distribution's read models, shaped as the API answers them.

use chrono::{DateTime, NaiveDate, Utc};
use dw_ids::TenantId;
use dw_proto::distribution::v1 as pb;
use dw_tenant_time::{DateRange, InstantRange};
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};

use super::agents::Settings;
use crate::codec::{channel_to_pb, contact_to_pb, timestamp};
use crate::domain::task::Status;
use crate::domain::{Channel, TaskId};

const TASK_COLUMNS: &str = "task_id, protocol, department_id, channel, client_name, client_phone, contact_id, priority, \
     subject, status, agent_id, created_at, assigned_at, closed_at, version, message_count, last_message_at";

pub fn status_to_pb(status: Status) -> pb::TaskStatus {
    match status {
        Status::Queued => pb::TaskStatus::Queued,
        Status::Assigned => pb::TaskStatus::Assigned,
        Status::Completed => pb::TaskStatus::Completed,
        Status::Cancelled => pb::TaskStatus::Cancelled,
    }
}

pub fn task_from_row(row: &PgRow) -> Result<pb::Task, sqlx::Error> {
    let task_id: uuid::Uuid = row.try_get("task_id")?;
    let channel: String = row.try_get("channel")?;
    let status: String = row.try_get("status")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    let assigned_at: Option<DateTime<Utc>> = row.try_get("assigned_at")?;
    let closed_at: Option<DateTime<Utc>> = row.try_get("closed_at")?;
    let last_message_at: Option<DateTime<Utc>> = row.try_get("last_message_at")?;
    let version: i64 = row.try_get("version")?;
    Ok(pb::Task {
        task_id: task_id.to_string(),
        protocol: row.try_get("protocol")?,
        department_id: row.try_get("department_id")?,
        channel: Channel::parse(&channel).map(channel_to_pb).unwrap_or(pb::Channel::Unspecified) as i32,
        contact: Some(pb::ClientContact {
            name: row.try_get("client_name")?,
            phone: row.try_get("client_phone")?,
            contact_id: row.try_get::<Option<String>, _>("contact_id")?.unwrap_or_default(),
        }),
        priority: row.try_get("priority")?,
        subject: row.try_get("subject")?,
        status: Status::parse(&status).map(status_to_pb).unwrap_or(pb::TaskStatus::Unspecified) as i32,
        agent_id: row.try_get::<Option<String>, _>("agent_id")?.unwrap_or_default(),
        created_at: Some(timestamp(created_at)),
        assigned_at: assigned_at.map(timestamp),
        closed_at: closed_at.map(timestamp),
        version: version.max(0) as u64,
        message_count: row.try_get("message_count")?,
        last_message_at: last_message_at.map(timestamp),
    })
}

/// A task as [`task_from_row`] reads its row, from the state and version the row was written
/// with ([`super::tasks::save_write`]). Only for a state that holds the client's contact and the
/// subject, such as a task just created: a loaded state has them withheld.
pub fn task_to_pb(task: &crate::domain::task::Task, version: i64) -> pb::Task {
    let content = &task.content;
    let mut answer = pb::Task {
        task_id: content.task_id.to_string(),
        protocol: content.protocol.as_str().to_owned(),
        channel: channel_to_pb(content.channel) as i32,
        contact: Some(contact_to_pb(&content.contact)),
        priority: content.priority.value(),
        subject: content.subject.clone(),
        created_at: Some(timestamp(task.created_at)),
        ..pb::Task::default()
    };
    overlay(&mut answer, task, version);
    answer
}

/// Brings a task read from its row to `task` at `version`: what its changes move (department,
/// status, agent, times, version, messages), its content as read.
pub fn overlay(answer: &mut pb::Task, task: &crate::domain::task::Task, version: i64) {
    answer.department_id = task.department.to_string();
    answer.status = status_to_pb(task.status) as i32;
    answer.agent_id = task.agent.as_ref().map(ToString::to_string).unwrap_or_default();
    answer.assigned_at = task.assigned_at.map(timestamp);
    answer.closed_at = task.closed_at.map(timestamp);
    answer.version = version.max(0) as u64;
    answer.message_count = task.message_count;
    answer.last_message_at = task.last_message_at.map(timestamp);
}

/// The task's row, with whether a task waits in the queue of any of `departments`, in one read
/// (under those departments' locks, so the answer holds until they are released).
pub async fn task_and_queue(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
    departments: &[String],
) -> Result<Option<(pb::Task, bool)>, sqlx::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS}, EXISTS (SELECT 1 FROM tasks q WHERE q.tenant_id = $1 AND q.status = 'queued' \
                                        AND q.department_id = ANY($3)) AS queue_waiting \
         FROM tasks WHERE tenant_id = $1 AND task_id = $2"
    );
    let row = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(task_id.0)
        .bind(departments)
        .fetch_optional(conn)
        .await?;
    row.map(|row| Ok((task_from_row(&row)?, row.try_get("queue_waiting")?))).transpose()
}

pub async fn task_by_id(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
) -> Result<Option<pb::Task>, sqlx::Error> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = $1 AND task_id = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(task_id.0).fetch_optional(conn).await?;
    row.as_ref().map(task_from_row).transpose()
}

/// The tasks of several tenants by `(tenant, task)` pairs, in one query, each with its tenant.
pub async fn tasks_of_tenants(
    conn: &mut PgConnection,
    pairs: &[(&TenantId, TaskId)],
) -> Result<Vec<(String, pb::Task)>, sqlx::Error> {
    let tenants: Vec<&str> = pairs.iter().map(|(tenant, _)| tenant.as_str()).collect();
    let ids: Vec<uuid::Uuid> = pairs.iter().map(|(_, id)| id.0).collect();
    let sql = format!(
        "SELECT tenant_id, {TASK_COLUMNS} FROM tasks \
         WHERE (tenant_id, task_id) IN (SELECT * FROM unnest($1::text[], $2::uuid[]))"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&tenants).bind(&ids).fetch_all(conn).await?;
    rows.iter().map(|row| Ok((row.try_get("tenant_id")?, task_from_row(row)?))).collect()
}

pub async fn task_by_protocol(
    conn: &mut PgConnection,
    tenant: &TenantId,
    protocol: &str,
) -> Result<Option<pb::Task>, sqlx::Error> {
    let sql = format!("SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = $1 AND protocol = $2");
    let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant).bind(protocol).fetch_optional(conn).await?;
    row.as_ref().map(task_from_row).transpose()
}

pub async fn tasks_of_agent(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &str,
    include_closed_since: Option<DateTime<Utc>>,
) -> Result<Vec<pb::Task>, sqlx::Error> {
    let sql = format!(
        "SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = $1 AND agent_id = $2 \
         AND (status = 'assigned' OR ($3::timestamptz IS NOT NULL AND closed_at >= $3)) ORDER BY created_at"
    );
    let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(tenant)
        .bind(agent)
        .bind(include_closed_since)
        .fetch_all(conn)
        .await?;
    rows.iter().map(task_from_row).collect()
}

pub fn settings_to_pb(settings: &Settings) -> pb::DistributionSettings {
    pb::DistributionSettings {
        default_capacity: settings.default_capacity,
        auto_distribution_enabled: settings.auto_distribution_enabled,
        inbound_department_id: settings.inbound_department_id.clone().unwrap_or_default(),
        version: u64::try_from(settings.version).unwrap_or_default(),
        time_zone: settings.time_zone.name().to_owned(),
    }
}

/// Search filters, parsed at the edge.
#[derive(Debug, Clone, Default)]
pub struct Search {
    pub protocol: Option<String>,
    pub protocol_prefix: Option<String>,
    pub client_name: Option<String>,
    pub phone: Option<String>,
    pub status: Option<Status>,
    pub department: Option<String>,
    pub agent: Option<String>,
    pub created_from: Option<DateTime<Utc>>,
    pub created_to: Option<DateTime<Utc>>,
    /// Creation dates in the tenant's calendar; resolved to instants with its zone.
    pub created_dates: DateRange,
    /// Keyset: strictly older than this (created_at, task_id).
    pub after: Option<(DateTime<Utc>, uuid::Uuid)>,
    pub limit: i64,
}

/// The creation-time range a protocol prefix implies: a year, a month or a day in UTC, widened by
/// the furthest any zone is from UTC on each side (14 h before, 12 h after), because a protocol
/// is dated in its tenant's zone at its creation (whichever zone the tenant had then). Lets
/// Postgres use the time index instead of filtering the LIKE, which decides. Newest first, the
/// index scan reads the range's tail that holds the next period's tasks before the first match:
/// with a whole day on each side it read a whole day of tasks, half as many with these margins
/// (the 1,000,000-task bench's day prefix: 10,000 rows read and dropped, now 5,000).
pub fn protocol_prefix_range(prefix: &str) -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    let year: i32 = prefix.get(..4)?.parse().ok()?;
    let month: Option<u32> = prefix.get(4..6).and_then(|m| m.parse().ok());
    let day: Option<u32> = prefix.get(6..8).and_then(|d| d.parse().ok());
    let (start, end) = match (month, day) {
        (Some(month), Some(day)) => {
            let start = NaiveDate::from_ymd_opt(year, month, day)?;
            (start, start.succ_opt()?)
        }
        (Some(month), None) => {
            let start = NaiveDate::from_ymd_opt(year, month, 1)?;
            let end = if month == 12 {
                NaiveDate::from_ymd_opt(year + 1, 1, 1)?
            } else {
                NaiveDate::from_ymd_opt(year, month + 1, 1)?
            };
            (start, end)
        }
        _ => (NaiveDate::from_ymd_opt(year, 1, 1)?, NaiveDate::from_ymd_opt(year + 1, 1, 1)?),
    };
    Some((
        start.and_hms_opt(0, 0, 0)?.and_utc() - dw_tenant_time::MOST_AHEAD,
        end.and_hms_opt(0, 0, 0)?.and_utc() + dw_tenant_time::MOST_BEHIND,
    ))
}

/// Newest first. Only the given filters enter the SQL, so each query can use its index.
pub async fn search(conn: &mut PgConnection, tenant: &TenantId, search: &Search) -> Result<Vec<pb::Task>, sqlx::Error> {
    let created = InstantRange { from: search.created_from, to: search.created_to };
    let created = if search.created_dates.is_open() {
        created
    } else {
        let zone = super::agents::time_zone(conn, tenant).await?;
        created.intersect(zone.instants_of(search.created_dates))
    };
    let mut sql = String::from("FROM tasks WHERE tenant_id = $1");
    let mut n = 1;
    let mut next = || {
        n += 1;
        n
    };
    if search.protocol.is_some() {
        sql.push_str(&format!(" AND protocol = ${}", next()));
    }
    let prefix_range = search.protocol_prefix.as_deref().and_then(protocol_prefix_range);
    if search.protocol_prefix.is_some() {
        sql.push_str(&format!(" AND protocol LIKE ${} || '%'", next()));
    }
    if prefix_range.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND created_at >= ${a} AND created_at < ${b}"));
    }
    if search.client_name.is_some() {
        sql.push_str(&format!(" AND dw_search_text(client_name) LIKE '%' || dw_search_text(${}) || '%'", next()));
    }
    if search.phone.is_some() {
        sql.push_str(&format!(" AND client_phone = ${}", next()));
    }
    if search.status.is_some() {
        sql.push_str(&format!(" AND status = ${}", next()));
    }
    if search.department.is_some() {
        sql.push_str(&format!(" AND department_id = ${}", next()));
    }
    if search.agent.is_some() {
        sql.push_str(&format!(" AND agent_id = ${}", next()));
    }
    if created.from.is_some() {
        sql.push_str(&format!(" AND created_at >= ${}", next()));
    }
    if created.to.is_some() {
        sql.push_str(&format!(" AND created_at < ${}", next()));
    }
    if search.after.is_some() {
        let (a, b) = (next(), next());
        sql.push_str(&format!(" AND (created_at, task_id) < (${a}, ${b})"));
    }
    let limit = next();
    let order = "ORDER BY created_at DESC, task_id DESC";
    let sql = if search.protocol_prefix.is_some() {
        // The page's ids first, from the newest-first index that carries the protocol (an
        // index-only scan that drops the range's other protocols without reading their rows),
        // then the page's rows.
        format!(
            "SELECT {TASK_COLUMNS} FROM tasks WHERE tenant_id = $1 AND task_id IN \
             (SELECT task_id {sql} {order} LIMIT ${limit}) {order}"
        )
    } else {
        format!("SELECT {TASK_COLUMNS} {sql} {order} LIMIT ${limit}")
    };

    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(tenant);
    if let Some(protocol) = &search.protocol {
        query = query.bind(protocol);
    }
    if let Some(prefix) = &search.protocol_prefix {
        query = query.bind(prefix);
    }
    if let Some((from, to)) = prefix_range {
        query = query.bind(from).bind(to);
    }
    if let Some(name) = &search.client_name {
        // LIKE wildcards typed by the user are literal text.
        query = query.bind(name.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"));
    }
    if let Some(phone) = &search.phone {
        query = query.bind(phone);
    }
    if let Some(status) = search.status {
        query = query.bind(status.as_str());
    }
    if let Some(department) = &search.department {
        query = query.bind(department);
    }
    if let Some(agent) = &search.agent {
        query = query.bind(agent);
    }
    if let Some(from) = created.from {
        query = query.bind(from);
    }
    if let Some(to) = created.to {
        query = query.bind(to);
    }
    if let Some((created_at, task_id)) = search.after {
        query = query.bind(created_at).bind(task_id);
    }
    let rows = query.bind(search.limit).fetch_all(conn).await?;
    rows.iter().map(task_from_row).collect()
}

fn duration(d: chrono::Duration) -> prost_types::Duration {
    let d = d.max(chrono::Duration::zero());
    prost_types::Duration { seconds: d.num_seconds(), nanos: d.subsec_nanos() }
}

/// Queue and staffing figures per department (all of the tenant's, or one).
pub async fn queue_stats(
    conn: &mut PgConnection,
    tenant: &TenantId,
    department: Option<&str>,
    now: DateTime<Utc>,
) -> Result<Vec<pb::DepartmentQueueStats>, sqlx::Error> {
    let rows = sqlx::query(
        "WITH departments AS ( \
             SELECT department_id FROM agent_departments WHERE tenant_id = $1 \
             UNION SELECT department_id FROM tasks WHERE tenant_id = $1 AND status IN ('queued', 'assigned')), \
         settings AS (SELECT COALESCE((SELECT default_capacity FROM distribution_settings WHERE tenant_id = $1), 3) AS cap) \
         SELECT d.department_id, \
             (SELECT count(*) FROM tasks t WHERE t.tenant_id = $1 AND t.department_id = d.department_id \
                 AND t.status = 'queued') AS waiting, \
             (SELECT min(COALESCE(t.waiting_since, t.queued_at)) FROM tasks t WHERE t.tenant_id = $1 \
                 AND t.department_id = d.department_id AND t.status = 'queued') AS oldest, \
             (SELECT count(*) FROM tasks t WHERE t.tenant_id = $1 AND t.department_id = d.department_id \
                 AND t.status = 'assigned') AS assigned, \
             count(a.agent_id) FILTER (WHERE a.day_open AND NOT a.on_break AND NOT a.exit_notified \
                 AND a.active_tasks < COALESCE(a.capacity_override, s.cap)) AS available, \
             count(a.agent_id) FILTER (WHERE a.day_open AND a.on_break) AS on_break, \
             count(a.agent_id) FILTER (WHERE a.day_open AND NOT a.on_break AND a.exit_notified) AS exit_notified, \
             count(a.agent_id) FILTER (WHERE a.day_open AND NOT a.on_break AND NOT a.exit_notified \
                 AND a.active_tasks >= COALESCE(a.capacity_override, s.cap)) AS at_capacity \
         FROM departments d CROSS JOIN settings s \
         LEFT JOIN agent_departments ad ON ad.tenant_id = $1 AND ad.department_id = d.department_id \
         LEFT JOIN agents a ON a.tenant_id = $1 AND a.agent_id = ad.agent_id \
         WHERE ($2::text IS NULL OR d.department_id = $2) \
         GROUP BY d.department_id ORDER BY d.department_id",
    )
    .bind(tenant)
    .bind(department)
    .fetch_all(&mut *conn)
    .await?;
    let mut stats = Vec::with_capacity(rows.len());
    for row in &rows {
        let department_id: String = row.try_get("department_id")?;
        let oldest: Option<DateTime<Utc>> = row.try_get("oldest")?;
        let count = |name: &str| row.try_get::<i64, _>(name).map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let waiting_on_break = sqlx::query(
            "SELECT t.task_id, t.protocol, t.agent_id, a.break_started_at FROM tasks t \
             JOIN agents a ON a.tenant_id = t.tenant_id AND a.agent_id = t.agent_id \
             WHERE t.tenant_id = $1 AND t.department_id = $2 AND t.status = 'assigned' AND a.on_break \
             ORDER BY a.break_started_at",
        )
        .bind(tenant)
        .bind(&department_id)
        .fetch_all(&mut *conn)
        .await?
        .iter()
        .map(|r| {
            let task_id: uuid::Uuid = r.try_get("task_id")?;
            let since: Option<DateTime<Utc>> = r.try_get("break_started_at")?;
            Ok(pb::WaitingOnBreak {
                task_id: task_id.to_string(),
                protocol: r.try_get("protocol")?,
                agent_id: r.try_get("agent_id")?,
                waited: Some(duration(now - since.unwrap_or(now))),
            })
        })
        .collect::<Result<Vec<_>, sqlx::Error>>()?;
        stats.push(pb::DepartmentQueueStats {
            department_id,
            waiting_tasks: count("waiting")?,
            oldest_wait: oldest.map(|o| duration(now - o)),
            agents_available: count("available")?,
            agents_on_break: count("on_break")?,
            agents_exit_notified: count("exit_notified")?,
            agents_at_capacity: count("at_capacity")?,
            assigned_tasks: count("assigned")?,
            tasks_waiting_on_break: waiting_on_break,
        });
    }
    Ok(stats)
}

pub async fn decisions(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
) -> Result<Vec<pb::AssignmentDecision>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT decision_id, decided_at, chosen_agent_id, trigger, candidates, verdicts FROM assignment_decisions \
         WHERE tenant_id = $1 AND task_id = $2 ORDER BY decided_at, decision_id",
    )
    .bind(tenant)
    .bind(task_id.0)
    .fetch_all(conn)
    .await?;
    rows.iter()
        .map(|row| {
            let decision_id: uuid::Uuid = row.try_get("decision_id")?;
            let decided_at: DateTime<Utc> = row.try_get("decided_at")?;
            let candidates: serde_json::Value = row.try_get("candidates")?;
            let stored: Option<String> = row.try_get("verdicts")?;
            let verdicts = crate::domain::assignment::decode_verdicts(stored.as_deref(), candidates);
            Ok(pb::AssignmentDecision {
                decision_id: decision_id.to_string(),
                decided_at: Some(timestamp(decided_at)),
                chosen_agent_id: row.try_get::<Option<String>, _>("chosen_agent_id")?.unwrap_or_default(),
                candidates: verdicts.iter().map(verdict_to_pb).collect(),
                trigger: row.try_get("trigger")?,
            })
        })
        .collect()
}

fn verdict_to_pb(verdict: &crate::domain::assignment::Verdict) -> pb::CandidateVerdict {
    use crate::domain::assignment::Exclusion as E;
    let exclusion = match verdict.exclusion {
        None => pb::Exclusion::Unspecified,
        Some(E::DayNotStarted) => pb::Exclusion::DayNotStarted,
        Some(E::OnBreak) => pb::Exclusion::OnBreak,
        Some(E::ExitNotified) => pb::Exclusion::ExitNotified,
        Some(E::AtCapacity) => pb::Exclusion::AtCapacity,
        Some(E::MoreActiveTasks) => pb::Exclusion::MoreActiveTasks,
        Some(E::LessIdleTime) => pb::Exclusion::LessIdleTime,
    };
    pb::CandidateVerdict {
        agent_id: verdict.agent_id.to_string(),
        exclusion: exclusion as i32,
        active_tasks: verdict.active_tasks,
        capacity: verdict.capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::protocol_prefix_range;

    #[test]
    fn protocol_prefixes_imply_a_creation_range() {
        let (from, to) = protocol_prefix_range("20261124").unwrap();
        assert_eq!(
            (from.to_rfc3339(), to.to_rfc3339()),
            ("2026-11-23T10:00:00+00:00".into(), "2026-11-25T12:00:00+00:00".into())
        );
        let (from, to) = protocol_prefix_range("202612").unwrap();
        assert_eq!(
            (from.to_rfc3339(), to.to_rfc3339()),
            ("2026-11-30T10:00:00+00:00".into(), "2027-01-01T12:00:00+00:00".into())
        );
        let (from, to) = protocol_prefix_range("2026112").unwrap();
        assert_eq!(
            (from.to_rfc3339(), to.to_rfc3339()),
            ("2026-10-31T10:00:00+00:00".into(), "2026-12-01T12:00:00+00:00".into())
        );
        assert!(protocol_prefix_range("202").is_none());
        assert!(protocol_prefix_range("20261399").is_none(), "not a date: plain LIKE");
    }

    #[test]
    fn a_protocol_dated_in_a_far_zone_is_inside_the_range_of_its_prefix() {
        use chrono::TimeZone;
        let (from, to) = protocol_prefix_range("20261124").unwrap();
        // 23:30 on the 24th in São Paulo (UTC−3), 00:00 on the 24th at UTC+14, 23:59 at UTC−12.
        for created in [
            chrono::Utc.with_ymd_and_hms(2026, 11, 25, 2, 30, 0).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 23, 10, 0, 0).unwrap(),
            chrono::Utc.with_ymd_and_hms(2026, 11, 25, 11, 59, 0).unwrap(),
        ] {
            assert!(from <= created && created < to, "{created}");
        }
        // The first and the last instant of the 24th in the zones furthest ahead and behind.
        let day = chrono::NaiveDate::from_ymd_opt(2026, 11, 24).unwrap();
        for zone in ["Pacific/Kiritimati", "Etc/GMT-14", "Etc/GMT+12", "Pacific/Apia", "America/Sao_Paulo"] {
            let zone = dw_tenant_time::TenantZone::parse(zone).unwrap();
            let first = zone.start_of(day);
            let last = zone.start_of(day.succ_opt().unwrap()) - chrono::Duration::microseconds(1);
            assert_eq!((zone.local_date(first), zone.local_date(last)), (day, day));
            assert!(from <= first && last < to, "{}: {first} – {last} outside {from} – {to}", zone.name());
        }
        // An hour more on either side is another day everywhere.
        let before = from - chrono::Duration::hours(1);
        let after = to + chrono::Duration::hours(1);
        for zone in ["Pacific/Kiritimati", "Etc/GMT+12"] {
            let zone = dw_tenant_time::TenantZone::parse(zone).unwrap();
            assert_ne!(zone.local_date(before), day);
            assert_ne!(zone.local_date(after), day);
        }
    }
}
