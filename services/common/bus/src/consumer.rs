//! A durable pull consumer applying one projection.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::{FutureExt, StreamExt};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use sqlx::postgres::PgPool;
use sqlx::{Connection, PgConnection, Row};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, error, info, info_span, warn};

use crate::dead_letters::{self, NewDeadLetter};
use crate::inbound::headers_to_json;
use crate::{InboundEvent, Projection, ProjectionError};

/// Events an ordered consumer applies in one transaction at most (and its `max_ack_pending`).
pub const ORDERED_BATCH: usize = 256;
/// How often a standby replica asks for an ordered consumer's lease.
const LEASE_POLL: Duration = Duration::from_millis(500);
/// The first key of the ordered consumers' advisory locks (the relay's are single keys).
const LEASE_NAMESPACE: i32 = 0x6477_6263; // "dwbc"

/// The second key: the consumer's name, hashed (FNV-1a) into the lock's 32 bits.
fn lease_key(durable_name: &str) -> i32 {
    let hash =
        durable_name.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// Why a batch was not applied.
enum BatchError {
    /// The lease's connection failed: the lease may be gone.
    Lease(sqlx::Error),
    /// An event of the batch failed: its events are handled one at a time.
    Event(String),
}

#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Durable consumer name; also the projection's bookkeeping key.
    pub durable_name: String,
    /// The producing service's stream.
    pub stream_name: String,
    /// Subjects to receive (empty: the whole stream).
    pub filter_subjects: Vec<String>,
    /// Deliveries before an event is dead-lettered.
    pub max_deliver: i64,
    /// Redelivery delay per attempt (the last one repeats).
    pub backoff: Vec<Duration>,
    pub ack_wait: Duration,
    /// Messages handled at once. 1 keeps the stream's order (projections that need it): the
    /// replica holding the projection's lease applies batches of up to [`ORDERED_BATCH`] events
    /// in one transaction each. More suits independent work such as calling a provider per
    /// message.
    pub concurrency: usize,
}

impl ConsumerConfig {
    pub fn new(durable_name: &str, stream_name: &str) -> Self {
        Self {
            durable_name: durable_name.to_owned(),
            stream_name: stream_name.to_owned(),
            filter_subjects: Vec::new(),
            max_deliver: 5,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_secs(1),
                Duration::from_secs(5),
                Duration::from_secs(30),
            ],
            // Short: a consumer that died is redelivered quickly; long work beats in-progress acks.
            ack_wait: Duration::from_secs(10),
            concurrency: 1,
        }
    }

    fn delay_after(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        self.backoff.get(index).or(self.backoff.last()).copied().unwrap_or(Duration::from_secs(1))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    pub consumer: String,
}

/// Consumer metrics, registered once per process and shared by its consumers.
#[derive(Clone)]
pub struct ConsumerMetrics {
    lag: Family<ConsumerLabels, Gauge>,
    applied: Family<ConsumerLabels, Counter>,
    unknown: Family<ConsumerLabels, Counter>,
    dead_letters: Family<ConsumerLabels, Counter>,
    projection_lag: Family<ConsumerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

impl ConsumerMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            lag: Family::default(),
            applied: Family::default(),
            unknown: Family::default(),
            dead_letters: Family::default(),
            projection_lag: Family::default(),
        };
        registry.register(
            "dw_consumer_lag",
            "Messages in the stream not yet delivered to the consumer",
            metrics.lag.clone(),
        );
        registry.register("dw_consumer_events_applied", "Events applied to a projection", metrics.applied.clone());
        registry.register(
            "dw_consumer_unknown_events",
            "Events skipped because their type is not in the consumer's contract",
            metrics.unknown.clone(),
        );
        registry.register(
            "dw_dead_letters",
            "Events given up on and stored in dead_letters",
            metrics.dead_letters.clone(),
        );
        registry.register(
            "dw_projection_lag_seconds",
            "Time between an event's commit and its projection, last event",
            metrics.projection_lag.clone(),
        );
        metrics
    }

    pub fn unregistered() -> Self {
        Self::register(&mut Registry::default())
    }
}

/// What happened to one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    /// Acknowledged without applying: not an event of the projection's contract.
    UnknownType,
    Duplicate,
    Retrying,
    DeadLettered,
}

