//! The read models' events applied a batch at a time (a rebuild's lane of a page): folded in
//! memory into the rows they leave, then written in a dozen set-based statements, whatever the
//! batch's size. What it writes is what [`super::apply_agent`], [`super::apply_service_day`] and
//! [`super::apply_settings`] would leave applied one event at a time, on top of what earlier
//! batches wrote (the rebuild test compares both with the tables the commands wrote).

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, Utc};
use dw_eventstore::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use super::rebuild::Projected;
use crate::domain::service_day::{Event as DayEvent, Status};
use crate::domain::tenant_settings::Event as SettingsEvent;
use crate::domain::{AgentId, agent};

type Tenant = String;
type Agent = (Tenant, String);
type Day = (Tenant, Uuid);
/// (tenant, agent, department or permission).
type Member = (Tenant, String, String);

/// An agent's row on the board after the batch.
#[derive(Debug, Clone)]
struct StatusRow {
    status: Status,
    since: DateTime<Utc>,
    day_id: Option<Uuid>,
    reason: Option<(String, String)>,
    version: i64,
}

#[derive(Debug, Clone)]
enum StatusOp {
    /// A registration: the row `off` since then, unless one exists.
    InsertIfAbsent(DateTime<Utc>),
    Upsert(StatusRow),
}

/// A membership (department or permission) after the batch: `reset` when a removal happened in
/// it (the row is deleted first), `added` the addition that stands after the last removal.
#[derive(Debug, Clone, Default)]
struct Membership<T> {
    reset: bool,
    added: Option<T>,
}

impl<T> Membership<T> {
    fn add(&mut self, value: T) {
        // A second addition without a removal changes nothing (ON CONFLICT DO NOTHING).
        if self.added.is_none() {
            self.added = Some(value);
        }
    }

    fn remove(&mut self) {
        self.reset = true;
        self.added = None;
    }
}

#[derive(Debug, Clone)]
struct NewAgent {
    display_name: String,
    registered_at: DateTime<Utc>,
    version: i64,
}

#[derive(Debug, Clone)]
struct NewDay {
    agent: String,
    started_at: DateTime<Utc>,
    service_date: NaiveDate,
    department_ids: serde_json::Value,
    ended: Option<(DateTime<Utc>, i64)>,
}

/// A break or an exit of a day: opened with its fields, closed with others.
#[derive(Debug, Clone)]
struct Span<O, C> {
    opened: O,
    closed: Option<C>,
}

/// A day's breaks or exits in the batch: the closing of those open before it (the first close of
/// the batch closes them; later ones find none open), and the new ones.
#[derive(Debug, Clone)]
struct Spans<O, C> {
    close_earlier: Option<C>,
    new: Vec<Span<O, C>>,
}

impl<O, C> Default for Spans<O, C> {
    fn default() -> Self {
        Self { close_earlier: None, new: Vec::new() }
    }
}

impl<O, C: Clone> Spans<O, C> {
    fn open(&mut self, opened: O) {
        self.new.push(Span { opened, closed: None });
    }

    /// `UPDATE … WHERE closed IS NULL`: every open one, new or earlier.
    fn close(&mut self, closed: C) {
        for span in self.new.iter_mut().filter(|span| span.closed.is_none()) {
            span.closed = Some(closed.clone());
        }
        if self.close_earlier.is_none() {
            self.close_earlier = Some(closed);
        }
    }
}

