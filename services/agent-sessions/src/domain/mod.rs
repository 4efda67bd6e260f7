//! The pure heart of agent-sessions: ids, the aggregates' state, commands, events, `decide` and
//! `evolve`. No I/O: time and ids come in as arguments.

pub mod agent;
pub mod ids;
pub mod permissions;
pub mod service_day;
pub mod tenant_settings;

pub use ids::{AgentId, DayId, DepartmentId, ReasonId, RequestId};
pub use permissions::Permission;

/// A broken domain rule. Each maps to `FAILED_PRECONDITION` (or `NOT_FOUND`) with [`reason`](Self::reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("the service day has not been started")]
    ServiceDayNotStarted,
    #[error("a service day is already open")]
    ServiceDayAlreadyStarted,
    #[error("the agent is already on a break")]
    AlreadyOnBreak,
    #[error("the agent is not on a break")]
    NotOnBreak,
    #[error("an exit is already notified")]
    ExitAlreadyNotified,
    #[error("no exit is notified")]
    NoExitNotified,
    #[error("an exit cannot be notified during a break")]
    OnBreak,
    #[error("the tenant has no automatic distribution, so exits are not offered")]
    AutoDistributionDisabled,
    #[error("unknown exit reason {0:?}")]
    UnknownExitReason(String),
    #[error("unknown break reason {0:?}")]
    UnknownBreakReason(String),
    #[error("the tenant has break reasons: name one of them (ListBreakReasons)")]
    BreakReasonRequired,
    #[error("agent {0:?} not found")]
    AgentNotFound(String),
    #[error("agent {0:?} is already registered")]
    AgentAlreadyRegistered(String),
    #[error("department {0:?} is already linked")]
    DepartmentAlreadyLinked(String),
    #[error("department {0:?} is not linked")]
    DepartmentNotLinked(String),
    #[error("permission {0:?} is already granted")]
    PermissionAlreadyGranted(String),
    #[error("permission {0:?} is not granted")]
    PermissionNotGranted(String),
}

impl DomainError {
    /// The machine-readable reason (`google.rpc.ErrorInfo.reason`).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::ServiceDayNotStarted => "SERVICE_DAY_NOT_STARTED",
            Self::ServiceDayAlreadyStarted => "SERVICE_DAY_ALREADY_STARTED",
            Self::AlreadyOnBreak => "ALREADY_ON_BREAK",
            Self::NotOnBreak => "NOT_ON_BREAK",
            Self::ExitAlreadyNotified => "EXIT_ALREADY_NOTIFIED",
            Self::NoExitNotified => "NO_EXIT_NOTIFIED",
            Self::OnBreak => "ON_BREAK",
            Self::AutoDistributionDisabled => "AUTO_DISTRIBUTION_DISABLED",
            Self::UnknownExitReason(_) => "UNKNOWN_EXIT_REASON",
            Self::UnknownBreakReason(_) => "UNKNOWN_BREAK_REASON",
            Self::BreakReasonRequired => "BREAK_REASON_REQUIRED",
            Self::AgentNotFound(_) => "AGENT_NOT_FOUND",
            Self::AgentAlreadyRegistered(_) => "AGENT_ALREADY_REGISTERED",
            Self::DepartmentAlreadyLinked(_) => "DEPARTMENT_ALREADY_LINKED",
            Self::DepartmentNotLinked(_) => "DEPARTMENT_NOT_LINKED",
            Self::PermissionAlreadyGranted(_) => "PERMISSION_ALREADY_GRANTED",
            Self::PermissionNotGranted(_) => "PERMISSION_NOT_GRANTED",
        }
    }
}

impl dw_eventstore::DomainRule for DomainError {
    fn reason(&self) -> &'static str {
        DomainError::reason(self)
    }

    fn kind(&self) -> dw_eventstore::RuleKind {
        match self {
            Self::AgentNotFound(agent) => dw_eventstore::RuleKind::NotFound(dw_eventstore::Resource::of::<
                dw_proto::agentsessions::v1::Agent,
            >(agent)),
            _ => dw_eventstore::RuleKind::FailedPrecondition,
        }
    }
}

/// A configured reason for an exit or a break.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub id: ReasonId,
    pub label: String,
}
