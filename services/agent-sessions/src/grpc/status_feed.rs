//! The supervisor's live board as a stream: the current statuses first, then one update per
//! agent event, read from this service's own JetStream stream (an ephemeral ordered consumer per
//! watcher, filtered to the watcher's tenant). The status sent is read from the read model, which
//! is committed before the relay publishes.

use async_nats::jetstream::{self, consumer::DeliverPolicy, consumer::pull::OrderedConfig};
use dw_eventstore::envelope;
use dw_proto::agentsessions::v1 as pb;
use futures::StreamExt;
use sqlx::PgPool;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::projections::queries;

#[derive(Clone)]
pub struct StatusFeed {
    pool: PgPool,
    jetstream: jetstream::Context,
    stream_name: String,
    subject_prefix: String,
    cancel: CancellationToken,
}

pub type StatusStream = tokio_stream::wrappers::ReceiverStream<Result<pb::AgentStatusView, Status>>;

const PAGE: i64 = 500;

impl StatusFeed {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        stream_name: String,
        subject_prefix: String,
        cancel: CancellationToken,
    ) -> Self {
        Self { pool, jetstream, stream_name, subject_prefix, cancel }
    }

    pub async fn watch(&self, tenant: String, department: Option<String>) -> Result<StatusStream, Status> {
        let stream = self
            .jetstream
            .get_stream(&self.stream_name)
            .await
            .map_err(|e| dw_grpc_kit::errors::unavailable(format!("event stream unavailable: {e}")))?;
        // Subscribe before reading the board, so no change falls between the two.
        let consumer = stream
            .create_consumer(OrderedConfig {
                filter_subject: format!("{}.{}.>", self.subject_prefix, tenant),
                deliver_policy: DeliverPolicy::New,
                ..Default::default()
            })
            .await
            .map_err(|e| dw_grpc_kit::errors::unavailable(format!("event stream unavailable: {e}")))?;
        let mut messages = consumer
            .messages()
            .await
            .map_err(|e| dw_grpc_kit::errors::unavailable(format!("event stream unavailable: {e}")))?;

        let (sender, receiver) = mpsc::channel(256);
        let feed = self.clone();
        tokio::spawn(async move {
            let mut after = String::new();
            loop {
                let page = match queries::agent_statuses(&feed.pool, &tenant, department.as_deref(), &after, PAGE).await
                {
                    Ok(page) => page,
                    Err(error) => {
                        let _ = sender.send(Err(dw_grpc_kit::errors::internal(&error))).await;
                        return;
                    }
                };
                let full = page.len() as i64 == PAGE;
                for view in page {
                    after.clone_from(&view.agent_id);
                    if sender.send(Ok(view)).await.is_err() {
                        return;
                    }
                }
                if !full {
                    break;
                }
            }
            loop {
                let next = tokio::select! {
                    () = feed.cancel.cancelled() => return,
                    () = sender.closed() => return,
                    next = messages.next() => next,
                };
                let Some(Ok(message)) = next else {
                    let _ = sender.send(Err(dw_grpc_kit::errors::unavailable("event stream interrupted"))).await;
                    return;
                };
                let Some(agent_id) = message
                    .headers
                    .as_ref()
                    .and_then(|h| h.get(envelope::CE_SUBJECT))
                    .and_then(|stream_id| agent_of_stream(stream_id.as_str(), &tenant))
                else {
                    continue;
                };
                let view = match queries::agent_status(&feed.pool, &tenant, &agent_id).await {
                    Ok(Some(view)) => view,
                    Ok(None) => continue,
                    Err(error) => {
                        tracing::warn!(%error, "status feed read failed");
                        continue;
                    }
                };
                let wanted = department.as_ref().is_none_or(|d| view.department_ids.contains(d));
                if wanted && sender.send(Ok(view)).await.is_err() {
                    return;
                }
            }
        });
        Ok(tokio_stream::wrappers::ReceiverStream::new(receiver))
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
