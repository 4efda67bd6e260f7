//! Identifier newtypes: all from the kernel's `dw-ids`.

pub use dw_ids::{AgentId, DayId, DepartmentId, ReasonId, RequestId};
