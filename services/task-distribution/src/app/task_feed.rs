//! `WatchMyTasks`: one ordered JetStream consumer per replica reads this service's task events
//! and fans each out to the watchers of the agents it concerns (a task read from the read model,
//! committed before the relay published the event).

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
        boot.follow_own_stream(format!("{}.*.task.>", boot.config.subject_prefix), move |message| {
            let runner = runner.clone();
            async move { runner.on_message(&message).await }
        });
        feed
    }

    async fn on_message(&self, message: &jetstream::Message) {
        let Some(headers) = message.headers.as_ref() else { return };
        let (Some(event_type), Some(tenant)) = (headers.get(envelope::CE_TYPE), headers.get(envelope::DW_TENANT))
        else {
            return;
        };
        let Some((task_id, kind, agents)) = audience(event_type.as_str(), &message.payload) else { return };
        let Ok(tenant) = TenantId::parse(tenant.as_str()) else { return };
        let agents = agents.iter().filter(|a| !a.is_empty()).filter_map(|a| AgentId::parse(a).ok()).collect();
        self.deliver(&tenant, task_id, kind, agents).await;
    }

    async fn deliver(&self, tenant: &TenantId, task_id: TaskId, kind: pb::task_update::Kind, agents: Vec<AgentId>) {
        let key = |agent: &AgentId| AgentKey { tenant: tenant.clone(), agent: agent.clone() };
        let needs_task =
            kind == pb::task_update::Kind::Cancelled || agents.iter().any(|a| self.watchers.wants(&key(a)));
        if !needs_task {
            return;
        }
        let task = match self.pool.acquire().await {
            Ok(mut conn) => queries::task_by_id(&mut conn, tenant, task_id).await.ok().flatten(),
            Err(_) => None,
        };
        let Some(task) = task else { return };
        let mut agents = agents;
        if kind == pb::task_update::Kind::Cancelled
            && let Ok(owner) = AgentId::parse(&task.agent_id)
        {
            agents.push(owner);
        }
        let update = pb::TaskUpdate {
            kind: kind as i32,
            task: Some(task),
            at: Some(crate::codec::timestamp(chrono::Utc::now())),
            heartbeat: false,
        };
        for agent in agents {
            self.watchers.publish(&key(&agent), update.clone());
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
