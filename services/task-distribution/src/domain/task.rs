//! The `Task` aggregate: created with a protocol, then assigned, re-queued, claimed,
//! transferred, completed or cancelled; inbound client messages are recorded on it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::{AgentId, Channel, ClientContact, DepartmentId, DomainError, Priority, Protocol, TaskId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Status {
    #[default]
    Queued,
    Assigned,
    Completed,
    Cancelled,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Assigned => "assigned",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "queued" => Some(Self::Queued),
            "assigned" => Some(Self::Assigned),
            "completed" => Some(Self::Completed),
            "cancelled" => Some(Self::Cancelled),
            _ => None,
        }
    }

    pub fn is_closed(self) -> bool {
        matches!(self, Self::Completed | Self::Cancelled)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequeueCause {
    AgentDayEnded,
    Transferred,
}

/// The task's content, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTask {
    pub task_id: TaskId,
    pub protocol: Protocol,
    pub department: DepartmentId,
    pub channel: Channel,
    /// Personal data: never part of a snapshot (an erasure could not reach it there). Commands
    /// never read it; a state from a snapshot or a replay has it withheld (sealed events are
    /// replayed without keys).
    #[serde(skip_serializing, default = "ClientContact::withheld")]
    pub contact: ClientContact,
    pub priority: Priority,
    /// Personal data too (an inbound task's subject is the client's first words): never in a
    /// snapshot, like the contact.
    #[serde(skip_serializing, default)]
    pub subject: String,
    pub created_by: String,
    pub inbound_message_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub content: NewTask,
    pub department: DepartmentId,
    pub status: Status,
    pub agent: Option<AgentId>,
    pub created_at: DateTime<Utc>,
    /// While queued: since when it has waited in its current queue (creation, re-queue or
    /// transfer into the queue). `None` while with an agent, once closed, and in snapshots taken
    /// before the field existed (the wait then counts from `created_at`).
    #[serde(default)]
    pub waiting_since: Option<DateTime<Utc>>,
    pub assigned_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    pub message_count: i32,
    pub last_message_at: Option<DateTime<Utc>>,
}

/// How long a task waited in a department's queue before it went to an agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueWait {
    pub department: DepartmentId,
    pub waited: chrono::TimeDelta,
}

/// What the rules need to know of an agent taking a task by hand or by transfer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub agent_id: AgentId,
    pub day_open: bool,
    pub on_break: bool,
    pub departments: Vec<DepartmentId>,
    pub active_tasks: i32,
    pub capacity: i32,
}

