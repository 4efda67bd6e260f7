//! The command line: global options and every subcommand.

use clap::{Args, Parser, Subcommand};
use dw_auth::Role;
use dw_proto::agentsessions::v1::Reason;
use dw_proto::distribution::v1::{Channel, TaskStatus};
use dw_proto::messaging::v1::{Channel as MessagingChannel, HeaderKind, MessageStatus, TemplateCategory};

use crate::parse;

const AFTER_HELP: &str = "\
Authentication: every RPC sends `authorization: Bearer <JWT>`. The token is --token (DW_TOKEN) when
given; otherwise dwctl mints one from --tenant, --sub and --role signed with --secret
(DW_JWT_SECRET).

Mutating RPCs send a request id: --request-id when given, else a fresh UUIDv7. Re-sending the same
request id returns the first result and changes nothing.

Exit status: 0 on success, 1 when an RPC or connection fails (the gRPC code, message and details
are printed to stderr), 2 for invalid usage.

Examples:
  export DW_JWT_SECRET=dev-secret-change-me-please
  dwctl demo seed --tenant demo
  dwctl --tenant demo --sub ana --role agent day start
  export DW_TOKEN=$(dwctl token --tenant demo --sub manager-1 --role manager)
  dwctl admin statuses
  dwctl events tail --from-start --limit 10
  dwctl --tenant demo --sub crm-bot --role service tasks create --department support \\
      --channel whatsapp --client-name 'Maria Souza' --phone +5511912345678
  dwctl --tenant demo --sub ana --role agent tasks watch
  dwctl demo inbound --tenant demo --phone +5511912345678 --name 'Maria Souza' --text 'Hello?'
  dwctl events tail --stream DW_DISTRIBUTION --from-start
  export DW_TOKEN=$(dwctl token --tenant demo --sub ana --role agent)
  dwctl contacts search --name jose
  dwctl templates list --channel whatsapp
  dwctl templates preview --template-id <ID> --var 'José' --var A-1234
  dwctl templates send --template-id <ID> --contact-id <CONTACT_ID> --var 'José' --var A-1234 \\
      --header-image-url https://images.example.com/acme/pedido.jpg
  dwctl messages wait --message-id <MESSAGE_ID> --status delivered
  dwctl notifications list --channel whatsapp
  dwctl notifications list --channel sms --status failed --from 2026-03-01
  dwctl notifications get --message-id <MESSAGE_ID>
  dwctl notifications subscribe --after 41
  dwctl notifications vapid-key
  export DW_TOKEN=$(dwctl token --tenant demo --sub manager-1 --role manager)
  dwctl webhooks create --url https://hooks.example.com/dw --event template.sent --event message.failed
  dwctl webhooks deliveries --webhook-id <WEBHOOK_ID>
  dwctl webhooks redeliver --delivery-id msg_<ID>";

