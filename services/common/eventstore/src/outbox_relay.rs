//! Publishes committed events from the outbox to JetStream, in commit order, exactly once as
//! seen by consumers.
//!
//! One relay is active per service: it holds a Postgres session advisory lock on its own
//! connection, so replicas wait as standbys and take over when the holder's connection dies. It
//! is woken in process when a command of its replica commits (`wake_relay`), by a NATS core
//! message on `_dw.relay_wake.<stream>` when a command of another replica does (that replica's
//! standby relay sends it: `RelayConfig::peer_wake`), and polls every `poll_interval` (50 ms)
//! for the rest. Each event is
//! published with `Nats-Msg-Id` = event id, so a relay that dies between the JetStream ack and the
//! outbox delete republishes into the stream's duplicate window and JetStream drops the copy.
//!
//! The commands of the active relay's own replica hand it their events as they commit
//! (`handoff.rs`): its fast lane publishes them without reading the outbox
//! (`outbox_relay/fast_lane.rs`), in the same order and under the same message ids; the outbox read below
//! takes everything else.
//!
//! The active relay reads the next batch while the previous one is being published, and deletes
//! what JetStream acknowledged in the statement that reads the batch after: one round trip per
//! batch, overlapped with the publishes. A batch is published only once the previous one is
//! acknowledged whole.
//!
//! An event JetStream would refuse for good (larger than the server's `max_payload`) never
//! blocks the outbox: the relay sets it aside in `outbox_quarantine` ([`crate::quarantine`]),
//! counts it (`dw_outbox_quarantined`) and goes on with every other stream's events. The same
//! stream's later events wait behind it, so no consumer sees that stream out of order.
//!
//! One aggregate's events are published one after the other, each once the previous one is
//! acknowledged, while different aggregates' events are in flight together: a lost in-flight
//! message can then never let a later event of its aggregate be stored before it.
//!
//! The stream is set up once per leadership. A publish that fails (a NATS node lost, the stream
//! electing a new leader) is retried in place with a short jittered backoff; the events JetStream acknowledged
//! before the failure leave the outbox, and one stored whose ack was lost is published again and
//! dropped as a duplicate.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use futures::{FutureExt, StreamExt};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection, Row};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

use crate::envelope as h;

mod fast_lane;
mod stream_setup;

use crate::handoff;
use fast_lane::Lane;

/// How many commits may wait for the fast lane; beyond, they wake the outbox path instead.
const HANDOFF_QUEUE: usize = 4096;

/// The fast lane as the leader's loop sees it: its shared state, how to stop it, and when it
/// has finished.
struct LaneControl<'l> {
    lane: &'l Lane,
    stop: &'l CancellationToken,
    done: &'l CancellationToken,
}

use crate::store::{RecordedEvent, recorded_event_from_row};
pub use stream_setup::{RelayConfig, StreamDrift, StreamSetup, ensure_stream, stream_drift};

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("postgres: {0}")]
    Database(#[from] sqlx::Error),
    #[error("jetstream stream setup: {0}")]
    StreamSetup(String),
    #[error("jetstream publish: {0}")]
    Publish(String),
}

/// Relay metrics, registered once per process.
#[derive(Clone)]
pub struct RelayMetrics {
    backlog: Gauge,
    lane_published: Counter,
    quarantined: Gauge,
    publish_seconds: Histogram,
    stream_drift: Gauge,
}

impl RelayMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let backlog = Gauge::default();
        let publish_seconds = Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0]);
        registry.register("dw_outbox_backlog", "Events committed but not yet published", backlog.clone());
        let lane_published = Counter::default();
        registry.register(
            "dw_relay_fast_lane_events",
            "Events published as their command committed, handed over in process without reading the outbox",
            lane_published.clone(),
        );
        let quarantined = Gauge::default();
        registry.register(
            "dw_outbox_quarantined",
            "Outbox events set aside because JetStream would refuse them (their streams wait behind them)",
            quarantined.clone(),
        );
        registry.register(
            "dw_relay_publish_duration_seconds",
            "Time to publish one outbox batch to JetStream and receive its acks",
            publish_seconds.clone(),
        );
        let stream_drift = Gauge::default();
        registry.register(
            "dw_stream_config_drift",
            "Settings of the service's JetStream stream that differ from its configuration and were left as they are \
             (0: none; DW_STREAM_APPLY_CONFIG=true applies them)",
            stream_drift.clone(),
        );
        Self { backlog, lane_published, quarantined, publish_seconds, stream_drift }
    }

    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }
}

