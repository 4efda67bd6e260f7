//! The status lifecycle of an outbound message, in one place: what the dispatcher and the
//! providers report is appended by [`record_status`] (stale or repeated reports change nothing);
//! a provider's status that overtook the recording of its dispatch is parked and applied with it.

use chrono::{DateTime, Utc};
use dw_eventstore::writes::{Write, Writes};
use dw_eventstore::{EventMetadata, store};
use dw_ids::TenantId;
use sqlx::{PgConnection, PgPool, Row};

use super::AppError;
use crate::codec;
use crate::domain::DomainError;
use crate::domain::message::{self, Event, Failure, OutboundMessage};
use crate::projections;

fn metadata() -> EventMetadata {
    EventMetadata { correlation_id: None, causation_id: None, traceparent: dw_telemetry::current_traceparent() }
}

/// A delivery status a provider reported for one of our messages.
#[derive(Debug, Clone)]
pub enum ReportedStatus {
    Sent,
    Delivered,
    Read,
    Failed { code: String, reason: String },
}

/// Applies a status to the message with this provider id. A status for an id not recorded yet is
/// parked: its webhook may have overtaken the commit of the dispatch, which applies it
/// ([`apply_parked`]); ids that never become ours (other systems on the same number) are dropped
/// after 7 days. Its one transaction's event goes to this process's active relay once it
/// committed ([`dw_eventstore::handing_over`]).
pub async fn apply_status(
    pool: &PgPool,
    tenant: &TenantId,
    provider_message_id: &str,
    status: ReportedStatus,
    at: DateTime<Utc>,
) -> Result<bool, AppError> {
    dw_eventstore::handing_over(pool, apply_status_transaction(pool, tenant, provider_message_id, status, at)).await
}

