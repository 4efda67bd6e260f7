//! A durable pull consumer applying one projection.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull};
use futures::StreamExt;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, error, info, info_span, warn};

use crate::dead_letters::{self, NewDeadLetter};
use crate::inbound::headers_to_json;
use crate::{InboundEvent, Projection, ProjectionError};

mod catch_up;
mod metrics;
mod ordered;

pub use metrics::{ConsumerLabels, ConsumerMetrics};
pub use ordered::MAX_LANES;

/// The longest pause between tries while the database is unavailable.
const UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// Events an ordered consumer applies in one batch at most (its `max_ack_pending` is twice that,
/// so the next batch is on its way while one is applied).
pub const ORDERED_BATCH: usize = 256;
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
    /// Ordered consumers only: transactions a batch is applied in side by side, split by
    /// aggregate (stream id). Each aggregate's events keep their order; events of different
    /// aggregates may then be applied in another order than the stream's, which suits a
    /// projection whose rows each belong to one aggregate. 1 (the default) keeps the whole
    /// stream's order. At most [`MAX_LANES`].
    pub lanes: usize,
    /// What keeps one lane: an aggregate, or a whole tenant (for projections that take a
    /// tenant-wide lock or keep tenant-wide rows: tenants never share rows, so their events may
    /// be applied side by side).
    pub lane_by: LaneKey,
    /// Ordered consumers only: where a consumer created after its stream dropped old messages
    /// reads them from ([`crate::backfill`]); `None`: it starts at the stream's first message
    /// and says what it missed.
    pub backfill: Option<std::sync::Arc<dyn crate::backfill::EventSource>>,
}

/// How an ordered consumer with lanes splits a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LaneKey {
    /// One aggregate's events (stream id) in one lane.
    #[default]
    Aggregate,
    /// One tenant's events in one lane: the tenant's order is kept.
    Tenant,
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
            lanes: 1,
            lane_by: LaneKey::Aggregate,
            backfill: None,
        }
    }

    fn delay_after(&self, delivered: i64) -> Duration {
        let index = usize::try_from(delivered.saturating_sub(1)).unwrap_or(0);
        self.backoff.get(index).or(self.backoff.last()).copied().unwrap_or(Duration::from_secs(1))
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
    /// An unordered consumer's position, written now and then ([`Self::note_position`]).
    position: std::sync::Mutex<Position>,
    /// Where the durable consumer is being restarted ([`Self::restart_at`]) until the new one
    /// exists: after a failure between deleting the old one and creating it, the next try
    /// creates it there instead of taking the missing consumer for a new one.
    restarting_at: std::sync::Mutex<Option<u64>>,
}

/// How often an unordered consumer writes its position at most.
const POSITION_EVERY: Duration = Duration::from_secs(1);

#[derive(Default)]
struct Position {
    highest: u64,
    written_at: Option<std::time::Instant>,
}

impl<P: Projection> ProjectionConsumer<P> {
    pub fn new(
        pool: PgPool,
        jetstream: jetstream::Context,
        config: ConsumerConfig,
        projection: P,
        metrics: ConsumerMetrics,
    ) -> Self {
        Self {
            pool,
            jetstream,
            config,
            projection,
            metrics,
            position: std::sync::Mutex::default(),
            restarting_at: std::sync::Mutex::default(),
        }
    }

    fn labels(&self) -> ConsumerLabels {
        ConsumerLabels { consumer: self.config.durable_name.clone() }
    }

    /// Creates the durable consumer, or updates an existing one to this configuration (its
    /// editable fields: `ack_wait`, `max_deliver`, `max_ack_pending`), or binds to it as it is
    /// when the server refuses the update.
    ///
    /// An ordered consumer (`concurrency` 1) gets `max_ack_pending` twice [`ORDERED_BATCH`]: only the
    /// replica holding its lease pulls, so the stream's order holds across replicas.
    pub async fn ensure(&self) -> Result<jetstream::consumer::PullConsumer, String> {
        let stream = self.jetstream.get_stream(&self.config.stream_name).await.map_err(|e| e.to_string())?;
        // Where an existing consumer starts is kept (an ordered consumer restarted at its ack
        // floor starts there; JetStream refuses to change it).
        let deliver_policy = match stream.consumer_info(&self.config.durable_name).await {
            Ok(info) => info.config.deliver_policy,
            Err(_) => jetstream::consumer::DeliverPolicy::All,
        };
        self.create(&stream, deliver_policy).await
    }

