//! `dwctl webhooks …`: outbound webhooks and their deliveries.

use clap::Subcommand;

use crate::cli::PageArgs;
use crate::parse;

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
    /// Create the tenant's sends endpoint (CreateWebhook with for_sends): its secret, shown only
    /// this once, signs what each send's own webhook URL gets (every event of that send).
    CreateForSends {
        /// A free-text description.
        #[arg(long)]
        description: Option<String>,
    },
    /// The tenant's webhooks, oldest first, disabled ones included (ListWebhooks). Prints one
    /// page and the next page token; --all follows every page.
    List {
        #[command(flatten)]
        paging: PageArgs,
    },
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
        /// How many deliveries a page (1-200; server default 50).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=200))]
        page_size: Option<i32>,
        /// Fetch the page with this token (from a previous listing of the same webhook).
        #[arg(long, value_parser = parse::non_empty, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow every page and print all the deliveries.
        #[arg(long)]
        all: bool,
    },
    /// Schedule a delivery again now, with the same `webhook-id` (RedeliverWebhook). The id is
    /// the `msg_…` of `webhooks deliveries` (or the `webhook-id` header), or the plain UUID.
    Redeliver {
        #[arg(long, value_parser = parse::delivery_id)]
        delivery_id: String,
    },
}
