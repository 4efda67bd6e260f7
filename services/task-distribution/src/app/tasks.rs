//! The task commands of the API, each run idempotently (by `request_id`) under the locks of the
//! departments it may change ([`super::locks`]), followed by an assignment round where capacity
//! or work appeared.

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, Attempt};
use dw_ids::TenantId;
use dw_proto::distribution::v1 as pb;
use sqlx::{PgConnection, PgPool};
use std::sync::Arc;

use super::create_batch::CreateGroups;
use super::dispatcher::{self, Scope};
use super::locks::{lock_departments, lock_with_agent_departments};

/// No department besides an agent's ([`lock_with_agent_departments`]).
const NONE: &[&str] = &[];
use super::{Also, AppError, CommandContext, append_task, append_task_with, load_task, lock_tenant};
use crate::domain::settings;
use crate::domain::task::{self, Command, NewTask};
use crate::domain::{AgentId, Channel, ClientContact, DepartmentId, DomainError, Priority, Protocol, TaskId};
use crate::metrics::DistributionMetrics;
use crate::projections;
use crate::projections::queries;

/// A task to create, parsed at the edge.
#[derive(Debug, Clone)]
pub struct CreateTask {
    pub department: DepartmentId,
    pub channel: Channel,
    pub contact: ClientContact,
    pub priority: Priority,
    pub subject: String,
    /// The client message that opened the task, when one did.
    pub inbound_message_id: Option<String>,
}

#[derive(Debug, Clone)]
pub enum TaskOp {
    Create(CreateTask),
    Claim(TaskId),
    Complete(TaskId),
    Transfer { task_id: TaskId, department: Option<DepartmentId>, agent: Option<AgentId> },
    Cancel { task_id: TaskId, reason: String },
}

#[derive(Clone)]
pub struct App {
    pub(super) pool: PgPool,
    pub(super) metrics: DistributionMetrics,
    /// Creates gathered per department ([`super::create_batch`]).
    pub(super) groups: Arc<CreateGroups>,
}

impl App {
    pub fn new(pool: PgPool, metrics: DistributionMetrics) -> Self {
        Self { pool, metrics, groups: Arc::default() }
    }

    pub async fn task(&self, ctx: &CommandContext, op: TaskOp) -> Result<pb::Task, AppError> {
        match op {
            TaskOp::Create(input) => self.create_grouped(ctx, input).await,
            op => self.task_alone(ctx, op, None).await,
        }
    }

    /// Runs one task command by itself; a create takes `protocol`, or the next one when `None`.
    pub(super) async fn task_alone(
        &self,
        ctx: &CommandContext,
        op: TaskOp,
        protocol: Option<Protocol>,
    ) -> Result<pb::Task, AppError> {
        let protocol = match (&op, protocol) {
            (TaskOp::Create(_), None) => self.protocol_for(ctx).await?,
            (_, given) => given,
        };
        let command = TaskCommand { ctx, op, protocol, metrics: &self.metrics };
        command::execute(&self.pool, ctx, &command).await
    }

    /// The protocol of a new task, taken from the tenant's daily counter in a statement of its
    /// own before the command's transaction: the counter's row is locked for a moment, not for
    /// the whole command, so creates in different departments do not queue behind it. A create
    /// that then fails leaves its number unused (a gap); one already answered (a retry of its
    /// `request_id`) takes none.
    async fn protocol_for(&self, ctx: &CommandContext) -> Result<Option<Protocol>, AppError> {
        let mut conn = self.pool.acquire().await?;
        match dw_eventstore::idempotency::find_response(&mut conn, ctx.key()).await {
            Ok(None) => Ok(Some(allocate_protocol(&mut conn, &ctx.tenant, Utc::now()).await?)),
            // Answered already, or a reused request id: the command says so.
            Ok(Some(_)) | Err(_) => Ok(None),
        }
    }

    pub async fn update_settings(
        &self,
        ctx: &CommandContext,
        update: settings::Update,
    ) -> Result<pb::DistributionSettings, AppError> {
        let command = SettingsCommand { ctx, update, metrics: &self.metrics };
        command::execute(&self.pool, ctx, &command).await
    }

    pub async fn set_capacity(
        &self,
        ctx: &CommandContext,
        agent: AgentId,
        capacity: Option<i32>,
    ) -> Result<pb::AgentCapacity, AppError> {
        let command = CapacityCommand { ctx, agent, capacity, metrics: &self.metrics };
        command::execute(&self.pool, ctx, &command).await
    }
}

struct TaskCommand<'c> {
    ctx: &'c CommandContext,
    op: TaskOp,
    /// A new task's protocol, taken before the transaction ([`App::protocol_for`]).
    protocol: Option<Protocol>,
    metrics: &'c DistributionMetrics,
}

