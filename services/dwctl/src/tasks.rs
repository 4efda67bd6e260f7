//! `dwctl tasks …`: DistributionService — service tasks, protocols, queues and assignment.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use dw_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dw_proto::distribution::v1::get_task_request::Key;
use dw_proto::distribution::v1::task_update::Kind;
use dw_proto::distribution::v1::{
    AgentCapacity, AssignmentDecision, CancelTaskRequest, CandidateVerdict, Channel, ClaimTaskRequest, ClientContact,
    CompleteTaskRequest, CreateTaskRequest, DistributionSettings, Exclusion, ExplainAssignmentRequest,
    ExplainAssignmentResponse, GetDistributionSettingsRequest, GetQueueStatsRequest, GetQueueStatsResponse,
    GetTaskRequest, ListMyTasksRequest, ListMyTasksResponse, SearchProtocolsRequest, SearchProtocolsResponse,
    SetAgentCapacityRequest, Task, TaskStatus, TaskUpdate, TransferTaskRequest, UpdateDistributionSettingsRequest,
    WatchMyTasksRequest,
};
use futures::StreamExt as _;

use crate::UsageError;
use crate::cli::{CreateTaskArgs, SearchArgs, SetDistributionSettingsArgs, TaskSettingsCommand, TasksCommand};
use crate::output::{self as out, Printer, names};
use crate::rpc::Rpc;

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate(command: &TasksCommand) -> Result<()> {
    match command {
        TasksCommand::Search(SearchArgs { from: Some(from), to: Some(to), .. })
            if (to.seconds, to.nanos) <= (from.seconds, from.nanos) =>
        {
            bail!(UsageError("--to must be after --from".into()))
        }
        _ => Ok(()),
    }
}