/// The outbox relay of one service.
pub struct OutboxRelay {
    pool: PgPool,
    jetstream: jetstream::Context,
    config: RelayConfig,
    metrics: RelayMetrics,
    /// When the quarantine gauge is next recounted on an idle poll (an operator's release runs
    /// in another process): every few seconds, not on every 50 ms poll.
    next_quarantine_count: std::sync::Mutex<Instant>,
}

/// How often an idle relay recounts the quarantine for `dw_outbox_quarantined`.
const QUARANTINE_RECOUNT: Duration = Duration::from_secs(5);

impl OutboxRelay {
    pub fn new(pool: PgPool, jetstream: jetstream::Context, config: RelayConfig, metrics: RelayMetrics) -> Self {
        Self { pool, jetstream, config, metrics, next_quarantine_count: std::sync::Mutex::new(Instant::now()) }
    }

    /// Creates the service's stream when missing; an existing one whose settings differ is
    /// reported, or updated when the configuration says `apply_config`.
    pub async fn ensure_stream(&self) -> Result<StreamSetup, RelayError> {
        let stream = &self.config.stream_name;
        let setup = ensure_stream(&self.jetstream, self.config.stream_config(), self.config.apply_config).await?;
        match &setup {
            StreamSetup::Created => info!(%stream, "stream created"),
            StreamSetup::Unchanged => debug!(%stream, "stream settings as configured"),
            StreamSetup::Drifted(drift) => {
                let differences = drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                warn!(
                    %stream,
                    %differences,
                    "stream settings differ from the configuration and are left as they are \
                     (DW_STREAM_APPLY_CONFIG=true applies the configuration)"
                );
            }
            StreamSetup::Updated(drift) => {
                let differences = drift.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ");
                info!(%stream, %differences, "stream updated to the configuration");
            }
        }
        let drifted = match &setup {
            StreamSetup::Drifted(drift) => drift.len(),
            _ => 0,
        };
        self.metrics.stream_drift.set(i64::try_from(drifted).unwrap_or(i64::MAX));
        Ok(setup)
    }

    /// Runs until `cancel`: waits to become the active relay, then publishes whatever the
    /// outbox holds whenever it is woken (in process, or by a peer over NATS core) or the poll
    /// interval passes. While it stands by, it wakes the active relay of another replica when
    /// this one commits ([`RelayConfig::peer_wake`]).
    pub async fn run(self, cancel: CancellationToken) {
        let active = AtomicBool::new(false);
        tokio::join!(self.lead(&cancel, &active), self.wake_peers(&cancel, &active));
    }