impl AgentView {
    fn check_can_take(&self, department: &DepartmentId) -> Result<(), DomainError> {
        if !self.day_open {
            return Err(DomainError::AgentDayNotOpen);
        }
        if self.on_break {
            return Err(DomainError::AgentOnBreak);
        }
        if !self.departments.contains(department) {
            return Err(DomainError::AgentNotInDepartment(department.to_string()));
        }
        if self.active_tasks >= self.capacity {
            return Err(DomainError::AgentAtCapacity(self.capacity));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssignmentSummary {
    pub decision_id: uuid::Uuid,
    pub candidates: i32,
    pub eligible: i32,
    pub trigger: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Assign {
        agent: AgentId,
        summary: AssignmentSummary,
    },
    Requeue {
        cause: RequeueCause,
    },
    Claim {
        agent: AgentView,
    },
    Transfer {
        department: DepartmentId,
        agent: Option<AgentView>,
        by: String,
    },
    /// `privileged`: a manager or service may close any task; an agent only their own.
    Complete {
        by: String,
        privileged: bool,
    },
    Cancel {
        by: String,
        reason: String,
    },
    RecordMessage {
        message_id: String,
        text: String,
        received_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Event {
    Created {
        task: NewTask,
        at: DateTime<Utc>,
    },
    Assigned {
        agent: AgentId,
        department: DepartmentId,
        summary: AssignmentSummary,
        at: DateTime<Utc>,
    },
    Requeued {
        previous_agent: AgentId,
        department: DepartmentId,
        cause: RequeueCause,
        at: DateTime<Utc>,
    },
    Claimed {
        agent: AgentId,
        at: DateTime<Utc>,
    },
    Transferred {
        from_department: DepartmentId,
        to_department: DepartmentId,
        from_agent: Option<AgentId>,
        to_agent: Option<AgentId>,
        by: String,
        at: DateTime<Utc>,
    },
    Completed {
        agent: AgentId,
        by: String,
        at: DateTime<Utc>,
    },
    Cancelled {
        by: String,
        reason: String,
        at: DateTime<Utc>,
    },
    MessageRecorded {
        message_id: String,
        text: String,
        received_at: DateTime<Utc>,
        agent: Option<AgentId>,
    },
}

/// A new task (its first event).
pub fn create(task: NewTask, now: DateTime<Utc>) -> Vec<Event> {
    vec![Event::Created { task, at: now }]
}

pub fn decide(state: &Task, command: Command, now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
    let open = || if state.status.is_closed() { Err(DomainError::TaskClosed) } else { Ok(()) };
    match command {
        Command::Assign { agent, summary } => {
            if state.status != Status::Queued {
                return Err(DomainError::TaskNotQueued);
            }
            Ok(vec![Event::Assigned { agent, department: state.department.clone(), summary, at: now }])
        }
        Command::Requeue { cause } => {
            let (Status::Assigned, Some(agent)) = (state.status, &state.agent) else {
                return Err(DomainError::TaskNotQueued);
            };
            Ok(vec![Event::Requeued {
                previous_agent: agent.clone(),
                department: state.department.clone(),
                cause,
                at: now,
            }])
        }
        Command::Claim { agent } => {
            open()?;
            if state.status != Status::Queued {
                return Err(DomainError::TaskNotQueued);
            }
            agent.check_can_take(&state.department)?;
            Ok(vec![Event::Claimed { agent: agent.agent_id, at: now }])
        }
        Command::Transfer { department, agent, by } => {
            open()?;
            if department == state.department && agent.is_none() && state.status == Status::Queued {
                return Err(DomainError::NothingToTransfer(department.to_string()));
            }
            if let Some(target) = &agent {
                target.check_can_take(&department)?;
            }
            Ok(vec![Event::Transferred {
                from_department: state.department.clone(),
                to_department: department,
                from_agent: state.agent.clone().filter(|_| state.status == Status::Assigned),
                to_agent: agent.map(|a| a.agent_id),
                by,
                at: now,
            }])
        }
        Command::Complete { by, privileged } => {
            open()?;
            let (Status::Assigned, Some(agent)) = (state.status, &state.agent) else {
                return Err(DomainError::TaskNotQueued);
            };
            if !privileged && agent.as_str() != by {
                return Err(DomainError::NotTaskOwner);
            }
            Ok(vec![Event::Completed { agent: agent.clone(), by, at: now }])
        }
        Command::Cancel { by, reason } => {
            open()?;
            Ok(vec![Event::Cancelled { by, reason, at: now }])
        }
        Command::RecordMessage { message_id, text, received_at } => {
            open()?;
            Ok(vec![Event::MessageRecorded {
                message_id,
                text,
                received_at,
                agent: state.agent.clone().filter(|_| state.status == Status::Assigned),
            }])
        }
    }
}

/// The state after the first event.
pub fn initial(event: &Event) -> Option<Task> {
    let Event::Created { task, at } = event else {
        return None;
    };
    Some(Task {
        department: task.department.clone(),
        content: task.clone(),
        status: Status::Queued,
        agent: None,
        created_at: *at,
        waiting_since: Some(*at),
        assigned_at: None,
        closed_at: None,
        message_count: 0,
        last_message_at: None,
    })
}

pub fn evolve(mut state: Task, event: &Event) -> Task {
    match event {
        Event::Created { .. } => {}
        Event::Assigned { agent, at, .. } | Event::Claimed { agent, at } => {
            state.status = Status::Assigned;
            state.agent = Some(agent.clone());
            state.assigned_at = Some(*at);
            state.waiting_since = None;
        }
        Event::Requeued { at, .. } => {
            state.status = Status::Queued;
            state.agent = None;
            state.assigned_at = None;
            state.waiting_since = Some(*at);
        }
        Event::Transferred { to_department, to_agent, at, .. } => {
            state.department = to_department.clone();
            state.agent = to_agent.clone();
            state.status = if to_agent.is_some() { Status::Assigned } else { Status::Queued };
            state.assigned_at = to_agent.as_ref().map(|_| *at);
            state.waiting_since = if to_agent.is_some() { None } else { Some(*at) };
        }
        Event::Completed { at, .. } => {
            state.status = Status::Completed;
            state.closed_at = Some(*at);
            state.waiting_since = None;
        }
        Event::Cancelled { at, .. } => {
            state.status = Status::Cancelled;
            state.closed_at = Some(*at);
            state.waiting_since = None;
        }
        Event::MessageRecorded { received_at, .. } => {
            state.message_count += 1;
            state.last_message_at = Some(*received_at);
        }
    }
    state
}

/// The wait that `events` end by giving the queued task to an agent (an automatic assignment, a
/// claim or a transfer to a named agent), measured between the events' own times.
pub fn queue_wait(state: &Task, events: &[Event]) -> Option<QueueWait> {
    let mut before = state.clone();
    for event in events {
        if let Some(wait) = wait_ended_by(&before, event) {
            return Some(wait);
        }
        before = evolve(before, event);
    }
    None
}

fn wait_ended_by(state: &Task, event: &Event) -> Option<QueueWait> {
    if state.status != Status::Queued {
        return None;
    }
    let taken_at = match event {
        Event::Assigned { at, .. } | Event::Claimed { at, .. } | Event::Transferred { to_agent: Some(_), at, .. } => {
            *at
        }
        _ => return None,
    };
    let since = state.waiting_since.unwrap_or(state.created_at);
    Some(QueueWait { department: state.department.clone(), waited: taken_at - since })
}

#[cfg(test)]
mod tests;
