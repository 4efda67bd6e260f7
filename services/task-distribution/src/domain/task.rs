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
    pub contact: ClientContact,
    pub priority: Priority,
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
mod tests {
    use super::*;
    use crate::domain::PhoneNumber;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 24, 10, 0, 0).unwrap()
    }

    fn dept(id: &str) -> DepartmentId {
        DepartmentId::parse(id).unwrap()
    }

    fn agent(id: &str) -> AgentId {
        AgentId::parse(id).unwrap()
    }

    fn new_task() -> Task {
        let content = NewTask {
            task_id: TaskId(uuid::Uuid::from_u128(1)),
            protocol: Protocol::new(now().date_naive(), 1),
            department: dept("support"),
            channel: Channel::Whatsapp,
            contact: ClientContact {
                name: "Maria".into(),
                phone: PhoneNumber::parse("+5511999990000").unwrap(),
                contact_id: None,
            },
            priority: Priority::parse(5).unwrap(),
            subject: "Help".into(),
            created_by: "crm".into(),
            inbound_message_id: None,
        };
        let events = create(content, now());
        initial(&events[0]).unwrap()
    }

    fn view(id: &str) -> AgentView {
        AgentView {
            agent_id: agent(id),
            day_open: true,
            on_break: false,
            departments: vec![dept("support")],
            active_tasks: 0,
            capacity: 3,
        }
    }

    fn apply(state: Task, command: Command) -> Task {
        decide(&state, command, now()).unwrap().iter().fold(state, evolve)
    }

    fn summary() -> AssignmentSummary {
        AssignmentSummary { decision_id: uuid::Uuid::from_u128(9), candidates: 1, eligible: 1, trigger: "test".into() }
    }

    #[test]
    fn a_queued_task_is_assigned_once() {
        let task = apply(new_task(), Command::Assign { agent: agent("ana"), summary: summary() });
        assert_eq!((task.status, task.agent.as_ref().map(AgentId::as_str)), (Status::Assigned, Some("ana")));
        let again = decide(&task, Command::Assign { agent: agent("bob"), summary: summary() }, now());
        assert_eq!(again, Err(DomainError::TaskNotQueued));
    }

    #[test]
    fn claims_need_an_available_linked_agent_below_capacity() {
        let task = new_task();
        let mut off = view("ana");
        off.day_open = false;
        assert_eq!(decide(&task, Command::Claim { agent: off }, now()), Err(DomainError::AgentDayNotOpen));
        let mut resting = view("ana");
        resting.on_break = true;
        assert_eq!(decide(&task, Command::Claim { agent: resting }, now()), Err(DomainError::AgentOnBreak));
        let mut elsewhere = view("ana");
        elsewhere.departments = vec![dept("sales")];
        assert!(matches!(
            decide(&task, Command::Claim { agent: elsewhere }, now()),
            Err(DomainError::AgentNotInDepartment(_))
        ));
        let mut full = view("ana");
        full.active_tasks = 3;
        assert_eq!(decide(&task, Command::Claim { agent: full }, now()), Err(DomainError::AgentAtCapacity(3)));
        let claimed = apply(task, Command::Claim { agent: view("ana") });
        assert_eq!(claimed.status, Status::Assigned);
    }

    #[test]
    fn only_the_owner_or_a_privileged_caller_completes() {
        let task = apply(new_task(), Command::Assign { agent: agent("ana"), summary: summary() });
        let by_bob = Command::Complete { by: "bob".into(), privileged: false };
        assert_eq!(decide(&task, by_bob, now()), Err(DomainError::NotTaskOwner));
        let done = apply(task.clone(), Command::Complete { by: "ana".into(), privileged: false });
        assert_eq!(done.status, Status::Completed);
        assert_eq!(
            decide(&done, Command::Cancel { by: "x".into(), reason: String::new() }, now()),
            Err(DomainError::TaskClosed)
        );
        let by_manager = apply(task, Command::Complete { by: "boss".into(), privileged: true });
        assert_eq!(by_manager.status, Status::Completed);
    }

    #[test]
    fn requeue_and_transfer_move_the_task_back_to_a_queue() {
        let task = apply(new_task(), Command::Assign { agent: agent("ana"), summary: summary() });
        let requeued = decide(&task, Command::Requeue { cause: RequeueCause::AgentDayEnded }, now()).unwrap();
        assert!(matches!(&requeued[..], [Event::Requeued { previous_agent, .. }] if previous_agent.as_str() == "ana"));
        let task = requeued.iter().fold(task, evolve);
        assert_eq!((task.status, task.agent.clone()), (Status::Queued, None));

        let nothing = Command::Transfer { department: dept("support"), agent: None, by: "ana".into() };
        assert!(matches!(decide(&task, nothing, now()), Err(DomainError::NothingToTransfer(_))));
        let to_sales = apply(task, Command::Transfer { department: dept("sales"), agent: None, by: "boss".into() });
        assert_eq!((to_sales.status, to_sales.department.as_str()), (Status::Queued, "sales"));
    }

    fn at(minutes: i64) -> DateTime<Utc> {
        now() + chrono::TimeDelta::minutes(minutes)
    }

    #[test]
    fn the_queue_wait_runs_from_creation_or_re_queue_to_the_agent_taking_the_task() {
        let created = new_task();
        let assign = |state: &Task, minutes| {
            decide(state, Command::Assign { agent: agent("ana"), summary: summary() }, at(minutes)).unwrap()
        };
        let events = assign(&created, 3);
        let wait = queue_wait(&created, &events).unwrap();
        assert_eq!((wait.department.as_str(), wait.waited), ("support", chrono::TimeDelta::minutes(3)));

        // Re-queued at minute 10 and taken again at 12: the second wait is 2 minutes, not 12.
        let assigned = events.iter().fold(created, evolve);
        let requeue = decide(&assigned, Command::Requeue { cause: RequeueCause::AgentDayEnded }, at(10)).unwrap();
        assert_eq!(queue_wait(&assigned, &requeue), None, "a re-queue ends no wait");
        let requeued = requeue.iter().fold(assigned, evolve);
        assert_eq!(requeued.waiting_since, Some(at(10)));
        let claimed = decide(&requeued, Command::Claim { agent: view("bob") }, at(12)).unwrap();
        assert_eq!(queue_wait(&requeued, &claimed).unwrap().waited, chrono::TimeDelta::minutes(2));

        // Transferred into another queue at 20, handed to a named agent there at 25.
        let to_sales = Command::Transfer { department: dept("sales"), agent: None, by: "boss".into() };
        let moved = decide(&requeued, to_sales, at(20)).unwrap().iter().fold(requeued, evolve);
        let mut carla = view("carla");
        carla.departments = vec![dept("sales")];
        let to_carla = Command::Transfer { department: dept("sales"), agent: Some(carla), by: "boss".into() };
        let handed = decide(&moved, to_carla, at(25)).unwrap();
        let wait = queue_wait(&moved, &handed).unwrap();
        assert_eq!((wait.department.as_str(), wait.waited), ("sales", chrono::TimeDelta::minutes(5)));
        assert_eq!(handed.iter().fold(moved, evolve).waiting_since, None);
    }

    #[test]
    fn snapshots_without_the_waiting_time_count_from_creation() {
        let mut old = serde_json::to_value(new_task()).unwrap();
        old.as_object_mut().unwrap().remove("waiting_since");
        let task: Task = serde_json::from_value(old).unwrap();
        assert_eq!(task.waiting_since, None);
        let events = decide(&task, Command::Assign { agent: agent("ana"), summary: summary() }, at(4)).unwrap();
        assert_eq!(queue_wait(&task, &events).unwrap().waited, chrono::TimeDelta::minutes(4));
    }

    #[test]
    fn messages_are_recorded_on_open_tasks_with_their_agent() {
        let task = apply(new_task(), Command::Assign { agent: agent("ana"), summary: summary() });
        let record = Command::RecordMessage { message_id: "m1".into(), text: "hi".into(), received_at: now() };
        let events = decide(&task, record, now()).unwrap();
        assert!(matches!(&events[..], [Event::MessageRecorded { agent: Some(a), .. }] if a.as_str() == "ana"));
        assert_eq!(events.iter().fold(task, evolve).message_count, 1);
    }
}
