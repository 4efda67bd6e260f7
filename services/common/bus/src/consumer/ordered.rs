//! Ordered consumers (`concurrency` 1): one replica at a time holds the projection's lease (a
//! Postgres session advisory lock) and applies batches in the stream's order, or per aggregate
//! in `lanes` parallel transactions.

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use futures::{FutureExt, StreamExt};
use sqlx::{Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

use super::{LaneKey, ORDERED_BATCH, Outcome, ProjectionConsumer, confirm_ack};
use crate::{InboundEvent, Projection};

/// How often a standby replica asks for an ordered consumer's lease.
const LEASE_POLL: Duration = Duration::from_millis(500);
/// The first key of the ordered consumers' advisory locks (the relay's are single keys).
const LEASE_NAMESPACE: i32 = 0x6477_6263; // "dwbc"

/// How long a batch waits for its other lanes' connections before going in one lane.
const LANE_CONNECTION_WAIT: Duration = Duration::from_millis(100);

/// The most transactions an ordered consumer applies one batch in.
pub const MAX_LANES: usize = 16;

/// FNV-1a, 32 bits: stable across processes and releases (the lease key and the lanes).
fn fnv(text: &str) -> u32 {
    text.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193))
}

/// The second key: the consumer's name, hashed into the lock's 32 bits.
fn lease_key(durable_name: &str) -> i32 {
    i32::from_ne_bytes(fnv(durable_name).to_ne_bytes())
}

/// Why an ordered consumer stopped applying.
pub(super) enum Stop {
    /// A delivery was lost on its way: restart without handing anything back.
    Gap(String),
    /// Anything else: restart (what was pulled and not applied comes again from the ack floor).
    Failed(String),
}

/// A delivery sequence that skipped: `expected` was delivered to no one here.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Gap {
    expected: u64,
    received: u64,
}

/// The consumer's delivery sequence as this replica sees it. JetStream numbers each delivery of
/// a consumer (redeliveries too), and only the lease holder pulls: a number skipped is a
/// delivery that was lost on its way (a NATS node restarted with it in flight, or a pull no one
/// reads any more took it). JetStream would send it again only after `ack_wait`, and by then
/// the events after it would have been applied first; one aggregate's later status would
/// overtake its earlier one. So the consumer restarts, at its ack floor. A sequence that goes
/// back (a server that restarted from older consumer state) is a gap too.
#[derive(Default)]
pub(super) struct Deliveries {
    last: Option<u64>,
}

impl Deliveries {
    /// Takes `message` as the next delivery, or says which one is missing before it. A message
    /// without JetStream metadata is not checked.
    fn follows(&mut self, message: &jetstream::Message) -> Result<(), Gap> {
        match message.info() {
            Ok(info) => self.next(info.consumer_sequence),
            Err(_) => Ok(()),
        }
    }

    fn next(&mut self, received: u64) -> Result<(), Gap> {
        match self.last {
            Some(last) if received != last + 1 => Err(Gap { expected: last + 1, received }),
            _ => {
                self.last = Some(received);
                Ok(())
            }
        }
    }
}

/// Why a batch was not applied.
pub(super) enum BatchError {
    /// The lease's connection failed: the lease may be gone.
    Lease(sqlx::Error),
    /// An event of the batch failed: its events are handled one at a time.
    Event(String),
}