/// Command-line client for the Digital Workspace: act on a service day as an agent, administer
/// agents and tenant settings as a manager, work service tasks, find CRM contacts and send them
/// WhatsApp/SMS templates, see the single-notifications log and live notifications, tail domain
/// events, seed demo data.
#[derive(Debug, Parser)]
#[command(name = "dwctl", version, after_long_help = AFTER_HELP)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOpts,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalOpts {
    /// agent-sessions gRPC address (day, admin, demo seed).
    #[arg(long, global = true, env = "DW_AGENT_SESSIONS_ADDR", default_value = "http://127.0.0.1:50051")]
    pub addr: String,

    /// task-distribution gRPC address (tasks, demo seed).
    #[arg(long, global = true, env = "DW_TASK_DISTRIBUTION_ADDR", default_value = "http://127.0.0.1:50052")]
    pub distribution_addr: String,

    /// messaging-templates gRPC address (templates, messages, contacts, demo seed).
    #[arg(long, global = true, env = "DW_MESSAGING_ADDR", default_value = "http://127.0.0.1:50053")]
    pub messaging_addr: String,

    /// notifications gRPC address (notifications, webhooks, demo seed).
    #[arg(long, global = true, env = "DW_NOTIFICATIONS_ADDR", default_value = "http://127.0.0.1:50054")]
    pub notifications_addr: String,

    /// Bearer token (JWT) to send; takes precedence over minting one.
    #[arg(long, global = true, env = "DW_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// Tenant of a minted token (also the tenant `demo seed` seeds).
    #[arg(long, global = true, env = "DW_TENANT")]
    pub tenant: Option<String>,

    /// Subject (agent or service id) of a minted token.
    #[arg(long, global = true, env = "DW_SUB")]
    pub sub: Option<String>,

    /// Role of a minted token: agent, manager or service (repeatable, or comma-separated).
    #[arg(long = "role", global = true, env = "DW_ROLE", value_delimiter = ',', value_parser = parse::role)]
    pub roles: Vec<Role>,

    /// HS256 signing secret for minting tokens (at least 16 bytes).
    #[arg(long, global = true, env = "DW_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// Lifetime of a minted token, in seconds.
    #[arg(long, global = true, default_value_t = 3600, value_parser = clap::value_parser!(i64).range(1..))]
    pub ttl_seconds: i64,

    /// Request id for a mutating RPC (default: a fresh UUIDv7).
    #[arg(long, global = true, value_parser = parse::non_empty)]
    pub request_id: Option<String>,

    /// Deadline of each unary RPC, in seconds [default: 10]. For `messages wait`: how long to wait
    /// for the status in all [default: 20].
    #[arg(long, global = true, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_seconds: Option<u64>,

    /// Print responses as proto3 JSON (streams: one JSON object per line).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print a token signed with --secret for --tenant, --sub and --role (and --ttl-seconds).
    Token,
    /// The calling agent's service day (ServiceDayService; token role `agent`).
    #[command(subcommand)]
    Day(DayCommand),
    /// Agents, permissions, departments, tenant settings, live board (AgentAdminService; role `manager`).
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Service tasks: protocols, queues, assignment (DistributionService at --distribution-addr).
    #[command(subcommand)]
    Tasks(TasksCommand),
    /// WhatsApp and SMS templates: register and change them (role `manager`), list, preview and
    /// send them (TemplateService at --messaging-addr).
    #[command(subcommand)]
    Templates(TemplatesCommand),
    /// Sent templates and their delivery status (TemplateService.GetMessage).
    #[command(subcommand)]
    Messages(MessagesCommand),
    /// CRM contacts: upsert (role `manager` or `service`), search, get (ContactService).
    #[command(subcommand)]
    Contacts(ContactsCommand),
    /// The single-notifications log (every template sent, with its status timeline) and your live
    /// notifications (NotificationService at --notifications-addr).
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// Outbound webhooks (Standard Webhooks, HMAC-SHA256 signed): register, list, delete, rotate
    /// secrets, inspect and redeliver deliveries (WebhookService at --notifications-addr; role
    /// `manager`).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Domain events on JetStream.
    #[command(subcommand)]
    Events(EventsCommand),
    /// Demo data.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[derive(Debug, Subcommand)]
