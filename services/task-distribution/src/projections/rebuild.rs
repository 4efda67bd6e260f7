//! The `tasks` read model as a rebuildable unit (`task-distribution projections rebuild tasks`):
//! each stored event of a task brings the task's row to the state the stream had at that event,
//! through the same `tasks::save` a command runs, with the same queue move.
//!
//! Agents' load is not part of it: the `agents` table is kept from agent-sessions' events too
//! (availability, departments), which this service's store does not hold.

use dw_eventstore::RecordedEvent;
use dw_eventstore::aggregate::Aggregate;
use dw_eventstore::rebuild::{ApplyFuture, ReadModel};
use sqlx::PgConnection;

use super::tasks::{QueueChange, save};
use crate::app::TaskStream;
use crate::codec;
use crate::domain::TaskId;
use crate::domain::task::Event;

/// The `tasks` table (queues, search, the rows `GetTask` reads).
pub struct TasksModel;

impl ReadModel for TasksModel {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tasks"]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(apply_recorded(conn, event))
    }

    /// A task's row is written by its own stream only.
    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.stream_id.clone())
    }
}

/// How a command moved the task in its queue with `event` (`app::append_task` does the same).
fn queue_change(event: &Event) -> QueueChange {
    match event {
        Event::Requeued { .. } => QueueChange::ToFront,
        Event::Transferred { to_agent: None, .. } => QueueChange::ToBack,
        _ => QueueChange::Keep,
    }
}

/// One stored event of a task stream into its row; other streams have no row here.
async fn apply_recorded(conn: &mut PgConnection, event: &RecordedEvent) -> Result<(), String> {
    let tenant = &event.tenant_id;
    let Some(id) = event.stream_id.strip_prefix(&format!("task:{tenant}:")) else {
        return Ok(());
    };
    let task_id = TaskId::parse(id).map_err(|e| format!("stream {}: task id {e}", event.stream_id))?;
    // The task as its stream stood at this event (the events before it are few).
    let history = dw_eventstore::store::read_stream(conn, &event.stream_id, 0).await.map_err(|e| e.to_string())?;
    let mut state = None;
    let mut this = None;
    for recorded in history.iter().take_while(|recorded| recorded.version <= event.version) {
        let decoded = codec::decode(recorded).map_err(|e| format!("event {}: {e}", recorded.event_id))?;
        state = TaskStream::evolve(state, &decoded);
        if recorded.version == event.version {
            this = Some(decoded);
        }
    }
    let (Some(task), Some(this)) = (state, this) else {
        return Err(format!("task {task_id} has no state at version {}", event.version));
    };
    // `recorded_at` is the time the command decided at, the `now` its `save` had.
    save(conn, tenant, &task, event.version, queue_change(&this), event.recorded_at).await.map_err(|e| e.to_string())
}
