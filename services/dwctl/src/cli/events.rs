//! `dwctl events …`: domain events on JetStream (`tail`) and in a service's event store (`log`).

use clap::{Args, Subcommand, ValueEnum};

#[derive(Debug, Subcommand)]
pub enum EventsCommand {
    /// Print events from an ordered ephemeral JetStream consumer: stream sequence, subject, all
    /// headers and the payload decoded by its `ce-type` (any `dw.*` event: agent sessions,
    /// distribution, messaging; hex when the type is unknown). Any stream: --stream DW_DISTRIBUTION.
    Tail(TailArgs),
    /// Read a service's event store (its ReadEvents RPC; role `service`, or `manager` for its
    /// own tenant): one aggregate's whole history (--stream task:<id>) or the newest events
    /// (--tail N, optionally --type), each with its position, stream, version, type, time,
    /// metadata and payload decoded by type (an unknown type shows its byte length).
    Log(LogArgs),
}

/// Which service's store `events log` reads (and so which address it calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreOwner {
    /// --addr
    AgentSessions,
    /// --distribution-addr
    TaskDistribution,
    /// --messaging-addr
    MessagingTemplates,
    /// --notifications-addr
    Notifications,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["stream", "tail"])))]
pub struct LogArgs {
    /// One aggregate's history: `<aggregate>:<tenant>:<id>` as stored, or `<aggregate>:<id>`
    /// completed with --tenant (`task:0190…` is `task:<tenant>:0190…`). The service is found
    /// from the aggregate unless --service says otherwise.
    #[arg(long, value_parser = crate::parse::non_empty)]
    pub stream: Option<String>,
    /// The newest N events of the store (oldest of them printed first).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub tail: Option<u32>,
    /// Only events of this type: the full protobuf name (`dw.distribution.v1.TaskAssigned`) or
    /// its last part (`TaskAssigned`, completed with the service's package).
    #[arg(long = "type", value_parser = crate::parse::non_empty)]
    pub event_type: Option<String>,
    /// The store to read (needed with --tail; found from the aggregate with --stream).
    #[arg(long, value_enum)]
    pub service: Option<StoreOwner>,
    /// Every tenant's events (a `service` token only), instead of --tenant's.
    #[arg(long)]
    pub all_tenants: bool,
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
