//! `dwctl demo …`: demo data and a client's inbound message.

use clap::{Args, Subcommand};

use crate::parse;

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
