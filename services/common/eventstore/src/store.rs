//! Appending to and loading from event streams.
//!
//! A stream's row in `streams` is the optimistic-concurrency guard: an append with expected
//! version `v` updates it only while it still says `v`, so of two concurrent writers exactly one
//! wins and the other sees [`StoreError::Conflict`]. The events, the stream's snapshot and the
//! outbox rows are written in the caller's transaction, together with the caller's own read
//! models; the relay finds them once committed (see [`crate::wake_relay`]).

use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, SubsecRound, Utc};
use dw_ids::TenantId;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer appended to the stream since it was loaded.
    #[error("stream {stream_id} changed concurrently (expected version {expected})")]
    Conflict { stream_id: String, expected: i64 },
    #[error("append of no events to {0}")]
    EmptyAppend(String),
    #[error("request id reused for a different operation ({0})")]
    RequestIdReused(String),
    /// An event larger than [`max_event_bytes`]: refused before it can reach the outbox, where
    /// JetStream might refuse it and hold back its aggregate.
    #[error("a {event_type} event of {size} bytes is over the limit of {limit} bytes")]
    EventTooLarge { event_type: String, size: usize, limit: usize },
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The default [`max_event_bytes`]: a quarter of NATS' default `max_payload` (1 MiB), leaving
/// room for headers and for a smaller server limit.
pub const DEFAULT_MAX_EVENT_BYTES: usize = 256 * 1024;

static MAX_EVENT_BYTES: AtomicUsize = AtomicUsize::new(DEFAULT_MAX_EVENT_BYTES);

/// The largest event (payload, type, subject and metadata) an append accepts.
pub fn max_event_bytes() -> usize {
    MAX_EVENT_BYTES.load(Ordering::Relaxed)
}

/// Sets [`max_event_bytes`] for this process (from `DW_EVENT_MAX_BYTES` at start-up).
pub fn set_max_event_bytes(limit: usize) {
    MAX_EVENT_BYTES.store(limit, Ordering::Relaxed);
}

/// An event to append: its protobuf payload, full type name and subject suffix.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event_id: Uuid,
    /// Full protobuf message name, e.g. `dw.agentsessions.v1.BreakStarted`.
    pub event_type: String,
    /// `<aggregate>.<event>`, e.g. `serviceday.break_started`.
    pub subject: String,
    pub payload: Vec<u8>,
    /// What the relay publishes when it differs from the stored payload: the event with its
    /// personal fields in the clear, while `payload` holds them sealed ([`crate::personal`]).
    /// Kept in the outbox row only, so it leaves the database once JetStream has it.
    pub published: Option<Vec<u8>>,
}

impl NewEvent {
    /// A new event (a fresh UUIDv7 id) of the contract's message `message`, its type named by
    /// the contract (`prost::Name::full_name`), published under `<aggregate>.<event>` `subject`.
    pub fn of<M: prost::Name>(subject: &str, message: &M) -> Self {
        Self {
            event_id: Uuid::now_v7(),
            event_type: M::full_name(),
            subject: subject.to_owned(),
            payload: message.encode_to_vec(),
            published: None,
        }
    }

    /// An event of `message` whose personal fields `seal` seals in the stored copy: the relay
    /// publishes `message` as it is. `seal` is called on a copy, which it changes in place.
    pub fn sealed<M: prost::Name + Clone>(subject: &str, message: &M, seal: impl FnOnce(&mut M)) -> Self {
        let mut stored = message.clone();
        seal(&mut stored);
        let mut event = Self::of(subject, &stored);
        let clear = message.encode_to_vec();
        if clear != event.payload {
            event.published = Some(clear);
        }
        event
    }
}

/// What the events of one command share: where the command came from.
#[derive(Debug, Clone, Default)]
pub struct EventMetadata {
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
}

tokio::task_local! {
    /// The time a command decided at ([`crate::command::execute`]): its events' `recorded_at`,
    /// the time the events' decoders give back to the domain. Outside a command: the clock.
    pub static DECIDED_AT: DateTime<Utc>;

    /// Streams a command declared it reads ([`crate::command::Attempt::streams`]), read with its
    /// idempotency lookup in one round trip; [`load_stream`] takes each from here once.
    pub(crate) static PREFETCHED: std::cell::RefCell<std::collections::HashMap<String, StreamState>>;
}

/// An event as stored.
#[derive(Debug, Clone)]
pub struct RecordedEvent {
    pub global_position: i64,
    pub event_id: Uuid,
    pub tenant_id: TenantId,
    pub stream_id: String,
    pub version: i64,
    pub event_type: String,
    pub subject: String,
    pub payload: Vec<u8>,
    pub recorded_at: DateTime<Utc>,
    pub metadata: EventMetadata,
}

/// A stream's current version and snapshot (if one was stored).
#[derive(Debug, Clone, Default)]
pub struct StreamState {
    pub version: i64,
    pub snapshot: Option<serde_json::Value>,
}

