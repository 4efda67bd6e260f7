//! Given/when/then tests of the task rules.

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
