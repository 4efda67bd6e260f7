//! Assignment rounds: for each affected department, give the head of its queue to the best
//! eligible agent, until nobody eligible remains or the queue is empty. Runs inside a
//! transaction that holds the departments' locks ([`super::locks`]); the chosen agent's row is
//! locked and checked again before they get the task, as a round in another of their departments
//! may have given them one meanwhile.

use chrono::{DateTime, Utc};
use dw_eventstore::writes::{Write, Writes};
use dw_eventstore::{CommandError, EventMetadata};
use dw_ids::TenantId;
use sqlx::PgConnection;

use super::{Also, AppError, append_task_with, load_task};
use crate::domain::assignment::{self, Decision};
use crate::domain::task::{self, AssignmentSummary, Command, QueueWait, Task};
use crate::domain::{AgentId, TaskId};
use crate::metrics::DistributionMetrics;
use crate::projections;
use crate::projections::agents::DepartmentRound;

/// How many chosen agents a round may find taken before it leaves a department's queue as it is
/// (the next event that frees capacity runs another round).
const MAX_RECHECKS: usize = 64;

/// Which departments a round looks at.
#[derive(Debug, Clone)]
pub enum Scope {
    Departments(Vec<String>),
    /// Every department with queued tasks.
    All,
}

/// Records a decision (with every candidate's verdict) and returns its id.
pub async fn record_decision(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
    decision: &Decision,
    trigger: &str,
    now: DateTime<Utc>,
) -> Result<uuid::Uuid, sqlx::Error> {
    let (decision_id, write) = decision_write(tenant, task_id, decision, trigger, now);
    write.execute(conn).await?;
    Ok(decision_id)
}

/// [`record_decision`] as a write of the statement that acts on it, with the decision's id.
fn decision_write(
    tenant: &TenantId,
    task_id: TaskId,
    decision: &Decision,
    trigger: &str,
    now: DateTime<Utc>,
) -> (uuid::Uuid, Write) {
    let decision_id = uuid::Uuid::now_v7();
    // Serialized once, as text, in the stored form (neither a copy of the verdicts nor a JSON
    // value tree first).
    let candidates = crate::domain::assignment::encode_verdicts(&decision.verdicts);
    let write = Write::new(
        "assignment_decisions",
        "INSERT INTO assignment_decisions (decision_id, tenant_id, task_id, decided_at, chosen_agent_id, trigger, \
                                           candidates, verdicts) VALUES ($1, $2, $3, $4, $5, $6, '[]', $7)",
    )
    .bind(decision_id)
    .bind(tenant.clone())
    .bind(task_id.0)
    .bind(now)
    .bind(decision.chosen.as_ref().map(|a| a.as_str().to_owned()))
    .bind(trigger.to_owned())
    .bind(candidates);
    (decision_id, write)
}

/// What an assignment's event says of `decision` (recorded as `decision_id`).
fn summary_of(decision_id: uuid::Uuid, decision: &Decision, trigger: &str) -> AssignmentSummary {
    AssignmentSummary {
        decision_id,
        candidates: i32::try_from(decision.verdicts.len()).unwrap_or(i32::MAX),
        eligible: i32::try_from(decision.eligible()).unwrap_or(i32::MAX),
        trigger: trigger.to_owned(),
    }
}

/// Decides for the task at the head of `department`'s queue.
pub async fn decide_for(
    conn: &mut PgConnection,
    tenant: &TenantId,
    department: &str,
    default_capacity: i32,
) -> Result<Decision, sqlx::Error> {
    let candidates = projections::agents::candidates(conn, tenant, department, default_capacity).await?;
    Ok(assignment::choose(&candidates))
}

/// What a round did.
#[derive(Debug, Default)]
pub struct Round {
    pub assigned: Vec<TaskId>,
    /// The state and version of each task the round gave to an agent, as written.
    pub written: Vec<(Task, i64)>,
    /// The decision that left a queue's head unassigned (nobody eligible), with its department.
    pub stopped_at: Option<(String, Decision)>,
    /// Whether the tenant distributes automatically (no round otherwise).
    pub automatic: bool,
}