/// Reads a stream's version and snapshot; version 0 when the stream does not exist. A stream
/// the running command prefetched is taken from there the first time (a later load reads the
/// table again, so it sees what the command appended).
pub async fn load_stream(conn: &mut PgConnection, stream_id: &str) -> Result<StreamState, StoreError> {
    if let Ok(Some(prefetched)) = PREFETCHED.try_with(|streams| streams.borrow_mut().remove(stream_id)) {
        return Ok(prefetched);
    }
    let row = sqlx::query("SELECT version, snapshot FROM streams WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Ok(StreamState::default());
    };
    Ok(StreamState { version: row.try_get("version")?, snapshot: row.try_get("snapshot")? })
}

/// The events of a stream after `after_version`, in order.
pub async fn read_stream(
    conn: &mut PgConnection,
    stream_id: &str,
    after_version: i64,
) -> Result<Vec<RecordedEvent>, StoreError> {
    let rows = sqlx::query(
        "SELECT global_position, event_id, tenant_id, stream_id, version, event_type, subject, payload, \
                recorded_at, correlation_id, causation_id, traceparent \
         FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version",
    )
    .bind(stream_id)
    .bind(after_version)
    .fetch_all(&mut *conn)
    .await?;
    rows.iter().map(recorded_event_from_row).collect::<Result<_, _>>().map_err(StoreError::from)
}

pub(crate) fn recorded_event_from_row(row: &sqlx::postgres::PgRow) -> Result<RecordedEvent, sqlx::Error> {
    Ok(RecordedEvent {
        global_position: row.try_get("global_position")?,
        event_id: row.try_get("event_id")?,
        tenant_id: row.try_get("tenant_id")?,
        stream_id: row.try_get("stream_id")?,
        version: row.try_get("version")?,
        event_type: row.try_get("event_type")?,
        subject: row.try_get("subject")?,
        payload: row.try_get("payload")?,
        recorded_at: row.try_get("recorded_at")?,
        metadata: EventMetadata {
            correlation_id: row.try_get("correlation_id")?,
            causation_id: row.try_get("causation_id")?,
            traceparent: row.try_get("traceparent")?,
        },
    })
}

/// The parts of an append, as `WITH` items named `guard{suffix}`, `inserted{suffix}` and
/// `queued{suffix}`: the stream's guard (one row when the stream was where the command expected
/// it), the events in their order (none unless the guard matched) and their outbox rows.
/// Placeholders `$1`–`$14` as [`append_arguments`] binds them.
pub(crate) fn append_parts(suffix: &str, new_stream: bool) -> String {
    let guard = if new_stream {
        // An append to a stream that has no event yet.
        "INSERT INTO streams (stream_id, tenant_id, version, snapshot) SELECT $1, $2, $3, $4 WHERE $5::bigint = 0 \
         ON CONFLICT (stream_id) DO NOTHING RETURNING 1"
    } else {
        // An append to a stream at version `$5`.
        "UPDATE streams SET version = $3, snapshot = $4, updated_at = now() \
         WHERE stream_id = $1 AND tenant_id = $2 AND version = $5 RETURNING 1"
    };
    format!(
        "guard{suffix} AS ({guard}), \
         inserted{suffix} AS (\
            INSERT INTO events (event_id, tenant_id, stream_id, version, event_type, subject, payload, \
                                correlation_id, causation_id, traceparent, recorded_at) \
            SELECT u.event_id, $2, $1, $5 + u.n, u.event_type, u.subject, u.payload, $9, $10, $11, $12 \
            FROM unnest($6::uuid[], $7::text[], $8::text[], $13::bytea[]) \
                 WITH ORDINALITY AS u(event_id, event_type, subject, payload, n) \
            WHERE EXISTS (SELECT 1 FROM guard{suffix}) \
            ORDER BY u.n \
            RETURNING global_position, event_id, version), \
         queued{suffix} AS (INSERT INTO outbox (global_position, payload) \
                    SELECT i.global_position, p.published FROM inserted{suffix} i \
                    JOIN unnest($6::uuid[], $14::bytea[]) AS p(event_id, published) USING (event_id) \
                    ORDER BY i.global_position \
                    RETURNING position, global_position)"
    )
}

