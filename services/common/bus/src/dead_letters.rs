//! Events a consumer gave up on: listed and replayed by operators.

use chrono::{DateTime, Utc};
use sqlx::{PgConnection, PgPool, Row};

use crate::{InboundEvent, Projection, ProjectionError};

#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub id: i64,
    pub consumer: String,
    pub stream: String,
    pub stream_sequence: i64,
    pub subject: String,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub tenant_id: Option<String>,
    pub headers: serde_json::Value,
    pub payload: Vec<u8>,
    pub error: String,
    pub deliveries: i64,
    pub failed_at: DateTime<Utc>,
    pub replayed_at: Option<DateTime<Utc>>,
}

pub struct NewDeadLetter<'a> {
    pub consumer: &'a str,
    pub stream: &'a str,
    pub stream_sequence: u64,
    pub subject: &'a str,
    pub event_id: Option<String>,
    pub event_type: Option<String>,
    pub tenant_id: Option<String>,
    pub headers: serde_json::Value,
    pub payload: &'a [u8],
    pub error: &'a str,
    pub deliveries: i64,
}

pub async fn insert(conn: &mut PgConnection, letter: NewDeadLetter<'_>) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO dead_letters (consumer, stream, stream_sequence, subject, event_id, event_type, tenant_id, \
                                   headers, payload, error, deliveries) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(letter.consumer)
    .bind(letter.stream)
    .bind(letter.stream_sequence as i64)
    .bind(letter.subject)
    .bind(letter.event_id)
    .bind(letter.event_type)
    .bind(letter.tenant_id)
    .bind(letter.headers)
    .bind(letter.payload)
    .bind(letter.error)
    .bind(letter.deliveries)
    .execute(conn)
    .await?;
    Ok(())
}