/// The next protocol of the tenant's local day (the counter restarts at local midnight).
pub async fn allocate_protocol(
    conn: &mut PgConnection,
    tenant: &TenantId,
    now: DateTime<Utc>,
) -> Result<Protocol, sqlx::Error> {
    // The protocol's day is the tenant's: a tenant in São Paulo gets today's prefix until midnight
    // there.
    let day = projections::agents::time_zone(conn, tenant).await?.local_date(now);
    let sequence = projections::tasks::next_protocol_sequence(conn, tenant, day).await?;
    Ok(Protocol::new(day, sequence))
}

/// The next `count` protocols of the tenant's local day, taken in one statement.
pub async fn allocate_protocols(
    conn: &mut PgConnection,
    tenant: &TenantId,
    now: DateTime<Utc>,
    count: usize,
) -> Result<Vec<Protocol>, sqlx::Error> {
    if count == 0 {
        return Ok(Vec::new());
    }
    let day = projections::agents::time_zone(conn, tenant).await?.local_date(now);
    let last = projections::tasks::take_protocol_sequences(conn, tenant, day, count).await?;
    let first = last.saturating_sub(u32::try_from(count).unwrap_or(u32::MAX)) + 1;
    Ok((first..=last).map(|sequence| Protocol::new(day, sequence)).collect())
}

/// The task `input` describes, numbered `protocol`, created by `created_by`.
pub fn new_task(input: CreateTask, protocol: Protocol, created_by: &str) -> NewTask {
    NewTask {
        task_id: TaskId::new(),
        protocol,
        department: input.department,
        channel: input.channel,
        contact: input.contact,
        priority: input.priority,
        subject: input.subject,
        created_by: created_by.to_owned(),
        inbound_message_id: input.inbound_message_id,
    }
}

async fn existing(conn: &mut PgConnection, tenant: &TenantId, task_id: TaskId) -> Result<(task::Task, i64), AppError> {
    load_task(conn, tenant, task_id).await?.ok_or_else(|| DomainError::TaskNotFound(task_id.to_string()).into())
}

async fn agent_view(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &AgentId,
    default_capacity: i32,
) -> Result<task::AgentView, AppError> {
    projections::agents::view(conn, tenant, agent, default_capacity)
        .await?
        .ok_or_else(|| DomainError::AgentNotFound(agent.to_string()).into())
}

/// Creates a task (with `protocol`, or the next one taken here) and tries to assign it at once;
/// returns its state and version as written. The caller holds the lock of the task's department.
#[allow(clippy::too_many_arguments)]
pub async fn create_task(
    conn: &mut PgConnection,
    tenant: &TenantId,
    input: CreateTask,
    protocol: Option<Protocol>,
    created_by: &str,
    metrics: &DistributionMetrics,
    metadata: &dw_eventstore::EventMetadata,
    now: DateTime<Utc>,
) -> Result<(task::Task, i64), AppError> {
    let protocol = match protocol {
        Some(protocol) => protocol,
        None => allocate_protocol(conn, tenant, now).await?,
    };
    let department = input.department.to_string();
    let new = new_task(input, protocol, created_by);
    let task_id = new.task_id;
    let created = task::create(new, now);
    // The common case in one statement: nothing waits in the department, so the new task goes
    // to an agent as it is created, or waits with the decision that says why.
    let view = projections::agents::department_round(conn, tenant, &department, true).await?;
    if view.settings.auto_distribution_enabled && view.head.is_none() {
        let taken =
            dispatcher::take_new(conn, tenant, &view, created.clone(), "task_created", metrics, metadata, now).await?;
        if let Some(written) = taken {
            return Ok(written);
        }
    }
    let written = append_task(conn, tenant, None, 0, created, metadata, now).await?;
    let scope = Scope::Departments(vec![department.clone()]);
    let round =
        dispatcher::run(conn, tenant, scope, "task_created", metrics, metadata, now, Some(written.clone())).await?;
    if let Some(assigned) = round.written.into_iter().find(|(task, _)| task.content.task_id == task_id) {
        return Ok(assigned);
    }
    // Nobody took it: record why, for ExplainAssignment. The round's last decision in this
    // department says it when it stopped for want of an agent (for the head, with the same
    // candidates); otherwise (a manual tenant, or agents were taken meanwhile) decide again.
    {
        let decision = match round.stopped_at {
            Some((stopped, decision)) if stopped == department => decision,
            _ => {
                let settings = projections::agents::settings(conn, tenant).await?;
                dispatcher::decide_for(conn, tenant, &department, settings.default_capacity).await?
            }
        };
        let trigger = if round.automatic { "task_created" } else { "task_created_manual_tenant" };
        let unassigned = crate::domain::assignment::Decision { chosen: None, ..decision };
        dispatcher::record_decision(conn, tenant, task_id, &unassigned, trigger, now).await?;
    }
    Ok(written)
}