/// Assigns what can be assigned in `scope`. `known`: a task the caller just wrote (its state and
/// version), which the round then need not read again when it is a queue's head.
///
/// Each step of a department reads what it needs in one query ([`projections::agents::department_round`]):
/// the settings, the queue's head and the candidates. A chosen agent linked to this department
/// alone can be given work only under its lock, which the round holds: their load goes up in the
/// assignment's statement, guarded by their capacity, with no read before. One linked elsewhere
/// too is locked and checked first ([`projections::agents::lock_available`]), as a round there
/// may have given them a task meanwhile; should one do so all the same, the guard undoes the
/// statement and the command is attempted again.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    conn: &mut PgConnection,
    tenant: &TenantId,
    scope: Scope,
    trigger: &str,
    metrics: &DistributionMetrics,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
    mut known: Option<(Task, i64)>,
) -> Result<Round, AppError> {
    let departments = match scope {
        Scope::Departments(departments) => departments,
        Scope::All => {
            if !projections::agents::settings(conn, tenant).await?.auto_distribution_enabled {
                return Ok(Round::default());
            }
            projections::tasks::departments_with_queue(conn, tenant).await?
        }
    };
    let mut round = Round { automatic: true, ..Round::default() };
    for department in departments {
        // Each failed check of a chosen agent means another round took their last capacity (or
        // they left); the next decision sees that. Bounded all the same.
        let mut rechecks = 0;
        let mut view = projections::agents::department_round(conn, tenant, &department, false).await?;
        if !view.settings.auto_distribution_enabled {
            return Ok(Round::default());
        }
        while let Some(head) = view.head {
            let decision = assignment::choose(&view.candidates);
            let Some(agent) = decision.chosen.clone() else {
                round.stopped_at = Some((department.clone(), decision));
                break;
            };
            let default_capacity = view.settings.default_capacity;
            let shared = view.linked_elsewhere.contains(&agent);
            if shared && !projections::agents::lock_available(conn, tenant, &agent, default_capacity).await? {
                rechecks += 1;
                if rechecks > MAX_RECHECKS {
                    break;
                }
                view = projections::agents::department_round(conn, tenant, &department, false).await?;
                continue;
            }
            let task_id = TaskId(head);
            let written = known.take_if(|(task, _)| task.content.task_id == task_id);
            let loaded = match written {
                Some(known) => Some(known),
                None => load_task(conn, tenant, task_id).await?,
            };
            let Some((state, version)) = loaded else {
                break;
            };
            let (decision_id, decision_row) = decision_write(tenant, task_id, &decision, trigger, now);
            let summary = summary_of(decision_id, &decision, trigger);
            let events = task::decide(&state, Command::Assign { agent, summary }, now)?;
            let wait = task::queue_wait(&state, &events);
            // The assignment and its decision in one statement, the agent's load guarded unless
            // their row was locked above.
            let also =
                Also { writes: vec![decision_row], guard_capacity: (!shared).then_some(default_capacity), last: false };
            let after = append_task_with(conn, tenant, Some(&state), version, events, metadata, now, also).await?;
            metrics.observe_assignment(wait);
            round.assigned.push(task_id);
            round.written.push(after);
            if !view.more_queued {
                break;
            }
            view = projections::agents::department_round(conn, tenant, &department, false).await?;
        }
    }
    Ok(round)
}

