//! `WatchMyTasks`: one ordered JetStream consumer per replica reads this service's task events
//! and fans each out to the watchers of the agents it concerns (a task read from the read model,
//! committed before the relay published the event). The events already received are taken
//! together and their tasks read in one query, so the feed keeps up when the database is busy.

use std::collections::HashMap;

use dw_ids::TenantId;

use async_nats::jetstream;
use dw_eventstore::envelope;
use dw_grpc_kit::bootstrap::Bootstrap;
use dw_grpc_kit::live::{Feed, Heartbeats, LiveStream, Opened, Overflow};
use dw_proto::distribution::v1 as pb;
use sqlx::PgPool;
use tonic::Status;

use crate::domain::{AgentId, TaskId};
use crate::projections::queries;

/// The agent's updates, with a heartbeat on an idle stream.
pub type TaskStream = Heartbeats<LiveStream<pb::TaskUpdate>, pb::TaskUpdate>;

/// What an idle `WatchMyTasks` sends: only the heartbeat marker, which clients ignore.
fn heartbeat() -> pb::TaskUpdate {
    pb::TaskUpdate { heartbeat: true, ..Default::default() }
}

/// Whose watchers: one agent of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AgentKey {
    tenant: TenantId,
    agent: AgentId,
}

/// Messages taken together by the feed at most.
const FEED_BATCH: usize = 256;

/// A message's update for some watcher of this replica.
struct Wanted {
    tenant: TenantId,
    task_id: TaskId,
    kind: pb::task_update::Kind,
    agents: Vec<AgentId>,
}

#[derive(Clone)]
pub struct TaskFeed {
    pool: PgPool,
    watchers: Feed<AgentKey, pb::TaskUpdate>,
}

/// Which agents an event concerns, and how.
fn audience(event_type: &str, payload: &[u8]) -> Option<(TaskId, pb::task_update::Kind, Vec<String>)> {
    use pb::task_update::Kind;
    let id = |s: &str| TaskId::parse(s).ok();
    match pb::Event::decode(event_type, payload).ok()?? {
        pb::Event::TaskAssigned(m) => Some((id(&m.task_id)?, Kind::Assigned, vec![m.agent_id])),
        pb::Event::TaskClaimed(m) => Some((id(&m.task_id)?, Kind::Assigned, vec![m.agent_id])),
        pb::Event::TaskRequeued(m) => Some((id(&m.task_id)?, Kind::Requeued, vec![m.previous_agent_id])),
        pb::Event::TaskCompleted(m) => Some((id(&m.task_id)?, Kind::Completed, vec![m.agent_id])),
        pb::Event::TaskTransferred(m) => {
            let agents = [m.from_agent_id, m.to_agent_id].into_iter().filter(|a| !a.is_empty()).collect();
            Some((id(&m.task_id)?, Kind::Transferred, agents))
        }
        pb::Event::TaskMessageRecorded(m) => Some((id(&m.task_id)?, Kind::Message, vec![m.agent_id])),
        pb::Event::TaskCancelled(m) => {
            // The holder is read from the task itself.
            Some((id(&m.task_id)?, Kind::Cancelled, Vec::new()))
        }
        // A new task has no agent to tell yet; an erasure changes no task's place.
        pb::Event::TaskCreated(_) | pb::Event::ClientDataErased(_) => None,
    }
}

impl TaskFeed {
    /// Starts the replica's feed consumer; it runs until the service drains. `pool` should be
    /// the feed's own: under load every connection of the command pool may be waiting on a
    /// tenant's lock, and the feed must not queue behind them.
    pub fn start(pool: PgPool, boot: &Bootstrap) -> Self {
        let feed = Self { pool, watchers: boot.live_feed(1024, Overflow::Disconnect) };
        let runner = feed.clone();
        let filter = format!("{}.*.task.>", boot.config.subject_prefix);
        boot.follow_own_stream_batches(filter, FEED_BATCH, move |batch| {
            let runner = runner.clone();
            async move { runner.on_batch(&batch).await }
        });
        feed
    }

    /// What a message tells, when some watcher of this replica needs it.
    fn wanted(&self, message: &jetstream::Message) -> Option<Wanted> {
        let headers = message.headers.as_ref()?;
        let event_type = headers.get(envelope::CE_TYPE)?;
        let tenant = TenantId::parse(headers.get(envelope::DW_TENANT)?.as_str()).ok()?;
        let (task_id, kind, agents) = audience(event_type.as_str(), &message.payload)?;
        let agents: Vec<AgentId> =
            agents.iter().filter(|a| !a.is_empty()).filter_map(|a| AgentId::parse(a).ok()).collect();
        let watched =
            agents.iter().any(|a| self.watchers.wants(&AgentKey { tenant: tenant.clone(), agent: a.clone() }));
        (kind == pb::task_update::Kind::Cancelled || watched).then_some(Wanted { tenant, task_id, kind, agents })
    }

    /// The batch's updates, in stream order, with their tasks read in one query, whatever their
    /// tenants.
    async fn on_batch(&self, batch: &[jetstream::Message]) {
        let wanted: Vec<Wanted> = batch.iter().filter_map(|message| self.wanted(message)).collect();
        if wanted.is_empty() {
            return;
        }
        let pairs: Vec<(&TenantId, TaskId)> = wanted.iter().map(|w| (&w.tenant, w.task_id)).collect();
        let mut tasks: HashMap<(String, String), pb::Task> = HashMap::new();
        if let Ok(mut conn) = self.pool.acquire().await
            && let Ok(found) = queries::tasks_of_tenants(&mut conn, &pairs).await
        {
            tasks.extend(found.into_iter().map(|(tenant, task)| ((tenant, task.task_id.clone()), task)));
        }
        let at = crate::codec::timestamp(chrono::Utc::now());
        for w in wanted {
            let Some(task) = tasks.get(&(w.tenant.to_string(), w.task_id.to_string())) else { continue };
            let mut agents = w.agents;
            if w.kind == pb::task_update::Kind::Cancelled
                && let Ok(owner) = AgentId::parse(&task.agent_id)
            {
                agents.push(owner);
            }
            let update =
                pb::TaskUpdate { kind: w.kind as i32, task: Some(task.clone()), at: Some(at), heartbeat: false };
            for agent in agents {
                self.watchers.publish(&AgentKey { tenant: w.tenant.clone(), agent }, update.clone());
            }
        }
    }

    /// A stream of the agent's updates: registered first, then their open tasks, so nothing
    /// falls between the two (an update may precede or repeat a current task).
    pub async fn watch(&self, tenant: &TenantId, agent: &AgentId) -> Result<TaskStream, Status> {
        let Opened { start, stream } =
            self.watchers.open(tenant, AgentKey { tenant: tenant.clone(), agent: agent.clone() })?;
        let mut conn = self.pool.acquire().await.map_err(dw_grpc_kit::errors::db_status)?;
        let current = queries::tasks_of_agent(&mut conn, tenant, agent.as_str(), None)
            .await
            .map_err(dw_grpc_kit::errors::db_status)?;
        let now = crate::codec::timestamp(chrono::Utc::now());
        for task in current {
            let update = pb::TaskUpdate {
                kind: pb::task_update::Kind::Current as i32,
                task: Some(task),
                at: Some(now),
                heartbeat: false,
            };
            if start.send(Ok(update)).await.is_err() {
                break;
            }
        }
        Ok(self.watchers.heartbeats(stream, heartbeat))
    }
}