impl Attempt<DomainError> for TaskCommand<'_> {
    type Response = pb::Task;

    /// An existing task's stream comes with the idempotency lookup (a task of another tenant is
    /// another stream id: not found).
    fn streams(&self) -> Vec<String> {
        match &self.op {
            TaskOp::Create(_) => Vec::new(),
            TaskOp::Claim(task_id)
            | TaskOp::Complete(task_id)
            | TaskOp::Transfer { task_id, .. }
            | TaskOp::Cancel { task_id, .. } => vec![crate::codec::task_stream(&self.ctx.tenant, *task_id)],
        }
    }

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::Task, AppError> {
        let ctx = self.ctx;
        let tenant = &ctx.tenant;
        let metadata = &ctx.metadata;
        let metrics = self.metrics;
        let task_id = match &self.op {
            TaskOp::Create(input) => {
                lock_departments(conn, tenant, None, &[input.department.as_str()]).await?;
                let (task, version) =
                    create_task(conn, tenant, input.clone(), self.protocol.clone(), &ctx.actor, metrics, metadata, now)
                        .await?;
                // The new task's row is what it was written as: no need to read it back.
                return Ok(queries::task_to_pb(&task, version));
            }
            TaskOp::Claim(task_id) => {
                let (state, version) = existing(conn, tenant, *task_id).await?;
                lock_departments(conn, tenant, None, &[state.department.as_str()]).await?;
                let settings = projections::agents::settings(conn, tenant).await?;
                let agent_id = AgentId::parse(&ctx.actor).map_err(|_| DomainError::AgentNotFound(ctx.actor.clone()))?;
                let agent = agent_view(conn, tenant, &agent_id, settings.default_capacity).await?;
                let events = task::decide(&state, Command::Claim { agent }, now)?;
                let wait = task::queue_wait(&state, &events);
                append_task(conn, tenant, Some(&state), version, events, metadata, now).await?;
                metrics.observe_assignment(wait);
                *task_id
            }
            TaskOp::Complete(task_id) => {
                let (state, version) = existing(conn, tenant, *task_id).await?;
                let command = Command::Complete { by: ctx.actor.clone(), privileged: ctx.privileged };
                let events = task::decide(&state, command, now)?;
                let holder = state.agent.as_ref().map(AgentId::as_str);
                let freed = lock_with_agent_departments(conn, tenant, holder, NONE).await?;
                let (mut answer, waiting) = queries::task_and_queue(conn, tenant, *task_id, &freed)
                    .await?
                    .ok_or_else(|| DomainError::TaskNotFound(task_id.to_string()))?;
                // Nothing waits where the agent's capacity frees (the usual case): the completion
                // is the command's last write, sent with its idempotency record.
                let also = Also { last: !waiting, ..Also::default() };
                let (after, version) =
                    append_task_with(conn, tenant, Some(&state), version, events, metadata, now, also).await?;
                if waiting {
                    dispatch_in(conn, tenant, freed, "capacity_freed", metrics, metadata, now).await?;
                }
                queries::overlay(&mut answer, &after, version);
                return Ok(answer);
            }
            TaskOp::Transfer { task_id, department, agent } => {
                let (state, version) = existing(conn, tenant, *task_id).await?;
                if !ctx.privileged && state.agent.as_ref().map(AgentId::as_str) != Some(ctx.actor.as_str()) {
                    return Err(DomainError::NotTaskOwner.into());
                }
                let target_department = department.clone().unwrap_or_else(|| state.department.clone());
                let holder = state.agent.as_ref().filter(|_| state.status == task::Status::Assigned);
                let also_locked = [state.department.as_str(), target_department.as_str()];
                let freed =
                    lock_with_agent_departments(conn, tenant, holder.map(AgentId::as_str), &also_locked).await?;
                let settings = projections::agents::settings(conn, tenant).await?;
                let target_agent = match agent {
                    Some(agent) => Some(agent_view(conn, tenant, agent, settings.default_capacity).await?),
                    None => None,
                };
                let command = Command::Transfer {
                    department: target_department.clone(),
                    agent: target_agent,
                    by: ctx.actor.clone(),
                };
                let events = task::decide(&state, command, now)?;
                let wait = task::queue_wait(&state, &events);
                append_task(conn, tenant, Some(&state), version, events, metadata, now).await?;
                metrics.observe_assignment(wait);
                let scope = Scope::Departments(vec![target_department.to_string()]);
                dispatcher::run(conn, tenant, scope, "task_transferred", metrics, metadata, now, None).await?;
                dispatch_in(conn, tenant, freed, "capacity_freed", metrics, metadata, now).await?;
                *task_id
            }
            TaskOp::Cancel { task_id, reason } => {
                let (state, version) = existing(conn, tenant, *task_id).await?;
                if !ctx.privileged {
                    return Err(DomainError::NotTaskOwner.into());
                }
                let command = Command::Cancel { by: ctx.actor.clone(), reason: reason.clone() };
                let events = task::decide(&state, command, now)?;
                let holder = state.agent.as_ref().filter(|_| state.status == task::Status::Assigned);
                let freed = lock_with_agent_departments(
                    conn,
                    tenant,
                    holder.map(AgentId::as_str),
                    &[state.department.as_str()],
                )
                .await?;
                append_task(conn, tenant, Some(&state), version, events, metadata, now).await?;
                dispatch_in(conn, tenant, freed, "capacity_freed", metrics, metadata, now).await?;
                *task_id
            }
        };
        queries::task_by_id(conn, tenant, task_id)
            .await?
            .ok_or_else(|| DomainError::TaskNotFound(task_id.to_string()).into())
    }
}