/// Dead letters not yet replayed, oldest first.
pub async fn list_pending(pool: &PgPool, consumer: Option<&str>, limit: i64) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, consumer, stream, stream_sequence, subject, event_id, event_type, tenant_id, headers, payload, \
                error, deliveries, failed_at, replayed_at \
         FROM dead_letters WHERE replayed_at IS NULL AND ($1::text IS NULL OR consumer = $1) ORDER BY id LIMIT $2",
    )
    .bind(consumer)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(DeadLetter {
                id: row.try_get("id")?,
                consumer: row.try_get("consumer")?,
                stream: row.try_get("stream")?,
                stream_sequence: row.try_get("stream_sequence")?,
                subject: row.try_get("subject")?,
                event_id: row.try_get("event_id")?,
                event_type: row.try_get("event_type")?,
                tenant_id: row.try_get("tenant_id")?,
                headers: row.try_get("headers")?,
                payload: row.try_get("payload")?,
                error: row.try_get("error")?,
                deliveries: row.try_get("deliveries")?,
                failed_at: row.try_get("failed_at")?,
                replayed_at: row.try_get("replayed_at")?,
            })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("dead letter {0} not found or already replayed")]
    NotFound(i64),
    #[error("dead letter envelope: {0}")]
    Envelope(#[from] crate::EnvelopeError),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
    #[error("{0} is not an event this consumer's contract knows")]
    NotInContract(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Applies a dead letter through `projection` again (after the fix that makes it succeed), with
/// the same effectively-once bookkeeping as the consumer, and marks it replayed.
pub async fn replay<P: Projection>(pool: &PgPool, projection: &P, id: i64) -> Result<(), ReplayError> {
    let mut tx = pool.begin().await?;
    let row = sqlx::query(
        "SELECT consumer, subject, headers, payload, stream_sequence FROM dead_letters \
         WHERE id = $1 AND replayed_at IS NULL FOR UPDATE",
    )
    .bind(id)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or(ReplayError::NotFound(id))?;
    let consumer: String = row.try_get("consumer")?;
    let subject: String = row.try_get("subject")?;
    let headers_json: serde_json::Value = row.try_get("headers")?;
    let payload: Vec<u8> = row.try_get("payload")?;
    let sequence: i64 = row.try_get("stream_sequence")?;
    let mut headers = async_nats::HeaderMap::new();
    if let serde_json::Value::Object(map) = headers_json {
        for (name, value) in map {
            if let serde_json::Value::String(value) = value {
                headers.insert(name.as_str(), value.as_str());
            }
        }
    }
    let event = InboundEvent::from_parts(&subject, Some(&headers), payload.into(), sequence as u64)?;
    let first_time = crate::consumer::mark_processed(&mut tx, &consumer, &event).await?;
    if first_time && crate::hand_over(projection, &mut tx, &event).await? == crate::Handed::UnknownType {
        return Err(ReplayError::NotInContract(event.event_type));
    }
    sqlx::query("UPDATE dead_letters SET replayed_at = now() WHERE id = $1").bind(id).execute(&mut *tx).await?;
    tx.commit().await?;
    Ok(())
}

/// What an operator asks of a service's dead letters: `<service> dead-letters …`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `list [--consumer NAME]`: the pending ones, oldest first.
    List { consumer: Option<String> },
    /// `replay ID`: that one.
    ReplayOne(i64),
    /// `replay --all [--consumer NAME]`: every pending one, oldest first.
    ReplayAll { consumer: Option<String> },
}

pub const USAGE: &str =
    "dead-letters list [--consumer NAME] | dead-letters replay ID | dead-letters replay --all [--consumer NAME]";

/// Runs `command`, writing one JSON object per line to `out`: each pending dead letter (`list`)
/// or each replay's outcome (`replay`). `replay_one(consumer, id)` replays through the projection
/// of that consumer, or answers `None` when this service has no such consumer. Returns how many
/// replays failed.
pub async fn run_command(
    pool: &PgPool,
    command: &Command,
    out: &mut impl std::io::Write,
    replay_one: impl AsyncFn(&str, i64) -> Option<Result<(), ReplayError>>,
) -> Result<usize, CommandError> {
    const PAGE: i64 = 10_000;
    let targets: Vec<(i64, String)> = match command {
        Command::List { consumer } => {
            for letter in list_pending(pool, consumer.as_deref(), PAGE).await? {
                let line = serde_json::json!({
                    "id": letter.id,
                    "consumer": letter.consumer,
                    "event_type": letter.event_type,
                    "event_id": letter.event_id,
                    "tenant_id": letter.tenant_id,
                    "stream": letter.stream,
                    "stream_sequence": letter.stream_sequence,
                    "subject": letter.subject,
                    "deliveries": letter.deliveries,
                    "failed_at": letter.failed_at,
                    "error": letter.error,
                });
                writeln!(out, "{line}")?;
            }
            return Ok(0);
        }
        Command::ReplayAll { consumer } => list_pending(pool, consumer.as_deref(), PAGE)
            .await?
            .into_iter()
            .map(|letter| (letter.id, letter.consumer))
            .collect(),
        Command::ReplayOne(id) => {
            let consumer: Option<String> =
                sqlx::query_scalar("SELECT consumer FROM dead_letters WHERE id = $1 AND replayed_at IS NULL")
                    .bind(id)
                    .fetch_optional(pool)
                    .await?;
            let Some(consumer) = consumer else {
                let error = ReplayError::NotFound(*id).to_string();
                writeln!(out, "{}", serde_json::json!({"id": id, "replayed": false, "error": error}))?;
                return Ok(1);
            };
            vec![(*id, consumer)]
        }
    };
    let mut failed = 0;
    for (id, consumer) in &targets {
        let outcome = match replay_one(consumer, *id).await {
            Some(Ok(())) => Ok(()),
            Some(Err(error)) => Err(error.to_string()),
            None => Err(format!("this service has no consumer {consumer:?}")),
        };
        let line = match &outcome {
            Ok(()) => serde_json::json!({"id": id, "consumer": consumer, "replayed": true}),
            Err(error) => {
                failed += 1;
                serde_json::json!({"id": id, "consumer": consumer, "replayed": false, "error": error})
            }
        };
        writeln!(out, "{line}")?;
    }
    Ok(failed)
}

/// The `<service> dead-letters …` subcommand: parses `args`, runs the command against `pool` and
/// prints its JSON lines on stdout. An error (wrong arguments, a failed replay, the database)
/// is for the caller to report and exit non-zero with.
pub async fn main_command(
    pool: &PgPool,
    command: &Command,
    replay_one: impl AsyncFn(&str, i64) -> Option<Result<(), ReplayError>>,
) -> Result<(), String> {
    let failed = run_command(pool, command, &mut std::io::stdout().lock(), replay_one)
        .await
        .map_err(|error| error.to_string())?;
    if failed > 0 { Err(format!("{failed} dead letter(s) not replayed (see the lines above)")) } else { Ok(()) }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error("writing the output: {0}")]
    Output(#[from] std::io::Error),
}
