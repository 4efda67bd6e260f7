//! `WatchMyTasks`: one ordered JetStream consumer per replica reads this service's task events
//! and fans each out to the watchers of the agents it concerns (a task read from the read model,
//! committed before the relay published the event).

use dw_ids::TenantId;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use dw_eventstore::envelope;
use dw_proto::distribution::v1 as pb;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::warn;

use crate::domain::{AgentId, TaskId};
use crate::projections::queries;

type Sender = mpsc::Sender<Result<pb::TaskUpdate, Status>>;
pub type TaskStream = tokio_stream::wrappers::ReceiverStream<Result<pb::TaskUpdate, Status>>;

/// Whose watchers: one agent of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct AgentKey {
    tenant: TenantId,
    agent: AgentId,
}

/// Watchers per agent.
#[derive(Clone, Default)]
struct Watchers(Arc<Mutex<HashMap<AgentKey, Vec<Sender>>>>);

impl Watchers {
    fn add(&self, key: AgentKey, sender: Sender) {
        if let Ok(mut map) = self.0.lock() {
            map.entry(key).or_default().push(sender);
        }
    }

    fn senders(&self, key: &AgentKey) -> Vec<Sender> {
        let Ok(mut map) = self.0.lock() else {
            return Vec::new();
        };
        let Some(list) = map.get_mut(key) else {
            return Vec::new();
        };
        list.retain(|s| !s.is_closed());
        let senders = list.clone();
        if list.is_empty() {
            map.remove(key);
        }
        senders
    }

    /// Ends every watch stream (on shutdown, so the server can drain).
    fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

#[derive(Clone)]
pub struct TaskFeed {
    pool: PgPool,
    watchers: Watchers,
    cancel: CancellationToken,
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
        // A new task has no agent to tell yet.
        pb::Event::TaskCreated(_) => None,
    }
}

impl TaskFeed {
    /// Starts the replica's feed consumer; it runs until `cancel`. `pool` should be the feed's
    /// own: under load every connection of the command pool may be waiting on a tenant's lock,
    /// and the feed must not queue behind them.
    pub fn start(
        pool: PgPool,
        jetstream: jetstream::Context,
        stream_name: String,
        subject_prefix: String,
        tasks: &tokio_util::task::TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let feed = Self { pool, watchers: Watchers::default(), cancel: cancel.clone() };
        let runner = feed.clone();
        tasks.spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !cancel.is_cancelled() {
                if let Err(reason) = runner.consume(&jetstream, &stream_name, &subject_prefix, &cancel).await {
                    warn!(%reason, "task feed interrupted, restarting");
                    tokio::select! {
                        () = cancel.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            runner.watchers.clear();
        });
        feed
    }

    async fn consume(
        &self,
        jetstream: &jetstream::Context,
        stream_name: &str,
        subject_prefix: &str,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let stream = jetstream.get_stream(stream_name).await.map_err(|e| e.to_string())?;
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("{subject_prefix}.*.task.>"),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string())?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let message = next.ok_or("feed ended")?.map_err(|e| e.to_string())?;
            let Some(headers) = message.headers.as_ref() else { continue };
            let (Some(event_type), Some(tenant)) = (headers.get(envelope::CE_TYPE), headers.get(envelope::DW_TENANT))
            else {
                continue;
            };
            let Some((task_id, kind, mut agents)) = audience(event_type.as_str(), &message.payload) else { continue };
            let Ok(tenant) = TenantId::parse(tenant.as_str()) else { continue };
            agents.retain(|a| !a.is_empty());
            let agents = agents.iter().filter_map(|a| AgentId::parse(a).ok()).collect();
            self.deliver(&tenant, task_id, kind, agents).await;
        }
    }

    async fn deliver(&self, tenant: &TenantId, task_id: TaskId, kind: pb::task_update::Kind, agents: Vec<AgentId>) {
        let key = |agent: &AgentId| AgentKey { tenant: tenant.clone(), agent: agent.clone() };
        let needs_task = kind == pb::task_update::Kind::Cancelled
            || agents.iter().any(|a| !self.watchers.senders(&key(a)).is_empty());
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
        };
        for agent in agents {
            for sender in self.watchers.senders(&key(&agent)) {
                // A watcher that cannot keep up is dropped rather than slowing everyone.
                if sender.try_send(Ok(update.clone())).is_err() {
                    let _ = sender.try_send(Err(Status::resource_exhausted("watcher too slow; reconnect")));
                }
            }
        }
    }

    /// A stream of the agent's updates: registered first, then their open tasks, so nothing
    /// falls between the two (an update may precede or repeat a current task).
    pub async fn watch(&self, tenant: &TenantId, agent: &AgentId) -> Result<TaskStream, Status> {
        if self.cancel.is_cancelled() {
            return Err(dw_grpc_kit::errors::unavailable("shutting down"));
        }
        let (sender, receiver) = mpsc::channel(1024);
        self.watchers.add(AgentKey { tenant: tenant.clone(), agent: agent.clone() }, sender.clone());
        let mut conn = self.pool.acquire().await.map_err(super::db_status)?;
        let current =
            queries::tasks_of_agent(&mut conn, tenant, agent.as_str(), None).await.map_err(super::db_status)?;
        let now = crate::codec::timestamp(chrono::Utc::now());
        for task in current {
            let update =
                pb::TaskUpdate { kind: pb::task_update::Kind::Current as i32, task: Some(task), at: Some(now) };
            if sender.send(Ok(update)).await.is_err() {
                break;
            }
        }
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver))
    }
}