pub enum DayCommand {
    /// Start the service day (StartServiceDay).
    Start,
    /// Notify an exit (NotifyExit); needs automatic distribution and a configured exit reason.
    NotifyExit {
        /// Exit reason id (see `dwctl day exit-reasons`).
        #[arg(long, value_parser = parse::non_empty)]
        reason: String,
    },
    /// Cancel the open exit notice (CancelExit).
    CancelExit,
    /// Start a break (StartBreak); closes an open exit notice.
    StartBreak {
        /// Break reason id (see `dwctl day break-reasons`).
        #[arg(long, value_parser = parse::non_empty)]
        reason: Option<String>,
    },
    /// End the break (EndBreak). Ending a break is a confirmed action: pass --confirm.
    EndBreak {
        /// Confirm ending the break (required).
        #[arg(long)]
        confirm: bool,
    },
    /// End the service day (EndServiceDay); closes an open break and exit notice first.
    End,
    /// The current state (GetMyState).
    State,
    /// Days, breaks and exits (GetMyInformation); without a range: the current (or last) day.
    Info {
        /// Days started at or after this time (RFC 3339 or YYYY-MM-DD).
        #[arg(long, value_parser = parse::timestamp)]
        from: Option<prost_types::Timestamp>,
        /// Days started before this time (RFC 3339 or YYYY-MM-DD; default with --from: now).
        #[arg(long, value_parser = parse::timestamp, requires = "from")]
        to: Option<prost_types::Timestamp>,
    },
    /// The caller's granted permissions (GetMyPermissions).
    Permissions,
    /// The tenant's exit reasons and whether exits are available (ListExitReasons).
    ExitReasons,
    /// The tenant's break reasons (ListBreakReasons).
    BreakReasons,
    /// Workspace deep links (GetWorkspaceLinks).
    Links,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Register an agent (RegisterAgent); the agent id is the `sub` of their tokens.
    RegisterAgent {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        /// Display name.
        #[arg(long, value_parser = parse::non_empty)]
        name: String,
    },
    /// Show an agent (GetAgent).
    GetAgent {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
    },
    /// Link an agent to a department (LinkDepartment).
    LinkDepartment {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        #[arg(long, value_parser = parse::non_empty)]
        department: String,
    },
    /// Unlink an agent from a department (UnlinkDepartment).
    UnlinkDepartment {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        #[arg(long, value_parser = parse::non_empty)]
        department: String,
    },
    /// Grant a permission of the catalog to an agent (GrantPermission).
    Grant {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        /// Permission name (see `dwctl admin catalog`).
        #[arg(long, value_parser = parse::non_empty)]
        permission: String,
    },
    /// Revoke a permission from an agent (RevokePermission).
    Revoke {
        #[arg(long, value_parser = parse::non_empty)]
        agent: String,
        #[arg(long, value_parser = parse::non_empty)]
        permission: String,
    },
    /// The permission catalog (ListPermissionCatalog).
    Catalog,
    /// The tenant settings (GetTenantSettings).
    GetSettings,
    /// Change tenant settings (GetTenantSettings, then UpdateTenantSettings with the result).
    /// Options not given keep their current value; a given reason list replaces the current one.
    SetSettings(SetSettingsArgs),
    /// The supervisor board (ListAgentStatuses); follows every page unless --page-token is given.
    Statuses {
        /// Only agents linked to this department.
        #[arg(long, value_parser = parse::non_empty)]
        department: Option<String>,
        /// Page size (1-500).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=500))]
        page_size: Option<i32>,
        /// Fetch only the page with this token (prints the next page token).
        #[arg(long)]
        page_token: Option<String>,
    },
    /// The live board (WatchAgentStatuses): the current board, then every change. Ctrl-C stops.
    Watch {
        /// Only agents linked to this department.
        #[arg(long, value_parser = parse::non_empty)]
        department: Option<String>,
        /// Exit after this many updates.
        #[arg(long)]
        limit: Option<u64>,
    },
}

