//! `CreateTask`s of one department, grouped while the one before them runs.
//!
//! A department's creates are decided one after the other anyway (they queue for its lock), and
//! each then reads the department's agents again, takes a protocol and commits alone. Here the
//! creates of a (tenant, department) that arrive at a replica while its previous group is being
//! created form the next group: their protocols are taken in one statement, and they are decided
//! in one transaction, against one read of the agents (each decision seeing the tasks given
//! before it), each written by the statement it would send alone, and one commit for all ([`dw_eventstore::command::execute_batch`]).
//! A create that finds nothing before it runs alone at once, as before, so an idle department
//! adds no wait.
//!
//! A request already answered (a retry, or a reused request id), or sent twice into one group,
//! runs alone (after the group), which answers it.
//! When the group cannot be decided together (tasks already wait in the department, the tenant
//! distributes by hand, an agent was taken meanwhile, a concurrent retry, any error), nothing of
//! it is written and each create runs alone with the protocol it was given: the numbers stay
//! gap-free.

use std::collections::HashMap;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, BatchPlan};
use dw_eventstore::idempotency;
use dw_eventstore::writes::Writes;
use dw_ids::TenantId;
use dw_proto::distribution::v1 as pb;
use sqlx::PgConnection;
use tokio::sync::oneshot;
use tracing::Instrument;

use super::dispatcher::{self, NewTasks};
use super::locks::lock_departments;
use super::tasks::{App, CreateTask, TaskOp, allocate_protocols, new_task};
use super::{AppError, CommandContext};
use crate::domain::task;
use crate::domain::{DomainError, Protocol};
use crate::metrics::DistributionMetrics;
use crate::projections;
use crate::projections::queries;

/// The most creates decided together.
pub const MAX_GROUP: usize = 32;
/// The most creates waiting for one department's next group in a replica.
pub const MAX_WAITING: usize = 256;

type Reply = oneshot::Sender<Result<pb::Task, AppError>>;

/// What a create does on arrival.
enum Turn {
    /// It waits in the next group.
    Joined,
    /// It starts its department's runner.
    First(Pending),
    /// Too many wait: it runs alone.
    Alone(CreateTask),
}

struct Pending {
    ctx: CommandContext,
    input: CreateTask,
    reply: Reply,
}

/// The creates waiting per (tenant, department), and whether a group of it is running.
#[derive(Default)]
pub struct CreateGroups {
    waiting: Mutex<HashMap<(TenantId, String), Vec<Pending>>>,
}

impl App {
    /// Creates a task with the others of its department that arrive meanwhile (see the module).
    pub(super) async fn create_grouped(&self, ctx: &CommandContext, input: CreateTask) -> Result<pb::Task, AppError> {
        let key = (ctx.tenant.clone(), input.department.to_string());
        let (reply, answer) = oneshot::channel();
        let pending = Pending { ctx: ctx.clone(), input, reply };
        let turn = {
            let mut waiting = self.groups.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            match waiting.get_mut(&key) {
                // A group is running: this create joins the next one.
                Some(queue) if queue.len() < MAX_WAITING => {
                    queue.push(pending);
                    Turn::Joined
                }
                // So many wait already (a flood in one department): this one queues for the
                // department's lock in Postgres as a create alone, within the connection pool's
                // bounds, instead of in this replica's memory.
                Some(_) => Turn::Alone(pending.input),
                None => {
                    waiting.insert(key.clone(), Vec::new());
                    Turn::First(pending)
                }
            }
        };
        match turn {
            Turn::Joined => {}
            Turn::Alone(input) => return self.task_alone(ctx, TaskOp::Create(input), None).await,
            Turn::First(first) => {
                // The groups run in a task of their own: a caller that goes away does not take
                // the others' answers with it.
                let app = self.clone();
                tokio::spawn(async move { app.run_groups(key, first).await }.instrument(tracing::Span::current()));
            }
        }
        answer.await.unwrap_or_else(|_| Err(AppError::Aborted(1)))
    }

    /// Runs `first` alone, then the groups that gathered behind it, until none is left.
    async fn run_groups(&self, key: (TenantId, String), first: Pending) {
        let mut runner = Runner { groups: &self.groups, key, ended: false };
        let mut group = vec![first];
        loop {
            self.run_group(group).await;
            let mut waiting = self.groups.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let next = match waiting.get_mut(&runner.key) {
                Some(queue) if !queue.is_empty() => {
                    let take = queue.len().min(MAX_GROUP);
                    queue.drain(..take).collect()
                }
                _ => Vec::new(),
            };
            if next.is_empty() {
                // Removed with the lock held: a create arriving now starts the next runner.
                waiting.remove(&runner.key);
                runner.ended = true;
                return;
            }
            group = next;
        }
    }