/// Locks the departments of `agent` (with the tenant's lock shared) and returns them.
pub async fn lock_for_agent(
    conn: &mut PgConnection,
    tenant: &TenantId,
    agent: &AgentId,
) -> Result<Vec<String>, sqlx::Error> {
    lock_with_agent_departments(conn, tenant, Some(agent.as_str()), NONE).await
}

/// A round over `departments` (locked by the caller), e.g. those of an agent who has capacity
/// again.
pub async fn dispatch_in(
    conn: &mut PgConnection,
    tenant: &TenantId,
    departments: Vec<String>,
    trigger: &str,
    metrics: &DistributionMetrics,
    metadata: &dw_eventstore::EventMetadata,
    now: DateTime<Utc>,
) -> Result<usize, AppError> {
    if departments.is_empty() {
        return Ok(0);
    }
    Ok(dispatcher::run(conn, tenant, Scope::Departments(departments), trigger, metrics, metadata, now, None)
        .await?
        .assigned
        .len())
}

struct SettingsCommand<'c> {
    ctx: &'c CommandContext,
    update: settings::Update,
    metrics: &'c DistributionMetrics,
}

impl Attempt<DomainError> for SettingsCommand<'_> {
    type Response = pb::DistributionSettings;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::DistributionSettings, AppError> {
        let tenant = &self.ctx.tenant;
        lock_tenant(conn, tenant).await?;
        projections::agents::ensure_settings(conn, tenant).await?;
        let stored = projections::agents::settings(conn, tenant).await?;
        let current = settings::OwnSettings {
            default_capacity: stored.default_capacity,
            // Stored as parsed at the edge, so it parses again.
            inbound_department: stored.inbound_department_id.as_deref().and_then(|d| DepartmentId::parse(d).ok()),
        };
        let version = u64::try_from(stored.version).unwrap_or_default();
        let changed = settings::apply(&current, version, self.update.clone())?;
        if changed == current {
            return Ok(queries::settings_to_pb(&stored));
        }
        sqlx::query(
            "UPDATE distribution_settings SET default_capacity = $2, inbound_department_id = $3, \
             version = version + 1, updated_at = now() WHERE tenant_id = $1",
        )
        .bind(tenant)
        .bind(changed.default_capacity)
        .bind(changed.inbound_department.as_ref().map(DepartmentId::as_str))
        .execute(&mut *conn)
        .await?;
        // A larger capacity may let queued work through.
        dispatcher::run(conn, tenant, Scope::All, "capacity_changed", self.metrics, &self.ctx.metadata, now, None)
            .await?;
        Ok(queries::settings_to_pb(&projections::agents::settings(conn, tenant).await?))
    }
}

struct CapacityCommand<'c> {
    ctx: &'c CommandContext,
    agent: AgentId,
    capacity: Option<i32>,
    metrics: &'c DistributionMetrics,
}

impl Attempt<DomainError> for CapacityCommand<'_> {
    type Response = pb::AgentCapacity;

    async fn attempt(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<pb::AgentCapacity, AppError> {
        let tenant = &self.ctx.tenant;
        let departments = lock_for_agent(conn, tenant, &self.agent).await?;
        let updated = sqlx::query("UPDATE agents SET capacity_override = $3 WHERE tenant_id = $1 AND agent_id = $2")
            .bind(tenant)
            .bind(self.agent.as_str())
            .bind(self.capacity)
            .execute(&mut *conn)
            .await?
            .rows_affected();
        if updated == 0 {
            return Err(DomainError::AgentNotFound(self.agent.to_string()).into());
        }
        let metadata = &self.ctx.metadata;
        dispatch_in(conn, tenant, departments, "capacity_changed", self.metrics, metadata, now).await?;
        let settings = projections::agents::settings(conn, tenant).await?;
        Ok(pb::AgentCapacity {
            agent_id: self.agent.to_string(),
            capacity: self.capacity.unwrap_or(settings.default_capacity),
            overridden: self.capacity.is_some(),
        })
    }
}
