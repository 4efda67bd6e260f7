//! `dwctl tasks …`: service tasks, protocols, queues and assignment.

use clap::{Args, Subcommand};
use dw_proto::distribution::v1::{Channel, TaskStatus};

use crate::cli::PageArgs;
use crate::parse;

#[derive(Debug, Subcommand)]
pub enum TasksCommand {
    /// Create a task (CreateTask; role `service` or `manager`); prints it with its protocol.
    Create(CreateTaskArgs),
    /// Show a task by id or by protocol (GetTask).
    Get {
        #[arg(long, value_parser = parse::non_empty, required_unless_present = "protocol", conflicts_with = "protocol")]
        task_id: Option<String>,
        /// Protocol number, e.g. 20260315000042.
        #[arg(long, value_parser = parse::non_empty)]
        protocol: Option<String>,
    },
    /// Take a queued task of one of your departments by hand (ClaimTask; role `agent`).
    Claim {
        #[arg(long, value_parser = parse::non_empty)]
        task_id: String,
    },
    /// Complete a task (CompleteTask).
    Complete {
        #[arg(long, value_parser = parse::non_empty)]
        task_id: String,
    },
    /// Transfer a task to another department's queue and/or to an agent (TransferTask); with
    /// neither, the task goes back into its own department's queue.
    Transfer {
        #[arg(long, value_parser = parse::non_empty)]
        task_id: String,
        /// Target department (default: the task's own).
        #[arg(long, value_parser = parse::non_empty)]
        department: Option<String>,
        /// Target agent (linked to the department and available).
        #[arg(long, value_parser = parse::non_empty)]
        agent: Option<String>,
    },
    /// Cancel a task (CancelTask).
    Cancel {
        #[arg(long, value_parser = parse::non_empty)]
        task_id: String,
        /// Why (free text).
        #[arg(long)]
        reason: Option<String>,
    },
    /// Search protocols, newest first (SearchProtocols; permission `protocols.search`). Prints one
    /// page and the next page token; --all follows every page.
    Search(SearchArgs),
    /// Your tasks (ListMyTasks).
    Mine {
        /// Include tasks completed or cancelled in the last 24 hours.
        #[arg(long)]
        include_closed: bool,
    },
    /// Your task updates as they happen (WatchMyTasks): your open tasks first, then every
    /// assignment, re-queue, transfer, completion and message. Ctrl-C stops.
    Watch {
        /// Exit after this many updates.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// Queues per department (GetQueueStats): waiting tasks, oldest wait, agents by state, tasks
    /// waiting on an agent's break.
    Stats {
        /// Only this department.
        #[arg(long, value_parser = parse::non_empty)]
        department: Option<String>,
    },
    /// Every assignment decision taken for a task, with each candidate's verdict
    /// (ExplainAssignment; role `manager`).
    Explain {
        #[arg(long, value_parser = parse::non_empty)]
        task_id: String,
    },
    /// The tenant's distribution settings (role `manager`).
    #[command(subcommand)]
    Settings(TaskSettingsCommand),
    /// Set an agent's capacity, overriding the tenant default (SetAgentCapacity; role `manager`).
    Capacity {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        /// Tasks the agent may hold at once (1-100); 0 removes the override.
        #[arg(long, value_parser = clap::value_parser!(i32).range(0..=100))]
        capacity: i32,
    },
    /// Erase a client's personal data on request (EraseClientData; role `manager` or `service`):
    /// their name, phone, tasks' subjects and messages read as empty from then on, everywhere;
    /// the tasks, protocols and timings stay. Cannot be undone.
    EraseClient {
        /// The client's phone (E.164).
        #[arg(long, value_parser = parse::phone)]
        phone: String,
        /// Why (e.g. the data-subject request's reference), kept in the erasure event.
        #[arg(long, value_parser = parse::non_empty)]
        reason: String,
    },
}

#[derive(Debug, Args)]
pub struct CreateTaskArgs {
    /// Department whose queue receives the task.
    #[arg(long, value_parser = parse::non_empty)]
    pub department: String,
    /// whatsapp, sms, voice, email or chat.
    #[arg(long, value_parser = parse::channel)]
    pub channel: Channel,
    /// The client's name.
    #[arg(long, value_parser = parse::non_empty)]
    pub client_name: String,
    /// The client's phone, E.164 (+5511912345678; spaces and dashes are dropped).
    #[arg(long, value_parser = parse::phone)]
    pub phone: String,
    /// CRM contact id, when known.
    #[arg(long, value_parser = parse::non_empty)]
    pub contact_id: Option<String>,
    /// 0 (lowest, the default) to 9 (highest).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(i32).range(0..=9))]
    pub priority: i32,
    /// What the task is about.
    #[arg(long)]
    pub subject: Option<String>,
}

#[derive(Debug, Args)]
#[command(mut_arg("page_token", |arg| arg.help("Fetch the page with this token (from a previous search's output)")))]
pub struct SearchArgs {
    /// Exact protocol.
    #[arg(long, value_parser = parse::non_empty)]
    pub protocol: Option<String>,
    /// Protocol prefix, e.g. a day: 20260315.
    #[arg(long, value_parser = parse::non_empty)]
    pub protocol_prefix: Option<String>,
    /// Part of the client's name (case- and accent-insensitive).
    #[arg(long, value_parser = parse::non_empty)]
    pub client_name: Option<String>,
    /// The client's phone, E.164.
    #[arg(long, value_parser = parse::phone)]
    pub phone: Option<String>,
    /// queued, assigned, completed or cancelled.
    #[arg(long, value_parser = parse::task_status)]
    pub status: Option<TaskStatus>,
    /// Only tasks of this department.
    #[arg(long, value_parser = parse::non_empty)]
    pub department: Option<String>,
    /// Only tasks of this agent.
    #[arg(long, value_parser = parse::non_empty)]
    pub agent: Option<String>,
    /// Tasks created at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse::timestamp)]
    pub from: Option<prost_types::Timestamp>,
    /// Tasks created before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse::timestamp)]
    pub to: Option<prost_types::Timestamp>,
    #[command(flatten)]
    pub paging: PageArgs,
}

#[derive(Debug, Subcommand)]
pub enum TaskSettingsCommand {
    /// Show the settings (GetDistributionSettings).
    Get,
    /// Change the settings (UpdateDistributionSettings); options not given keep their value.
    Set(SetDistributionSettingsArgs),
}

#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("change")
        .required(true)
        .multiple(true)
        .args(["default_capacity", "inbound_department", "no_inbound_department"])
))]
pub struct SetDistributionSettingsArgs {
    /// Tasks an agent may hold at once unless overridden per agent (1-100).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100))]
    pub default_capacity: Option<i32>,
    /// Department of the tasks opened by inbound client messages that name none.
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "no_inbound_department")]
    pub inbound_department: Option<String>,
    /// Clear the inbound department (such messages are then dead-lettered).
    #[arg(long)]
    pub no_inbound_department: bool,
    /// Change only if the settings are still at this version (from get); otherwise nothing
    /// changes and the current version is reported.
    #[arg(long)]
    pub expected_version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Command;
    use crate::testing::parse;

    #[test]
    fn task_commands_parse_and_check_their_options() {
        let cli = parse(&["tasks", "get", "--protocol", "20240501000001"]).unwrap();
        let Command::Tasks(TasksCommand::Get { task_id: None, protocol: Some(protocol) }) = cli.command else {
            panic!("wrong command")
        };
        assert_eq!(protocol, "20240501000001");
        assert!(parse(&["tasks", "get"]).is_err());
        assert!(parse(&["tasks", "get", "--task-id", "t", "--protocol", "p"]).is_err());
        let cli = parse(&["tasks", "transfer", "--task-id", "t", "--agent", "bruno"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Tasks(TasksCommand::Transfer { department: None, agent: Some(ref a), .. }) if a == "bruno"
        ));
        assert!(parse(&["tasks", "claim"]).is_err());
        assert!(parse(&["tasks", "capacity", "--agent", "ana", "--capacity", "0"]).is_ok());
        assert!(parse(&["tasks", "capacity", "--agent", "ana", "--capacity", "101"]).is_err());
        let create = ["tasks", "create", "--department", "d", "--client-name", "N", "--phone", "+14155550100"];
        assert!(parse(&[&create[..], &["--channel", "chat"]].concat()).is_ok());
        assert!(parse(&[&create[..], &["--channel", "fax"]].concat()).is_err());
        assert!(parse(&[&create[..], &["--channel", "chat", "--priority", "10"]].concat()).is_err());
        assert!(parse(&create).is_err(), "--channel is required");
        assert!(parse(&["tasks", "search", "--status", "open"]).is_err());
        assert!(parse(&["tasks", "search", "--all", "--page-token", "x"]).is_err());
        assert!(parse(&["tasks", "search", "--page-size", "201"]).is_err());
        let cli = parse(&["tasks", "erase-client", "--phone", "+55 11 98765-4321", "--reason", "LGPD 118"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Tasks(TasksCommand::EraseClient { ref phone, ref reason }) if phone == "+5511987654321" && reason == "LGPD 118"
        ));
        assert!(parse(&["tasks", "erase-client", "--phone", "+5511987654321"]).is_err(), "--reason is required");
        assert!(parse(&["tasks", "erase-client", "--phone", "abc", "--reason", "r"]).is_err());
        let cli = parse(&["tasks", "watch", "--limit", "3", "--json"]).unwrap();
        assert!(cli.global.json);
        assert!(matches!(cli.command, Command::Tasks(TasksCommand::Watch { limit: Some(3) })));
    }

    #[test]
    fn the_distribution_address_is_a_global_option_with_a_default() {
        let cli = parse(&["tasks", "mine"]).unwrap();
        assert_eq!(cli.global.distribution_addr, "http://127.0.0.1:50052");
        let cli = parse(&["tasks", "mine", "--distribution-addr", "http://10.0.0.5:50052"]).unwrap();
        assert_eq!(cli.global.distribution_addr, "http://10.0.0.5:50052");
        assert!(matches!(cli.command, Command::Tasks(TasksCommand::Mine { include_closed: false })));
    }
}
