//! Command handlers and the dispatcher.
//!
//! Every change that can affect an assignment (a task created, claimed, completed, transferred
//! or cancelled; an agent's availability or capacity) runs in a transaction holding the tenant's
//! distribution lock (a transaction-scoped Postgres advisory lock). Decisions are therefore
//! serialized per tenant across all replicas: a task has at most one agent and no agent exceeds
//! their capacity, by construction.

pub mod dispatcher;
pub mod reactions;
pub mod tasks;

use chrono::{DateTime, Utc};
use dw_eventstore::EventMetadata;
use dw_eventstore::store;
use serde::Serialize;
use sqlx::PgConnection;

use crate::codec::{self, CodecError};
use crate::domain::task::{self, Event, Task};
use crate::domain::{DomainError, TaskId};
use crate::projections;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("concurrent modification")]
    Conflict,
    #[error("gave up after {0} concurrent modifications")]
    Aborted(u32),
    #[error("request id already used for {0}")]
    RequestIdReused(String),
    #[error("invalid {0}: {1}")]
    Invalid(&'static str, String),
    #[error("stored event: {0}")]
    Codec(#[from] CodecError),
    #[error("stored response: {0}")]
    StoredResponse(prost::DecodeError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
}

dw_eventstore::impl_command_error!(AppError);

pub use dw_grpc_kit::command::CommandContext;

/// Takes the tenant's distribution lock until the transaction ends.
pub async fn lock_tenant(conn: &mut PgConnection, tenant: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("dw-distribution:{tenant}"))
        .execute(conn)
        .await?;
    Ok(())
}

/// A task and its stream version, if it exists in the tenant.
pub async fn load_task(
    conn: &mut PgConnection,
    tenant: &str,
    task_id: TaskId,
) -> Result<Option<(Task, i64)>, AppError> {
    let stream_id = codec::task_stream(tenant, task_id);
    let stream = store::load_stream(conn, &stream_id).await?;
    if stream.version == 0 {
        return Ok(None);
    }
    if let Some(snapshot) = stream.snapshot {
        match serde_json::from_value::<Task>(snapshot) {
            Ok(state) => return Ok(Some((state, stream.version))),
            Err(error) => tracing::warn!(%error, stream_id, "snapshot unreadable, replaying the stream"),
        }
    }
    let recorded = store::read_stream(conn, &stream_id, 0).await?;
    let mut events = recorded.iter().map(codec::decode);
    let Some(first) = events.next().transpose()? else {
        return Ok(None);
    };
    let mut state = task::initial(&first).ok_or(CodecError::Invalid("first event", "not TaskCreated".into()))?;
    for event in events {
        state = task::evolve(state, &event?);
    }
    Ok(Some((state, stream.version)))
}

fn snapshot_of(state: &impl Serialize) -> Option<serde_json::Value> {
    serde_json::to_value(state).ok()
}

/// Appends `events` to the task's stream and brings the read models (task row, agents' load)
/// to the new state. Returns the new state and version.
pub async fn append_task(
    conn: &mut PgConnection,
    tenant: &str,
    before: Option<&Task>,
    version: i64,
    events: Vec<Event>,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<(Task, i64), AppError> {
    let mut states = events.iter();
    let mut after = match before {
        Some(state) => state.clone(),
        None => {
            let first = states.next().and_then(task::initial);
            first.ok_or(AppError::Invalid("events", "a new task starts with TaskCreated".into()))?
        }
    };
    for event in states {
        after = task::evolve(after, event);
    }
    let task_id = after.content.task_id;
    let new_events = events.iter().map(|e| codec::encode(task_id, e)).collect();
    let stream_id = codec::task_stream(tenant, task_id);
    let recorded = store::append(conn, tenant, &stream_id, version, new_events, snapshot_of(&after), metadata).await?;
    let new_version = recorded.last().map(|e| e.version).unwrap_or(version);
    let queue_change = if events.iter().any(|e| matches!(e, Event::Requeued { .. })) {
        projections::tasks::QueueChange::ToFront
    } else if events.iter().any(|e| matches!(e, Event::Transferred { to_agent: None, .. })) {
        projections::tasks::QueueChange::ToBack
    } else {
        projections::tasks::QueueChange::Keep
    };
    projections::tasks::save(conn, tenant, &after, new_version, queue_change, now).await?;
    projections::agents::adjust_load(conn, tenant, before, &after, now).await?;
    Ok((after, new_version))
}
