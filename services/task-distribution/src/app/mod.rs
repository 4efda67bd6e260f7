//! Command handlers and the dispatcher.
//!
//! Every change that can affect an assignment (a task created, claimed, completed, transferred
//! or cancelled; an agent's availability or capacity) runs in a transaction holding distribution
//! locks (transaction-scoped Postgres advisory locks, [`locks`]): the lock of each department
//! whose queue it may change, under the tenant's lock held shared; tenant-wide changes (settings,
//! an erasure) hold the tenant's lock alone, exclusive. So one department's queue is decided in
//! order across all replicas, different departments in parallel; an agent linked to several is
//! guarded by their row (locked before they are given a task, [`projections::agents::lock_available`]),
//! and every load a round raises is raised only below capacity (a guarded write,
//! [`dw_eventstore::writes::Write::guard`]): a task has at most one agent (its stream's version)
//! and no agent exceeds their capacity.

pub mod create_batch;
pub mod dispatcher;
pub mod erasure;
pub mod locks;
pub mod reactions;
pub mod reads;
pub mod task_feed;
pub mod tasks;

use chrono::{DateTime, Utc};
use dw_eventstore::aggregate::{self, Aggregate, Loaded};
use dw_eventstore::personal::{self, Keys, SubjectKey};
use dw_eventstore::writes::{Write, Writes};
use dw_eventstore::{CommandError, EventMetadata, NewEvent, RecordedEvent};
use dw_ids::TenantId;
use sqlx::PgConnection;

use crate::codec;
use crate::domain::task::{self, Event, Task};
use crate::domain::{DomainError, TaskId};
use crate::projections;

/// Every command's (and reaction's) error: one of the domain's rules, or the kernel's.
pub type AppError = CommandError<DomainError>;

pub use dw_grpc_kit::command::CommandContext;

pub use locks::lock_tenant;

/// One task's stream; the state is `None` until its `TaskCreated`. `seal` is the client's key,
/// which seals the personal fields of the events it encodes (`None`: they are not kept).
pub struct TaskStream<'a> {
    pub tenant: &'a TenantId,
    pub task_id: TaskId,
    pub seal: Option<SubjectKey>,
}

impl Aggregate for TaskStream<'_> {
    type State = Option<Task>;
    type Event = Event;

    fn stream_id(&self) -> String {
        codec::task_stream(self.tenant, self.task_id)
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<Event, String> {
        // Commands never read the client's personal fields: they stay sealed.
        codec::decode(recorded, &Keys::none()).map_err(|e| e.to_string())
    }

    fn encode(&self, event: &Event) -> NewEvent {
        codec::encode(self.task_id, event, self.seal.as_ref())
    }

    fn evolve(state: Option<Task>, event: &Event) -> Option<Task> {
        match state {
            Some(task) => Some(task::evolve(task, event)),
            None => task::initial(event),
        }
    }
}

/// A task and its stream version, if it exists in the tenant.
pub async fn load_task(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
) -> Result<Option<(Task, i64)>, AppError> {
    let loaded = aggregate::load(conn, &TaskStream { tenant, task_id, seal: None }).await?;
    Ok(loaded.state.map(|task| (task, loaded.version)))
}

/// Appends `events` to the task's stream and brings the read models (task row, agents' load)
/// to the new state. Returns the new state and version.
pub async fn append_task(
    conn: &mut PgConnection,
    tenant: &TenantId,
    before: Option<&Task>,
    version: i64,
    events: Vec<Event>,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
) -> Result<(Task, i64), AppError> {
    append_task_with(conn, tenant, before, version, events, metadata, now, Also::default()).await
}

/// What else a task's change writes in its statement ([`append_task_with`]).
#[derive(Default)]
pub struct Also {
    /// Rows of other tables, such as the assignment's decision.
    pub writes: Vec<Write>,
    /// The tenant's default capacity, when the new holder's load is to go up only while they can
    /// take the task ([`projections::agents::load_writes`]): the round did not lock their row.
    pub guard_capacity: Option<i32>,
    /// The command's last writes: left to the kernel, to go with the request's idempotency
    /// record in one statement ([`dw_eventstore::command::leave_last_writes`]); sent here when
    /// no command runs (a reaction).
    pub last: bool,
}

/// [`append_task`], with `also` sent in the same statement: the append behind its stream's
/// guard, the task's row, the agents' load and `also`, one round trip in the caller's
/// transaction.
#[allow(clippy::too_many_arguments)]
pub async fn append_task_with(
    conn: &mut PgConnection,
    tenant: &TenantId,
    before: Option<&Task>,
    version: i64,
    events: Vec<Event>,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
    also: Also,
) -> Result<(Task, i64), AppError> {
    let last = also.last;
    let mut writes = Writes::default();
    let written = stage_task(conn, tenant, before, version, events, metadata, now, also, &mut writes).await?;
    let unsent = if last { dw_eventstore::command::leave_last_writes(writes) } else { Some(writes) };
    if let Some(writes) = unsent {
        writes.execute(conn).await?;
    }
    Ok(written)
}

/// [`append_task_with`] staged in `writes` (sent by the caller) instead of sent; `also.last` is
/// not looked at. Returns the new state and version.
#[allow(clippy::too_many_arguments)]
pub async fn stage_task(
    conn: &mut PgConnection,
    tenant: &TenantId,
    before: Option<&Task>,
    version: i64,
    events: Vec<Event>,
    metadata: &EventMetadata,
    now: DateTime<Utc>,
    also: Also,
    writes: &mut Writes,
) -> Result<(Task, i64), AppError> {
    let task_id = match (before, events.first()) {
        (Some(task), _) => task.content.task_id,
        (None, Some(Event::Created { task, .. })) => task.task_id,
        (None, _) => return Err(CommandError::invalid("events", "a new task starts with TaskCreated")),
    };
    let seal = client_key(conn, tenant, task_id, &events).await?;
    let stream = TaskStream { tenant, task_id, seal };
    let loaded = Loaded { state: before.cloned(), version };
    let staged = aggregate::stage(writes, tenant, &stream, loaded, &events, metadata)?;
    let after = staged.state.ok_or_else(|| CommandError::corrupt(format!("task {task_id} has no state")))?;
    let queue_change = projections::tasks::QueueChange::of(&events);
    writes.push(projections::tasks::save_write(tenant, &after, staged.version, queue_change, now));
    let loads = projections::agents::load_writes(tenant, before, &after, now, also.guard_capacity);
    for write in loads.into_iter().chain(also.writes) {
        writes.push(write);
    }
    Ok((after, staged.version))
}

/// The key of the client whose personal fields `events` carry: from the new task's phone, or
/// for a message the phone its row still has (none once the client was erased: the text is then
/// not kept). `None` when the events carry no personal field.
async fn client_key(
    conn: &mut PgConnection,
    tenant: &TenantId,
    task_id: TaskId,
    events: &[Event],
) -> Result<Option<SubjectKey>, AppError> {
    let phone = if let Some(Event::Created { task, .. }) = events.iter().find(|e| matches!(e, Event::Created { .. })) {
        Some(task.contact.phone.clone())
    } else if events.iter().any(|e| matches!(e, Event::MessageRecorded { .. })) {
        projections::tasks::client_phone(conn, tenant, task_id).await?
    } else {
        None
    };
    match phone.filter(|phone| !phone.is_erased()) {
        Some(phone) => Ok(Some(personal::subject_key(conn, tenant, &codec::client_subject(&phone)).await?)),
        None => Ok(None),
    }
}
