//! `dwctl tasks …`: DistributionService — service tasks, protocols, queues and assignment.

mod queue_text;
mod task_text;

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use dw_proto::distribution::v1::distribution_service_client::DistributionServiceClient;
use dw_proto::distribution::v1::get_task_request::Key;
use dw_proto::distribution::v1::{
    CancelTaskRequest, ClaimTaskRequest, ClientContact, CompleteTaskRequest, CreateTaskRequest, EraseClientDataRequest,
    ExplainAssignmentRequest, GetDistributionSettingsRequest, GetQueueStatsRequest, GetTaskRequest, ListMyTasksRequest,
    ListMyTasksResponse, SearchProtocolsRequest, SetAgentCapacityRequest, Task, TransferTaskRequest,
    UpdateDistributionSettingsRequest, WatchMyTasksRequest,
};

use self::queue_text::{capacity_text, explain_text, settings_text, stats_text};
use self::task_text::{search_text, task_text, tasks_table, update_line};
use crate::cli::{CreateTaskArgs, SearchArgs, SetDistributionSettingsArgs, TaskSettingsCommand, TasksCommand};
use crate::failure::UsageError;
use crate::output::{Printer, names};
use crate::rpc::Rpc;
use crate::{paging, parse, streaming};

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate(command: &TasksCommand) -> Result<()> {
    match command {
        TasksCommand::Search(args) => Ok(parse::ordered_range(args.from.as_ref(), args.to.as_ref())?),
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
            let follow = args.paging.all;
            let result = paging::collect(search_request(args), follow, |request| {
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
            let stream = client.watch_my_tasks(rpc.stream_request(WatchMyTasksRequest {})).await?.into_inner();
            printer.note("watching your tasks (Ctrl-C to stop)");
            streaming::print_each(stream, limit, |update| {
                printer.emit_line(names::TASK_UPDATE, &update, |update| update_line(update, Utc::now()))
            })
            .await
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
        TasksCommand::EraseClient { phone, reason } => {
            let request = EraseClientDataRequest { request_id: rpc.request_id(), phone, reason };
            let response = client.erase_client_data(rpc.request(request)).await?;
            printer.emit(names::ERASE_CLIENT_DATA, &response.into_inner(), |erased| {
                crate::output::fields(&[
                    ("erasure", erased.erasure_id.clone()),
                    ("tasks erased", erased.tasks_erased.to_string()),
                ])
            })
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

/// A partial update: only the options given are set, and the mask names exactly them.
pub fn settings_request(request_id: String, args: SetDistributionSettingsArgs) -> UpdateDistributionSettingsRequest {
    let inbound_department_id = if args.no_inbound_department { Some(String::new()) } else { args.inbound_department };
    let paths = [
        args.default_capacity.is_some().then_some("default_capacity"),
        inbound_department_id.is_some().then_some("inbound_department_id"),
    ];
    let paths: Vec<&str> = paths.into_iter().flatten().collect();
    UpdateDistributionSettingsRequest {
        request_id,
        default_capacity: args.default_capacity,
        inbound_department_id,
        update_mask: Some(crate::admin::field_mask(&paths)),
        expected_version: args.expected_version,
    }
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
        page_size: args.paging.page_size.unwrap_or(0),
        page_token: args.paging.page_token.unwrap_or_default(),
        ..Default::default()
    }
}

fn print_task(printer: &Printer, task: &Task, now: DateTime<Utc>) -> Result<()> {
    printer.emit(names::TASK, task, |task| task_text(task, now))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dw_proto::distribution::v1::{Channel, TaskStatus};

    use crate::cli::Command;
    use crate::testing::{T0, parse, ts};

    fn tasks_command(args: &[&str]) -> TasksCommand {
        let cli = parse(&[&["tasks"], args].concat()).unwrap();
        let Command::Tasks(command) = cli.command else { panic!("not a tasks command") };
        command
    }

    /// A task assigned to ana, with one client message.
    pub(super) fn task() -> Task {
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
        let request = settings(&["--default-capacity", "3", "--expected-version", "2"]);
        assert_eq!(request.update_mask, Some(crate::admin::field_mask(&["default_capacity"])));
        assert_eq!(request.expected_version, Some(2));
        assert_eq!((request.default_capacity, request.inbound_department_id), (Some(3), None));
        let request = settings(&["--inbound-department", "support"]);
        assert_eq!((request.default_capacity, request.inbound_department_id), (None, Some("support".into())));
        let request = settings(&["--no-inbound-department", "--default-capacity", "5"]);
        let both = crate::admin::field_mask(&["default_capacity", "inbound_department_id"]);
        assert_eq!((request.update_mask, request.expected_version), (Some(both), None));
        assert_eq!((request.default_capacity, request.inbound_department_id), (Some(5), Some(String::new())));
        let parse = |args: &[&str]| crate::testing::parse(&[&["tasks", "settings", "set"], args].concat());
        assert!(parse(&[]).is_err());
        assert!(parse(&["--expected-version", "1"]).is_err(), "a version alone changes nothing");
        assert!(parse(&["--default-capacity", "0"]).is_err());
        assert!(parse(&["--default-capacity", "101"]).is_err());
        assert!(parse(&["--inbound-department", "a", "--no-inbound-department"]).is_err());
    }
}