impl<P: Projection> ProjectionConsumer<P> {
    /// An ordered consumer: waits to hold the projection's lease (a Postgres session advisory
    /// lock, as the relay's), then pulls batches and applies each in one transaction on the
    /// lease's own connection, in the stream's order; acknowledges the batch after the commit.
    /// A replica without the lease pulls nothing, so the order holds across replicas; when the
    /// holder's connection dies its lease is free and a standby takes over within a second.
    pub(super) async fn consume_ordered(&self, cancel: &CancellationToken) -> Result<(), String> {
        let Some(mut lease) = self.lease(cancel).await? else { return Ok(()) };
        let mut consumer = match self.unfinished_restart().await? {
            // The consumer this replica deleted to restart it is created where it was to start.
            Some(start) => self.restart_at(start).await?,
            None => {
                if let super::catch_up::CaughtUp::Cancelled = self.catch_up(&mut lease, cancel).await? {
                    return Ok(());
                }
                self.ensure().await?
            }
        };
        // Events pulled and never acknowledged (a holder that died, a batch that failed, a
        // delivery lost on its way) would come back in the order JetStream redelivers them:
        // each when its `ack_wait` runs out, or at once when handed back, so a later event can
        // come back before an earlier one, and a delivery made to a pull that no one reads any
        // more (a dead holder's, this replica's previous one) restarts its `ack_wait` later
        // still. Then an aggregate's later status would be applied before its earlier one.
        // So the consumer starts over at its ack floor (everything before it is applied) on a
        // fresh consumer: nothing pending, the rest delivered again in the stream's order
        // (what was applied is skipped as a duplicate). Without the consumer's state
        // (JetStream not answering yet after a restart) nothing is pulled.
        let mut state = consumer.info().await.map_err(|e| format!("consumer info: {e}"))?.clone();
        if state.num_ack_pending > 0 {
            let start = state.ack_floor.stream_sequence + 1;
            info!(
                consumer = %self.config.durable_name,
                pending = state.num_ack_pending,
                start,
                "events pulled and not acknowledged: starting over at the ack floor"
            );
            consumer = self.restart_at(start).await?;
            state = consumer.info().await.map_err(|e| format!("consumer info: {e}"))?.clone();
        }
        // The deliveries so far: the next one this replica receives must be the one after.
        let deliveries = Deliveries { last: Some(state.delivered.consumer_sequence) };
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        info!(consumer = %self.config.durable_name, stream = %self.config.stream_name, "ordered consumer running (lease held)");
        match self.apply_in_order(&mut lease, &mut messages, deliveries, cancel).await {
            Ok(()) => Ok(()),
            // What was pulled and not applied stays unacknowledged (a `Nak` would send a later
            // event back before an earlier one still on its way): whoever holds the lease next
            // starts over at the ack floor.
            Err(Stop::Gap(reason) | Stop::Failed(reason)) => Err(reason),
        }
    }

    async fn apply_in_order(
        &self,
        lease: &mut PgConnection,
        messages: &mut pull::Stream,
        mut deliveries: Deliveries,
        cancel: &CancellationToken,
    ) -> Result<(), Stop> {
        let mut errors = 0;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let first = match next.ok_or_else(|| Stop::Failed("message stream ended".into()))? {
                Ok(message) => message,
                // A missed heartbeat or a pull the server refused while a node is lost: the
                // stream asks again; only a run of them restarts the consumer.
                Err(error) if errors < 5 => {
                    errors += 1;
                    warn!(%error, errors, "consumer stream error");
                    continue;
                }
                Err(error) => return Err(Stop::Failed(error.to_string())),
            };
            errors = 0;
            deliveries.follows(&first).map_err(|gap| self.gap(gap))?;
            let mut batch = vec![first];
            let mut gap = None;
            // Whatever else is already here joins the batch (under load, many; idle, none), up
            // to a delivery that went missing before it.
            while batch.len() < ORDERED_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => match deliveries.follows(&message) {
                        Ok(()) => batch.push(message),
                        Err(missing) => {
                            gap = Some(missing);
                            break;
                        }
                    },
                    Some(Some(Err(error))) => {
                        warn!(%error, "consumer stream error");
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            if let Err(error) = self.handle_batch(lease, &batch).await {
                return Err(Stop::Failed(error));
            }
            if let Some(gap) = gap {
                return Err(self.gap(gap));
            }
        }
    }

    fn gap(&self, gap: Gap) -> Stop {
        warn!(
            consumer = %self.config.durable_name,
            expected = gap.expected,
            received = gap.received,
            "a delivery never arrived (a NATS node lost with it in flight); restarting so it comes back before what followed it"
        );
        Stop::Gap(format!(
            "delivery {} never arrived (received {}); waiting for it to be redelivered",
            gap.expected, gap.received
        ))
    }

