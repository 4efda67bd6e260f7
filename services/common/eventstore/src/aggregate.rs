//! The shape every event-sourced aggregate shares: a state that events evolve, a codec between
//! domain events and stored protobuf events, and one stream per aggregate instance. [`load`]
//! and [`append`] are the only way a command reads and writes an aggregate.

use serde::Serialize;
use serde::de::DeserializeOwned;
use sqlx::PgConnection;

use dw_ids::TenantId;

use crate::error::CommandError;
use crate::writes::Writes;
use crate::{EventMetadata, NewEvent, RecordedEvent, store};

/// One aggregate instance (its identity is in `self`): e.g. the service day of one agent.
pub trait Aggregate: Sync {
    /// The state before any event is `Default`.
    type State: Default + Serialize + DeserializeOwned + Send;
    type Event: Sync;

    /// The instance's stream, e.g. `serviceday:<tenant>:<agent>`.
    fn stream_id(&self) -> String;

    /// A stored event back into the domain's event.
    fn decode(&self, recorded: &RecordedEvent) -> Result<Self::Event, String>;

    /// A domain event of this instance as a protobuf event.
    fn encode(&self, event: &Self::Event) -> NewEvent;

    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;
}

/// An aggregate's state and the stream version it was read at (0: no events yet).
#[derive(Debug, Clone)]
pub struct Loaded<S> {
    pub state: S,
    pub version: i64,
}

impl<S: Default> Default for Loaded<S> {
    fn default() -> Self {
        Self { state: S::default(), version: 0 }
    }
}

/// Loads an aggregate: its snapshot when one is stored and still decodes, otherwise a replay of
/// its stream (so a snapshot written by an older release never blocks a command).
pub async fn load<A: Aggregate, D>(
    conn: &mut PgConnection,
    aggregate: &A,
) -> Result<Loaded<A::State>, CommandError<D>> {
    let stream_id = aggregate.stream_id();
    let stream = store::load_stream(conn, &stream_id).await?;
    if stream.version == 0 {
        // No events yet: nothing to read.
        return Ok(Loaded::default());
    }
    if let Some(snapshot) = stream.snapshot {
        match serde_json::from_value::<A::State>(snapshot) {
            Ok(state) => return Ok(Loaded { state, version: stream.version }),
            Err(error) => tracing::warn!(%error, stream_id, "snapshot unreadable, replaying the stream"),
        }
    }
    let events = store::read_stream(conn, &stream_id, 0).await?;
    let mut state = A::State::default();
    for recorded in &events {
        let event = aggregate.decode(recorded).map_err(|reason| {
            CommandError::Corrupt(format!("{} v{} ({}): {reason}", stream_id, recorded.version, recorded.event_type))
        })?;
        state = A::evolve(state, &event);
    }
    let version = events.last().map_or(0, |e| e.version);
    Ok(Loaded { state, version })
}

/// What [`append`] wrote: the new state, the new version and the stored events.
#[derive(Debug)]
pub struct Appended<S> {
    pub state: S,
    pub version: i64,
    pub recorded: Vec<RecordedEvent>,
}

/// Appends `events` to an aggregate loaded at `loaded.version` (optimistic concurrency), stores
/// the new state as its snapshot and queues the events for the relay, in the caller's
/// transaction. A concurrent writer makes it [`CommandError::Conflict`].
pub async fn append<A: Aggregate, D>(
    conn: &mut PgConnection,
    tenant: &TenantId,
    aggregate: &A,
    loaded: Loaded<A::State>,
    events: &[A::Event],
    metadata: &EventMetadata,
) -> Result<Appended<A::State>, CommandError<D>> {
    let (state, encoded, snapshot) = after(aggregate, loaded.state, events);
    let stream_id = aggregate.stream_id();
    let recorded = store::append(conn, tenant, &stream_id, loaded.version, encoded, snapshot, metadata).await?;
    let version = recorded.last().map_or(loaded.version, |e| e.version);
    Ok(Appended { state, version, recorded })
}

/// What [`stage`] staged: the state and version the aggregate has once the command's writes land.
#[derive(Debug)]
pub struct Staged<S> {
    pub state: S,
    pub version: i64,
}

/// [`append`] staged in a command's [`Writes`] (see [`crate::command::Plan`]): written, with the
/// same guard, when the command's statement is.
pub fn stage<A: Aggregate, D>(
    writes: &mut Writes,
    tenant: &TenantId,
    aggregate: &A,
    loaded: Loaded<A::State>,
    events: &[A::Event],
    metadata: &EventMetadata,
) -> Result<Staged<A::State>, CommandError<D>> {
    let (state, encoded, snapshot) = after(aggregate, loaded.state, events);
    let version = writes.append(tenant, &aggregate.stream_id(), loaded.version, encoded, snapshot, metadata)?;
    Ok(Staged { state, version })
}

/// The state after `events`, the events encoded, and that state as the stream's snapshot.
fn after<A: Aggregate>(
    aggregate: &A,
    state: A::State,
    events: &[A::Event],
) -> (A::State, Vec<NewEvent>, Option<serde_json::Value>) {
    let state = events.iter().fold(state, A::evolve);
    let encoded = events.iter().map(|event| aggregate.encode(event)).collect();
    let snapshot = serde_json::to_value(&state).ok();
    (state, encoded, snapshot)
}
