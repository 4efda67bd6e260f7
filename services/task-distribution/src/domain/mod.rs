//! The pure heart of task-distribution: task ids, protocols, the `Task` aggregate
//! (`decide`/`evolve`) and the choice of an agent. No I/O: time and ids come in as arguments.

pub mod assignment;
pub mod settings;
pub mod task;
pub mod values;

pub use dw_ids::{AgentId, DepartmentId, RequestId};
pub use values::{Channel, ClientContact, PhoneNumber, Priority, Protocol, TaskId};

/// A broken rule. Each maps to `FAILED_PRECONDITION` (or `NOT_FOUND`) with [`reason`](Self::reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("task {0} not found")]
    TaskNotFound(String),
    #[error("the task is not queued")]
    TaskNotQueued,
    #[error("the task is closed")]
    TaskClosed,
    #[error("the task is not assigned to the caller")]
    NotTaskOwner,
    #[error("the agent's service day is not open")]
    AgentDayNotOpen,
    #[error("the agent is on a break")]
    AgentOnBreak,
    #[error("the agent is not linked to department {0}")]
    AgentNotInDepartment(String),
    #[error("the agent is at capacity ({0} tasks)")]
    AgentAtCapacity(i32),
    #[error("agent {0} not found")]
    AgentNotFound(String),
    #[error("the task is already in department {0} with no agent requested")]
    NothingToTransfer(String),
    #[error("the caller lacks permission {0}")]
    MissingPermission(&'static str),
}

impl DomainError {
    pub fn reason(&self) -> &'static str {
        match self {
            Self::TaskNotFound(_) => "TASK_NOT_FOUND",
            Self::TaskNotQueued => "TASK_NOT_QUEUED",
            Self::TaskClosed => "TASK_CLOSED",
            Self::NotTaskOwner => "NOT_TASK_OWNER",
            Self::AgentDayNotOpen => "SERVICE_DAY_NOT_STARTED",
            Self::AgentOnBreak => "AGENT_ON_BREAK",
            Self::AgentNotInDepartment(_) => "AGENT_NOT_IN_DEPARTMENT",
            Self::AgentAtCapacity(_) => "AGENT_AT_CAPACITY",
            Self::AgentNotFound(_) => "AGENT_NOT_FOUND",
            Self::NothingToTransfer(_) => "NOTHING_TO_TRANSFER",
            Self::MissingPermission(_) => "PERMISSION_REQUIRED",
        }
    }
}

impl dw_eventstore::DomainRule for DomainError {
    fn reason(&self) -> &'static str {
        DomainError::reason(self)
    }

    fn kind(&self) -> dw_eventstore::RuleKind {
        match self {
            Self::TaskNotFound(task) => {
                dw_eventstore::RuleKind::NotFound(dw_eventstore::Resource::of::<dw_proto::distribution::v1::Task>(task))
            }
            // Distribution knows agents from agent-sessions' events: the resource is theirs.
            Self::AgentNotFound(agent) => dw_eventstore::RuleKind::NotFound(dw_eventstore::Resource::of::<
                dw_proto::agentsessions::v1::Agent,
            >(agent)),
            Self::MissingPermission(_) | Self::NotTaskOwner => dw_eventstore::RuleKind::PermissionDenied,
            _ => dw_eventstore::RuleKind::FailedPrecondition,
        }
    }
}
