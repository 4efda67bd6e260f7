//! The supervisor's live board as a stream: the current statuses first, then one update per
//! agent event. One ordered consumer per replica follows this service's own JetStream stream
//! (`dw_grpc_kit::live`) and hands each changed status to the boards of its tenant and of its
//! departments. The status sent is read from the read model, which is committed before the relay
//! publishes.

use async_nats::jetstream;
use dw_eventstore::envelope;
use dw_grpc_kit::bootstrap::Bootstrap;
use dw_grpc_kit::live::{Feed, Heartbeats, LiveStream, Opened, Overflow};
use dw_ids::TenantId;
use dw_proto::agentsessions::v1 as pb;
use sqlx::PgPool;
use tonic::Status;

use crate::projections::queries;

/// A board: a tenant's, or one department's of it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Board {
    tenant: TenantId,
    department: Option<String>,
}

#[derive(Clone)]
pub struct StatusFeed {
    pool: PgPool,
    boards: Feed<Board, pb::AgentStatusView>,
}

/// A board's statuses, with a heartbeat on an idle stream.
pub type StatusStream = Heartbeats<LiveStream<pb::AgentStatusView>, pb::AgentStatusView>;

/// What an idle `WatchAgentStatuses` sends: only the heartbeat marker, which clients ignore.
fn heartbeat() -> pb::AgentStatusView {
    pb::AgentStatusView { heartbeat: true, ..Default::default() }
}

const PAGE: i64 = 500;

impl StatusFeed {
    /// Starts the replica's consumer of its own stream; it runs until the service drains.
    pub fn start(pool: PgPool, boot: &Bootstrap) -> Self {
        let feed = Self { pool, boards: boot.live_feed(1024, Overflow::Disconnect) };
        let runner = feed.clone();
        boot.follow_own_stream(format!("{}.>", boot.config.subject_prefix), move |message| {
            let runner = runner.clone();
            async move { runner.on_message(&message).await }
        });
        feed
    }

    async fn on_message(&self, message: &jetstream::Message) {
        let Some(headers) = message.headers.as_ref() else { return };
        let Some(tenant) = headers.get(envelope::DW_TENANT).and_then(|t| TenantId::parse(t.as_str()).ok()) else {
            return;
        };
        if !self.boards.wants_any(|board| board.tenant == tenant) {
            return;
        }
        let Some(agent_id) = headers
            .get(envelope::CE_SUBJECT)
            .and_then(|stream_id| agent_of_stream(stream_id.as_str(), tenant.as_str()))
        else {
            return;
        };
        let view = match queries::agent_status(&self.pool, tenant.as_str(), &agent_id).await {
            Ok(Some(view)) => view,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "status feed read failed");
                return;
            }
        };
        let departments = view.department_ids.iter().map(|d| Some(d.clone()));
        for department in std::iter::once(None).chain(departments) {
            self.boards.publish(&Board { tenant: tenant.clone(), department }, view.clone());
        }
    }

    /// The board of `tenant` (or of one of its departments): opened before the current statuses
    /// are read, so no change falls between the two (a change may repeat a status).
    pub async fn watch(&self, tenant: TenantId, department: Option<String>) -> Result<StatusStream, Status> {
        let board = Board { tenant: tenant.clone(), department: department.clone() };
        let Opened { start, stream } = self.boards.open(&tenant, board)?;
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut after = String::new();
            loop {
                let page =
                    match queries::agent_statuses(&pool, tenant.as_str(), department.as_deref(), &after, PAGE).await {
                        Ok(page) => page,
                        Err(error) => {
                            let _ = start.send(Err(dw_grpc_kit::errors::internal(&error))).await;
                            return;
                        }
                    };
                let full = page.len() as i64 == PAGE;
                for view in page {
                    after.clone_from(&view.agent_id);
                    if start.send(Ok(view)).await.is_err() {
                        return;
                    }
                }
                if !full {
                    return;
                }
            }
        });
        Ok(self.boards.heartbeats(stream, heartbeat))
    }
}

/// The agent an event stream belongs to: `serviceday:<tenant>:<agent>` or `agent:<tenant>:<agent>`.
fn agent_of_stream(stream_id: &str, tenant: &str) -> Option<String> {
    let rest = stream_id.strip_prefix("serviceday:").or_else(|| stream_id.strip_prefix("agent:"))?;
    let agent = rest.strip_prefix(tenant)?.strip_prefix(':')?;
    Some(agent.to_owned())
}

#[cfg(test)]
mod tests {
    use super::agent_of_stream;

    #[test]
    fn agent_streams_name_their_agent() {
        assert_eq!(agent_of_stream("serviceday:acme:ana", "acme").as_deref(), Some("ana"));
        assert_eq!(agent_of_stream("agent:acme:bob:x", "acme").as_deref(), Some("bob:x"));
        assert_eq!(agent_of_stream("tenant:acme", "acme"), None);
        assert_eq!(agent_of_stream("agent:other:ana", "acme"), None);
    }
}
