//! The command line: global options and every subcommand.

mod admin;
mod day;
mod demo;
mod events;
mod messaging;
mod notifications;
mod paging;
mod tasks;
mod webhooks;

use clap::{Args, Parser, Subcommand};
use dw_auth::Role;

pub use self::admin::{AdminCommand, SetSettingsArgs};
pub use self::day::DayCommand;
pub use self::demo::{DemoCommand, InboundArgs};
pub use self::events::{EventsCommand, LogArgs, StoreOwner, TailArgs};
pub use self::messaging::{
    ContactsCommand, ContentOptions, CreateTemplateArgs, ListTemplatesArgs, MessagesCommand, PreviewTemplateArgs,
    ProvidersCommand, SendTemplateArgs, SetProvidersArgs, TemplatesCommand, UpdateTemplateArgs,
};
pub use self::notifications::{ListNotificationsArgs, NotificationsCommand};
pub use self::paging::PageArgs;
pub use self::tasks::{CreateTaskArgs, SearchArgs, SetDistributionSettingsArgs, TaskSettingsCommand, TasksCommand};
pub use self::webhooks::WebhooksCommand;
use crate::parse;

const AFTER_HELP: &str = "\
Authentication: every RPC sends `authorization: Bearer <JWT>`. The token is, first found:
--token (DWCTL_TOKEN, or DW_TOKEN), the file --token-file (DWCTL_TOKEN_FILE; e.g. a token your
identity provider issued), else one dwctl mints from --tenant, --sub and --role signed with
--secret (DW_JWT_SECRET) or --secret-file (DW_JWT_SECRET_FILE): development only, the services
accept minted tokens only when they run with that shared secret rather than DW_JWT_JWKS_URL.

TLS: an https:// address (--addr and the other *-addr options) is reached over TLS, checked
against the system's roots or --ca-file (DWCTL_CA_FILE); --cert-file and --key-file
(DWCTL_CERT_FILE, DWCTL_KEY_FILE) present a client certificate to services that require one
(DW_GRPC_TLS_CLIENT_CA_FILE). http:// addresses ignore these options.

Mutating RPCs send a request id: --request-id when given, else a fresh UUIDv7. Re-sending the same
request id returns the first result and changes nothing.

Exit status: 0 on success, 1 when an RPC or connection fails (the gRPC code, message and details
are printed to stderr), 2 for invalid usage.