#[derive(Debug, Args)]
pub struct SetSettingsArgs {
    /// Automatic distribution on or off (true/false, yes/no, on/off).
    #[arg(long, value_parser = clap::builder::BoolishValueParser::new())]
    pub auto_distribution: Option<bool>,
    /// Exit reason as id=Label (repeatable; replaces the current exit reasons).
    #[arg(long = "exit-reason", value_parser = parse::reason, conflicts_with = "no_exit_reasons")]
    pub exit_reasons: Vec<Reason>,
    /// Remove every exit reason.
    #[arg(long)]
    pub no_exit_reasons: bool,
    /// Break reason as id=Label (repeatable; replaces the current break reasons).
    #[arg(long = "break-reason", value_parser = parse::reason, conflicts_with = "no_break_reasons")]
    pub break_reasons: Vec<Reason>,
    /// Remove every break reason.
    #[arg(long)]
    pub no_break_reasons: bool,
    /// Ticket workspace deep link (https URL; an empty string removes it).
    #[arg(long)]
    pub ticket_workspace_url: Option<String>,
}

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
    /// Page size (1-200; server default 50).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=200))]
    pub page_size: Option<i32>,
    /// Fetch the page with this token (from a previous search's output).
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow every page and print all the results.
    #[arg(long)]
    pub all: bool,
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
}

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Register a template (CreateTemplate; role `manager`).
    Create(CreateTemplateArgs),
    /// Change a template's content (GetTemplate, then UpdateTemplate; role `manager`): the options
    /// given replace those parts of the current content, the others are kept. The channel and the
    /// name cannot change.
    Update(UpdateTemplateArgs),
    /// Archive a template (ArchiveTemplate; role `manager`): it can no longer be sent.
    Archive {
        #[arg(long, value_parser = parse::non_empty)]
        template_id: String,
    },
    /// Show a template (GetTemplate).
    Get {
        #[arg(long, value_parser = parse::non_empty)]
        template_id: String,
    },
    /// Templates by name (ListTemplates). Prints one page and the next page token; --all follows
    /// every page.
    List(ListTemplatesArgs),
    /// Render a template with variables (PreviewTemplate): the text, every problem a send would
    /// hit, and for SMS the encoding (GSM-7 or UCS-2), its units and the number of segments.
    Preview(PreviewTemplateArgs),
    /// Send a template to a phone or a CRM contact (SendTemplate; permission
    /// `templates.whatsapp.send` or `templates.sms.send`). Prints the message, status `requested`:
    /// delivery follows (see `dwctl messages wait`).
    Send(SendTemplateArgs),
}

#[derive(Debug, Args)]
pub struct CreateTemplateArgs {
    /// whatsapp or sms.
    #[arg(long, value_parser = parse::messaging_channel)]
    pub channel: MessagingChannel,
    /// Lower-case letters, digits and `_`, starting with a letter (unique per channel).
    #[arg(long, value_parser = parse::non_empty)]
    pub name: String,
    /// Language tag, e.g. pt_BR, en_US, es.
    #[arg(long, value_parser = parse::non_empty)]
    pub language: String,
    /// utility, marketing or authentication.
    #[arg(long, value_parser = parse::template_category)]
    pub category: TemplateCategory,
    /// The text, with positional variables {{1}}..{{n}}.
    #[arg(long)]
    pub body: String,
    #[command(flatten)]
    pub content: ContentOptions,
}

#[derive(Debug, Args)]
pub struct UpdateTemplateArgs {
    #[arg(long, value_parser = parse::non_empty)]
    pub template_id: String,
    /// Language tag, e.g. pt_BR, en_US, es.
    #[arg(long, value_parser = parse::non_empty)]
    pub language: Option<String>,
    /// utility, marketing or authentication.
    #[arg(long, value_parser = parse::template_category)]
    pub category: Option<TemplateCategory>,
    /// The text, with positional variables {{1}}..{{n}}.
    #[arg(long)]
    pub body: Option<String>,
    #[command(flatten)]
    pub content: ContentOptions,
    /// Remove every default metadata entry.
    #[arg(long, conflicts_with = "metadata")]
    pub clear_metadata: bool,
}

/// The optional parts of a template's content. An empty value (`--footer ''`) removes that part.
#[derive(Debug, Args, Default)]
pub struct ContentOptions {
    /// none, text or image (WhatsApp only). Default: image with --header-image-url, text with
    /// --header-text, otherwise none (update: the current kind).
    #[arg(long, value_parser = parse::header_kind)]
    pub header_kind: Option<HeaderKind>,
    /// Default header title (header kind text; at most 60 characters; a send may override it).
    #[arg(long)]
    pub header_text: Option<String>,
    /// Default header image, an https URL (header kind image; a send may override it).
    #[arg(long)]
    pub header_image_url: Option<String>,
    /// Footer text (WhatsApp).
    #[arg(long)]
    pub footer: Option<String>,
    /// The department the template belongs to (none: every department).
    #[arg(long)]
    pub department: Option<String>,
    /// Default webhook (the automation a send triggers), an https URL.
    #[arg(long)]
    pub webhook: Option<String>,
    /// Default metadata as key=value (repeatable; replaces the current metadata on update).
    #[arg(long = "metadata", value_parser = parse::key_value)]
    pub metadata: Vec<(String, String)>,
}