    /// Replaces the durable consumer by a fresh one that starts at stream sequence `start`:
    /// nothing pending, nothing waiting for redelivery, so it delivers from there in the
    /// stream's order. Ordered consumers resume this way from their ack floor.
    pub(crate) async fn restart_at(&self, start: u64) -> Result<jetstream::consumer::PullConsumer, String> {
        *self.restarting() = Some(start);
        let stream = self.jetstream.get_stream(&self.config.stream_name).await.map_err(|e| e.to_string())?;
        match stream.delete_consumer(&self.config.durable_name).await {
            Ok(_) => {}
            Err(error)
                if matches!(error.kind(), jetstream::stream::ConsumerErrorKind::JetStream(ref e)
                    if e.error_code() == jetstream::ErrorCode::CONSUMER_NOT_FOUND) => {}
            Err(error) => return Err(format!("deleting the consumer to restart it: {error}")),
        }
        let policy = jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: start.max(1) };
        let consumer = self.create(&stream, policy).await?;
        *self.restarting() = None;
        Ok(consumer)
    }

    /// A restart ([`Self::restart_at`]) this replica began and did not finish, while the
    /// consumer is still missing: where it starts. (When another replica has created the
    /// consumer since, the restart is forgotten.)
    pub(crate) async fn unfinished_restart(&self) -> Result<Option<u64>, String> {
        let Some(start) = *self.restarting() else {
            return Ok(None);
        };
        let stream = self.jetstream.get_stream(&self.config.stream_name).await.map_err(|e| e.to_string())?;
        match stream.consumer_info(&self.config.durable_name).await {
            Err(error) if error.kind() == jetstream::context::ConsumerInfoErrorKind::NotFound => Ok(Some(start)),
            Err(error) => Err(format!("consumer info: {error}")),
            Ok(_) => {
                *self.restarting() = None;
                Ok(None)
            }
        }
    }

    fn restarting(&self) -> std::sync::MutexGuard<'_, Option<u64>> {
        self.restarting_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn create(
        &self,
        stream: &jetstream::stream::Stream,
        deliver_policy: jetstream::consumer::DeliverPolicy,
    ) -> Result<jetstream::consumer::PullConsumer, String> {
        let mut config = pull::Config {
            durable_name: Some(self.config.durable_name.clone()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            deliver_policy,
            // Unlimited on the server: the consumer counts deliveries itself and dead-letters
            // at `max_deliver`. A server-side limit would drop, silently, an event whose
            // deliveries ran out in outages (each restart hands its batch back) or whose dead
            // letter could not be stored: a gap no projection recovers from.
            max_deliver: -1,
            ack_wait: self.config.ack_wait,
            filter_subjects: self.config.filter_subjects.clone(),
            ..Default::default()
        };
        if self.config.concurrency <= 1 {
            config.max_ack_pending = 2 * ORDERED_BATCH as i64;
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
                let span = info_span!(
                    "consume",
                    messaging.system = "nats",
                    messaging.operation.type = "process",
                    messaging.destination.name = %message.subject,
                    messaging.consumer.group.name = %self.config.durable_name,
                    otel.kind = "consumer",
                );
                return self.dead_letter(message, None, stream_sequence, delivered, &reason).instrument(span).await;
            }
        };
        let span = self.event_span(&event);
        span.record("delivered", delivered);

        async {
            // An ordered consumer counts its own tries in place: the deliveries JetStream counts
            // include the times a restart (of NATS, of a holder) handed the event back unapplied.
            let mut attempt = if self.config.concurrency > 1 { delivered } else { 1 };
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
                    Err(error @ (ProjectionError::Transient(_) | ProjectionError::Unavailable(_))) => {
                        // An unavailable database is not the event's fault: never dead-lettered,
                        // however long it lasts, and tried again at least every few seconds.
                        let delay = match error {
                            ProjectionError::Unavailable(_) => self.config.delay_after(attempt).min(UNAVAILABLE_RETRY),
                            _ => self.config.delay_after(attempt),
                        };
                        if self.config.concurrency > 1 {
                            warn!(%error, delay_ms = delay.as_millis() as u64, "projection failed, retrying later");
                            if let Err(error) = message.ack_with(AckKind::Nak(Some(delay))).await {
                                warn!(%error, "nak failed; the event will be redelivered after ack_wait");
                            }
                            return Outcome::Retrying;
                        }
                        warn!(%error, attempt, delay_ms = delay.as_millis() as u64, "projection failed, retrying in place");
                        self.in_hand(message, also_held, tokio::time::sleep(delay)).await;
                        attempt = attempt.saturating_add(1);
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
            messaging.system = "nats",
            messaging.operation.type = "process",
            messaging.destination.name = %event.subject,
            messaging.consumer.group.name = %self.config.durable_name,
            messaging.message.id = %event.event_id,
            cloudevents.event_type = %event.event_type,
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

    /// `event` applied in one transaction; what the projection appends (a reaction) goes to this
    /// process's active relay once it committed ([`dw_eventstore::handing_over`]).
    async fn apply_once(&self, event: &InboundEvent) -> Result<Outcome, ProjectionError> {
        dw_eventstore::handing_over(&self.pool, self.apply_transaction(event)).await
    }

    async fn apply_transaction(&self, event: &InboundEvent) -> Result<Outcome, ProjectionError> {
        let mut tx = self.pool.begin().await?;
        if !mark_processed(&mut tx, &self.config.durable_name, event).await? {
            return Ok(Outcome::Duplicate);
        }
        let handed = crate::hand_over(&self.projection, &mut tx, event).await?;
        let ordered = self.config.concurrency <= 1;
        if ordered {
            record_position(&mut tx, &self.config.durable_name, event.stream_sequence).await?;
        }
        // A projection may have appended events (a reaction): handed to the relay now.
        dw_eventstore::commit(tx).await?;
        if !ordered {
            self.note_position(event.stream_sequence).await;
        }
        Ok(match handed {
            crate::Handed::Applied => Outcome::Applied,
            crate::Handed::UnknownType => Outcome::UnknownType,
        })
    }

    /// An unordered consumer's position, kept outside the events' transactions and at most once
    /// per [`POSITION_EVERY`]: written in each transaction, its one row would make the
    /// consumer's concurrent transactions commit one at a time. (Its events are applied in no
    /// particular order, so the position is bookkeeping, as for an ordered consumer, and nothing
    /// depends on it being exact.)
    async fn note_position(&self, sequence: u64) {
        let due = {
            let Ok(mut position) = self.position.lock() else { return };
            position.highest = position.highest.max(sequence);
            let due = position.written_at.is_none_or(|at| at.elapsed() >= POSITION_EVERY);
            if due {
                position.written_at = Some(std::time::Instant::now());
            }
            due.then_some(position.highest)
        };
        let Some(highest) = due else { return };
        let written = match self.pool.acquire().await {
            Ok(mut conn) => record_position(&mut conn, &self.config.durable_name, highest).await,
            Err(error) => Err(error),
        };
        if let Err(error) = written {
            tracing::debug!(%error, "consumer position not recorded; the next one will be");
        }
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

/// Records `consumer`'s position: the highest stream sequence it applied.
pub(crate) async fn record_position(conn: &mut PgConnection, consumer: &str, sequence: u64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO consumer_positions (consumer, stream_sequence) VALUES ($1, $2) \
         ON CONFLICT (consumer) DO UPDATE SET stream_sequence = GREATEST(consumer_positions.stream_sequence, \
         EXCLUDED.stream_sequence), updated_at = now()",
    )
    .bind(consumer)
    .bind(i64::try_from(sequence).unwrap_or(i64::MAX))
    .execute(conn)
    .await?;
    Ok(())
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