    /// Waits for the projection's lease; `None` when cancelled first.
    /// A standby borrows a pooled connection for each try and gives it back: only the holder
    /// keeps one out of the pool, so standbys cost no connection beyond the pool's.
    async fn lease(&self, cancel: &CancellationToken) -> Result<Option<PgConnection>, String> {
        let key = lease_key(&self.config.durable_name);
        loop {
            let mut conn = self.pool.acquire().await.map_err(|e| e.to_string())?;
            let acquired: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LEASE_NAMESPACE)
                .bind(key)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| e.to_string())?;
            if acquired {
                // The lock lives as long as this session: it leaves the pool with it.
                return Ok(Some(conn.detach()));
            }
            drop(conn);
            tokio::select! {
                () = cancel.cancelled() => return Ok(None),
                () = tokio::time::sleep(LEASE_POLL) => {}
            }
        }
    }

    /// Applies a batch in one transaction (each event in its own span); on any failure falls
    /// back to one event at a time, so a poison event is retried or dead-lettered alone. An
    /// error of the lease's connection ends the lease (the consumer restarts and waits for it).
    async fn handle_batch(&self, lease: &mut PgConnection, batch: &[jetstream::Message]) -> Result<(), String> {
        let events: Vec<Result<InboundEvent, String>> = batch
            .iter()
            .map(|message| {
                let sequence = message.info().map(|info| info.stream_sequence).unwrap_or(0);
                InboundEvent::from_parts(
                    message.subject.as_str(),
                    message.headers.as_ref(),
                    message.payload.clone(),
                    sequence,
                )
                .map_err(|e| e.to_string())
            })
            .collect();
        if let Some(last) = batch.last()
            && let Ok(info) = last.info()
        {
            self.metrics.lag.get_or_create(&self.labels()).set(i64::try_from(info.pending).unwrap_or(i64::MAX));
        }
        if events.iter().all(Result::is_ok) {
            let events: Vec<&InboundEvent> = events.iter().filter_map(|e| e.as_ref().ok()).collect();
            let Some((first, rest)) = batch.split_first() else { return Ok(()) };
            match self.in_hand(first, rest, self.apply_batch(lease, &events)).await {
                Ok(outcomes) => {
                    futures::future::join_all(batch.iter().map(confirm_ack)).await;
                    self.count(&events, &outcomes);
                    return Ok(());
                }
                Err(BatchError::Lease(error)) => return Err(format!("lease connection lost: {error}")),
                Err(BatchError::Event(reason)) => {
                    debug!(%reason, size = batch.len(), "batch failed; applying its events one at a time");
                }
            }
        }
        for (index, message) in batch.iter().enumerate() {
            let later = batch.get(index + 1..).unwrap_or_default();
            if self.handle_holding(message, later).await == Outcome::Retrying {
                // Handed back (its dead letter could not be stored): nothing after it may be
                // applied before it comes back.
                return Err("an event was handed back; the batch's later events wait for it".into());
            }
        }
        Ok(())
    }

    /// The batch's events applied with their bookkeeping (processed events in one statement per
    /// transaction, the position once). With one lane, in order in one transaction on the
    /// lease's connection; with more, split by aggregate into that many transactions applied side
    /// by side (the first on the lease's connection, the others on pooled ones taken first), each aggregate's
    /// events in order in one of them. A lane that fails makes the whole batch fall back to one
    /// event at a time; what the other lanes committed is then skipped as a duplicate.
    async fn apply_batch(
        &self,
        lease: &mut PgConnection,
        events: &[&InboundEvent],
    ) -> Result<Vec<Outcome>, BatchError> {
        let mut lanes = split_into_lanes(events, self.config.lanes, self.config.lane_by);
        let last = events.iter().map(|e| e.stream_sequence).max().unwrap_or(0);
        // The other lanes' connections are taken before any transaction starts, waiting briefly:
        // waiting for one while the first lane held its locks (a tenant's lock) could stall the
        // RPCs that hold the pool's connections and wait for those locks. Short of connections,
        // the batch goes in one lane.
        let mut connections = Vec::new();
        while connections.len() + 1 < lanes.len() {
            match tokio::time::timeout(LANE_CONNECTION_WAIT, self.pool.acquire()).await {
                Ok(Ok(connection)) => connections.push(connection),
                Ok(Err(_)) | Err(_) => {
                    lanes = vec![(0..events.len()).collect()];
                    connections.clear();
                }
            }
        }
        let outcomes = match lanes.split_first() {
            Some((first, others)) if !others.is_empty() => {
                let lane_events = |lane: &Vec<usize>| lane.iter().map(|&index| events[index]).collect::<Vec<_>>();
                let first_events = lane_events(first);
                let other_results =
                    futures::future::join_all(others.iter().zip(connections).map(|(lane, mut conn)| {
                        let lane_events = lane_events(lane);
                        async move {
                            self.apply_lane(&mut conn, &lane_events, None).await.map_err(|error| match error {
                                // Not the lease's connection: the batch falls back, the lease stays.
                                BatchError::Lease(error) => BatchError::Event(error.to_string()),
                                error => error,
                            })
                        }
                    }));
                let (first_result, other_results) =
                    tokio::join!(self.apply_lane(lease, &first_events, Some(last)), other_results);
                let mut outcomes = vec![Outcome::Duplicate; events.len()];
                let mut failure = None;
                for (lane, result) in std::iter::once((first, first_result)).chain(others.iter().zip(other_results)) {
                    match result {
                        Ok(lane_outcomes) => {
                            for (&index, outcome) in lane.iter().zip(lane_outcomes) {
                                outcomes[index] = outcome;
                            }
                        }
                        Err(error @ BatchError::Lease(_)) => return Err(error),
                        Err(error) => failure = failure.or(Some(error)),
                    }
                }
                if let Some(error) = failure {
                    return Err(error);
                }
                outcomes
            }
            _ => self.apply_lane(lease, events, Some(last)).await?,
        };
        Ok(outcomes)
    }

    /// `events` applied in order in one transaction on `conn`, with their processed-events
    /// bookkeeping and, on the lease's lane, the batch's last stream position.
    ///
    /// Events the projections append (reactions) go to this process's active relay once the
    /// transaction committed ([`dw_eventstore::handing_over`]), as a command's do.
    pub(super) async fn apply_lane(
        &self,
        conn: &mut PgConnection,
        events: &[&InboundEvent],
        position: Option<u64>,
    ) -> Result<Vec<Outcome>, BatchError> {
        dw_eventstore::handing_over(&self.pool, self.apply_lane_transaction(conn, events, position)).await
    }

    async fn apply_lane_transaction(
        &self,
        conn: &mut PgConnection,
        events: &[&InboundEvent],
        position: Option<u64>,
    ) -> Result<Vec<Outcome>, BatchError> {
        let mut tx = conn.begin().await.map_err(BatchError::Lease)?;
        let ids: Vec<uuid::Uuid> = events.iter().map(|e| e.event_id).collect();
        let fresh: Vec<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO processed_events (consumer, event_id) SELECT $1, unnest($2::uuid[]) \
             ON CONFLICT DO NOTHING RETURNING event_id",
        )
        .bind(&self.config.durable_name)
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await
        .map_err(BatchError::Lease)?;
        let fresh: HashSet<uuid::Uuid> = fresh.into_iter().collect();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut seen = HashSet::new();
        for event in events {
            // A batch may hold a redelivered copy of an event it also holds.
            if !fresh.contains(&event.event_id) || !seen.insert(event.event_id) {
                outcomes.push(Outcome::Duplicate);
                continue;
            }
            let span = self.event_span(event);
            let handed = match crate::hand_over(&self.projection, &mut tx, event).instrument(span).await {
                Ok(handed) => handed,
                Err(error) => {
                    // Now, not when dropped: a rollback left queued on the lease's connection
                    // would keep the batch's rows locked while its events are retried alone.
                    tx.rollback().await.map_err(BatchError::Lease)?;
                    return Err(BatchError::Event(error.to_string()));
                }
            };
            outcomes.push(match handed {
                crate::Handed::Applied => Outcome::Applied,
                crate::Handed::UnknownType => Outcome::UnknownType,
            });
        }
        if let Some(position) = position {
            super::record_position(&mut tx, &self.config.durable_name, position).await.map_err(BatchError::Lease)?;
        }
        dw_eventstore::commit(tx).await.map_err(BatchError::Lease)?;
        Ok(outcomes)
    }
}

