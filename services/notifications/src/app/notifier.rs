//! Agents' live streams: the [`Notifier`] listens (one Postgres `LISTEN` per replica) for the
//! announcements the projections make at commit and wakes the agent's streams through the
//! kernel's live feed (`dw_grpc_kit::live`, which also bounds a tenant's open streams);
//! [`follow`] feeds one agent's stream from the kept notifications after a sequence, so a
//! resumed stream misses nothing.

use std::sync::Arc;
use std::time::Duration;

use dw_grpc_kit::live::{Feed, Heartbeats, LiveStream};
use dw_ids::TenantId;
use dw_proto::notifications::v1 as pb;
use futures::StreamExt;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, mpsc};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::Status;

use crate::projections::queries::notifications::notifications_after;
use crate::projections::{CHANNEL, agent_key};

/// How long a stream waits for a wake-up before it reads anyway (in case one was missed).
const SLOW_POLL: Duration = Duration::from_secs(2);

/// Wakes subscribers when their agent has something new (one listener per replica).
#[derive(Clone)]
pub struct Notifier {
    streams: Feed<String, ()>,
}

impl Notifier {
    /// `streams` should coalesce (a wake-up waiting stands for the next ones). Each announcement
    /// also wakes `pushes`, the Web Push worker: a projection that queues a push announces the
    /// agent's news in the same transaction, so the push goes out at its commit rather than at
    /// the worker's next poll.
    pub fn start(
        pool: PgPool,
        streams: Feed<String, ()>,
        pushes: Arc<Notify>,
        tasks: &tokio_util::task::TaskTracker,
        cancel: CancellationToken,
    ) -> Self {
        let notifier = Self { streams: streams.clone() };
        tasks.spawn(async move {
            while !cancel.is_cancelled() {
                let mut listener = match PgListener::connect_with(&pool).await {
                    Ok(listener) => listener,
                    Err(error) => {
                        tracing::warn!(%error, "notification listener unavailable");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if listener.listen(CHANNEL).await.is_err() {
                    continue;
                }
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        received = listener.recv() => match received {
                            Ok(notification) => {
                                pushes.notify_one();
                                streams.publish(&notification.payload().to_owned(), ());
                            }
                            Err(_) => break,
                        }
                    }
                }
            }
        });
        notifier
    }

    /// The agent's wake-ups from now on: take them before reading where a stream starts, so
    /// none is missed. `RESOURCE_EXHAUSTED` when the tenant holds its share of streams.
    pub fn wake_ups(&self, tenant: &TenantId, agent: &str) -> Result<WakeUps, Status> {
        let opened = self.streams.open(tenant, agent_key(tenant.as_str(), agent))?;
        Ok(WakeUps(opened.stream, self.streams.clone()))
    }
}

/// A stream's wake-ups from the [`Notifier`], and the feed they come from (whose heartbeat the
/// stream keeps).
pub struct WakeUps(LiveStream<()>, Feed<String, ()>);

/// An agent's notifications, with a heartbeat on an idle stream.
pub type Subscription = Heartbeats<ReceiverStream<Result<pb::AgentNotification, Status>>, pb::AgentNotification>;

/// What an idle `Subscribe` sends: only the heartbeat marker (no sequence), which clients ignore.
fn heartbeat() -> pb::AgentNotification {
    pb::AgentNotification { heartbeat: true, ..Default::default() }
}

/// An agent's stream: their notifications after sequence `after`, then each new one, until the
/// caller goes away or `cancel`.
pub fn follow(
    pool: PgPool,
    mut wake: WakeUps,
    tenant: String,
    agent: String,
    mut after: i64,
    cancel: CancellationToken,
) -> Subscription {
    let feed = wake.1.clone();
    let (sender, receiver) = mpsc::channel(256);
    tokio::spawn(async move {
        loop {
            match notifications_after(&pool, &tenant, &agent, after).await {
                Ok(batch) => {
                    for notification in batch.notifications {
                        after = after.max(i64::try_from(notification.sequence).unwrap_or(after));
                        if sender.send(Ok(notification)).await.is_err() {
                            return;
                        }
                    }
                    if batch.full {
                        continue;
                    }
                }
                Err(error) => tracing::warn!(%error, "subscription read failed"),
            }
            // Until our agent has news (or a slow poll, in case a wake-up was missed).
            tokio::select! {
                () = cancel.cancelled() => return,
                () = sender.closed() => return,
                () = tokio::time::sleep(SLOW_POLL) => {}
                received = wake.0.next() => match received {
                    Some(Ok(())) => {}
                    // Shutting down: the feed ended the wake-ups.
                    Some(Err(_)) | None => return,
                }
            }
        }
    });
    feed.heartbeats(ReceiverStream::new(receiver), heartbeat)
}