    /// Sends one wake on [`RelayConfig::wake_subject`] per change of the commit count while this
    /// relay is not the active one (several commits while one wake is sent make one more).
    /// Fire and forget: a wake lost (NATS unreachable, a subject the account may not publish
    /// on) leaves the events to the active relay's poll.
    async fn wake_peers(&self, cancel: &CancellationToken, active: &AtomicBool) {
        if !self.config.peer_wake {
            return;
        }
        let client = self.jetstream.client();
        let subject = self.config.wake_subject();
        let mut commits = crate::COMMITS.subscribe();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                changed = commits.changed() => {
                    if changed.is_err() {
                        return;
                    }
                }
            }
            commits.borrow_and_update();
            if !active.load(Ordering::Relaxed)
                && let Err(error) = client.publish(subject.clone(), bytes::Bytes::new()).await
            {
                debug!(%error, "peer relay wake not sent");
            }
        }
    }

    async fn lead(&self, cancel: &CancellationToken, active: &AtomicBool) {
        let mut backoff = Duration::from_millis(100);
        while !cancel.is_cancelled() {
            let started = Instant::now();
            let outcome = self.run_while_leader(cancel, active).await;
            active.store(false, Ordering::Relaxed);
            match outcome {
                Ok(()) => return,
                Err(error) => {
                    // A relay that ran a while before failing starts over quickly.
                    if started.elapsed() > Duration::from_secs(30) {
                        backoff = Duration::from_millis(100);
                    }
                    warn!(error = %error, backoff_ms = backoff.as_millis() as u64, "outbox relay failed, restarting");
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    async fn run_while_leader(&self, cancel: &CancellationToken, active: &AtomicBool) -> Result<(), RelayError> {
        let mut lock_conn = self.pool.acquire().await?.detach();
        loop {
            let acquired: bool = sqlx::query("SELECT pg_try_advisory_lock($1) AS acquired")
                .bind(self.config.lock_key)
                .fetch_one(&mut lock_conn)
                .await?
                .try_get("acquired")?;
            if acquired {
                break;
            }
            debug!("outbox relay standing by, another instance is active");
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(Duration::from_secs(2)) => {}
            }
        }
        // This process's commits now wake it in process: its waker stops sending peer wakes.
        active.store(true, Ordering::Relaxed);
        info!(stream = %self.config.stream_name, "outbox relay active");
        self.ensure_stream().await?;
        // The other replicas' commits wake it from now on (their wakers see it active: none of
        // theirs is). Without the subscription it relies on its poll for them.
        let mut peer_wakes = if self.config.peer_wake {
            match self.jetstream.client().subscribe(self.config.wake_subject()).await {
                Ok(subscriber) => Some(subscriber),
                Err(error) => {
                    warn!(%error, "peer relay wakes not received: other replicas' events wait for the poll");
                    None
                }
            }
        } else {
            None
        };

        // This process's commits hand their events to the fast lane from now on.
        let lane = Lane::default();
        let (_registration, handoffs) = handoff::register(&self.pool, HANDOFF_QUEUE);
        let (lane_stop, lane_done) = (CancellationToken::new(), CancellationToken::new());
        let lane_run = async {
            self.run_lane(&lane, handoffs, &lane_stop).await;
            lane_done.cancel();
        };
        let rounds = async {
            let lane = LaneControl { lane: &lane, stop: &lane_stop, done: &lane_done };
            let outcome = self.rounds(&mut lock_conn, cancel, &mut peer_wakes, &lane).await;
            lane_stop.cancel();
            outcome
        };
        let ((), outcome) = tokio::join!(lane_run, rounds);
        if outcome.is_ok() {
            // Shut down: the lock goes with the connection.
            let _ = lock_conn.close().await;
        }
        outcome
    }

    /// The leader's loop: publishes what the outbox holds whenever woken or the poll interval
    /// passes, beside the fast lane (`lane`), until `cancel`.
    async fn rounds(
        &self,
        lock_conn: &mut PgConnection,
        cancel: &CancellationToken,
        peer_wakes: &mut Option<async_nats::Subscriber>,
        lane: &LaneControl<'_>,
    ) -> Result<(), RelayError> {
        let mut retry = PublishRetry::default();
        let mut pipeline = Pipeline::default();
        loop {
            // Drain everything first, then sleep until notified or the poll interval passes. A
            // failed publish (a NATS node lost, the stream electing a new leader) is retried in
            // place, soon and with jitter, keeping the lock and the stream as they are: once the
            // stream answers again, publishing resumes within one short backoff.
            loop {
                if cancel.is_cancelled() {
                    break;
                }
                match self.pipelined_round(lock_conn, &mut pipeline, lane.lane).await {
                    Ok(busy) => {
                        retry.succeeded();
                        if !busy {
                            break;
                        }
                    }
                    Err(RelayError::Publish(error)) => {
                        let pause = retry.failed();
                        warn!(%error, attempt = retry.failures, retry_ms = pause.as_millis() as u64, "publish failed, retrying");
                        if retry.failures % 5 == 0 {
                            // Still failing: the stream may be gone (a cluster rebuilt); recreate it.
                            if let Err(error) = self.ensure_stream().await {
                                warn!(%error, "stream setup failed");
                            }
                        }
                        tokio::select! {
                            () = cancel.cancelled() => break,
                            () = tokio::time::sleep(pause) => {}
                        }
                    }
                    Err(error) => return Err(error),
                }
            }
            tokio::select! {
                () = cancel.cancelled() => {
                    // Publish what committed before shutdown (the lane's publishes first), then
                    // release the lock.
                    lane.stop.cancel();
                    lane.done.cancelled().await;
                    self.finish(lock_conn, &mut pipeline, lane.lane).await?;
                    self.publish_pending(lock_conn).await?;
                    return Ok(());
                }
                () = crate::RELAY_WAKE.notified() => {}
                Some(()) = next_wake(peer_wakes) => {}
                () = tokio::time::sleep(self.config.poll_interval) => {}
            }
        }
    }

    /// One round of the leader's loop: reads the next batch (deleting what JetStream acknowledged
    /// since the last read, in the same statement) while the previous batch is being published;
    /// once that publish is done, starts publishing the new batch. Returns whether there is more
    /// to do at once (a batch in flight, or acknowledged events still to delete).
    ///
    /// A batch starts only after the previous one's publishes all succeeded, so an aggregate's
    /// events stay in order across batches; when one failed, the batch read meanwhile is dropped
    /// (none of it was published) and read again on the retry.
    async fn pipelined_round<'s>(
        &'s self,
        conn: &mut PgConnection,
        pipeline: &mut Pipeline<'s>,
        lane: &Lane,
    ) -> Result<bool, RelayError> {
        let mut exclude = pipeline.delete.clone();
        if let Some(flight) = &pipeline.in_flight {
            exclude.extend_from_slice(&flight.positions);
        }
        let read = self.read_batch(conn, &pipeline.delete, &exclude, Some(lane));
        let (read, previous) = match pipeline.in_flight.take() {
            Some(flight) => {
                let (read, outcome) = tokio::join!(read, flight.publish);
                (read, Some((flight.positions, flight.versions, outcome)))
            }
            None => (read.await, None),
        };
        if read.is_ok() {
            pipeline.delete.clear();
        }
        let mut failure = None;
        if let Some((positions, versions, outcome)) = previous {
            pipeline.delete.extend(outcome.acked_positions(&positions));
            lane.outbox_published(
                versions
                    .iter()
                    .zip(&outcome.acked)
                    .map(|((stream, version), acked)| (stream.as_str(), *version, *acked)),
                outcome.error.is_some(),
            );
            failure = outcome.error;
        }
        let batch = read?;
        if let Some(error) = failure {
            return Err(RelayError::Publish(error));
        }
        if batch.events.is_empty() {
            let full = batch.rows as i64 >= self.config.batch_size;
            return Ok(full || !pipeline.delete.is_empty());
        }
        let Batch { positions, events, .. } = batch;
        let versions = events.iter().map(|event| (event.stream_id.clone(), event.version)).collect();
        let publish = async move { self.publish_events(&events).await };
        pipeline.in_flight = Some(InFlight { positions, versions, publish: Box::pin(publish) });
        Ok(true)
    }

    /// Waits for the batch in flight and deletes what JetStream acknowledged.
    async fn finish<'s>(
        &'s self,
        conn: &mut PgConnection,
        pipeline: &mut Pipeline<'s>,
        lane: &Lane,
    ) -> Result<(), RelayError> {
        if let Some(flight) = pipeline.in_flight.take() {
            let outcome = flight.publish.await;
            pipeline.delete.extend(outcome.acked_positions(&flight.positions));
            lane.outbox_published(
                flight
                    .versions
                    .iter()
                    .zip(&outcome.acked)
                    .map(|((stream, version), acked)| (stream.as_str(), *version, *acked)),
                outcome.error.is_some(),
            );
        }
        delete_published(conn, &pipeline.delete).await?;
        pipeline.delete.clear();
        Ok(())
    }

    /// Reads the next batch of the outbox (oldest first, without the positions in `exclude`),
    /// deleting the positions in `delete` in the same statement. An event too large to publish
    /// is quarantined and its stream's later events wait. The streams the fast lane publishes
    /// (`lane`) are left to it: their events wait for the next read.
    async fn read_batch(
        &self,
        conn: &mut PgConnection,
        delete: &[i64],
        exclude: &[i64],
        lane: Option<&Lane>,
    ) -> Result<Batch, RelayError> {
        // Taken before the read: a stream the lane publishes now may have its next event in
        // the outbox and its current one excluded; both wait.
        let mut held_streams = HashSet::new();
        let mut excluded = exclude.to_vec();
        if let Some(lane) = lane {
            let held = lane.held();
            excluded.extend(held.positions);
            held_streams = held.streams;
        }
        let rows = sqlx::query(
            "WITH deleted AS (DELETE FROM outbox WHERE position = ANY($2)) \
             SELECT o.position, e.global_position, e.event_id, e.tenant_id, e.stream_id, e.version, e.event_type, \
                    e.subject, COALESCE(o.payload, e.payload) AS payload, e.recorded_at, e.correlation_id, e.causation_id, e.traceparent \
             FROM outbox o JOIN events e ON e.global_position = o.global_position \
             WHERE o.position <> ALL($3) \
               AND NOT EXISTS (SELECT 1 FROM outbox_quarantine q \
                               WHERE q.stream_id = e.stream_id AND q.position <= o.position) \
             ORDER BY o.position LIMIT $1",
        )
        .bind(self.config.batch_size)
        .bind(delete)
        .bind(&excluded)
        .fetch_all(&mut *conn)
        .await?;
        if rows.is_empty() {
            self.metrics.backlog.set(0);
            let recount = {
                let mut next = self.next_quarantine_count.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                let due = Instant::now() >= *next;
                if due {
                    *next = Instant::now() + QUARANTINE_RECOUNT;
                }
                due
            };
            if recount {
                self.metrics.quarantined.set(crate::quarantine::count(conn).await?);
            }
            return Ok(Batch::default());
        }
        let limit = self.message_limit();
        let mut batch = Batch { rows: rows.len(), ..Batch::default() };
        for row in &rows {
            let position: i64 = row.try_get("position")?;
            let event = recorded_event_from_row(row)?;
            if held_streams.contains(&event.stream_id) {
                continue;
            }
            if lane.is_some_and(|lane| lane.claims(&event.stream_id)) {
                held_streams.insert(event.stream_id.clone());
                continue;
            }
            let size = message_size(&event);
            if size > limit {
                let reason = format!("{size} bytes with headers, over the {limit} bytes JetStream accepts");
                warn!(event_id = %event.event_id, stream_id = %event.stream_id, %reason, "event quarantined");
                crate::quarantine::hold(conn, position, &event, &reason).await?;
                self.metrics.quarantined.inc();
                held_streams.insert(event.stream_id.clone());
                continue;
            }
            batch.positions.push(position);
            batch.events.push(event);
        }
        // A partial batch drained the outbox; only a full one leaves a backlog worth counting.
        let backlog: i64 = if (rows.len() as i64) < self.config.batch_size {
            0
        } else {
            sqlx::query("SELECT count(*) AS n FROM outbox").fetch_one(&mut *conn).await?.try_get("n")?
        };
        self.metrics.backlog.set(backlog);
        Ok(batch)
    }

    /// Publishes one batch of the outbox (oldest first) and deletes what JetStream acknowledged,
    /// one step after the other (the leader's loop overlaps them: [`Self::pipelined_round`]).
    /// Returns how many outbox entries the batch took up (published, quarantined or waiting).
    pub async fn publish_pending(&self, conn: &mut PgConnection) -> Result<usize, RelayError> {
        let batch = self.read_batch(conn, &[], &[], None).await?;
        if batch.events.is_empty() {
            return Ok(batch.rows);
        }
        let published = self.publish_events(&batch.events).await;
        // What JetStream acknowledged leaves the outbox even when the rest of the batch
        // failed: the retry then starts with the first unacknowledged event of each aggregate.
        let acked: Vec<i64> = published.acked_positions(&batch.positions).collect();
        delete_published(conn, &acked).await?;
        if let Some(error) = published.error {
            return Err(RelayError::Publish(error));
        }
        Ok(batch.rows)
    }

    /// The largest message JetStream takes: the server's `max_payload`, or the configured limit
    /// when lower.
    fn message_limit(&self) -> usize {
        let server = match self.jetstream.client().server_info().max_payload {
            0 => usize::MAX,
            max => max,
        };
        self.config.max_message_bytes.map_or(server, |configured| configured.min(server))
    }

    /// Publishes `events` (outbox order) and reports which JetStream acknowledged. The events of
    /// one aggregate go one at a time, each after the previous one's ack; different aggregates
    /// go side by side. So an aggregate's events are stored in order even when a publish fails
    /// in the middle (a stream leader lost with messages in flight): pipelining one aggregate's
    /// events could store a later one and lose an earlier one, and the retry would then append
    /// the earlier one after it.
    async fn publish_events(&self, events: &[RecordedEvent]) -> PublishOutcome {
        let span = info_span!(
            "relay publish",
            messaging.system = "nats",
            messaging.operation.type = "publish",
            messaging.batch.message_count = events.len(),
            messaging.nats.stream = %self.config.stream_name,
        );
        let started = Instant::now();
        let outcome = self.publish_chains(events).instrument(span).await;
        self.metrics.publish_seconds.observe(started.elapsed().as_secs_f64());
        outcome
    }

    /// [`Self::publish_events`] without its span and timing: one chain per aggregate.
    async fn publish_chains(&self, events: &[RecordedEvent]) -> PublishOutcome {
        let mut chains: Vec<Vec<usize>> = Vec::new();
        let mut chain_of: HashMap<&str, usize> = HashMap::new();
        for (index, event) in events.iter().enumerate() {
            let chain = *chain_of.entry(event.stream_id.as_str()).or_insert_with(|| {
                chains.push(Vec::new());
                chains.len() - 1
            });
            chains[chain].push(index);
        }
        let results = futures::future::join_all(chains.iter().map(|chain| async move {
            let mut acked = Vec::with_capacity(chain.len());
            for &index in chain {
                match self.publish_one(&events[index]).await {
                    Ok(()) => acked.push(index),
                    Err(error) => return (acked, Some(error)),
                }
            }
            (acked, None)
        }))
        .await;
        let mut outcome = PublishOutcome { acked: vec![false; events.len()], error: None };
        for (acked, error) in results {
            for index in acked {
                outcome.acked[index] = true;
            }
            if outcome.error.is_none() {
                outcome.error = error;
            }
        }
        outcome
    }

    /// Publishes one event and waits for JetStream's ack (a duplicate's ack included).
    async fn publish_one(&self, event: &RecordedEvent) -> Result<(), String> {
        // Each event gets a span of its own, a child of the command that appended it, whose
        // context travels on to the consumers.
        let span = info_span!(
            "relay publish event",
            messaging.system = "nats",
            messaging.operation.type = "publish",
            messaging.destination.name =
                %format_args!("{}.{}.{}", self.config.subject_prefix, event.tenant_id, event.subject),
            messaging.message.id = %event.event_id,
            cloudevents.event_type = %event.event_type,
            otel.kind = "producer",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        if let Some(parent) = &event.metadata.traceparent {
            dw_telemetry::set_parent_from_traceparent(&span, parent);
        }
        dw_telemetry::json_log::record_trace_ids(&span);
        let subject = format!("{}.{}.{}", self.config.subject_prefix, event.tenant_id, event.subject);
        let headers = self.headers_for(event, dw_telemetry::traceparent_of(&span));
        let ack = self
            .jetstream
            .publish_with_headers(subject, headers, event.payload.clone().into())
            .instrument(span)
            .await
            .map_err(|e| e.to_string())?;
        ack.await.map_err(|e| e.to_string())?;
        Ok(())
    }

    fn headers_for(&self, event: &RecordedEvent, traceparent: Option<String>) -> async_nats::HeaderMap {
        let mut headers = async_nats::HeaderMap::new();
        let event_id = event.event_id.to_string();
        headers.insert(h::NATS_MSG_ID, event_id.as_str());
        headers.insert(h::CE_ID, event_id.as_str());
        headers.insert(h::CE_SPECVERSION, "1.0");
        headers.insert(h::CE_TYPE, event.event_type.as_str());
        headers.insert(h::CE_SOURCE, self.config.source.as_str());
        headers.insert(h::CE_TIME, event.recorded_at.to_rfc3339_opts(chrono::SecondsFormat::Micros, true).as_str());
        headers.insert(h::CE_SUBJECT, event.stream_id.as_str());
        headers.insert(h::CONTENT_TYPE, h::PROTOBUF_CONTENT_TYPE);
        headers.insert(h::DW_TENANT, event.tenant_id.as_str());
        headers.insert(h::DW_STREAM_VERSION, event.version.to_string().as_str());
        if let Some(correlation_id) = &event.metadata.correlation_id {
            headers.insert(h::DW_CORRELATION_ID, correlation_id.as_str());
        }
        if let Some(causation_id) = &event.metadata.causation_id {
            headers.insert(h::DW_CAUSATION_ID, causation_id.as_str());
        }
        if let Some(traceparent) = traceparent.or_else(|| event.metadata.traceparent.clone()) {
            headers.insert(h::TRACEPARENT, traceparent.as_str());
        }
        headers
    }
}

/// A batch read from the outbox: how many rows the read returned, and the events to publish
/// (without those quarantined or waiting behind a quarantined one) with their outbox positions.
#[derive(Default)]
struct Batch {
    rows: usize,
    positions: Vec<i64>,
    events: Vec<RecordedEvent>,
}

/// A batch being published while the next one is read.
struct InFlight<'s> {
    positions: Vec<i64>,
    /// The events' streams and versions, for the fast lane ([`Lane::outbox_published`]).
    versions: Vec<(String, i64)>,
    publish: std::pin::Pin<Box<dyn std::future::Future<Output = PublishOutcome> + Send + 's>>,
}