/// The batch's event indexes split into at most `lanes` lanes by aggregate (stream id) or
/// tenant: one aggregate's (tenant's) events all in one lane, in the batch's order. A batch too
/// small to be worth more transactions stays in one lane.
fn split_into_lanes(events: &[&InboundEvent], lanes: usize, by: LaneKey) -> Vec<Vec<usize>> {
    let lanes = lanes.clamp(1, MAX_LANES);
    if lanes == 1 || events.len() < 2 * lanes {
        return vec![(0..events.len()).collect()];
    }
    let mut split = vec![Vec::new(); lanes];
    for (index, event) in events.iter().enumerate() {
        let key = match by {
            LaneKey::Aggregate => event.stream_id.as_str(),
            LaneKey::Tenant => event.tenant_id.as_str(),
        };
        split[fnv(key) as usize % lanes].push(index);
    }
    split.retain(|lane| !lane.is_empty());
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(stream_id: &str, sequence: u64) -> InboundEvent {
        let mut headers = async_nats::HeaderMap::new();
        let id = uuid::Uuid::now_v7().to_string();
        for (name, value) in [
            ("ce-id", id.as_str()),
            ("ce-type", "test.v1.Thing"),
            ("ce-source", "test"),
            ("ce-subject", stream_id),
            ("ce-time", "2026-12-01T00:00:00Z"),
            ("dw-tenant", "acme"),
            ("dw-stream-version", "1"),
        ] {
            headers.insert(name, value);
        }
        InboundEvent::from_parts("dw.test.acme.thing.happened", Some(&headers), bytes::Bytes::new(), sequence)
            .expect("a valid envelope")
    }

    #[test]
    fn lanes_keep_each_aggregate_whole_and_in_order() {
        let events: Vec<InboundEvent> = (0..64).map(|i| event(&format!("thing:{}", i % 7), i)).collect();
        let refs: Vec<&InboundEvent> = events.iter().collect();
        let lanes = split_into_lanes(&refs, 4, LaneKey::Aggregate);
        assert!(lanes.len() > 1 && lanes.len() <= 4, "{}", lanes.len());
        let mut lane_of = std::collections::HashMap::new();
        let mut all: Vec<usize> = Vec::new();
        for (lane, indexes) in lanes.iter().enumerate() {
            assert!(indexes.windows(2).all(|pair| pair[0] < pair[1]), "a lane keeps the batch's order");
            for &index in indexes {
                let previous = lane_of.insert(events[index].stream_id.clone(), lane);
                assert!(previous.is_none_or(|previous| previous == lane), "an aggregate split across lanes");
                all.push(index);
            }
        }
        all.sort_unstable();
        assert_eq!(all, (0..64).collect::<Vec<_>>(), "every event in exactly one lane");
    }

    #[test]
    fn lanes_by_tenant_keep_each_tenant_whole() {
        let mut events: Vec<InboundEvent> = (0..40).map(|i| event(&format!("thing:{i}"), i)).collect();
        for (i, event) in events.iter_mut().enumerate() {
            event.tenant_id = dw_ids::TenantId::parse(&format!("tenant-{}", i % 5)).expect("a tenant id");
        }
        let refs: Vec<&InboundEvent> = events.iter().collect();
        let lanes = split_into_lanes(&refs, 4, LaneKey::Tenant);
        assert!(lanes.len() > 1, "five tenants spread over the lanes");
        for indexes in &lanes {
            let tenants: HashSet<&str> = indexes.iter().map(|&i| events[i].tenant_id.as_str()).collect();
            for tenant in tenants {
                let of_tenant = events.iter().filter(|e| e.tenant_id.as_str() == tenant).count();
                let here = indexes.iter().filter(|&&i| events[i].tenant_id.as_str() == tenant).count();
                assert_eq!(here, of_tenant, "{tenant} split across lanes");
            }
        }
    }

    #[test]
    fn a_skipped_or_repeated_delivery_sequence_is_a_gap() {
        let mut deliveries = Deliveries::default();
        assert_eq!(deliveries.next(7), Ok(()), "the first delivery after a start sets the sequence");
        assert_eq!(deliveries.next(8), Ok(()));
        assert_eq!(deliveries.next(10), Err(Gap { expected: 9, received: 10 }), "delivery 9 was lost");
        assert_eq!(deliveries.next(9), Ok(()), "a gap is not taken as the new position");
        assert_eq!(deliveries.next(4), Err(Gap { expected: 10, received: 4 }), "a server back on older state");
        assert_eq!(deliveries.next(9), Err(Gap { expected: 10, received: 9 }), "the same delivery twice");
    }

    #[test]
    fn one_lane_or_a_small_batch_stays_whole() {
        let events: Vec<InboundEvent> = (0..5).map(|i| event(&format!("thing:{i}"), i)).collect();
        let refs: Vec<&InboundEvent> = events.iter().collect();
        assert_eq!(split_into_lanes(&refs, 1, LaneKey::Aggregate), vec![vec![0, 1, 2, 3, 4]]);
        assert_eq!(split_into_lanes(&refs, 4, LaneKey::Aggregate), vec![vec![0, 1, 2, 3, 4]]);
    }
}