pub struct ProjectionConsumer<P> {
    pool: PgPool,
    jetstream: jetstream::Context,
    config: ConsumerConfig,
    projection: P,
    metrics: ConsumerMetrics,
}

impl<P: Projection> ProjectionConsumer<P> {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        config: ConsumerConfig,
        projection: P,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self { pool, jetstream, config, projection, metrics }
    }

    fn labels(&self) -> ConsumerLabels {
        ConsumerLabels { consumer: self.config.durable_name.clone() }
    }

    /// Creates the durable consumer, or updates an existing one to this configuration (its
    /// editable fields: `ack_wait`, `max_deliver`, `max_ack_pending`), or binds to it as it is
    /// when the server refuses the update.
    ///
    /// An ordered consumer (`concurrency` 1) gets `max_ack_pending` [`ORDERED_BATCH`]: only the
    /// replica holding its lease pulls, so the stream's order holds across replicas.
    pub async fn ensure(&self) -> Result<jetstream::consumer::PullConsumer, String> {
        let stream = self.jetstream.get_stream(&self.config.stream_name).await.map_err(|e| e.to_string())?;
        let mut config = pull::Config {
            durable_name: Some(self.config.durable_name.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            max_deliver: self.config.max_deliver,
            ack_wait: self.config.ack_wait,
            filter_subjects: self.config.filter_subjects.clone(),
            ..Default::default()
        };
        if self.config.concurrency <= 1 {
            config.max_ack_pending = ORDERED_BATCH as i64;
        }
        match stream.create_consumer(config.clone()).await {
            Ok(consumer) => Ok(consumer),
            Err(error) => {
                warn!(consumer = %self.config.durable_name, %error, "could not create or update the consumer; binding to it as it is");
                stream.get_consumer(&self.config.durable_name).await.map_err(|e| e.to_string())
            }
        }
    }

    /// Consumes until `cancel`, reconnecting with backoff when the stream or consumer is missing
    /// or the connection drops. The message in hand is finished before returning.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(200);
        let mut last_reason = String::new();
        while !cancel.is_cancelled() {
            match self.consume(&cancel).await {
                Ok(()) => return,
                Err(reason) => {
                    // The same failure again (an upstream stream not created yet) is not news.
                    if reason == last_reason {
                        tracing::debug!(consumer = %self.config.durable_name, %reason, "consumer still waiting");
                    } else {
                        warn!(consumer = %self.config.durable_name, %reason, "consumer interrupted, restarting");
                    }
                    last_reason = reason;
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// An ordered consumer: waits to hold the projection's lease (a Postgres session advisory
    /// lock, as the relay's), then pulls batches and applies each in one transaction on the
    /// lease's own connection, in the stream's order; acknowledges the batch after the commit.
    /// A replica without the lease pulls nothing, so the order holds across replicas; when the
    /// holder's connection dies its lease is free and a standby takes over within a second.
    async fn consume_ordered(&self, cancel: &CancellationToken) -> Result<(), String> {
        let Some(mut lease) = self.lease(cancel).await? else { return Ok(()) };
        let mut consumer = self.ensure().await?;
        // Events a previous holder pulled and never acknowledged (it died) come back after
        // `ack_wait`, before any newer one: pulling sooner would apply newer events first.
        let held_elsewhere = consumer.info().await.map(|info| info.num_ack_pending).unwrap_or(0);
        if held_elsewhere > 0 {
            info!(consumer = %self.config.durable_name, held_elsewhere, "waiting for the previous holder's events to come back");
            tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                () = tokio::time::sleep(self.config.ack_wait + Duration::from_millis(500)) => {}
            }
        }
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        info!(consumer = %self.config.durable_name, stream = %self.config.stream_name, "ordered consumer running (lease held)");
        let result = self.apply_in_order(&mut lease, &mut messages, cancel).await;
        // Hand back what was pulled but not applied, so whoever holds the lease next gets it
        // now rather than after `ack_wait`.
        while let Some(Some(Ok(message))) = messages.next().now_or_never() {
            let _ = message.ack_with(AckKind::Nak(None)).await;
        }
        result
    }

    async fn apply_in_order(
        &self,
        lease: &mut PgConnection,
        messages: &mut pull::Stream,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let mut errors = 0;
        loop {
            let next = tokio::select! {
                () = cancel.cancelled() => return Ok(()),
                next = messages.next() => next,
            };
            let first = match next.ok_or("message stream ended")? {
                Ok(message) => message,
                // A missed heartbeat or a pull the server refused while a node is lost: the
                // stream asks again; only a run of them restarts the consumer.
                Err(error) if errors < 5 => {
                    errors += 1;
                    warn!(%error, errors, "consumer stream error");
                    continue;
                }
                Err(error) => return Err(error.to_string()),
            };
            errors = 0;
            let mut batch = vec![first];
            // Whatever else is already here joins the batch (under load, many; idle, none).
            while batch.len() < ORDERED_BATCH {
                match messages.next().now_or_never() {
                    Some(Some(Ok(message))) => batch.push(message),
                    Some(Some(Err(error))) => {
                        warn!(%error, "consumer stream error");
                        break;
                    }
                    Some(None) | None => break,
                }
            }
            if let Err(error) = self.handle_batch(lease, &batch).await {
                for message in &batch {
                    let _ = message.ack_with(AckKind::Nak(None)).await;
                }
                return Err(error);
            }
        }
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
            self.handle_holding(message, batch.get(index + 1..).unwrap_or_default()).await;
        }
        Ok(())
    }

    /// The batch's events applied in order in one transaction on the lease's connection, with
    /// their bookkeeping (processed events in one statement, the position once).
    async fn apply_batch(
        &self,
        lease: &mut PgConnection,
        events: &[&InboundEvent],
    ) -> Result<Vec<Outcome>, BatchError> {
        let mut tx = lease.begin().await.map_err(BatchError::Lease)?;
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
        let fresh: std::collections::HashSet<uuid::Uuid> = fresh.into_iter().collect();
        let mut outcomes = Vec::with_capacity(events.len());
        let mut seen = std::collections::HashSet::new();
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
        let last = events.iter().map(|e| e.stream_sequence).max().unwrap_or(0);
        sqlx::query(
            "INSERT INTO consumer_positions (consumer, stream_sequence) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET stream_sequence = GREATEST(consumer_positions.stream_sequence, \
             EXCLUDED.stream_sequence), updated_at = now()",
        )
        .bind(&self.config.durable_name)
        .bind(last as i64)
        .execute(&mut *tx)
        .await
        .map_err(BatchError::Lease)?;
        dw_eventstore::commit(tx).await.map_err(BatchError::Lease)?;
        Ok(outcomes)
    }

    async fn consume(&self, cancel: &CancellationToken) -> Result<(), String> {
        if self.config.concurrency <= 1 {
            return self.consume_ordered(cancel).await;
        }
        let consumer = self.ensure().await?;
        let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
        info!(consumer = %self.config.durable_name, stream = %self.config.stream_name, "consumer running");
        let mut in_flight = futures::stream::FuturesUnordered::new();
        let limit = self.config.concurrency.max(1);
        loop {
            // Finish what is in hand before taking more, up to the limit.
            while in_flight.len() >= limit {
                in_flight.next().await;
            }
            let next = tokio::select! {
                () = cancel.cancelled() => {
                    while in_flight.next().await.is_some() {}
                    return Ok(());
                }
                Some(_) = in_flight.next(), if !in_flight.is_empty() => continue,
                next = messages.next() => next,
            };
            let Some(message) = next else {
                while in_flight.next().await.is_some() {}
                return Err("message stream ended".into());
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    while in_flight.next().await.is_some() {}
                    return Err(error.to_string());
                }
            };
            in_flight.push(async move { self.handle(&message).await });
        }
    }

    /// Processes one message: apply, retry later, or dead-letter; then acknowledge accordingly.
    pub async fn handle(&self, message: &jetstream::Message) -> Outcome {
        self.handle_holding(message, &[]).await
    }

    /// [`handle`](Self::handle), keeping `also_held` (the rest of an ordered batch) in hand
    /// while it works. A transient failure of an ordered consumer is retried here, in place, so
    /// no later event overtakes it; an unordered one hands the event back (`Nak`) with a delay.
    async fn handle_holding(&self, message: &jetstream::Message, also_held: &[jetstream::Message]) -> Outcome {
        let (stream_sequence, delivered, pending) = match message.info() {
            Ok(info) => (info.stream_sequence, info.delivered, info.pending),
            Err(_) => (0, 1, 0),
        };
        self.metrics.lag.get_or_create(&self.labels()).set(i64::try_from(pending).unwrap_or(i64::MAX));

        let parsed = InboundEvent::from_parts(
            message.subject.as_str(),
            message.headers.as_ref(),
            message.payload.clone(),
            stream_sequence,
        );
        let event = match parsed {
            Ok(event) => event,
            Err(error) => {
                let reason = format!("undecodable envelope: {error}");
                let span = info_span!("consume", consumer = %self.config.durable_name, subject = %message.subject);
                return self.dead_letter(message, None, stream_sequence, delivered, &reason).instrument(span).await;
            }
        };
        let span = self.event_span(&event);
        span.record("delivered", delivered);

        async {
            let mut attempt = delivered;
            loop {
                match self.in_hand(message, also_held, self.apply_once(&event)).await {
                    Ok(outcome) => {
                        confirm_ack(message).await;
                        self.count(&[&event], &[outcome]);
                        return outcome;
                    }
                    Err(ProjectionError::Permanent(reason)) => {
                        return self.dead_letter(message, Some(&event), stream_sequence, attempt, &reason).await;
                    }
                    Err(ProjectionError::Transient(reason)) if attempt >= self.config.max_deliver => {
                        return self.dead_letter(message, Some(&event), stream_sequence, attempt, &reason).await;
                    }
                    Err(ProjectionError::Transient(reason)) => {
                        let delay = self.config.delay_after(attempt);
                        if self.config.concurrency > 1 {
                            warn!(%reason, delay_ms = delay.as_millis() as u64, "projection failed, retrying later");
                            if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
                                warn!(%error, "nak failed; the event will be redelivered after ack_wait");
                            }
                            return Outcome::Retrying;
                        }
                        warn!(%reason, attempt, delay_ms = delay.as_millis() as u64, "projection failed, retrying in place");
                        self.in_hand(message, also_held, tokio::time::sleep(delay)).await;
                        attempt += 1;
                    }
                }
            }
        }
        .instrument(span)
        .await
    }

    /// Runs `work` while telling JetStream the messages are still in hand (in-progress acks),
    /// so `ack_wait` can stay short: a consumer that died is redelivered quickly.
    async fn in_hand<F: Future>(
        &self,
        message: &jetstream::Message,
        also: &[jetstream::Message],
        work: F,
    ) -> F::Output {
        tokio::pin!(work);
        let beat = (self.config.ack_wait / 3).max(Duration::from_millis(500));
        loop {
            tokio::select! {
                output = &mut work => return output,
                () = tokio::time::sleep(beat) => {
                    for held in std::iter::once(message).chain(also) {
                        if let Err(error) = held.ack_with(AckKind::Progress).await {
                            warn!(%error, "in-progress ack failed");
                        }
                    }
                }
            }
        }
    }

    /// One event's span, a child of the trace that produced it.
    fn event_span(&self, event: &InboundEvent) -> tracing::Span {
        let span = info_span!(
            "consume",
            consumer = %self.config.durable_name,
            subject = %event.subject,
            event_id = %event.event_id,
            event_type = %event.event_type,
            delivered = tracing::field::Empty,
            otel.kind = "consumer",
            trace_id = tracing::field::Empty,
            span_id = tracing::field::Empty,
        );
        if let Some(traceparent) = &event.traceparent {
            dw_telemetry::set_parent_from_traceparent(&span, traceparent);
        }
        dw_telemetry::json_log::record_trace_ids(&span);
        span
    }

    /// Counts what a batch did; the lag is the last applied event's.
    fn count(&self, events: &[&InboundEvent], outcomes: &[Outcome]) {
        let labels = self.labels();
        let mut last_applied = None;
        for (event, outcome) in events.iter().zip(outcomes) {
            match outcome {
                Outcome::Applied => {
                    self.metrics.applied.get_or_create(&labels).inc();
                    last_applied = Some(event);
                }
                Outcome::UnknownType => {
                    self.metrics.unknown.get_or_create(&labels).inc();
                }
                Outcome::Duplicate | Outcome::Retrying | Outcome::DeadLettered => {}
            }
        }
        if let Some(event) = last_applied {
            let lag_ms = (chrono::Utc::now() - event.time).num_milliseconds();
            self.metrics.projection_lag.get_or_create(&labels).set(lag_ms as f64 / 1000.0);
        }
    }

    async fn apply_once(&self, event: &InboundEvent) -> Result<Outcome, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        if !mark_processed(&mut tx, &self.config.durable_name, event).await? {
            return Ok(Outcome::Duplicate);
        }
        let handed = crate::hand_over(&self.projection, &mut tx, event).await?;
        sqlx::query(
            "INSERT INTO consumer_positions (consumer, stream_sequence) VALUES ($1, $2) \
             ON CONFLICT (consumer) DO UPDATE SET stream_sequence = GREATEST(consumer_positions.stream_sequence, \
             EXCLUDED.stream_sequence), updated_at = now()",
        )
        .bind(&self.config.durable_name)
        .bind(event.stream_sequence as i64)
        .execute(&mut *tx)
        .await?;
        // A projection may have appended events (a reaction): the relay publishes them now.
        dw_eventstore::commit(tx).await?;
        Ok(match handed {
            crate::Handed::Applied => Outcome::Applied,
            crate::Handed::UnknownType => Outcome::UnknownType,
        })
    }

    async fn dead_letter(
        &self,
        message: &jetstream::Message,
        event: Option<&InboundEvent>,
        stream_sequence: u64,
        delivered: i64,
        reason: &str,
    ) -> Outcome {
        let letter = NewDeadLetter {
            consumer: &self.config.durable_name,
            stream: &self.config.stream_name,
            stream_sequence,
            subject: message.subject.as_str(),
            event_id: event.map(|e| e.event_id.to_string()),
            event_type: event.map(|e| e.event_type.clone()),
            tenant_id: event.map(|e| e.tenant_id.to_string()),
            headers: headers_to_json(message.headers.as_ref()),
            payload: &message.payload,
            error: reason,
            deliveries: delivered,
        };
        let stored = match self.pool.acquire().await {
            Ok(mut conn) => dead_letters::insert(&mut conn, letter).await,
            Err(error) => Err(error),
        };
        if let Err(error) = stored {
            warn!(%error, "could not store dead letter, retrying later");
            let _ = message.ack_with(AckKind::Nak(Some(self.config.delay_after(delivered)))).await;
            return Outcome::Retrying;
        }
        error!(consumer = %self.config.durable_name, stream_sequence, %reason, "event dead-lettered");
        self.metrics.dead_letters.get_or_create(&self.labels()).inc();
        if let Err(error) = message.ack_with(AckKind::Term).await {
            warn!(%error, "terminate failed");
        }
        Outcome::DeadLettered
    }
}