type BreakOpen = (DateTime<Utc>, Option<(String, String)>);
type BreakClose = (DateTime<Utc>, i64);
type ExitOpen = (String, String, DateTime<Utc>);
type ExitClose = (DateTime<Utc>, &'static str);

/// What a batch leaves, row by row.
#[derive(Default)]
struct Fold {
    settings: BTreeMap<Tenant, (SettingsEvent, i64)>,
    new_agents: BTreeMap<Agent, NewAgent>,
    agent_versions: BTreeMap<Agent, i64>,
    departments: BTreeMap<Member, Membership<DateTime<Utc>>>,
    permissions: BTreeMap<Member, Membership<(DateTime<Utc>, String)>>,
    status: BTreeMap<Agent, StatusOp>,
    new_days: BTreeMap<Day, NewDay>,
    ended_days: BTreeMap<Day, (DateTime<Utc>, i64)>,
    breaks: BTreeMap<Day, Spans<BreakOpen, BreakClose>>,
    exits: BTreeMap<Day, Spans<ExitOpen, ExitClose>>,
}

impl Fold {
    fn agent(&mut self, tenant: &str, agent_id: &AgentId, event: agent::Event, version: i64) {
        use agent::Event as E;
        let key = (tenant.to_owned(), agent_id.as_str().to_owned());
        let membership = |name: &str| (tenant.to_owned(), agent_id.as_str().to_owned(), name.to_owned());
        match event {
            E::Registered { display_name, at, .. } => {
                self.new_agents.insert(key.clone(), NewAgent { display_name, registered_at: at, version });
                self.status.entry(key.clone()).or_insert(StatusOp::InsertIfAbsent(at));
            }
            E::DepartmentLinked { department, at, .. } => {
                self.departments.entry(membership(department.as_str())).or_default().add(at);
            }
            E::DepartmentUnlinked { department, .. } => {
                self.departments.entry(membership(department.as_str())).or_default().remove();
            }
            E::PermissionGranted { permission, by, at } => {
                self.permissions.entry(membership(permission.as_str())).or_default().add((at, by));
            }
            E::PermissionRevoked { permission, .. } => {
                self.permissions.entry(membership(permission.as_str())).or_default().remove();
            }
        }
        // Every agent event sets the agent's version.
        match self.new_agents.get_mut(&key) {
            Some(new) => new.version = version,
            None => {
                self.agent_versions.insert(key, version);
            }
        }
    }

    fn day(&mut self, tenant: &str, agent_id: &AgentId, event: DayEvent, version: i64) {
        let agent_key = (tenant.to_owned(), agent_id.as_str().to_owned());
        let day = |day_id: Uuid| (tenant.to_owned(), day_id);
        let (status, since, day_id, reason) = match event {
            DayEvent::DayStarted { day_id, started_at, service_date, departments } => {
                let department_ids = serde_json::to_value(&departments).unwrap_or_default();
                let new = NewDay {
                    agent: agent_id.as_str().to_owned(),
                    started_at,
                    service_date,
                    department_ids,
                    ended: None,
                };
                self.new_days.insert(day(day_id.0), new);
                (Status::Working, started_at, Some(day_id.0), None)
            }
            DayEvent::ExitNotified { day_id, reason, notified_at } => {
                let (id, label) = (reason.id.as_str().to_owned(), reason.label);
                self.exits.entry(day(day_id.0)).or_default().open((id.clone(), label.clone(), notified_at));
                (Status::ExitNotified, notified_at, Some(day_id.0), Some((id, label)))
            }
            DayEvent::ExitClosed { day_id, cause, closed_at } => {
                self.exits.entry(day(day_id.0)).or_default().close((closed_at, cause.as_str()));
                (Status::Working, closed_at, Some(day_id.0), None)
            }
            DayEvent::BreakStarted { day_id, reason, started_at } => {
                let reason = reason.map(|r| (r.id.as_str().to_owned(), r.label));
                self.breaks.entry(day(day_id.0)).or_default().open((started_at, reason.clone()));
                (Status::OnBreak, started_at, Some(day_id.0), reason)
            }
            DayEvent::BreakEnded { day_id, ended_at, duration_ms, .. } => {
                self.breaks.entry(day(day_id.0)).or_default().close((ended_at, duration_ms));
                (Status::Working, ended_at, Some(day_id.0), None)
            }
            DayEvent::DayEnded { day_id, ended_at, total_break_ms } => {
                match self.new_days.get_mut(&day(day_id.0)) {
                    Some(new) => new.ended = Some((ended_at, total_break_ms)),
                    None => {
                        self.ended_days.insert(day(day_id.0), (ended_at, total_break_ms));
                    }
                }
                (Status::Off, ended_at, None, None)
            }
        };
        self.status.insert(agent_key, StatusOp::Upsert(StatusRow { status, since, day_id, reason, version }));
    }
}

/// Applies `events` (a lane of a rebuild page, in order) to the read models.
pub async fn apply(conn: &mut PgConnection, events: &[&RecordedEvent]) -> Result<(), String> {
    let mut fold = Fold::default();
    for event in events {
        let tenant = event.tenant_id.as_str();
        match super::rebuild::decode(event)? {
            Some(Projected::Day(agent, day)) => fold.day(tenant, &agent, day, event.version),
            Some(Projected::Agent(agent, change)) => fold.agent(tenant, &agent, change, event.version),
            Some(Projected::Settings(settings)) => {
                fold.settings.insert(tenant.to_owned(), (settings, event.version));
            }
            None => {}
        }
    }
    write(conn, fold).await.map_err(|e| e.to_string())
}

async fn write(conn: &mut PgConnection, fold: Fold) -> Result<(), sqlx::Error> {
    for (tenant, (settings, version)) in &fold.settings {
        super::apply_settings(conn, tenant, settings, *version).await?;
    }
    write_agents(conn, &fold).await?;
    write_memberships(conn, &fold).await?;
    write_status(conn, &fold).await?;
    write_days(conn, &fold).await?;
    write_breaks(conn, &fold.breaks).await?;
    write_exits(conn, &fold.exits).await?;
    Ok(())
}

async fn write_agents(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    if !fold.new_agents.is_empty() {
        let (mut tenants, mut agents, mut names, mut ats, mut versions) = (vec![], vec![], vec![], vec![], vec![]);
        for ((tenant, agent), new) in &fold.new_agents {
            tenants.push(tenant.as_str());
            agents.push(agent.as_str());
            names.push(new.display_name.as_str());
            ats.push(new.registered_at);
            versions.push(new.version);
        }
        sqlx::query(
            "INSERT INTO agents (tenant_id, agent_id, display_name, registered_at, version) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::bigint[])",
        )
        .bind(&tenants)
        .bind(&agents)
        .bind(&names)
        .bind(&ats)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    if !fold.agent_versions.is_empty() {
        let (mut tenants, mut agents, mut versions) = (vec![], vec![], vec![]);
        for ((tenant, agent), version) in &fold.agent_versions {
            tenants.push(tenant.as_str());
            agents.push(agent.as_str());
            versions.push(*version);
        }
        sqlx::query(
            "UPDATE agents a SET version = u.version \
             FROM unnest($1::text[], $2::text[], $3::bigint[]) AS u(tenant_id, agent_id, version) \
             WHERE a.tenant_id = u.tenant_id AND a.agent_id = u.agent_id",
        )
        .bind(&tenants)
        .bind(&agents)
        .bind(&versions)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_memberships(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    // Removals first, then what stands added (kept as it was when the row already exists).
    let (mut t, mut a, mut d, mut at) = (vec![], vec![], vec![], vec![]);
    let (mut rt, mut ra, mut rd) = (vec![], vec![], vec![]);
    for ((tenant, agent, department), membership) in &fold.departments {
        if membership.reset {
            rt.push(tenant.as_str());
            ra.push(agent.as_str());
            rd.push(department.as_str());
        }
        if let Some(linked_at) = membership.added {
            t.push(tenant.as_str());
            a.push(agent.as_str());
            d.push(department.as_str());
            at.push(linked_at);
        }
    }
    if !rt.is_empty() {
        sqlx::query(
            "DELETE FROM agent_departments m USING unnest($1::text[], $2::text[], $3::text[]) AS u(t, a, d) \
             WHERE m.tenant_id = u.t AND m.agent_id = u.a AND m.department_id = u.d",
        )
        .bind(&rt)
        .bind(&ra)
        .bind(&rd)
        .execute(&mut *conn)
        .await?;
    }
    if !t.is_empty() {
        sqlx::query(
            "INSERT INTO agent_departments (tenant_id, agent_id, department_id, linked_at) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[]) ON CONFLICT DO NOTHING",
        )
        .bind(&t)
        .bind(&a)
        .bind(&d)
        .bind(&at)
        .execute(&mut *conn)
        .await?;
    }
    let (mut t, mut a, mut p, mut at, mut by) = (vec![], vec![], vec![], vec![], vec![]);
    let (mut rt, mut ra, mut rp) = (vec![], vec![], vec![]);
    for ((tenant, agent, permission), membership) in &fold.permissions {
        if membership.reset {
            rt.push(tenant.as_str());
            ra.push(agent.as_str());
            rp.push(permission.as_str());
        }
        if let Some((granted_at, granted_by)) = &membership.added {
            t.push(tenant.as_str());
            a.push(agent.as_str());
            p.push(permission.as_str());
            at.push(*granted_at);
            by.push(granted_by.as_str());
        }
    }
    if !rt.is_empty() {
        sqlx::query(
            "DELETE FROM agent_permissions m USING unnest($1::text[], $2::text[], $3::text[]) AS u(t, a, p) \
             WHERE m.tenant_id = u.t AND m.agent_id = u.a AND m.permission = u.p",
        )
        .bind(&rt)
        .bind(&ra)
        .bind(&rp)
        .execute(&mut *conn)
        .await?;
    }
    if !t.is_empty() {
        sqlx::query(
            "INSERT INTO agent_permissions (tenant_id, agent_id, permission, granted_at, granted_by) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&t)
        .bind(&a)
        .bind(&p)
        .bind(&at)
        .bind(&by)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_status(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    let (mut it, mut ia, mut iat) = (vec![], vec![], vec![]);
    let (mut t, mut a, mut status, mut since, mut day, mut rid, mut rlabel, mut version) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for ((tenant, agent), op) in &fold.status {
        match op {
            StatusOp::InsertIfAbsent(at) => {
                it.push(tenant.as_str());
                ia.push(agent.as_str());
                iat.push(*at);
            }
            StatusOp::Upsert(row) => {
                t.push(tenant.as_str());
                a.push(agent.as_str());
                status.push(row.status.as_str());
                since.push(row.since);
                day.push(row.day_id);
                rid.push(row.reason.as_ref().map(|r| r.0.as_str()));
                rlabel.push(row.reason.as_ref().map(|r| r.1.as_str()));
                version.push(row.version);
            }
        }
    }
    if !it.is_empty() {
        sqlx::query(
            "INSERT INTO agent_status (tenant_id, agent_id, status, status_since) \
             SELECT t, a, 'off', at FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS u(t, a, at) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&it)
        .bind(&ia)
        .bind(&iat)
        .execute(&mut *conn)
        .await?;
    }
    if !t.is_empty() {
        sqlx::query(
            "INSERT INTO agent_status (tenant_id, agent_id, status, status_since, day_id, reason_id, reason_label, version) \
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::uuid[], $6::text[], \
                                  $7::text[], $8::bigint[]) \
             ON CONFLICT (tenant_id, agent_id) DO UPDATE SET status = EXCLUDED.status, \
                 status_since = EXCLUDED.status_since, day_id = EXCLUDED.day_id, reason_id = EXCLUDED.reason_id, \
                 reason_label = EXCLUDED.reason_label, version = EXCLUDED.version",
        )
        .bind(&t)
        .bind(&a)
        .bind(&status)
        .bind(&since)
        .bind(&day)
        .bind(&rid)
        .bind(&rlabel)
        .bind(&version)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_days(conn: &mut PgConnection, fold: &Fold) -> Result<(), sqlx::Error> {
    if !fold.new_days.is_empty() {
        let n = fold.new_days.len();
        let (mut t, mut d, mut a, mut started, mut deps, mut date, mut ended, mut total) = (
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
            Vec::with_capacity(n),
        );
        for ((tenant, day_id), new) in &fold.new_days {
            t.push(tenant.as_str());
            d.push(*day_id);
            a.push(new.agent.as_str());
            started.push(new.started_at);
            deps.push(new.department_ids.clone());
            date.push(new.service_date);
            ended.push(new.ended.map(|(at, _)| at));
            total.push(new.ended.map_or(0, |(_, ms)| ms));
        }
        sqlx::query(
            "INSERT INTO service_days (tenant_id, day_id, agent_id, started_at, department_ids, service_date, \
                                       ended_at, total_break_ms) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::text[], $4::timestamptz[], $5::jsonb[], $6::date[], \
                                  $7::timestamptz[], $8::bigint[])",
        )
        .bind(&t)
        .bind(&d)
        .bind(&a)
        .bind(&started)
        .bind(&deps)
        .bind(&date)
        .bind(&ended)
        .bind(&total)
        .execute(&mut *conn)
        .await?;
    }
    if !fold.ended_days.is_empty() {
        let (mut t, mut d, mut ended, mut total) = (vec![], vec![], vec![], vec![]);
        for ((tenant, day_id), (at, ms)) in &fold.ended_days {
            t.push(tenant.as_str());
            d.push(*day_id);
            ended.push(*at);
            total.push(*ms);
        }
        sqlx::query(
            "UPDATE service_days s SET ended_at = u.ended_at, total_break_ms = u.total \
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::bigint[]) AS u(t, d, ended_at, total) \
             WHERE s.tenant_id = u.t AND s.day_id = u.d",
        )
        .bind(&t)
        .bind(&d)
        .bind(&ended)
        .bind(&total)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

const LAST_BREAK_SEQS: &str = "SELECT b.tenant_id, b.day_id, max(b.seq) FROM service_day_breaks b \
     JOIN unnest($1::text[], $2::uuid[]) AS u(t, d) ON b.tenant_id = u.t AND b.day_id = u.d GROUP BY 1, 2";
const LAST_EXIT_SEQS: &str = "SELECT e.tenant_id, e.day_id, max(e.seq) FROM service_day_exits e \
     JOIN unnest($1::text[], $2::uuid[]) AS u(t, d) ON e.tenant_id = u.t AND e.day_id = u.d GROUP BY 1, 2";

/// The highest `seq` of each day so far (`sql`: [`LAST_BREAK_SEQS`] or [`LAST_EXIT_SEQS`]; days
/// without rows are absent).
async fn last_seqs<O, C>(
    conn: &mut PgConnection,
    sql: &'static str,
    spans: &BTreeMap<Day, Spans<O, C>>,
) -> Result<BTreeMap<Day, i32>, sqlx::Error> {
    let (mut t, mut d) = (vec![], vec![]);
    for ((tenant, day_id), day) in spans {
        if !day.new.is_empty() {
            t.push(tenant.as_str());
            d.push(*day_id);
        }
    }
    if t.is_empty() {
        return Ok(BTreeMap::new());
    }
    let rows: Vec<(String, Uuid, i32)> = sqlx::query_as(sql).bind(&t).bind(&d).fetch_all(&mut *conn).await?;
    Ok(rows.into_iter().map(|(tenant, day, seq)| ((tenant, day), seq)).collect())
}

async fn write_breaks(
    conn: &mut PgConnection,
    breaks: &BTreeMap<Day, Spans<BreakOpen, BreakClose>>,
) -> Result<(), sqlx::Error> {
    if breaks.is_empty() {
        return Ok(());
    }
    // Breaks open before the batch are closed before the new ones exist.
    let (mut t, mut d, mut ended, mut duration) = (vec![], vec![], vec![], vec![]);
    for ((tenant, day_id), day) in breaks {
        if let Some((at, ms)) = day.close_earlier {
            t.push(tenant.as_str());
            d.push(*day_id);
            ended.push(at);
            duration.push(ms);
        }
    }
    if !t.is_empty() {
        sqlx::query(
            "UPDATE service_day_breaks b SET ended_at = u.ended_at, duration_ms = u.duration \
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::bigint[]) AS u(t, d, ended_at, duration) \
             WHERE b.tenant_id = u.t AND b.day_id = u.d AND b.ended_at IS NULL",
        )
        .bind(&t)
        .bind(&d)
        .bind(&ended)
        .bind(&duration)
        .execute(&mut *conn)
        .await?;
    }
    let last = last_seqs(conn, LAST_BREAK_SEQS, breaks).await?;
    let (mut t, mut d, mut seq, mut started, mut ended, mut duration, mut rid, mut rlabel) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (key, day) in breaks {
        let base = last.get(key).copied().unwrap_or(0);
        for (n, span) in day.new.iter().enumerate() {
            let (started_at, reason) = &span.opened;
            t.push(key.0.as_str());
            d.push(key.1);
            seq.push(base + i32::try_from(n).unwrap_or(i32::MAX) + 1);
            started.push(*started_at);
            ended.push(span.closed.map(|(at, _)| at));
            duration.push(span.closed.map(|(_, ms)| ms));
            rid.push(reason.as_ref().map(|r| r.0.as_str()));
            rlabel.push(reason.as_ref().map(|r| r.1.as_str()));
        }
    }
    if !t.is_empty() {
        sqlx::query(
            "INSERT INTO service_day_breaks (tenant_id, day_id, seq, started_at, ended_at, duration_ms, reason_id, \
                                             reason_label) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::timestamptz[], $5::timestamptz[], \
                                  $6::bigint[], $7::text[], $8::text[])",
        )
        .bind(&t)
        .bind(&d)
        .bind(&seq)
        .bind(&started)
        .bind(&ended)
        .bind(&duration)
        .bind(&rid)
        .bind(&rlabel)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn write_exits(
    conn: &mut PgConnection,
    exits: &BTreeMap<Day, Spans<ExitOpen, ExitClose>>,
) -> Result<(), sqlx::Error> {
    if exits.is_empty() {
        return Ok(());
    }
    let (mut t, mut d, mut closed, mut cause) = (vec![], vec![], vec![], vec![]);
    for ((tenant, day_id), day) in exits {
        if let Some((at, why)) = day.close_earlier {
            t.push(tenant.as_str());
            d.push(*day_id);
            closed.push(at);
            cause.push(why);
        }
    }
    if !t.is_empty() {
        sqlx::query(
            "UPDATE service_day_exits e SET closed_at = u.closed_at, close_cause = u.cause \
             FROM unnest($1::text[], $2::uuid[], $3::timestamptz[], $4::text[]) AS u(t, d, closed_at, cause) \
             WHERE e.tenant_id = u.t AND e.day_id = u.d AND e.closed_at IS NULL",
        )
        .bind(&t)
        .bind(&d)
        .bind(&closed)
        .bind(&cause)
        .execute(&mut *conn)
        .await?;
    }
    let last = last_seqs(conn, LAST_EXIT_SEQS, exits).await?;
    let (mut t, mut d, mut seq, mut rid, mut rlabel, mut notified, mut closed, mut cause) =
        (vec![], vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
    for (key, day) in exits {
        let base = last.get(key).copied().unwrap_or(0);
        for (n, span) in day.new.iter().enumerate() {
            let (reason_id, reason_label, notified_at) = &span.opened;
            t.push(key.0.as_str());
            d.push(key.1);
            seq.push(base + i32::try_from(n).unwrap_or(i32::MAX) + 1);
            rid.push(reason_id.as_str());
            rlabel.push(reason_label.as_str());
            notified.push(*notified_at);
            closed.push(span.closed.map(|(at, _)| at));
            cause.push(span.closed.map(|(_, why)| why));
        }
    }
    if !t.is_empty() {
        sqlx::query(
            "INSERT INTO service_day_exits (tenant_id, day_id, seq, reason_id, reason_label, notified_at, closed_at, \
                                            close_cause) \
             SELECT * FROM unnest($1::text[], $2::uuid[], $3::int[], $4::text[], $5::text[], $6::timestamptz[], \
                                  $7::timestamptz[], $8::text[])",
        )
        .bind(&t)
        .bind(&d)
        .bind(&seq)
        .bind(&rid)
        .bind(&rlabel)
        .bind(&notified)
        .bind(&closed)
        .bind(&cause)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