    async fn run_group(&self, mut group: Vec<Pending>) {
        if group.len() == 1 {
            if let Some(one) = group.pop() {
                let answer = self.task_alone(&one.ctx, TaskOp::Create(one.input), None).await;
                let _ = one.reply.send(answer);
            }
            return;
        }
        let now = Utc::now();
        let (fresh, protocols) = match self.prepare(&group, now).await {
            Ok(prepared) => prepared,
            Err(error) => {
                tracing::debug!(%error, "creates not grouped");
                (vec![false; group.len()], Vec::new())
            }
        };
        let (together, alone): (Vec<_>, Vec<_>) = group.into_iter().zip(fresh).partition(|(_, fresh)| *fresh);
        let alone = alone.into_iter().map(|(pending, _)| (pending, None));
        let together: Vec<(Pending, Protocol)> = together.into_iter().map(|(p, _)| p).zip(protocols).collect();
        let mut alone: Vec<(Pending, Option<Protocol>)> = alone.collect();
        if !together.is_empty() {
            match self.create_together(&together).await {
                Ok(answers) => {
                    self.metrics.observe_create_group(true);
                    for ((pending, _), answer) in together.into_iter().zip(answers) {
                        let _ = pending.reply.send(Ok(answer));
                    }
                }
                Err(error) => {
                    self.metrics.observe_create_group(false);
                    tracing::debug!(%error, creates = together.len(), "grouped creates run alone");
                    alone.extend(together.into_iter().map(|(pending, protocol)| (pending, Some(protocol))));
                }
            }
        }
        // One after the other: they would queue for the department's lock anyway.
        for (pending, protocol) in alone {
            let answer = self.task_alone(&pending.ctx, TaskOp::Create(pending.input), protocol).await;
            let _ = pending.reply.send(answer);
        }
    }

    /// Which of `group` were never answered (those go together), and a protocol for each of them.
    async fn prepare(&self, group: &[Pending], now: DateTime<Utc>) -> Result<(Vec<bool>, Vec<Protocol>), AppError> {
        let Some(tenant) = group.first().map(|p| p.ctx.tenant.clone()) else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut conn = self.pool.acquire().await?;
        let keys: Vec<_> = group.iter().map(|p| p.ctx.key()).collect();
        let answered = idempotency::answered(&mut conn, &tenant, &keys).await?;
        // A request sent twice at once goes together once; its copy runs alone after the group
        // and finds the group's answer.
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<bool> = keys
            .iter()
            .zip(&answered)
            .map(|(key, answered)| !answered && seen.insert((key.principal, key.request_id)))
            .collect();
        let count = fresh.iter().filter(|fresh| **fresh).count();
        let protocols = allocate_protocols(&mut conn, &tenant, now, count).await?;
        Ok((fresh, protocols))
    }

    async fn create_together(&self, together: &[(Pending, Protocol)]) -> Result<Vec<pb::Task>, AppError> {
        let contexts: Vec<&CommandContext> = together.iter().map(|(p, _)| &p.ctx).collect();
        let plan = Together { creates: together, metrics: &self.metrics };
        command::execute_batch(&self.pool, &contexts, &plan).await
    }
}

/// A department's runner. However its task ends (a panic, the runtime shutting down), the key is
/// let go: the creates still waiting get `ABORTED` (retryable, their request ids unused) and the
/// next create starts a runner.
struct Runner<'a> {
    groups: &'a CreateGroups,
    key: (TenantId, String),
    /// Ran out of creates, and let go of the key itself.
    ended: bool,
}

impl Drop for Runner<'_> {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let mut waiting = self.groups.waiting.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        waiting.remove(&self.key);
    }
}

struct Together<'a> {
    creates: &'a [(Pending, Protocol)],
    metrics: &'a DistributionMetrics,
}

impl BatchPlan<DomainError> for Together<'_> {
    type Response = pb::Task;

    async fn plan(&self, conn: &mut PgConnection, now: DateTime<Utc>) -> Result<Vec<(pb::Task, Writes)>, AppError> {
        let Some((first, _)) = self.creates.first() else {
            return Ok(Vec::new());
        };
        let tenant = &first.ctx.tenant;
        let department = first.input.department.to_string();
        lock_departments(conn, tenant, None, &[department.as_str()]).await?;
        let view = projections::agents::department_round(conn, tenant, &department, true).await?;
        let created = self
            .creates
            .iter()
            .map(|(pending, protocol)| {
                let new = new_task(pending.input.clone(), protocol.clone(), &pending.ctx.actor);
                (task::create(new, now), &pending.ctx.metadata)
            })
            .collect();
        let news = NewTasks { created };
        match dispatcher::take_new_batch(conn, tenant, view, news, "task_created", self.metrics, now).await? {
            Some(written) => Ok(written
                .into_iter()
                .map(|((task, version), writes)| (queries::task_to_pb(&task, version), writes))
                .collect()),
            // Not decided together: each create runs alone.
            None => Err(AppError::Conflict),
        }
    }
}
