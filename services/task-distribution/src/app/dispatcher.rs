//! Assignment rounds: for each affected department, give the head of its queue to the best
//! eligible agent, until nobody eligible remains or the queue is empty. Runs inside a
//! transaction that holds the departments' locks ([`super::locks`]); the chosen agent's row is
//! locked and checked again before they get the task, as a round in another of their departments
//! may have given them one meanwhile.

use chrono::{DateTime, Utc};
use dw_eventstore::EventMetadata;
use dw_eventstore::writes::Write;
use dw_ids::TenantId;
use sqlx::PgConnection;

use super::{AppError, append_task_with, load_task};
use crate::domain::TaskId;
use crate::domain::assignment::{self, Decision};
use crate::domain::task::{self, AssignmentSummary, Command, Task};
use crate::metrics::DistributionMetrics;
use crate::projections;

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
    let candidates = serde_json::to_value(&decision.verdicts).unwrap_or_default();
    let write = Write::new(
        "assignment_decisions",
        "INSERT INTO assignment_decisions (decision_id, tenant_id, task_id, decided_at, chosen_agent_id, trigger, \
                                           candidates) VALUES ($1, $2, $3, $4, $5, $6, $7)",
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
    /// The decision that left a queue's head unassigned (nobody eligible), with its department.
    pub stopped_at: Option<(String, Decision)>,
    /// Whether the tenant distributes automatically (no round otherwise).
    pub automatic: bool,
}

/// Assigns what can be assigned in `scope`. `known`: a task the caller just wrote (its state and
/// version), which the round then need not read again when it is a queue's head.
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
    let settings = projections::agents::settings(conn, tenant).await?;
    if !settings.auto_distribution_enabled {
        return Ok(Round::default());
    }
    let departments = match scope {
        Scope::Departments(departments) => departments,
        Scope::All => projections::tasks::departments_with_queue(conn, tenant).await?,
    };
    let mut round = Round { automatic: true, ..Round::default() };
    for department in departments {
        // Each failed check of a chosen agent means another round took their last capacity (or
        // they left); the next decision sees that. Bounded all the same.
        let mut rechecks = 0;
        while let Some(head) = projections::tasks::queue_head(conn, tenant, &department).await? {
            let decision = decide_for(conn, tenant, &department, settings.default_capacity).await?;
            let Some(agent) = decision.chosen.clone() else {
                round.stopped_at = Some((department.clone(), decision));
                break;
            };
            if !projections::agents::lock_available(conn, tenant, &agent, settings.default_capacity).await? {
                rechecks += 1;
                if rechecks > MAX_RECHECKS {
                    break;
                }
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
            let summary = AssignmentSummary {
                decision_id,
                candidates: i32::try_from(decision.verdicts.len()).unwrap_or(i32::MAX),
                eligible: i32::try_from(decision.eligible()).unwrap_or(i32::MAX),
                trigger: trigger.to_owned(),
            };
            let events = task::decide(&state, Command::Assign { agent, summary }, now)?;
            let wait = task::queue_wait(&state, &events);
            // The assignment and its decision in one statement.
            append_task_with(conn, tenant, Some(&state), version, events, metadata, now, vec![decision_row]).await?;
            metrics.observe_assignment(wait);
            round.assigned.push(task_id);
        }
    }
    Ok(round)
}