async fn apply_status_transaction(
    pool: &PgPool,
    tenant: &TenantId,
    provider_message_id: &str,
    status: ReportedStatus,
    at: DateTime<Utc>,
) -> Result<bool, AppError> {
    // Provider text (ids, failure reasons) without what the store must not get, and bounded.
    use dw_proto::hygiene::{TextKind, scrub};
    let provider_message_id = &scrub(provider_message_id, TextKind::SingleLine, 200);
    let status = match status {
        ReportedStatus::Failed { code, reason } => ReportedStatus::Failed {
            code: scrub(&code, TextKind::SingleLine, 64),
            reason: scrub(&reason, TextKind::SingleLine, 500),
        },
        other => other,
    };
    let (name, failure) = match &status {
        ReportedStatus::Sent => return Ok(false),
        ReportedStatus::Delivered => ("delivered", None),
        ReportedStatus::Read => ("read", None),
        ReportedStatus::Failed { code, reason } => ("failed", Some((code.as_str(), reason.as_str()))),
    };
    let mut tx = pool.begin().await?;
    lock_provider_id(&mut tx, tenant, provider_message_id).await?;
    let message_id: Option<uuid::Uuid> =
        sqlx::query("SELECT message_id FROM messages WHERE tenant_id = $1 AND provider_message_id = $2")
            .bind(tenant)
            .bind(provider_message_id)
            .fetch_optional(&mut *tx)
            .await?
            .map(|row| row.try_get("message_id"))
            .transpose()?;
    let Some(message_id) = message_id else {
        sqlx::query("DELETE FROM parked_statuses WHERE received_at < now() - interval '7 days'")
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO parked_statuses (tenant_id, provider_message_id, status, failure_code, failure_reason, at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(tenant)
        .bind(provider_message_id)
        .bind(name)
        .bind(failure.map(|f| f.0))
        .bind(failure.map(|f| f.1))
        .bind(at)
        .execute(&mut *tx)
        .await?;
        dw_eventstore::commit(tx).await?;
        return Ok(false);
    };
    let Some(event) = reported_event(status, at) else {
        return Ok(false);
    };
    let changed = record_status(&mut tx, tenant, message_id, event, &metadata()).await?;
    dw_eventstore::commit(tx).await?;
    Ok(changed)
}

/// The event a reported status means (`sent` adds nothing: the dispatch recorded it).
fn reported_event(status: ReportedStatus, at: DateTime<Utc>) -> Option<Event> {
    match status {
        ReportedStatus::Sent => None,
        ReportedStatus::Delivered => Some(Event::Delivered { at }),
        ReportedStatus::Read => Some(Event::Read { at }),
        ReportedStatus::Failed { code, reason } => {
            Some(Event::Failed { failure: Failure { code, reason, terminal: true }, attempts: 1, at })
        }
    }
}

/// Serialises the statuses of one provider id with the recording of its dispatch, so a status
/// is either applied or parked then applied, never lost in between.
pub async fn lock_provider_id(
    conn: &mut sqlx::PgConnection,
    tenant: &TenantId,
    provider_message_id: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(7301, hashtext($1 || '/' || $2))")
        .bind(tenant)
        .bind(provider_message_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// Takes the statuses parked for a provider id whose dispatch is being recorded (the caller holds
/// [`lock_provider_id`]), as the events they report, in the order they apply.
pub async fn take_parked(
    conn: &mut sqlx::PgConnection,
    tenant: &TenantId,
    provider_message_id: &str,
) -> Result<Vec<Event>, AppError> {
    let rows = sqlx::query(
        "DELETE FROM parked_statuses WHERE tenant_id = $1 AND provider_message_id = $2 \
         RETURNING status, failure_code, failure_reason, at",
    )
    .bind(tenant)
    .bind(provider_message_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut parked = Vec::with_capacity(rows.len());
    for row in rows {
        let status: String = row.try_get("status")?;
        let at: DateTime<Utc> = row.try_get("at")?;
        let (rank, reported) = match status.as_str() {
            "delivered" => (0, ReportedStatus::Delivered),
            "read" => (1, ReportedStatus::Read),
            _ => (
                2,
                ReportedStatus::Failed {
                    code: row.try_get::<Option<String>, _>("failure_code")?.unwrap_or_default(),
                    reason: row.try_get::<Option<String>, _>("failure_reason")?.unwrap_or_default(),
                },
            ),
        };
        parked.push((rank, reported, at));
    }
    parked.sort_by_key(|(rank, _, _)| *rank);
    Ok(parked.into_iter().filter_map(|(_, reported, at)| reported_event(reported, at)).collect())
}

/// Records `reports`, in their order, on a message `loaded` locked ([`load_message`]) in the
/// caller's transaction (stale or repeated ones change nothing), with `also`: the events, the
/// message's row and `also` in one statement.
pub async fn record_reports(
    conn: &mut PgConnection,
    tenant: &TenantId,
    message_id: uuid::Uuid,
    loaded: (OutboundMessage, i64),
    reports: Vec<Event>,
    metadata: &EventMetadata,
    also: Vec<Write>,
) -> Result<(), AppError> {
    let (mut state, version) = loaded;
    let mut events = Vec::new();
    for report in reports {
        let reported = message::report(&state, report);
        state = reported.iter().fold(state, message::evolve);
        events.extend(reported);
    }
    let mut writes = Writes::default();
    if !events.is_empty() {
        let new_events = events.iter().map(|e| codec::message_event(message_id, e, None)).collect();
        let stream_id = codec::message_stream(tenant, message_id);
        let snapshot = serde_json::to_value(&state).ok();
        let new_version = writes.append(tenant, &stream_id, version, new_events, snapshot, metadata)?;
        writes.push(projections::save_message_write(tenant, &state, new_version));
    }
    for write in also {
        writes.push(write);
    }
    writes.execute(conn).await?;
    Ok(())
}

/// A message and its stream version, from its snapshot. `locked` holds its stream row until the
/// transaction ends: an erasure of the recipient then empties the snapshot either before this
/// reads it or after the caller commits, never between its read and its write.
pub async fn load_message(
    conn: &mut PgConnection,
    tenant: &TenantId,
    id: uuid::Uuid,
    locked: bool,
) -> Result<Option<(OutboundMessage, i64)>, AppError> {
    let sql = if locked {
        "SELECT version, snapshot FROM streams WHERE stream_id = $1 FOR UPDATE"
    } else {
        "SELECT version, snapshot FROM streams WHERE stream_id = $1"
    };
    let row = sqlx::query(sql).bind(codec::message_stream(tenant, id)).fetch_optional(&mut *conn).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Some(snapshot) = row.try_get::<Option<serde_json::Value>, _>("snapshot")? else {
        return Ok(None);
    };
    let message = serde_json::from_value(snapshot).map_err(|e| AppError::Corrupt(e.to_string()))?;
    Ok(Some((message, row.try_get("version")?)))
}

/// Appends status events a message reports (ignoring stale or duplicate ones).
pub async fn record_status(
    conn: &mut PgConnection,
    tenant: &TenantId,
    message_id: uuid::Uuid,
    report: Event,
    metadata: &EventMetadata,
) -> Result<bool, AppError> {
    let Some((state, version)) = load_message(conn, tenant, message_id, true).await? else {
        return Err(DomainError::MessageNotFound(message_id.to_string()).into());
    };
    let events = message::report(&state, report);
    if events.is_empty() {
        return Ok(false);
    }
    let new_state = events.iter().fold(state, message::evolve);
    let new_events = events.iter().map(|e| codec::message_event(message_id, e, None)).collect();
    let stream_id = codec::message_stream(tenant, message_id);
    let snapshot = serde_json::to_value(&new_state).ok();
    let recorded = store::append(conn, tenant, &stream_id, version, new_events, snapshot, metadata).await?;
    let new_version = recorded.last().map(|e| e.version).unwrap_or(version);
    projections::save_message(conn, tenant, &new_state, new_version).await?;
    Ok(true)
}
