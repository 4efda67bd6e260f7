//! An ordered consumer created after its stream dropped old messages catches up from the owner's
//! store ([`crate::backfill`]) before the durable consumer exists, while it holds the lease.

use async_nats::jetstream::context::ConsumerInfoErrorKind;
use sqlx::PgConnection;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::ProjectionConsumer;
use super::ordered::BatchError;
use crate::backfill::receives;
use crate::{InboundEvent, Projection};

/// Events read from the owner per page (and applied per transaction).
const PAGE: usize = 500;

/// How a catch-up ended.
pub(super) enum CaughtUp {
    /// Nothing to catch up, or done: start on the stream.
    Ready,
    /// Cancelled before it was done.
    Cancelled,
}

impl<P: Projection> ProjectionConsumer<P> {
    /// When the durable consumer does not exist yet and the stream no longer starts at its first
    /// message, applies what the stream dropped from the owner's store, up to the store's head
    /// now. An existing durable consumer has its own position on the stream: nothing to do.
    pub(super) async fn catch_up(
        &self,
        lease: &mut PgConnection,
        cancel: &CancellationToken,
    ) -> Result<CaughtUp, String> {
        let mut stream = self.jetstream.get_stream(&self.config.stream_name).await.map_err(|e| e.to_string())?;
        // Only a consumer JetStream says does not exist catches up: any other answer (a timeout
        // while a node is lost) is an error, retried, never a reason to re-apply old events.
        match stream.consumer_info(&self.config.durable_name).await {
            Ok(_) => return Ok(CaughtUp::Ready),
            Err(error) if error.kind() == ConsumerInfoErrorKind::NotFound => {}
            Err(error) => return Err(format!("consumer info: {error}")),
        }
        let first = stream.info().await.map_err(|e| e.to_string())?.state.first_sequence;
        if first <= 1 {
            return Ok(CaughtUp::Ready);
        }
        let consumer = &self.config.durable_name;
        let Some(source) = &self.config.backfill else {
            warn!(
                %consumer,
                stream = %self.config.stream_name,
                dropped = first - 1,
                "a new consumer starts after its stream dropped its first messages and has no owner's event log \
                 to read them from: its projection misses them"
            );
            return Ok(CaughtUp::Ready);
        };
        let head = source.head().await?;
        info!(%consumer, dropped = first - 1, head, "catching up from the owner's event log");
        let started = std::time::Instant::now();
        let (mut after, mut read, mut applied) = (0, 0usize, 0usize);
        while after < head {
            if cancel.is_cancelled() {
                return Ok(CaughtUp::Cancelled);
            }
            let page = source.read(after, PAGE).await?;
            let Some(last) = page.last() else { break };
            after = last.position;
            read += page.len();
            let events: Vec<&InboundEvent> = page
                .iter()
                .filter(|sourced| {
                    sourced.position <= head && receives(&self.config.filter_subjects, &sourced.event.subject)
                })
                .map(|sourced| &sourced.event)
                .collect();
            applied += self.apply_caught_up(lease, &events).await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        info!(%consumer, read, applied, seconds, "caught up from the owner's event log; starting on the stream");
        Ok(CaughtUp::Ready)
    }

    /// One page in one transaction; a page with a failing event goes one event at a time, and an
    /// event that still fails stops the catch-up (the consumer restarts it; what was applied is
    /// skipped as a duplicate).
    async fn apply_caught_up(&self, lease: &mut PgConnection, events: &[&InboundEvent]) -> Result<usize, String> {
        if events.is_empty() {
            return Ok(0);
        }
        let outcomes = match self.apply_lane(lease, events, None).await {
            Ok(outcomes) => outcomes,
            Err(BatchError::Lease(error)) => return Err(format!("lease connection lost: {error}")),
            Err(BatchError::Event(_)) => {
                let mut outcomes = Vec::with_capacity(events.len());
                for event in events {
                    match self.apply_lane(lease, std::slice::from_ref(event), None).await {
                        Ok(mut one) => outcomes.append(&mut one),
                        Err(BatchError::Lease(error)) => return Err(format!("lease connection lost: {error}")),
                        Err(BatchError::Event(reason)) => {
                            return Err(format!("catching up: event {} failed: {reason}", event.event_id));
                        }
                    }
                }
                outcomes
            }
        };
        self.count(events, &outcomes);
        Ok(outcomes.iter().filter(|outcome| matches!(outcome, super::Outcome::Applied)).count())
    }
}