pub async fn run(command: TasksCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    validate(&command)?;
    let mut client = DistributionServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    match command {
        TasksCommand::Create(args) => {
            let request = create_request(rpc.request_id(), args);
            print_task(printer, &client.create_task(rpc.request(request)).await?.into_inner(), now)
        }
        TasksCommand::Get { task_id, protocol } => {
            let key = match (task_id, protocol) {
                (Some(task_id), _) => Key::TaskId(task_id),
                (None, Some(protocol)) => Key::Protocol(protocol),
                (None, None) => bail!(UsageError("pass --task-id or --protocol".into())),
            };
            let request = GetTaskRequest { key: Some(key) };
            print_task(printer, &client.get_task(rpc.request(request)).await?.into_inner(), now)
        }
        TasksCommand::Claim { task_id } => {
            let request = ClaimTaskRequest { request_id: rpc.request_id(), task_id };
            print_task(printer, &client.claim_task(rpc.request(request)).await?.into_inner(), now)
        }
        TasksCommand::Complete { task_id } => {
            let request = CompleteTaskRequest { request_id: rpc.request_id(), task_id };
            print_task(printer, &client.complete_task(rpc.request(request)).await?.into_inner(), now)
        }
        TasksCommand::Transfer { task_id, department, agent } => {
            let request = TransferTaskRequest {
                request_id: rpc.request_id(),
                task_id,
                department_id: department.unwrap_or_default(),
                agent_id: agent.unwrap_or_default(),
            };
            print_task(printer, &client.transfer_task(rpc.request(request)).await?.into_inner(), now)
        }
        TasksCommand::Cancel { task_id, reason } => {
            let request = CancelTaskRequest {
                request_id: rpc.request_id(),
                task_id,
                reason: reason.map(|r| r.trim().to_owned()).unwrap_or_default(),
            };
            print_task(printer, &client.cancel_task(rpc.request(request)).await?.into_inner(), now)
        }
        TasksCommand::Search(args) => {
            let follow = args.all;
            let result = search_pages(search_request(args), follow, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.search_protocols(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::SEARCH_PROTOCOLS, &result, |result| search_text(result, now))
        }
        TasksCommand::Mine { include_closed } => {
            let response = client.list_my_tasks(rpc.request(ListMyTasksRequest { include_closed })).await?;
            printer.emit(names::MY_TASKS, &response.into_inner(), |mine: &ListMyTasksResponse| {
                tasks_table(&mine.tasks, now)
            })
        }
        TasksCommand::Watch { limit } => {
            let mut stream = client.watch_my_tasks(rpc.stream_request(WatchMyTasksRequest {})).await?.into_inner();
            if !printer.json() {
                eprintln!("watching your tasks (Ctrl-C to stop)");
            }
            let mut seen = 0_u64;
            loop {
                if limit.is_some_and(|limit| seen >= limit) {
                    return Ok(());
                }
                let next = tokio::select! {
                    next = stream.next() => next,
                    _ = tokio::signal::ctrl_c() => return Ok(()),
                };
                let Some(update) = next else {
                    return Ok(());
                };
                printer.emit_line(names::TASK_UPDATE, &update?, |update| update_line(update, Utc::now()))?;
                seen += 1;
            }
        }
        TasksCommand::Stats { department } => {
            let request = GetQueueStatsRequest { department_id: department.unwrap_or_default() };
            let response = client.get_queue_stats(rpc.request(request)).await?;
            printer.emit(names::QUEUE_STATS, &response.into_inner(), stats_text)
        }
        TasksCommand::Explain { task_id } => {
            let response = client.explain_assignment(rpc.request(ExplainAssignmentRequest { task_id })).await?;
            printer.emit(names::EXPLAIN_ASSIGNMENT, &response.into_inner(), |r| explain_text(r, now))
        }
        TasksCommand::Settings(TaskSettingsCommand::Get) => {
            let response = client.get_distribution_settings(rpc.request(GetDistributionSettingsRequest {})).await?;
            printer.emit(names::DISTRIBUTION_SETTINGS, &response.into_inner(), settings_text)
        }
        TasksCommand::Settings(TaskSettingsCommand::Set(args)) => {
            let request = settings_request(rpc.request_id(), args);
            let response = client.update_distribution_settings(rpc.request(request)).await?;
            printer.emit(names::DISTRIBUTION_SETTINGS, &response.into_inner(), settings_text)
        }
        TasksCommand::Capacity { agent, capacity } => {
            let request = SetAgentCapacityRequest { request_id: rpc.request_id(), agent_id: agent, capacity };
            let response = client.set_agent_capacity(rpc.request(request)).await?;
            printer.emit(names::AGENT_CAPACITY, &response.into_inner(), capacity_text)
        }
    }
}

pub fn create_request(request_id: String, args: CreateTaskArgs) -> CreateTaskRequest {
    CreateTaskRequest {
        request_id,
        department_id: args.department,
        channel: args.channel as i32,
        contact: Some(ClientContact {
            name: args.client_name,
            phone: args.phone,
            contact_id: args.contact_id.unwrap_or_default(),
        }),
        priority: args.priority,
        subject: args.subject.map(|s| s.trim().to_owned()).unwrap_or_default(),
    }
}

/// A partial update: only the options given are set.
pub fn settings_request(request_id: String, args: SetDistributionSettingsArgs) -> UpdateDistributionSettingsRequest {
    let inbound_department_id = if args.no_inbound_department { Some(String::new()) } else { args.inbound_department };
    UpdateDistributionSettingsRequest { request_id, default_capacity: args.default_capacity, inbound_department_id }
}

pub fn search_request(args: SearchArgs) -> SearchProtocolsRequest {
    SearchProtocolsRequest {
        protocol: args.protocol.unwrap_or_default(),
        protocol_prefix: args.protocol_prefix.unwrap_or_default(),
        client_name: args.client_name.unwrap_or_default(),
        phone: args.phone.unwrap_or_default(),
        status: args.status.map_or(0, |status| status as i32),
        department_id: args.department.unwrap_or_default(),
        agent_id: args.agent.unwrap_or_default(),
        created_from: args.from,
        created_to: args.to,
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    }
}

/// Runs a search: one page, or with `follow` every page (the tasks concatenated, no next token).
pub async fn search_pages<F, Fut>(
    mut request: SearchProtocolsRequest,
    follow: bool,
    mut fetch: F,
) -> Result<SearchProtocolsResponse>
where
    F: FnMut(SearchProtocolsRequest) -> Fut,
    Fut: std::future::Future<Output = Result<SearchProtocolsResponse, tonic::Status>>,
{
    let mut result = SearchProtocolsResponse::default();
    loop {
        let page = fetch(request.clone()).await?;
        result.tasks.extend(page.tasks);
        result.next_page_token = page.next_page_token;
        if !follow || result.next_page_token.is_empty() {
            return Ok(result);
        }
        if result.next_page_token == request.page_token {
            bail!("the server returned the same page token twice ({}); stopping", request.page_token);
        }
        request.page_token = std::mem::take(&mut result.next_page_token);
    }
}

// ---------------------------------------------------------------------------------------------
// rendering

/// `whatsapp`, `sms`, `voice`, `email`, `chat`.
pub fn channel(value: i32) -> String {
    match Channel::try_from(value) {
        Ok(Channel::Unspecified) => "-".to_owned(),
        Ok(channel) => out::enum_suffix(channel.as_str_name(), "CHANNEL_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `queued`, `assigned`, `completed`, `cancelled`.
pub fn status(value: i32) -> String {
    match TaskStatus::try_from(value) {
        Ok(TaskStatus::Unspecified) => "-".to_owned(),
        Ok(status) => out::enum_suffix(status.as_str_name(), "TASK_STATUS_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `current`, `assigned`, `requeued`, `completed`, `cancelled`, `transferred`, `message`.
pub fn update_kind(value: i32) -> String {
    match Kind::try_from(value) {
        Ok(Kind::Unspecified) => "update".to_owned(),
        Ok(kind) => out::enum_suffix(kind.as_str_name(), "KIND_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// Why a candidate was not chosen, in words.
pub fn exclusion(value: i32) -> String {
    match Exclusion::try_from(value) {
        Ok(Exclusion::Unspecified) => "-".to_owned(),
        Ok(Exclusion::NotInDepartment) => "not in the department".to_owned(),
        Ok(Exclusion::DayNotStarted) => "service day not started".to_owned(),
        Ok(Exclusion::OnBreak) => "on break".to_owned(),
        Ok(Exclusion::ExitNotified) => "exit notified".to_owned(),
        Ok(Exclusion::AtCapacity) => "at capacity".to_owned(),
        Ok(Exclusion::MoreActiveTasks) => "eligible, lost on load (more active tasks)".to_owned(),
        Ok(Exclusion::LessIdleTime) => "eligible, lost on idle time (idle for less time)".to_owned(),
        Err(_) => format!("unknown({value})"),
    }
}

fn or_dash(value: &str) -> String {
    if value.is_empty() { "-".to_owned() } else { value.to_owned() }
}

fn print_task(printer: &Printer, task: &Task, now: DateTime<Utc>) -> Result<()> {
    printer.emit(names::TASK, task, |task| task_text(task, now))
}

pub fn task_text(task: &Task, now: DateTime<Utc>) -> String {
    let contact = task.contact.clone().unwrap_or_default();
    let mut rows = vec![
        ("task", task.task_id.clone()),
        ("protocol", task.protocol.clone()),
        ("status", status(task.status)),
        ("department", or_dash(&task.department_id)),
        ("agent", or_dash(&task.agent_id)),
        ("channel", channel(task.channel)),
        ("client", or_dash(&contact.name)),
        ("phone", or_dash(&contact.phone)),
    ];
    if !contact.contact_id.is_empty() {
        rows.push(("contact id", contact.contact_id));
    }
    rows.push(("priority", task.priority.to_string()));
    rows.push(("subject", or_dash(&task.subject)));
    rows.push(("created", out::timestamp_ago(task.created_at.as_ref(), now)));
    if task.assigned_at.is_some() {
        rows.push(("assigned", out::timestamp_ago(task.assigned_at.as_ref(), now)));
    }
    if task.closed_at.is_some() {
        rows.push(("closed", out::timestamp_ago(task.closed_at.as_ref(), now)));
    }
    if task.message_count > 0 {
        rows.push((
            "messages",
            format!("{} (last {})", task.message_count, out::timestamp_ago(task.last_message_at.as_ref(), now)),
        ));
    }
    rows.push(("version", task.version.to_string()));
    out::fields(&rows)
}

const TASK_HEADER: [&str; 11] =
    ["PROTOCOL", "STATUS", "DEPARTMENT", "AGENT", "CHANNEL", "PRIO", "CLIENT", "PHONE", "MSGS", "CREATED", "TASK"];

fn task_row(task: &Task, now: DateTime<Utc>) -> Vec<String> {
    let contact = task.contact.clone().unwrap_or_default();
    let created = match task.created_at.as_ref().and_then(out::to_datetime) {
        Some(at) if now >= at => format!("{} ago", out::human_seconds((now - at).num_seconds())),
        _ => out::timestamp(task.created_at.as_ref()),
    };
    vec![
        task.protocol.clone(),
        status(task.status),
        or_dash(&task.department_id),
        or_dash(&task.agent_id),
        channel(task.channel),
        task.priority.to_string(),
        or_dash(&contact.name),
        or_dash(&contact.phone),
        task.message_count.to_string(),
        created,
        task.task_id.clone(),
    ]
}

/// One row per task: protocol, status, department, agent, channel, priority, client, age, id.
pub fn tasks_table(tasks: &[Task], now: DateTime<Utc>) -> String {
    let rows: Vec<Vec<String>> = tasks.iter().map(|task| task_row(task, now)).collect();
    out::table(&TASK_HEADER, &rows)
}

pub fn search_text(result: &SearchProtocolsResponse, now: DateTime<Utc>) -> String {
    let mut text = tasks_table(&result.tasks, now);
    if !result.next_page_token.is_empty() {
        text.push_str(&format!("next page: --page-token {}  (or --all for every page)\n", result.next_page_token));
    }
    text
}

/// One line per watched update.
pub fn update_line(update: &TaskUpdate, now: DateTime<Utc>) -> String {
    let task = update.task.clone().unwrap_or_default();
    let contact = task.contact.clone().unwrap_or_default();
    let at = update.at.as_ref().and_then(out::to_datetime).unwrap_or(now);
    let mut line = format!(
        "{}  {:<11} {}  {:<9} {}  {}  prio {}  client {} {}",
        at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        update_kind(update.kind),
        or_dash(&task.protocol),
        status(task.status),
        or_dash(&task.department_id),
        channel(task.channel),
        task.priority,
        or_dash(&contact.name),
        contact.phone,
    );
    if !task.agent_id.is_empty() {
        line.push_str(&format!("  agent {}", task.agent_id));
    }
    if task.message_count > 0 {
        line.push_str(&format!("  messages {}", task.message_count));
    }
    line.push_str(&format!("  task {}", task.task_id));
    line
}

pub fn stats_text(stats: &GetQueueStatsResponse) -> String {
    let rows: Vec<Vec<String>> = stats
        .departments
        .iter()
        .map(|d| {
            vec![
                d.department_id.clone(),
                d.waiting_tasks.to_string(),
                if d.waiting_tasks > 0 { out::duration(d.oldest_wait.as_ref()) } else { "-".to_owned() },
                d.assigned_tasks.to_string(),
                d.agents_available.to_string(),
                d.agents_on_break.to_string(),
                d.agents_exit_notified.to_string(),
                d.agents_at_capacity.to_string(),
            ]
        })
        .collect();
    let mut text = format!("queues at {}\n", out::timestamp(stats.at.as_ref()));
    text.push_str(&out::table(
        &["DEPARTMENT", "WAITING", "OLDEST WAIT", "ASSIGNED", "AVAILABLE", "ON BREAK", "EXIT NOTIFIED", "AT CAPACITY"],
        &rows,
    ));
    let on_break: Vec<Vec<String>> = stats
        .departments
        .iter()
        .flat_map(|d| {
            d.tasks_waiting_on_break.iter().map(|w| {
                vec![
                    d.department_id.clone(),
                    w.protocol.clone(),
                    w.agent_id.clone(),
                    out::duration(w.waited.as_ref()),
                    w.task_id.clone(),
                ]
            })
        })
        .collect();
    if on_break.is_empty() {
        text.push_str("\nno client is waiting on an agent's break\n");
    } else {
        text.push_str("\nclients waiting on an agent's break:\n");
        text.push_str(&out::indent(&out::table(&["DEPARTMENT", "PROTOCOL", "AGENT", "WAITED", "TASK"], &on_break), 2));
        text.push('\n');
    }
    text
}

fn candidate_row(candidate: &CandidateVerdict, chosen: &str) -> Vec<String> {
    let verdict = if candidate.exclusion == Exclusion::Unspecified as i32 && candidate.agent_id == chosen {
        "chosen".to_owned()
    } else {
        exclusion(candidate.exclusion)
    };
    vec![candidate.agent_id.clone(), candidate.active_tasks.to_string(), candidate.capacity.to_string(), verdict]
}

pub fn decision_text(decision: &AssignmentDecision, index: usize, total: usize) -> String {
    let mut text = format!(
        "decision {}/{}  {}  at {}  trigger {}\n",
        index + 1,
        total,
        or_dash(&decision.decision_id),
        out::timestamp(decision.decided_at.as_ref()),
        or_dash(&decision.trigger),
    );
    if decision.chosen_agent_id.is_empty() {
        text.push_str("  chosen: nobody was eligible; the task stayed queued\n");
    } else {
        text.push_str(&format!("  chosen: {}\n", decision.chosen_agent_id));
    }
    // The chosen agent first, then the others in the server's order.
    let mut candidates: Vec<&CandidateVerdict> = decision.candidates.iter().collect();
    candidates.sort_by_key(|c| c.agent_id != decision.chosen_agent_id);
    let rows: Vec<Vec<String>> = candidates.iter().map(|c| candidate_row(c, &decision.chosen_agent_id)).collect();
    text.push_str(&out::indent(&out::table(&["AGENT", "ACTIVE", "CAPACITY", "VERDICT"], &rows), 2));
    text.push('\n');
    text
}

pub fn explain_text(response: &ExplainAssignmentResponse, now: DateTime<Utc>) -> String {
    let mut text = match &response.task {
        Some(task) => task_text(task, now),
        None => String::new(),
    };
    if response.decisions.is_empty() {
        text.push_str("\nno assignment decision was taken for this task\n");
    }
    let total = response.decisions.len();
    for (index, decision) in response.decisions.iter().enumerate() {
        text.push('\n');
        text.push_str(&decision_text(decision, index, total));
    }
    text
}

pub fn settings_text(settings: &DistributionSettings) -> String {
    let inbound = if settings.inbound_department_id.is_empty() {
        "(none: inbound messages naming no department are dead-lettered)".to_owned()
    } else {
        settings.inbound_department_id.clone()
    };
    out::fields(&[
        ("default capacity", settings.default_capacity.to_string()),
        ("inbound department", inbound),
        (
            "auto distribution",
            format!(
                "{} (agent-sessions tenant setting)",
                if settings.auto_distribution_enabled { "on" } else { "off" }
            ),
        ),
    ])
}

pub fn capacity_text(capacity: &AgentCapacity) -> String {
    out::fields(&[
        ("agent", capacity.agent_id.clone()),
        ("capacity", capacity.capacity.to_string()),
        ("source", if capacity.overridden { "agent override" } else { "tenant default" }.to_owned()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;
    use dw_proto::distribution::v1::{DepartmentQueueStats, WaitingOnBreak};

    use crate::cli::{Cli, Command};

    const T0: i64 = 1_714_550_400; // 2024-05-01T08:00:00Z

    fn ts(seconds: i64) -> Option<prost_types::Timestamp> {
        Some(prost_types::Timestamp { seconds, nanos: 0 })
    }

    fn dur(seconds: i64) -> Option<prost_types::Duration> {
        Some(prost_types::Duration { seconds, nanos: 0 })
    }

    fn tasks_command(args: &[&str]) -> TasksCommand {
        let cli = Cli::try_parse_from(["dwctl", "tasks"].into_iter().chain(args.iter().copied())).unwrap();
        let Command::Tasks(command) = cli.command else { panic!("not a tasks command") };
        command
    }

    fn task() -> Task {
        Task {
            task_id: "0196-task".into(),
            protocol: "20240501000007".into(),
            department_id: "support".into(),
            channel: Channel::Whatsapp as i32,
            contact: Some(ClientContact {
                name: "Maria Souza".into(),
                phone: "+5511912345678".into(),
                contact_id: "crm-42".into(),
            }),
            priority: 5,
            subject: "Order 1234".into(),
            status: TaskStatus::Assigned as i32,
            agent_id: "ana".into(),
            created_at: ts(T0),
            assigned_at: ts(T0 + 2),
            version: 2,
            message_count: 1,
            last_message_at: ts(T0 + 60),
            ..Default::default()
        }
    }

    #[test]
    fn create_builds_the_request_from_the_options() {
        let TasksCommand::Create(args) = tasks_command(&[
            "create",
            "--department",
            "support",
            "--channel",
            "sms",
            "--client-name",
            "Maria Souza",
            "--phone",
            "+55 11 91234-5678",
            "--priority",
            "7",
            "--subject",
            " Order 1234 ",
        ]) else {
            panic!("not create")
        };
        let request = create_request("r-1".into(), args);
        assert_eq!(request.request_id, "r-1");
        assert_eq!(request.department_id, "support");
        assert_eq!(request.channel, Channel::Sms as i32);
        let contact = request.contact.unwrap();
        assert_eq!(contact.phone, "+5511912345678");
        assert_eq!(contact.name, "Maria Souza");
        assert_eq!(contact.contact_id, "");
        assert_eq!(request.priority, 7);
        assert_eq!(request.subject, "Order 1234");
    }

    #[test]
    fn search_builds_the_request_and_checks_the_range() {
        let command = tasks_command(&[
            "search",
            "--client-name",
            "maria",
            "--status",
            "queued",
            "--from",
            "2024-05-01",
            "--to",
            "2024-05-02",
            "--page-size",
            "20",
        ]);
        assert!(validate(&command).is_ok());
        let TasksCommand::Search(args) = command else { panic!("not search") };
        let request = search_request(args);
        assert_eq!(request.client_name, "maria");
        assert_eq!(request.status, TaskStatus::Queued as i32);
        assert_eq!(request.created_from.unwrap().seconds, 1_714_521_600);
        assert_eq!(request.created_to.unwrap().seconds, 1_714_521_600 + 86_400);
        assert_eq!(request.page_size, 20);
        assert_eq!(request.page_token, "");
        let backwards = tasks_command(&["search", "--from", "2024-05-02", "--to", "2024-05-01"]);
        assert!(validate(&backwards).unwrap_err().downcast_ref::<UsageError>().is_some());
        let TasksCommand::Search(args) = tasks_command(&["search"]) else { panic!("not search") };
        assert_eq!(search_request(args), SearchProtocolsRequest::default());
    }

    #[test]
    fn settings_updates_are_partial_and_need_one_change() {
        let settings = |args: &[&str]| {
            let TasksCommand::Settings(TaskSettingsCommand::Set(args)) =
                tasks_command(&[&["settings", "set"], args].concat())
            else {
                panic!("not settings set")
            };
            settings_request("r".into(), args)
        };
        let request = settings(&["--default-capacity", "3"]);
        assert_eq!((request.default_capacity, request.inbound_department_id), (Some(3), None));
        let request = settings(&["--inbound-department", "support"]);
        assert_eq!((request.default_capacity, request.inbound_department_id), (None, Some("support".into())));
        let request = settings(&["--no-inbound-department", "--default-capacity", "5"]);
        assert_eq!((request.default_capacity, request.inbound_department_id), (Some(5), Some(String::new())));
        let parse = |args: &[&str]| Cli::try_parse_from([&["dwctl", "tasks", "settings", "set"], args].concat());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--default-capacity", "0"]).is_err());
        assert!(parse(&["--default-capacity", "101"]).is_err());
        assert!(parse(&["--inbound-department", "a", "--no-inbound-department"]).is_err());
    }

    #[tokio::test]
    async fn search_follows_pages_only_with_all() {
        let page = |protocol: &str, next: &str| SearchProtocolsResponse {
            tasks: vec![Task { protocol: protocol.into(), ..Default::default() }],
            next_page_token: next.into(),
        };
        let pages = std::collections::HashMap::from([
            (String::new(), page("p3", "t2")),
            ("t2".to_owned(), page("p2", "t3")),
            ("t3".to_owned(), page("p1", "")),
        ]);
        let seen = std::sync::Mutex::new(Vec::new());
        let fetch = |request: SearchProtocolsRequest| {
            seen.lock().unwrap().push(request.page_token.clone());
            let page = pages.get(&request.page_token).cloned();
            async move { page.ok_or_else(|| tonic::Status::invalid_argument("bad token")) }
        };
        let one = search_pages(SearchProtocolsRequest::default(), false, fetch).await.unwrap();
        assert_eq!(one.tasks.len(), 1);
        assert_eq!(one.next_page_token, "t2");
        let all = search_pages(SearchProtocolsRequest::default(), true, fetch).await.unwrap();
        let protocols: Vec<&str> = all.tasks.iter().map(|t| t.protocol.as_str()).collect();
        assert_eq!(protocols, ["p3", "p2", "p1"]);
        assert_eq!(all.next_page_token, "");
        assert_eq!(*seen.lock().unwrap(), ["", "", "t2", "t3"]);
        let from_token = SearchProtocolsRequest { page_token: "t3".into(), ..Default::default() };
        assert_eq!(search_pages(from_token, true, fetch).await.unwrap().tasks.len(), 1);
        let stuck = |_| async { Ok(page("p", "same")) };
        let looping = SearchProtocolsRequest { page_token: "same".into(), ..Default::default() };
        assert!(search_pages(looping, true, stuck).await.is_err());
        let failing = |_| async { Err(tonic::Status::permission_denied("protocols.search")) };
        assert!(search_pages(SearchProtocolsRequest::default(), true, failing).await.is_err());
    }

    #[test]
    fn enums_render_as_short_names() {
        assert_eq!(channel(Channel::Whatsapp as i32), "whatsapp");
        assert_eq!(channel(Channel::Email as i32), "email");
        assert_eq!(channel(0), "-");
        assert_eq!(status(TaskStatus::Cancelled as i32), "cancelled");
        assert_eq!(status(42), "unknown(42)");
        assert_eq!(update_kind(Kind::Requeued as i32), "requeued");
        assert_eq!(update_kind(Kind::Current as i32), "current");
        assert_eq!(exclusion(Exclusion::AtCapacity as i32), "at capacity");
        assert_eq!(exclusion(Exclusion::DayNotStarted as i32), "service day not started");
    }

    #[test]
    fn task_text_shows_the_protocol_client_and_times() {
        let now = DateTime::from_timestamp(T0 + 600, 0).unwrap();
        let text = task_text(&task(), now);
        assert!(text.contains("protocol    20240501000007\n"), "{text}");
        assert!(text.contains("status      assigned\n"), "{text}");
        assert!(text.contains("client      Maria Souza\n"), "{text}");
        assert!(text.contains("contact id  crm-42\n"), "{text}");
        assert!(text.contains("assigned    2024-05-01T08:00:02Z (9m 58s ago)\n"), "{text}");
        assert!(text.contains("messages    1 (last 2024-05-01T08:01:00Z (9m 00s ago))\n"), "{text}");
        assert!(!text.contains("closed"), "{text}");
    }

    #[test]
    fn task_tables_have_one_row_per_task_and_a_page_hint() {
        let now = DateTime::from_timestamp(T0 + 90, 0).unwrap();
        let result = SearchProtocolsResponse { tasks: vec![task()], next_page_token: "abc".into() };
        let text = search_text(&result, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("PROTOCOL        STATUS    DEPARTMENT  AGENT  CHANNEL   PRIO"), "{text}");
        assert!(lines[1].starts_with("20240501000007  assigned  support     ana    whatsapp  5"), "{text}");
        assert!(lines[1].contains("1m 30s ago") && lines[1].ends_with("0196-task"), "{text}");
        assert_eq!(lines[2], "next page: --page-token abc  (or --all for every page)");
        assert_eq!(tasks_table(&[], now), "(none)\n");
    }

    #[test]
    fn watch_lines_name_the_kind_the_task_and_its_agent() {
        let update = TaskUpdate { kind: Kind::Assigned as i32, task: Some(task()), at: ts(T0 + 2) };
        let line = update_line(&update, Utc::now());
        assert!(line.starts_with("2024-05-01T08:00:02Z  assigned    20240501000007  assigned  support"), "{line}");
        assert!(line.contains("client Maria Souza +5511912345678  agent ana  messages 1  task 0196-task"), "{line}");
        assert!(!line.contains('\n'));
    }

    #[test]
    fn stats_render_a_table_and_the_clients_waiting_on_breaks() {
        let stats = GetQueueStatsResponse {
            departments: vec![
                DepartmentQueueStats {
                    department_id: "sales".into(),
                    waiting_tasks: 0,
                    agents_available: 2,
                    ..Default::default()
                },
                DepartmentQueueStats {
                    department_id: "support".into(),
                    waiting_tasks: 3,
                    oldest_wait: dur(302),
                    agents_available: 0,
                    agents_on_break: 1,
                    agents_exit_notified: 1,
                    agents_at_capacity: 2,
                    assigned_tasks: 7,
                    tasks_waiting_on_break: vec![WaitingOnBreak {
                        task_id: "t-9".into(),
                        protocol: "20240501000009".into(),
                        agent_id: "bruno".into(),
                        waited: dur(125),
                    }],
                },
            ],
            at: ts(T0),
        };
        let text = stats_text(&stats);
        assert!(text.starts_with("queues at 2024-05-01T08:00:00Z\n"), "{text}");
        assert!(
            text.contains(
                "DEPARTMENT  WAITING  OLDEST WAIT  ASSIGNED  AVAILABLE  ON BREAK  EXIT NOTIFIED  AT CAPACITY\n"
            )
        );
        assert!(
            text.contains("\nsales       0        -            0         2          0         0              0\n"),
            "{text}"
        );
        assert!(
            text.contains("\nsupport     3        5m 02s       7         0          1         1              2\n"),
            "{text}"
        );
        assert!(text.contains("clients waiting on an agent's break:\n  DEPARTMENT  PROTOCOL"), "{text}");
        assert!(text.contains("  support     20240501000009  bruno  2m 05s  t-9\n"), "{text}");
        let empty = stats_text(&GetQueueStatsResponse::default());
        assert!(empty.contains("(none)\n") && empty.contains("no client is waiting"), "{empty}");
    }

    #[test]
    fn explain_lists_the_chosen_agent_first_and_every_exclusion() {
        let verdict = |agent: &str, exclusion: Exclusion, active: i32| CandidateVerdict {
            agent_id: agent.into(),
            exclusion: exclusion as i32,
            active_tasks: active,
            capacity: 3,
        };
        let response = ExplainAssignmentResponse {
            task: Some(task()),
            decisions: vec![
                AssignmentDecision {
                    decision_id: "d-1".into(),
                    decided_at: ts(T0),
                    chosen_agent_id: String::new(),
                    candidates: vec![verdict("ana", Exclusion::DayNotStarted, 0)],
                    trigger: "task_created".into(),
                },
                AssignmentDecision {
                    decision_id: "d-2".into(),
                    decided_at: ts(T0 + 2),
                    chosen_agent_id: "ana".into(),
                    candidates: vec![
                        verdict("bruno", Exclusion::AtCapacity, 3),
                        verdict("ana", Exclusion::Unspecified, 1),
                        verdict("carla", Exclusion::LessIdleTime, 1),
                    ],
                    trigger: "agent_available".into(),
                },
            ],
        };
        let text = explain_text(&response, DateTime::from_timestamp(T0 + 10, 0).unwrap());
        assert!(text.contains("decision 1/2  d-1  at 2024-05-01T08:00:00Z  trigger task_created\n"), "{text}");
        assert!(text.contains("  chosen: nobody was eligible; the task stayed queued\n"), "{text}");
        assert!(text.contains("  ana    0       3         service day not started\n"), "{text}");
        assert!(
            text.contains("  chosen: ana\n  AGENT  ACTIVE  CAPACITY  VERDICT\n  ana    1       3         chosen\n")
        );
        assert!(text.contains("  bruno  3       3         at capacity\n"), "{text}");
        assert!(text.contains("  carla  1       3         eligible, lost on idle time"), "{text}");
        let none = explain_text(&ExplainAssignmentResponse::default(), Utc::now());
        assert!(none.contains("no assignment decision"), "{none}");
    }

    #[test]
    fn settings_and_capacity_render() {
        let settings = DistributionSettings {
            default_capacity: 3,
            auto_distribution_enabled: true,
            inbound_department_id: "support".into(),
        };
        assert_eq!(
            settings_text(&settings),
            "default capacity    3\ninbound department  support\nauto distribution   on (agent-sessions tenant setting)\n"
        );
        let text = settings_text(&DistributionSettings::default());
        assert!(text.contains("inbound department  (none: ") && text.contains("off"), "{text}");
        let text = capacity_text(&AgentCapacity { agent_id: "ana".into(), capacity: 5, overridden: true });
        assert!(text.contains("capacity  5\n") && text.contains("source    agent override\n"), "{text}");
    }

    #[test]
    fn every_task_message_renders_as_proto3_json() {
        let printer = Printer::new(true).unwrap();
        let value = printer.to_json(names::TASK, &task()).unwrap();
        assert_eq!(value["protocol"], "20240501000007");
        assert_eq!(value["status"], "TASK_STATUS_ASSIGNED");
        assert_eq!(value["channel"], "CHANNEL_WHATSAPP");
        assert_eq!(value["contact"]["phone"], "+5511912345678");
        assert_eq!(value["version"], "2");
        let update = TaskUpdate { kind: Kind::Requeued as i32, task: Some(task()), at: ts(T0) };
        let value = printer.to_json(names::TASK_UPDATE, &update).unwrap();
        assert_eq!(value["kind"], "KIND_REQUEUED");
        assert_eq!(value["task"]["agentId"], "ana");
    }
}