/// The leader's loop between rounds: the batch in flight, and the positions JetStream
/// acknowledged that the next read deletes.
#[derive(Default)]
struct Pipeline<'s> {
    in_flight: Option<InFlight<'s>>,
    delete: Vec<i64>,
}

/// What one batch's publish did: `acked[i]` for the events JetStream acknowledged, and the first
/// error, if any publish failed.
struct PublishOutcome {
    acked: Vec<bool>,
    error: Option<String>,
}

impl PublishOutcome {
    /// The outbox positions (`positions`, in the batch's order) of the events JetStream
    /// acknowledged.
    fn acked_positions<'a>(&'a self, positions: &'a [i64]) -> impl Iterator<Item = i64> + 'a {
        positions.iter().zip(&self.acked).filter(|(_, acked)| **acked).map(|(position, _)| *position)
    }
}

/// The next wake from a peer (with every one already received: a burst makes one round);
/// pending for ever without a subscription, `None` once it ended.
async fn next_wake(wakes: &mut Option<async_nats::Subscriber>) -> Option<()> {
    let Some(subscriber) = wakes else {
        return std::future::pending().await;
    };
    subscriber.next().await?;
    while let Some(Some(_)) = subscriber.next().now_or_never() {}
    Some(())
}

/// Deletes the outbox entries JetStream acknowledged (none: no statement).
async fn delete_published(conn: &mut PgConnection, positions: &[i64]) -> Result<(), sqlx::Error> {
    if !positions.is_empty() {
        sqlx::query("DELETE FROM outbox WHERE position = ANY($1)").bind(positions).execute(conn).await?;
    }
    Ok(())
}

