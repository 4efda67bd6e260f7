//! `dwctl events …`: domain events on JetStream.

use clap::{Args, Subcommand};

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