/// Records that `consumer` applied `event`; false when it already had.
pub(crate) async fn mark_processed(
    conn: &mut PgConnection,
    consumer: &str,
    event: &InboundEvent,
) -> Result<bool, sqlx::Error> {
    let inserted = sqlx::query(
        "INSERT INTO processed_events (consumer, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING RETURNING 1 AS one",
    )
    .bind(consumer)
    .bind(event.event_id)
    .fetch_optional(conn)
    .await?;
    Ok(inserted.is_some_and(|row| row.try_get::<i32, _>("one").is_ok()))
}

/// Acknowledges `message` and waits for JetStream to confirm it (a double ack), retrying a few
/// times: an ack sent to a node that died would otherwise be lost, and the consumer, which
/// allows few unacknowledged messages, would wait out `ack_wait` before the event came back.
/// An ack still unconfirmed after the retries is left to redelivery (the event is then skipped
/// as a duplicate).
async fn confirm_ack(message: &jetstream::Message) {
    let mut pause = Duration::from_millis(100);
    for attempt in 1..=5 {
        match message.double_ack().await {
            Ok(()) => return,
            Err(error) => {
                warn!(%error, attempt, "ack not confirmed, retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(1));
            }
        }
    }
    warn!("ack never confirmed; the event will be redelivered and skipped as a duplicate");
}