/// A new task into an empty queue (`view`, read under the department's lock, holds none and the
/// candidates): created and given to the agent chosen, with the decision, in one statement; or,
/// when nobody can take it, created with the decision that says why. That statement is the
/// command's last write, left to the kernel to go with the request's idempotency record
/// ([`Also::last`]). `None` when the agent chosen, linked to another department too, was given
/// work there meanwhile: the caller then creates the task and runs a round.
#[allow(clippy::too_many_arguments)]
pub async fn take_new(
    conn: &mut PgConnection,
    tenant: &TenantId,
    view: &DepartmentRound,
    created: Vec<task::Event>,
    trigger: &str,
    metrics: &DistributionMetrics,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<Option<(Task, i64)>, AppError> {
    let Some(new) = decide_new(conn, tenant, view, created, trigger, now, true).await? else {
        return Ok(None);
    };
    let written = append_task_with(conn, tenant, None, 0, new.events, metadata, now, new.also).await?;
    metrics.observe_assignment(new.wait);
    Ok(Some(written))
}

/// A new task's decision, as [`take_new`] and [`take_new_batch`] write it.
struct NewTaskDecision {
    /// `TaskCreated`, and the assignment when an agent was chosen.
    events: Vec<task::Event>,
    /// The decision's row and the chosen agent's guard, for the task's statement.
    also: Also,
    wait: Option<QueueWait>,
    agent: Option<AgentId>,
}

/// Decides who gets the new task `created` among `view`'s candidates. `None` when the agent
/// chosen is linked to another department too and turned out taken (their row is locked and
/// checked); an agent linked to this department alone is guarded in the task's statement.
#[allow(clippy::too_many_arguments)]
async fn decide_new(
    conn: &mut PgConnection,
    tenant: &TenantId,
    view: &DepartmentRound,
    created: Vec<task::Event>,
    trigger: &str,
    now: DateTime<Utc>,
    last: bool,
) -> Result<Option<NewTaskDecision>, AppError> {
    let Some(state) = created.first().and_then(task::initial) else {
        return Err(CommandError::invalid("events", "a new task starts with TaskCreated"));
    };
    let task_id = state.content.task_id;
    let decision = assignment::choose(&view.candidates);
    let (decision_id, decision_row) = decision_write(tenant, task_id, &decision, trigger, now);
    let Some(agent) = decision.chosen.clone() else {
        let also = Also { writes: vec![decision_row], guard_capacity: None, last };
        return Ok(Some(NewTaskDecision { events: created, also, wait: None, agent: None }));
    };
    let default_capacity = view.settings.default_capacity;
    let shared = view.linked_elsewhere.contains(&agent);
    if shared && !projections::agents::lock_available(conn, tenant, &agent, default_capacity).await? {
        return Ok(None);
    }
    let summary = summary_of(decision_id, &decision, trigger);
    let assigned = task::decide(&state, Command::Assign { agent: agent.clone(), summary }, now)?;
    let wait = task::queue_wait(&state, &assigned);
    let mut events = created;
    events.extend(assigned);
    let also = Also { writes: vec![decision_row], guard_capacity: (!shared).then_some(default_capacity), last };
    Ok(Some(NewTaskDecision { events, also, wait, agent: Some(agent) }))
}

/// New tasks of one department decided together ([`take_new_batch`]): each task's `TaskCreated`
/// events with the metadata of the request that creates it.
pub struct NewTasks<'m> {
    pub created: Vec<(Vec<task::Event>, &'m EventMetadata)>,
}

/// [`take_new`] for several new tasks of `view`'s department, in order, against that one read of
/// its agents: each decision sees the tasks given before it (the chosen agent's load goes up by
/// one), and a task nobody can take waits, with every one after it. Each task's creation, its
/// assignment and its decision are staged in writes of its own, returned with it. `None` when
/// the batch is not decided this way (tasks already wait there, the tenant distributes by hand, or a chosen agent linked to
/// another department turned out taken): the caller creates each task alone.
#[allow(clippy::too_many_arguments)]
pub async fn take_new_batch(
    conn: &mut PgConnection,
    tenant: &TenantId,
    mut view: DepartmentRound,
    news: NewTasks<'_>,
    trigger: &str,
    metrics: &DistributionMetrics,
    now: DateTime<Utc>,
) -> Result<Option<Vec<((Task, i64), Writes)>>, AppError> {
    if !view.settings.auto_distribution_enabled || view.head.is_some() {
        return Ok(None);
    }
    let mut written = Vec::with_capacity(news.created.len());
    let mut waits = Vec::new();
    for (created, metadata) in news.created {
        let Some(new) = decide_new(conn, tenant, &view, created, trigger, now, false).await? else {
            return Ok(None);
        };
        let mut writes = Writes::default();
        let task = super::stage_task(conn, tenant, None, 0, new.events, metadata, now, new.also, &mut writes).await?;
        written.push((task, writes));
        waits.push(new.wait);
        // The next decision sees this task with its agent.
        if let Some(candidate) = new.agent.and_then(|agent| view.candidates.iter_mut().find(|c| c.agent_id == agent)) {
            candidate.active_tasks += 1;
            candidate.idle_since = now;
        }
    }
    for wait in waits {
        metrics.observe_assignment(wait);
    }
    Ok(Some(written))
}