#[derive(Debug, Args)]
pub struct ListTemplatesArgs {
    /// whatsapp or sms.
    #[arg(long, value_parser = parse::messaging_channel)]
    pub channel: Option<MessagingChannel>,
    /// Only templates of this department.
    #[arg(long, value_parser = parse::non_empty)]
    pub department: Option<String>,
    /// Part of the name.
    #[arg(long, value_parser = parse::non_empty)]
    pub name: Option<String>,
    /// Include archived templates.
    #[arg(long)]
    pub include_archived: bool,
    /// Page size (1-200; server default 50).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=200))]
    pub page_size: Option<i32>,
    /// Fetch the page with this token (from a previous list's output).
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow every page and print all the templates.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Args)]
pub struct PreviewTemplateArgs {
    #[arg(long, value_parser = parse::non_empty)]
    pub template_id: String,
    /// The value of {{1}}, then {{2}}, ... (repeat in order).
    #[arg(long = "var", allow_hyphen_values = true)]
    pub vars: Vec<String>,
    /// Header title instead of the template's (header kind text).
    #[arg(long)]
    pub header_text: Option<String>,
    /// Header image instead of the template's, an https URL (header kind image).
    #[arg(long)]
    pub header_image_url: Option<String>,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("recipient").required(true).args(["phone", "contact_id"])))]
