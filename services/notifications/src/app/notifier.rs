//! Agents' live streams: the [`Notifier`] listens (one Postgres `LISTEN` per replica) for the
//! announcements the projections make at commit and wakes the streams; [`follow`] feeds one
//! agent's stream from the kept notifications, so a resumed stream misses nothing.

use std::time::Duration;

use dw_proto::notifications::v1 as pb;
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{broadcast, mpsc};
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
    sender: broadcast::Sender<String>,
}

impl Notifier {
    pub fn start(pool: PgPool, tasks: &tokio_util::task::TaskTracker, cancel: CancellationToken) -> Self {
        let (sender, _) = broadcast::channel(1024);
        let notifier = Self { sender: sender.clone() };
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
                            Ok(notification) => { let _ = sender.send(notification.payload().to_owned()); }
                            Err(_) => break,
                        }
                    }
                }
            }
        });
        notifier
    }

    /// The wake-ups from now on: take them before reading where a stream starts, so none is missed.
    pub fn wake_ups(&self) -> WakeUps {
        WakeUps(self.sender.subscribe())
    }
}

/// A stream's receiver of the [`Notifier`]'s wake-ups.
pub struct WakeUps(broadcast::Receiver<String>);

/// An agent's stream: their notifications after sequence `after`, then each new one, until the
/// caller goes away or `cancel`.
pub fn follow(
    pool: PgPool,
    mut wake: WakeUps,
    tenant: String,
    agent: String,
    mut after: i64,
    cancel: CancellationToken,
) -> ReceiverStream<Result<pb::AgentNotification, Status>> {
    let (sender, receiver) = mpsc::channel(256);
    let key = agent_key(&tenant, &agent);
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
            let deadline = tokio::time::sleep(SLOW_POLL);
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    () = cancel.cancelled() => return,
                    () = sender.closed() => return,
                    () = &mut deadline => break,
                    received = wake.0.recv() => match received {
                        Ok(payload) if payload == key => break,
                        Ok(_) => {}
                        Err(broadcast::error::RecvError::Lagged(_)) => break,
                        Err(broadcast::error::RecvError::Closed) => return,
                    }
                }
            }
        }
    });
    ReceiverStream::new(receiver)
}