/// The values of [`append_parts`]' placeholders, in their order.
#[allow(clippy::too_many_arguments)]
pub(crate) fn append_arguments(
    args: &mut sqlx::postgres::PgArguments,
    tenant_id: &TenantId,
    stream_id: &str,
    expected_version: i64,
    events: &[NewEvent],
    snapshot: &Option<serde_json::Value>,
    metadata: &EventMetadata,
    recorded_at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    use sqlx::Arguments;
    let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
    let types: Vec<&str> = events.iter().map(|e| e.event_type.as_str()).collect();
    let subjects: Vec<&str> = events.iter().map(|e| e.subject.as_str()).collect();
    let payloads: Vec<&[u8]> = events.iter().map(|e| e.payload.as_slice()).collect();
    let published: Vec<Option<&[u8]>> = events.iter().map(|e| e.published.as_deref()).collect();
    let added = (|| {
        args.add(stream_id)?;
        args.add(tenant_id)?;
        args.add(expected_version + events.len() as i64)?;
        args.add(snapshot)?;
        args.add(expected_version)?;
        args.add(&ids)?;
        args.add(&types)?;
        args.add(&subjects)?;
        args.add(&metadata.correlation_id)?;
        args.add(&metadata.causation_id)?;
        args.add(&metadata.traceparent)?;
        args.add(recorded_at)?;
        args.add(&payloads)?;
        args.add(&published)
    })();
    added.map_err(sqlx::Error::Encode)
}

/// The append statements on their own: to a new stream, and to one at version `$5`.
static APPEND_SQL: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
    [true, false].map(|new_stream| {
        format!(
            "WITH {} SELECT i.global_position, i.event_id, i.version, q.position \
             FROM inserted i JOIN queued q USING (global_position) ORDER BY i.version",
            append_parts("", new_stream)
        )
    })
});

/// Refuses an append of no events, or of an event over [`max_event_bytes`].
pub(crate) fn check_append(stream_id: &str, events: &[NewEvent], metadata: &EventMetadata) -> Result<(), StoreError> {
    if events.is_empty() {
        return Err(StoreError::EmptyAppend(stream_id.to_owned()));
    }
    let limit = max_event_bytes();
    let metadata_size = [&metadata.correlation_id, &metadata.causation_id, &metadata.traceparent]
        .into_iter()
        .map(|value| value.as_ref().map_or(0, String::len))
        .sum::<usize>();
    for event in events {
        let size = event.payload.len() + event.event_type.len() + event.subject.len() + stream_id.len() + metadata_size;
        if size > limit {
            return Err(StoreError::EventTooLarge { event_type: event.event_type.clone(), size, limit });
        }
    }
    Ok(())
}

/// Appends `events` to `stream_id` if it is still at `expected_version`, stores `snapshot` (the
/// state after the events) and queues the events for the relay. Runs inside the caller's
/// transaction: nothing is visible, published or kept unless the caller commits.
pub async fn append(
    conn: &mut PgConnection,
    tenant_id: &TenantId,
    stream_id: &str,
    expected_version: i64,
    events: Vec<NewEvent>,
    snapshot: Option<serde_json::Value>,
    metadata: &EventMetadata,
) -> Result<Vec<RecordedEvent>, StoreError> {
    check_append(stream_id, &events, metadata)?;
    let recorded_at = DECIDED_AT.try_with(|at| *at).unwrap_or_else(|_| Utc::now().trunc_subsecs(6));
    // One round trip: the stream's guard, the events and their outbox rows; no event is written
    // unless the guard matched.
    let mut args = sqlx::postgres::PgArguments::default();
    append_arguments(&mut args, tenant_id, stream_id, expected_version, &events, &snapshot, metadata, recorded_at)?;
    let sql = APPEND_SQL[usize::from(expected_version != 0)].as_str();
    let rows = sqlx::query_with(sqlx::AssertSqlSafe(sql), args).fetch_all(&mut *conn).await;
    let rows = match rows {
        Ok(rows) => rows,
        Err(error) if crate::is_unique_violation(&error) => {
            return Err(StoreError::Conflict { stream_id: stream_id.to_owned(), expected: expected_version });
        }
        Err(error) => return Err(error.into()),
    };
    if rows.len() != events.len() {
        // The guard matched nothing: another writer moved the stream.
        return Err(StoreError::Conflict { stream_id: stream_id.to_owned(), expected: expected_version });
    }
    let collecting = crate::handoff::collecting();
    let mut recorded = Vec::with_capacity(events.len());
    let mut queued = Vec::new();
    for (event, row) in events.into_iter().zip(rows) {
        let (global_position, event_id, version, position): (i64, Uuid, i64, i64) = (
            row.try_get("global_position")?,
            row.try_get("event_id")?,
            row.try_get("version")?,
            row.try_get("position")?,
        );
        debug_assert_eq!(event_id, event.event_id);
        let stored = RecordedEvent {
            global_position,
            event_id: event.event_id,
            tenant_id: tenant_id.clone(),
            stream_id: stream_id.to_owned(),
            version,
            event_type: event.event_type,
            subject: event.subject,
            payload: event.payload,
            recorded_at,
            metadata: metadata.clone(),
        };
        if collecting {
            // What the relay publishes: the payload in the clear when the stored one is sealed.
            let mut published = stored.clone();
            if let Some(payload) = event.published {
                published.payload = payload;
            }
            queued.push(crate::handoff::Committed { position, event: published });
        }
        recorded.push(stored);
    }
    crate::handoff::collect(queued);
    Ok(recorded)
}
