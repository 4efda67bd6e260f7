//! `dwctl notifications …`: the single-notifications log, live notifications and browser push.

use clap::{Args, Subcommand};
use dw_proto::messaging::v1::{Channel as MessagingChannel, MessageStatus};

use crate::cli::PageArgs;
use crate::parse;

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

#[derive(Debug, Args)]
#[command(mut_arg("all", |arg| arg.help("Follow every page and print all the sends")))]
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
    #[command(flatten)]
    pub paging: PageArgs,
}
