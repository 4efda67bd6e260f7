//! `dwctl templates …`, `dwctl messages …`, `dwctl contacts …`, `dwctl providers …`: WhatsApp and
//! SMS templates, the messages sent with them, CRM contacts, and the tenant's provider accounts.

use clap::{Args, Subcommand};
use dw_proto::messaging::v1::{Channel as MessagingChannel, HeaderKind, MessageStatus, TemplateCategory};

use crate::cli::PageArgs;
use crate::parse;

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Register a template (CreateTemplate; role `manager`).
    Create(CreateTemplateArgs),
    /// Change a template's content (UpdateTemplate with a mask of the options given; role
    /// `manager`): the options given replace those parts, the others are kept. The channel and the
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
    /// Language tag, e.g. pt_BR, en_US, es (required for WhatsApp).
    #[arg(long, value_parser = parse::non_empty)]
    pub language: Option<String>,
    /// utility, marketing or authentication (required for WhatsApp).
    #[arg(long, value_parser = parse::template_category)]
    pub category: Option<TemplateCategory>,
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
    /// Change only if the template is still at this version (from get); otherwise nothing
    /// changes and the current version is reported.
    #[arg(long)]
    pub expected_version: Option<u64>,
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
#[command(mut_arg("all", |arg| arg.help("Follow every page and print all the templates")))]
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
    #[command(flatten)]
    pub paging: PageArgs,
}

#[derive(Debug, Args)]
pub struct PreviewTemplateArgs {
    #[arg(long, value_parser = parse::non_empty)]
    pub template_id: String,
    #[command(flatten)]
    pub render: RenderOptions,
}

/// What a preview or a send fills in: the variables, and a header instead of the template's.
#[derive(Debug, Args)]
pub struct RenderOptions {
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
    #[command(flatten)]
    pub render: RenderOptions,
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
    /// (SearchContacts). Prints one page and the next page token; --all follows every page.
    Search {
        #[arg(long, value_parser = parse::non_empty, required_unless_present = "phone", conflicts_with = "phone")]
        name: Option<String>,
        /// E.164.
        #[arg(long, value_parser = parse::phone)]
        phone: Option<String>,
        /// At most this many a page (1-100; server default 20).
        #[arg(long, value_parser = clap::value_parser!(i32).range(1..=100))]
        page_size: Option<i32>,
        /// Fetch the page with this token (from a previous search's output, with the same
        /// --name or --phone).
        #[arg(long, value_parser = parse::non_empty, conflicts_with = "all")]
        page_token: Option<String>,
        /// Follow every page and print all the contacts found.
        #[arg(long)]
        all: bool,
    },
    /// Show a contact (GetContact).
    Get {
        #[arg(long, value_parser = parse::non_empty)]
        contact_id: String,
    },
    /// Erase a client's personal data here on request (EraseClientData; role `manager` or
    /// `service`): their contact is deleted; the messages sent to them and those they wrote keep
    /// their statuses and times without phone, name, texts or variables. Cannot be undone. Their
    /// tasks: `dwctl tasks erase-client`.
    EraseClient {
        /// The client's phone (E.164).
        #[arg(long, value_parser = parse::phone)]
        phone: String,
        /// Why (e.g. the data-subject request's reference), kept in the erasure event.
        #[arg(long, value_parser = parse::non_empty)]
        reason: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ProvidersCommand {
    /// Set the tenant's provider accounts (SetProviderConfig; role `manager`): each channel given
    /// is replaced whole (its id and its secrets), each removed is gone, the other is kept. The
    /// secrets are best passed in the environment (DW_PROVIDER_WHATSAPP_APP_SECRET,
    /// DW_PROVIDER_WHATSAPP_VERIFY_TOKEN, DW_PROVIDER_SMS_AUTH_TOKEN): a command line is visible
    /// to every user of the machine. Prints the accounts without their secrets.
    Set(SetProvidersArgs),
    /// The tenant's provider accounts: ids, and whether each secret is set (GetProviderConfig;
    /// role `manager`). Secrets are never shown.
    Get,
}

#[derive(Debug, Args)]
pub struct SetProvidersArgs {
    /// WhatsApp business phone number id (digits): sets the WhatsApp account, with
    /// --whatsapp-app-secret and --whatsapp-verify-token.
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "remove_whatsapp")]
    pub whatsapp_phone_number_id: Option<String>,
    /// The Meta app secret (the key of X-Hub-Signature-256).
    #[arg(long, env = "DW_PROVIDER_WHATSAPP_APP_SECRET", hide_env_values = true, value_parser = parse::non_empty)]
    pub whatsapp_app_secret: Option<String>,
    /// The token of the GET verification handshake (hub.verify_token).
    #[arg(long, env = "DW_PROVIDER_WHATSAPP_VERIFY_TOKEN", hide_env_values = true, value_parser = parse::non_empty)]
    pub whatsapp_verify_token: Option<String>,
    /// SMS account sid (AC and 32 hex digits): sets the SMS account, with --sms-auth-token.
    #[arg(long, value_parser = parse::non_empty, conflicts_with = "remove_sms")]
    pub sms_account_sid: Option<String>,
    /// The SMS auth token (the key of X-Twilio-Signature on callbacks).
    #[arg(long, env = "DW_PROVIDER_SMS_AUTH_TOKEN", hide_env_values = true, value_parser = parse::non_empty)]
    pub sms_auth_token: Option<String>,
    /// Remove the WhatsApp account: the tenant's WhatsApp webhooks are refused from then on.
    #[arg(long)]
    pub remove_whatsapp: bool,
    /// Remove the SMS account.
    #[arg(long)]
    pub remove_sms: bool,
    /// A host a send's own webhook may name (repeatable, or comma-separated): replaces the
    /// tenant's list (SetProviderConfig send_webhooks). A send with a webhook elsewhere is refused.
    #[arg(long = "send-webhook-host", value_delimiter = ',', value_parser = parse::non_empty, conflicts_with = "no_send_webhook_hosts")]
    pub send_webhook_hosts: Vec<String>,
    /// Empty the tenant's list: every send with a webhook is refused from then on.
    #[arg(long)]
    pub no_send_webhook_hosts: bool,
}
