//! The `tasks` read model as a rebuildable unit (`task-distribution projections rebuild tasks`):
//! each stored event of a task brings the task's row to the state the stream had at that event,
//! through the same `tasks::save` a command runs, with the same queue move.
//!
//! A client erased since (`EraseClientData`) comes back erased: their key is gone.
//!
//! Agents' load is not part of it: the `agents` table is kept from agent-sessions' events too
//! (availability, departments), which this service's store does not hold.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use dw_eventstore::RecordedEvent;
use dw_eventstore::aggregate::Aggregate;
use dw_eventstore::personal::{self, Keys};
use dw_eventstore::rebuild::{ApplyFuture, ReadModel};
use sqlx::PgConnection;

use super::tasks::{QueueChange, save_write};
use crate::app::TaskStream;
use crate::codec;
use crate::domain::TaskId;
use crate::domain::task::Task;

/// The `tasks` table (queues, search, the rows `GetTask` reads).
///
/// It keeps the state it last brought each task to, so a task's events cost one decode each
/// rather than a read of the stream each (a client writing many messages into one task makes a
/// long stream); the cache is emptied when it grows past [`CACHED_TASKS`], and a task it no
/// longer holds is read from its stream again.
pub struct TasksModel {
    states: Mutex<HashMap<String, (i64, Task)>>,
    capacity: usize,
}

/// Tasks whose latest state a rebuild keeps at most.
pub const CACHED_TASKS: usize = 10_000;

impl Default for TasksModel {
    fn default() -> Self {
        Self::with_cache(CACHED_TASKS)
    }
}

impl ReadModel for TasksModel {
    fn name(&self) -> &'static str {
        "tasks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tasks"]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(self.apply_recorded(conn, event))
    }

    /// A task's row is written by its own stream only.
    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.stream_id.clone())
    }
}

impl TasksModel {
    /// A model keeping the state of at most `capacity` tasks (0: a task's previous state is
    /// read from its stream nearly every time).
    pub fn with_cache(capacity: usize) -> Self {
        Self { states: Mutex::new(HashMap::new()), capacity }
    }

    /// One stored event of a task stream into its row; other streams have no row here.
    async fn apply_recorded(&self, conn: &mut PgConnection, event: &RecordedEvent) -> Result<(), String> {
        let tenant = &event.tenant_id;
        let Some(id) = event.stream_id.strip_prefix(&format!("task:{tenant}:")) else {
            return Ok(());
        };
        let task_id = TaskId::parse(id).map_err(|e| format!("stream {}: task id {e}", event.stream_id))?;
        // The row takes the client's fields from the task's first event: opened with the
        // client's key if it still exists, empty if the client was erased.
        let keys = personal::keys(conn, codec::key_ids(event)).await.map_err(|e| e.to_string())?;
        let this = codec::decode(event, &keys).map_err(|e| format!("event {}: {e}", event.event_id))?;
        let decode = |recorded: &RecordedEvent| {
            codec::decode(recorded, &Keys::none()).map_err(|e| format!("event {}: {e}", recorded.event_id))
        };
        let before = self.cached(&event.stream_id, event.version - 1);
        let state = match before {
            Some(task) => TaskStream::evolve(Some(task), &this),
            None => {
                // The task as its stream stood at this event.
                let history =
                    dw_eventstore::store::read_stream(conn, &event.stream_id, 0).await.map_err(|e| e.to_string())?;
                let mut state = None;
                for recorded in history.iter().take_while(|recorded| recorded.version < event.version) {
                    state = TaskStream::evolve(state, &decode(recorded)?);
                }
                TaskStream::evolve(state, &this)
            }
        };
        let Some(task) = state else {
            return Err(format!("task {task_id} has no state at version {}", event.version));
        };
        // `recorded_at` is the time the command decided at, the `now` its `save` had.
        let queue = QueueChange::of(std::slice::from_ref(&this));
        save_write(tenant, &task, event.version, queue, event.recorded_at)
            .execute(conn)
            .await
            .map_err(|e| e.to_string())?;
        self.keep(&event.stream_id, event.version, task);
        Ok(())
    }

    /// The task's state at `version`, when that is the last one kept.
    fn cached(&self, stream_id: &str, version: i64) -> Option<Task> {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        states.get(stream_id).filter(|(kept, _)| *kept == version).map(|(_, task)| task.clone())
    }

    fn keep(&self, stream_id: &str, version: i64, task: Task) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        if states.len() >= self.capacity && !states.contains_key(stream_id) {
            states.clear();
        }
        states.insert(stream_id.to_owned(), (version, task));
    }
}
