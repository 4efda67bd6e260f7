//! task-distribution's read models: tasks (queue and search), agents' availability and load
//! (fed by agent-sessions' events); inbound messages are handled in `app::reactions`.

pub mod agents;
pub mod queries;
pub mod rebuild;
pub mod tasks;