pub struct SendTemplateArgs {
    #[arg(long, value_parser = parse::non_empty)]
    pub template_id: String,
    /// The recipient's phone, E.164 (+5511912345678; spaces and dashes are dropped).
    #[arg(long, value_parser = parse::phone)]
    pub phone: Option<String>,
    /// A CRM contact (the phone is the contact's; see `dwctl contacts search`).
    #[arg(long, value_parser = parse::non_empty)]
    pub contact_id: Option<String>,
    /// The value of {{1}}, then {{2}}, ... (repeat in order).
    #[arg(long = "var", allow_hyphen_values = true)]
    pub vars: Vec<String>,
    /// Header title instead of the template's (header kind text).
    #[arg(long)]
    pub header_text: Option<String>,
    /// Header image instead of the template's, an https URL (header kind image).
    #[arg(long)]
    pub header_image_url: Option<String>,
    /// Department of the send (default: the template's).
    #[arg(long, value_parser = parse::non_empty)]
    pub department: Option<String>,
    /// The automation the send triggers, an https URL (default: the template's).
    #[arg(long)]
    pub webhook: Option<String>,
    /// Metadata as key=value (repeatable), merged over the template's defaults.
    #[arg(long = "metadata", value_parser = parse::key_value)]
    pub metadata: Vec<(String, String)>,
    /// Additional information (free text, at most 2,000 characters).
    #[arg(long)]
    pub info: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum MessagesCommand {
    /// A sent message with its status history (GetMessage).
    Get {
        #[arg(long, value_parser = parse::non_empty)]
        message_id: String,
    },
    /// Poll GetMessage until the message reaches --status (or a later one: `read` satisfies
    /// `delivered`), then print it. Fails when the message fails first, or after
    /// --timeout-seconds (default 20).
    Wait {
        #[arg(long, value_parser = parse::non_empty)]
        message_id: String,
        /// dispatched, delivered, read or failed.
        #[arg(long, default_value = "delivered", value_parser = parse::message_status)]
        status: MessageStatus,
        /// Poll interval, in milliseconds.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(50..=60_000))]
        interval_ms: u64,
    },
}

#[derive(Debug, Subcommand)]
pub enum ContactsCommand {
    /// Create or update the contact with this phone (UpsertContact; role `manager` or `service`).
    Upsert {
        /// The client's name.
        #[arg(long, value_parser = parse::non_empty)]
        name: String,
        /// E.164 (+5511912345678; spaces and dashes are dropped).
        #[arg(long, value_parser = parse::phone)]
        phone: String,
        /// The contact's id in the tenant's CRM.
        #[arg(long, value_parser = parse::non_empty)]
        external_id: Option<String>,
        /// A tag (repeatable).
        #[arg(long = "tag", value_parser = parse::non_empty)]
        tags: Vec<String>,
    },
    /// Find contacts by name (partial, case- and accent-insensitive, best first) or by phone
    /// (SearchContacts).
    Search {
        #[arg(long, value_parser = parse::non_empty, required_unless_present = "phone", conflicts_with = "phone")]
        name: Option<String>,
        /// E.164.
        #[arg(long, value_parser = parse::phone)]
        phone: Option<String>,
        /// At most this many (1-100; server default 20).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100))]
        page_size: Option<i32>,
    },
    /// Show a contact (GetContact).
    Get {
        #[arg(long, value_parser = parse::non_empty)]
        contact_id: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum NotificationsCommand {
    /// The single-notifications log, newest first (ListNotifications; agents need permission
    /// `notifications.view` and see their own sends, managers and services the whole tenant's).
    /// Prints one page and the next page token; --all follows every page.
    List(ListNotificationsArgs),
    /// One send with its status timeline (GetNotification).
    Get {
        #[arg(long, value_parser = parse::non_empty)]
        message_id: String,
    },
    /// Your notifications as they happen (Subscribe; role `agent`): a client writes on one of
    /// your tasks, a task is assigned to you, a send of yours failed. One line each: sequence,
    /// kind, time, title, body (--json: one object per line). Ctrl-C stops; on exit the last
    /// sequence is printed to stderr, to resume with --after.
    Subscribe {
        /// Resume after this sequence number: everything after it, then live ones. Default (0):
        /// only new notifications.
        #[arg(long, default_value_t = 0)]
        after: u64,
        /// Without --after: first the latest this-many notifications already kept (0-100).
        #[arg(long, default_value_t = 0, conflicts_with = "after", value_parser = clap::value_parser!(u32).range(0..=100))]
        backlog: u32,
        /// Exit after this many notifications.
        #[arg(long)]
        limit: Option<u64>,
    },
    /// The VAPID public key (base64url) browsers pass as `applicationServerKey` to
    /// `pushManager.subscribe` (GetVapidPublicKey).
    VapidKey,
    /// Register a browser push subscription of yours (EnableBrowserNotifications): every new
    /// client message on one of your tasks is pushed to it.
    EnablePush {
        /// The subscription's push service URL.
        #[arg(long, value_parser = parse::non_empty)]
        endpoint: String,
        /// The subscription's P-256 public key (base64url, uncompressed point).
        #[arg(long, value_parser = parse::non_empty)]
        p256dh: String,
        /// The subscription's authentication secret (base64url, 16 bytes).
        #[arg(long, value_parser = parse::non_empty)]
        auth: String,
    },
    /// Remove a browser push subscription of yours (DisableBrowserNotifications).
    DisablePush {
        /// The subscription's push service URL.
        #[arg(long, value_parser = parse::non_empty)]
        endpoint: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Register a webhook (CreateWebhook). Prints it and its signing secret (`whsec_…`), which is
    /// shown only this once.
    Create {
        /// The URL the events are POSTed to.
        #[arg(long, value_parser = parse::non_empty)]
        url: String,
        /// A free-text description.
        #[arg(long)]
        description: Option<String>,
        /// Event type to deliver (repeatable, or comma-separated): template.sent,
        /// message.dispatched, message.delivered, message.read, message.failed.
        #[arg(long = "event", required = true, value_delimiter = ',', value_parser = parse::webhook_event)]
        events: Vec<String>,
    },
    /// Every webhook of the tenant, disabled ones included (ListWebhooks).
    List,
    /// Delete (disable) a webhook (DeleteWebhook).
    Delete {
        #[arg(long, value_parser = parse::non_empty)]
        webhook_id: String,
    },
    /// Replace a webhook's signing secret (RotateWebhookSecret); the new secret is shown once.
    RotateSecret {
        #[arg(long, value_parser = parse::non_empty)]
        webhook_id: String,
    },
    /// A webhook's deliveries, newest first, with every attempt (status code, latency, error) and
    /// the next retry (ListDeliveries).
    Deliveries {
        #[arg(long, value_parser = parse::non_empty)]
        webhook_id: String,
        /// How many deliveries (1-200; server default 50).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=200))]
        page_size: Option<i32>,
    },
    /// Schedule a delivery again now, with the same `webhook-id` (RedeliverWebhook). The id is
    /// the `msg_…` of `webhooks deliveries` (or the `webhook-id` header), or the plain UUID.
    Redeliver {
        #[arg(long, value_parser = parse::delivery_id)]
        delivery_id: String,
    },
}

#[derive(Debug, Args)]
pub struct ListNotificationsArgs {
    /// whatsapp or sms.
    #[arg(long, value_parser = parse::messaging_channel)]
    pub channel: Option<MessagingChannel>,
    /// requested, dispatched, delivered, read or failed (the send's current status).
    #[arg(long, value_parser = parse::message_status)]
    pub status: Option<MessageStatus>,
    /// Only sends of this agent.
    #[arg(long, value_parser = parse::non_empty)]
    pub agent: Option<String>,
    /// Only sends of this template.
    #[arg(long, value_parser = parse::non_empty)]
    pub template_id: Option<String>,
    /// Only sends of this department.
    #[arg(long, value_parser = parse::non_empty)]
    pub department: Option<String>,
    /// Only sends to this phone, E.164 (+5511912345678; spaces and dashes are dropped).
    #[arg(long, value_parser = parse::phone)]
    pub recipient: Option<String>,
    /// Sends requested at or after this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse::timestamp)]
    pub from: Option<prost_types::Timestamp>,
    /// Sends requested before this time (RFC 3339 or YYYY-MM-DD).
    #[arg(long, value_parser = parse::timestamp)]
    pub to: Option<prost_types::Timestamp>,
    /// Page size (1-200; server default 50).
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..=200))]
    pub page_size: Option<i32>,
    /// Fetch the page with this token (from a previous list's output).
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "all")]
    pub page_token: Option<String>,
    /// Follow every page and print all the sends.
    #[arg(long)]
    pub all: bool,
}

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events from an ordered ephemeral JetStream consumer: stream sequence, subject, all
    /// headers and the payload decoded by its `ce-type` (any `dw.*` event: agent sessions,
    /// distribution, messaging; hex when the type is unknown). Any stream: --stream DW_DISTRIBUTION.
    Tail(TailArgs),
}