/// Room for the headers the relay sets beyond those sized by [`message_size`] (`ce-*` names,
/// the time, the content type, a traceparent of the relay's own span).
const HEADER_ALLOWANCE: usize = 512;

/// What an event weighs against the server's `max_payload` once published: the payload plus its
/// headers (NATS counts both).
fn message_size(event: &RecordedEvent) -> usize {
    let metadata = [&event.metadata.correlation_id, &event.metadata.causation_id, &event.metadata.traceparent]
        .into_iter()
        .map(|value| value.as_ref().map_or(0, String::len))
        .sum::<usize>();
    event.payload.len()
        + event.event_type.len()
        + event.stream_id.len()
        + event.tenant_id.as_str().len()
        + metadata
        + HEADER_ALLOWANCE
}

/// The pause before retrying a failed publish: 50 ms doubling to 1 s, with ±50% jitter (so
/// relays of several services do not retry in step), back to 50 ms after a success.
#[derive(Debug, Default)]
struct PublishRetry {
    failures: u32,
}

impl PublishRetry {
    fn failed(&mut self) -> Duration {
        self.failures += 1;
        let base = Duration::from_millis(50)
            .saturating_mul(1 << self.failures.saturating_sub(1).min(5))
            .min(Duration::from_secs(1));
        let jitter: f64 = rand::random();
        base.mul_f64(0.5 + jitter)
    }

    fn succeeded(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::PublishRetry;
    use std::time::Duration;

    #[test]
    fn publish_retries_back_off_with_jitter_up_to_a_second_and_start_over_after_a_success() {
        let mut retry = PublishRetry::default();
        let first = retry.failed();
        assert!(first >= Duration::from_millis(25) && first <= Duration::from_millis(75), "{first:?}");
        for _ in 0..10 {
            assert!(retry.failed() <= Duration::from_millis(1500));
        }
        let late = retry.failed();
        assert!(late >= Duration::from_millis(500), "{late:?}");
        retry.succeeded();
        assert!(retry.failed() <= Duration::from_millis(75));
    }
}
