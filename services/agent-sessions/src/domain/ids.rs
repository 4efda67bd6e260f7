//! Identifier newtypes: the shared ones, and the service day's.

pub use dw_ids::{AgentId, DepartmentId, ReasonId, RequestId};
use serde::{Deserialize, Serialize};
use std::fmt;

/// A service day's id (UUIDv7, so ids sort by start time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct DayId(pub uuid::Uuid);

impl fmt::Display for DayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