#[derive(Debug, Args)]
pub struct TailArgs {
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream stream name (DW_AGENT_SESSIONS, DW_DISTRIBUTION, DW_MESSAGING, ...).
    #[arg(long, env = "DW_AGENT_SESSIONS_STREAM", default_value = "DW_AGENT_SESSIONS")]
    pub stream: String,
    /// Subject filter (wildcards allowed), e.g. `dw.agentsessions.demo.>`.
    #[arg(long)]
    pub subject: Option<String>,
    /// Start at the first event still in the stream (default: only new events).
    #[arg(long, conflicts_with = "from_seq")]
    pub from_start: bool,
    /// Start at this stream sequence.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub from_seq: Option<u64>,
    /// Exit after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Exit when no event arrives for this many seconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout_seconds: Option<u64>,
}

#[derive(Debug, Subcommand)]
pub enum DemoCommand {
    /// Idempotently seed a tenant (settings, agents ana and bruno, departments, permissions) as
    /// `manager-1`; when task-distribution answers (--distribution-addr), also its settings
    /// (default capacity 3, inbound department support); when messaging-templates answers
    /// (--messaging-addr), WhatsApp and SMS templates (those missing by name) and CRM contacts
    /// (as `crm-bot`). Then print tokens and commands to act as ana, as the manager and as the CRM
    /// (`crm-bot`, role service). Needs --secret (DW_JWT_SECRET); the tenant is --tenant
    /// (DW_TENANT), default `demo`. When notifications answers (--notifications-addr), the
    /// notification examples are printed too (ana's `notifications.view` comes with every
    /// permission of the catalog).
    Seed,
    /// Publish a `dw.messaging.v1.InboundMessageReceived` event to JetStream the way the messaging
    /// service will (a client wrote): subject `<prefix>.<tenant>.inbound.received`, with the
    /// CloudEvents headers. Creates the stream when missing. Needs --tenant; no token.
    Inbound(Box<InboundArgs>),
}