Examples:
  export DW_JWT_SECRET=dev-secret-change-me-please
  dwctl demo seed --tenant demo
  dwctl --addr https://agent-sessions.example.com:50051 --ca-file ca.crt \\
      --cert-file dwctl.crt --key-file dwctl.key admin statuses
  dwctl --tenant demo --sub ana --role agent day start
  export DW_TOKEN=$(dwctl token --tenant demo --sub manager-1 --role manager)
  dwctl admin statuses
  dwctl events tail --from-start --limit 10
  dwctl --tenant demo --sub crm-bot --role service tasks create --department support \\
      --channel whatsapp --client-name 'Maria Souza' --phone +5511912345678
  dwctl --tenant demo --sub ana --role agent tasks watch
  dwctl demo inbound --tenant demo --phone +5511912345678 --name 'Maria Souza' --text 'Hello?'
  dwctl events tail --stream DW_DISTRIBUTION --from-start
  dwctl --tenant demo --sub sre-1 --role manager events log --stream task:<TASK_ID>
  dwctl --tenant demo --sub sre-1 --role manager events log --service task-distribution --tail 20 \\
      --type TaskAssigned
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
  dwctl webhooks redeliver --delivery-id msg_<ID>
  DW_PROVIDER_WHATSAPP_APP_SECRET=… DW_PROVIDER_WHATSAPP_VERIFY_TOKEN=… \\
      dwctl providers set --whatsapp-phone-number-id 100000000000001
  dwctl providers get";

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

    /// CA certificate (PEM) that signed the servers' certificates, for https:// addresses
    /// [default: the system's trusted roots].
    #[arg(long, global = true, env = "DWCTL_CA_FILE")]
    pub ca_file: Option<std::path::PathBuf>,

    /// Client certificate (PEM) for https:// servers that verify clients (mTLS); with --key-file.
    #[arg(long, global = true, env = "DWCTL_CERT_FILE", requires = "key_file")]
    pub cert_file: Option<std::path::PathBuf>,

    /// The client certificate's private key (PEM); with --cert-file.
    #[arg(long, global = true, env = "DWCTL_KEY_FILE", requires = "cert_file")]
    pub key_file: Option<std::path::PathBuf>,

    /// The name the servers' certificates must hold when it is not the address's host (e.g. the
    /// Service's DNS name through `kubectl port-forward`).
    #[arg(long, global = true, env = "DWCTL_TLS_SERVER_NAME", value_parser = parse::non_empty)]
    pub tls_server_name: Option<String>,

    /// Bearer token (JWT) to send; takes precedence over a token file and over minting one.
    #[arg(long, global = true, env = "DWCTL_TOKEN", hide_env_values = true)]
    pub token: Option<String>,

    /// The token in DW_TOKEN (the name `dwctl demo seed` prints), when --token is not given.
    #[arg(long = "dw-token", global = true, env = "DW_TOKEN", hide = true, hide_env_values = true)]
    pub dw_token: Option<String>,

    /// A file holding the bearer token to send (e.g. one your identity provider issued).
    #[arg(long, global = true, env = "DWCTL_TOKEN_FILE")]
    pub token_file: Option<std::path::PathBuf>,

    /// Tenant of a minted token (also the tenant `demo seed` seeds).
    #[arg(long, global = true, env = "DW_TENANT")]
    pub tenant: Option<String>,

    /// Subject (agent or service id) of a minted token.
    #[arg(long, global = true, env = "DW_SUB")]
    pub sub: Option<String>,

    /// Role of a minted token: agent, manager or service (repeatable, or comma-separated).
    #[arg(long = "role", global = true, env = "DW_ROLE", value_delimiter = ',', value_parser = parse::role)]
    pub roles: Vec<Role>,

    /// HS256 signing secret for minting tokens (at least 16 bytes; development only).
    #[arg(long, global = true, env = "DW_JWT_SECRET", hide_env_values = true)]
    pub secret: Option<String>,

    /// A file holding the signing secret, when --secret is not given.
    #[arg(long, global = true, env = "DW_JWT_SECRET_FILE")]
    pub secret_file: Option<std::path::PathBuf>,

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

impl GlobalOpts {
    /// The TLS settings of https:// addresses.
    pub fn client_tls(&self) -> crate::rpc::ClientTls {
        crate::rpc::ClientTls {
            ca_file: self.ca_file.clone(),
            client_cert: self.cert_file.clone().zip(self.key_file.clone()),
            server_name: self.tls_server_name.clone(),
        }
    }
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
    /// The tenant's provider accounts, whose secrets verify its provider webhooks: set, get
    /// (ProviderConfigService at --messaging-addr; role `manager`).
    #[command(subcommand)]
    Providers(ProvidersCommand),
    /// The single-notifications log (every template sent, with its status timeline) and your live
    /// notifications (NotificationService at --notifications-addr).
    #[command(subcommand)]
    Notifications(NotificationsCommand),
    /// Outbound webhooks (Standard Webhooks, HMAC-SHA256 signed): register, list, delete, rotate
    /// secrets, inspect and redeliver deliveries (WebhookService at --notifications-addr; role
    /// `manager`).
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Domain events: on JetStream (tail) or in a service's event store (log).
    #[command(subcommand)]
    Events(EventsCommand),
    /// Demo data.
    #[command(subcommand)]
    Demo(DemoCommand),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    use crate::testing::parse;

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
    fn invalid_values_are_usage_errors() {
        assert!(parse(&["--role", "root", "token"]).is_err());
        assert!(parse(&["day", "info", "--from", "yesterday"]).is_err());
        assert!(parse(&["day", "notify-exit"]).is_err());
        assert!(parse(&["day", "info", "--to", "2024-05-01"]).is_err());
        assert!(parse(&["events", "tail", "--from-start", "--from-seq", "3"]).is_err());
        let cli = parse(&["day", "end-break"]).unwrap();
        assert!(matches!(cli.command, Command::Day(DayCommand::EndBreak { confirm: false })));
    }
}