#[derive(Debug, Args)]
pub struct InboundArgs {
    /// The client's phone, E.164 (+5511912345678; spaces and dashes are dropped).
    #[arg(long, value_parser = parse::phone)]
    pub phone: String,
    /// The client's name.
    #[arg(long, value_parser = parse::non_empty)]
    pub name: String,
    /// The message text.
    #[arg(long)]
    pub text: String,
    /// whatsapp or sms.
    #[arg(long, default_value = "whatsapp", value_parser = parse::messaging_channel)]
    pub channel: dw_proto::messaging::v1::Channel,
    /// The contact's default department (default: none; task-distribution then uses the tenant's
    /// inbound department, see `dwctl tasks settings`).
    #[arg(long, value_parser = parse::non_empty)]
    pub department: Option<String>,
    /// CRM contact id, when the phone matched one.
    #[arg(long, value_parser = parse::non_empty)]
    pub contact_id: Option<String>,
    /// Our message id (default: a fresh UUIDv7).
    #[arg(long, value_parser = parse::non_empty)]
    pub message_id: Option<String>,
    /// NATS server URL.
    #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
    pub nats_url: String,
    /// JetStream stream (created with subjects `<subject-prefix>.>` when missing).
    #[arg(long, env = "DW_MESSAGING_STREAM", default_value = "DW_MESSAGING")]
    pub stream: String,
    /// Subject prefix of the messaging context.
    #[arg(long, env = "DW_MESSAGING_SUBJECT_PREFIX", default_value = "dw.messaging", value_parser = parse::subject_prefix)]
    pub subject_prefix: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("dwctl").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after_the_subcommand() {
        let cli = parse(&["day", "state", "--tenant", "acme", "--sub", "ana", "--role", "agent,manager"]).unwrap();
        assert_eq!(cli.global.tenant.as_deref(), Some("acme"));
        assert_eq!(cli.global.roles, vec![Role::Agent, Role::Manager]);
        assert!(matches!(cli.command, Command::Day(DayCommand::State)));
        let cli = parse(&["--json", "--role", "agent", "--role", "service", "token"]).unwrap();
        assert!(cli.global.json);
        assert_eq!(cli.global.roles, vec![Role::Agent, Role::Service]);
    }

    #[test]
    fn set_settings_parses_reasons_and_booleans() {
        let cli = parse(&[
            "admin",
            "set-settings",
            "--auto-distribution",
            "true",
            "--exit-reason",
            "end-of-shift=End of shift",
            "--exit-reason",
            "meeting=Meeting",
            "--break-reason",
            "lunch=Lunch",
        ])
        .unwrap();
        let Command::Admin(AdminCommand::SetSettings(args)) = cli.command else { panic!("wrong command") };
        assert_eq!(args.auto_distribution, Some(true));
        assert_eq!(args.exit_reasons.len(), 2);
        assert_eq!(args.exit_reasons[0].label, "End of shift");
        assert_eq!(args.break_reasons[0].id, "lunch");
        assert!(parse(&["admin", "set-settings", "--exit-reason", "nolabel"]).is_err());
        assert!(parse(&["admin", "set-settings", "--exit-reason", "a=A", "--no-exit-reasons"]).is_err());
    }

    #[test]
    fn invalid_values_are_usage_errors() {
        assert!(parse(&["--role", "root", "token"]).is_err());
        assert!(parse(&["day", "info", "--from", "yesterday"]).is_err());
        assert!(parse(&["day", "notify-exit"]).is_err());
        assert!(parse(&["day", "info", "--to", "2024-05-01"]).is_err());
        assert!(parse(&["events", "tail", "--from-start", "--from-seq", "3"]).is_err());
        let cli = parse(&["day", "end-break"]).unwrap();
        assert!(matches!(cli.command, Command::Day(DayCommand::EndBreak { confirm: false })));
    }

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
