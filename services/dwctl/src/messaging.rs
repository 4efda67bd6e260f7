//! `dwctl templates …`, `dwctl messages …`, `dwctl contacts …`: messaging-templates'
//! TemplateService and ContactService.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use dw_proto::messaging::v1::contact_service_client::ContactServiceClient;
use dw_proto::messaging::v1::send_template_request::Recipient;
use dw_proto::messaging::v1::template_service_client::TemplateServiceClient;
use dw_proto::messaging::v1::{
    ArchiveTemplateRequest, Channel, Contact, CreateTemplateRequest, GetContactRequest, GetMessageRequest,
    GetTemplateRequest, HeaderKind, ListTemplatesRequest, ListTemplatesResponse, Message, MessageStatus,
    PreviewTemplateRequest, PreviewTemplateResponse, SearchContactsRequest, SearchContactsResponse,
    SendTemplateRequest, SmsEncoding, Template, TemplateCategory, TemplateContent, UpdateTemplateRequest,
    UpsertContactRequest,
};

use crate::UsageError;
use crate::cli::{
    ContactsCommand, ContentOptions, CreateTemplateArgs, ListTemplatesArgs, MessagesCommand, PreviewTemplateArgs,
    SendTemplateArgs, TemplatesCommand, UpdateTemplateArgs,
};
use crate::output::{self as out, Printer, names};
use crate::rpc::Rpc;

/// How long `messages wait` waits unless --timeout-seconds says otherwise.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(20);
/// The deadline of each GetMessage while waiting (never longer than the wait itself).
const POLL_RPC_DEADLINE: Duration = Duration::from_secs(10);

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate_templates(command: &TemplatesCommand) -> Result<()> {
    match command {
        TemplatesCommand::Create(args) => create_request(String::new(), args).map(drop),
        TemplatesCommand::Update(args) => {
            let options = &args.content;
            header_kind(
                options.header_kind,
                options.header_text.as_deref(),
                options.header_image_url.as_deref(),
                HeaderKind::None,
            )?;
            Ok(())
        }
        _ => Ok(()),
    }
}

pub async fn templates(command: TemplatesCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = TemplateServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    let print = |template: &Template| printer.emit(names::TEMPLATE, template, |t| template_text(t, now));
    match command {
        TemplatesCommand::Create(args) => {
            let request = create_request(rpc.request_id(), &args)?;
            print(&client.create_template(rpc.request(request)).await?.into_inner())
        }
        TemplatesCommand::Update(args) => {
            let get = GetTemplateRequest { template_id: args.template_id.clone() };
            let current = client.get_template(rpc.request(get)).await?.into_inner();
            let content = updated_content(&current, &args)?;
            let request = UpdateTemplateRequest {
                request_id: rpc.request_id(),
                template_id: args.template_id,
                content: Some(content),
            };
            print(&client.update_template(rpc.request(request)).await?.into_inner())
        }
        TemplatesCommand::Archive { template_id } => {
            let request = ArchiveTemplateRequest { request_id: rpc.request_id(), template_id };
            print(&client.archive_template(rpc.request(request)).await?.into_inner())
        }
        TemplatesCommand::Get { template_id } => {
            print(&client.get_template(rpc.request(GetTemplateRequest { template_id })).await?.into_inner())
        }
        TemplatesCommand::List(args) => {
            let follow = args.all;
            let result = list_pages(list_request(args), follow, |request| {
                let mut client = client.clone();
                let request = rpc.request(request);
                async move { client.list_templates(request).await.map(tonic::Response::into_inner) }
            })
            .await?;
            printer.emit(names::LIST_TEMPLATES, &result, list_text)
        }
        TemplatesCommand::Preview(args) => {
            let request = preview_request(args);
            let response = client.preview_template(rpc.request(request)).await?.into_inner();
            printer.emit(names::PREVIEW_TEMPLATE, &response, preview_text)
        }
        TemplatesCommand::Send(args) => {
            let request = send_request(rpc.request_id(), args);
            let message = client.send_template(rpc.request(request)).await?.into_inner();
            printer.emit(names::MESSAGE, &message, |m| {
                let mut text = message_text(m, now);
                text.push_str(&format!("\nfollow it: dwctl messages wait --message-id {}\n", m.message_id));
                text
            })
        }
    }
}

pub async fn messages(command: MessagesCommand, rpc: &Rpc, printer: &Printer, wait: Duration) -> Result<()> {
    let mut client = TemplateServiceClient::new(rpc.channel.clone());
    match command {
        MessagesCommand::Get { message_id } => {
            let message = client.get_message(rpc.request(GetMessageRequest { message_id })).await?.into_inner();
            printer.emit(names::MESSAGE, &message, |m| message_text(m, Utc::now()))
        }
        MessagesCommand::Wait { message_id, status, interval_ms } => {
            let deadline = Instant::now() + wait;
            let interval = Duration::from_millis(interval_ms);
            let mut last_seen: Option<i32> = None;
            loop {
                let left = deadline.saturating_duration_since(Instant::now());
                let mut request = rpc.stream_request(GetMessageRequest { message_id: message_id.clone() });
                request.set_timeout(left.clamp(Duration::from_millis(200), POLL_RPC_DEADLINE));
                let message = client.get_message(request).await?.into_inner();
                if !printer.json() && last_seen != Some(message.status) {
                    eprintln!("{}", progress_line(&message));
                }
                last_seen = Some(message.status);
                match progress(message.status, status) {
                    Progress::Reached => {
                        return printer.emit(names::MESSAGE, &message, |m| message_text(m, Utc::now()));
                    }
                    Progress::Failed => {
                        printer.emit(names::MESSAGE, &message, |m| message_text(m, Utc::now()))?;
                        bail!(
                            "message {message_id} failed ({}: {}) before reaching {}",
                            or_dash(&message.failure_code),
                            or_dash(&message.failure_reason),
                            message_status(status as i32)
                        );
                    }
                    Progress::Pending => {}
                }
                if Instant::now() + interval > deadline {
                    bail!(
                        "message {message_id} is still {} after {}s (waiting for {}); raise --timeout-seconds",
                        message_status(message.status),
                        wait.as_secs(),
                        message_status(status as i32)
                    );
                }
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = tokio::signal::ctrl_c() => bail!("interrupted while waiting for message {message_id}"),
                }
            }
        }
    }
}

pub async fn contacts(command: ContactsCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = ContactServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    match command {
        ContactsCommand::Upsert { name, phone, external_id, tags } => {
            let request = UpsertContactRequest {
                request_id: rpc.request_id(),
                name,
                phone,
                external_id: external_id.unwrap_or_default(),
                tags,
            };
            let contact = client.upsert_contact(rpc.request(request)).await?.into_inner();
            printer.emit(names::CONTACT, &contact, |c| contact_text(c, now))
        }
        ContactsCommand::Search { name, phone, page_size } => {
            let request = SearchContactsRequest {
                name: name.unwrap_or_default(),
                phone: phone.unwrap_or_default(),
                page_size: page_size.unwrap_or(0),
            };
            let response = client.search_contacts(rpc.request(request)).await?.into_inner();
            printer.emit(names::SEARCH_CONTACTS, &response, |r: &SearchContactsResponse| contacts_table(&r.contacts))
        }
        ContactsCommand::Get { contact_id } => {
            let contact = client.get_contact(rpc.request(GetContactRequest { contact_id })).await?.into_inner();
            printer.emit(names::CONTACT, &contact, |c| contact_text(c, now))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// requests (pure)

/// The header kind of a content: `--header-kind` when given; otherwise image when an image URL
/// is given, text when a title is, else `current` (none for a new template). Both a title and an
/// image without a kind is ambiguous.
pub fn header_kind(
    explicit: Option<HeaderKind>,
    text: Option<&str>,
    image_url: Option<&str>,
    current: HeaderKind,
) -> Result<HeaderKind, UsageError> {
    let given = |value: Option<&str>| value.is_some_and(|v| !v.trim().is_empty());
    match (explicit, given(text), given(image_url)) {
        (Some(kind), _, _) => Ok(kind),
        (None, true, true) => {
            Err(UsageError("both --header-text and --header-image-url given: pass --header-kind text or image".into()))
        }
        (None, false, true) => Ok(HeaderKind::Image),
        (None, true, false) => Ok(HeaderKind::Text),
        (None, false, false) => Ok(current),
    }
}

/// Keeps only the header part that `kind` uses (the service rejects the other).
fn fit_header(content: &mut TemplateContent) {
    match HeaderKind::try_from(content.header_kind).unwrap_or(HeaderKind::None) {
        HeaderKind::None => {
            content.header_text.clear();
            content.header_image_url.clear();
        }
        HeaderKind::Text => content.header_image_url.clear(),
        HeaderKind::Image => content.header_text.clear(),
    }
}

fn trimmed(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|v| v.trim().to_owned())
}

pub fn create_request(request_id: String, args: &CreateTemplateArgs) -> Result<CreateTemplateRequest> {
    let options = &args.content;
    let kind = header_kind(
        options.header_kind,
        options.header_text.as_deref(),
        options.header_image_url.as_deref(),
        HeaderKind::None,
    )?;
    let content = TemplateContent {
        language: args.language.clone(),
        category: args.category as i32,
        header_kind: kind as i32,
        header_text: trimmed(&options.header_text).unwrap_or_default(),
        header_image_url: trimmed(&options.header_image_url).unwrap_or_default(),
        body: args.body.clone(),
        footer: trimmed(&options.footer).unwrap_or_default(),
        department_id: trimmed(&options.department).unwrap_or_default(),
        default_webhook_url: trimmed(&options.webhook).unwrap_or_default(),
        default_metadata: options.metadata.iter().cloned().collect(),
    };
    Ok(CreateTemplateRequest {
        request_id,
        channel: args.channel as i32,
        name: args.name.clone(),
        content: Some(content),
    })
}

/// The content of `current` with the options of `args` applied over it.
pub fn updated_content(current: &Template, args: &UpdateTemplateArgs) -> Result<TemplateContent> {
    let ContentOptions { header_kind: kind, header_text, header_image_url, footer, department, webhook, metadata } =
        &args.content;
    let current_kind = HeaderKind::try_from(current.header_kind).unwrap_or(HeaderKind::None);
    let kind = header_kind(*kind, header_text.as_deref(), header_image_url.as_deref(), current_kind)?;
    let mut content = TemplateContent {
        language: args.language.clone().unwrap_or_else(|| current.language.clone()),
        category: args.category.map_or(current.category, |c| c as i32),
        header_kind: kind as i32,
        header_text: trimmed(header_text).unwrap_or_else(|| current.header_text.clone()),
        header_image_url: trimmed(header_image_url).unwrap_or_else(|| current.header_image_url.clone()),
        body: args.body.clone().unwrap_or_else(|| current.body.clone()),
        footer: trimmed(footer).unwrap_or_else(|| current.footer.clone()),
        department_id: trimmed(department).unwrap_or_else(|| current.department_id.clone()),
        default_webhook_url: trimmed(webhook).unwrap_or_else(|| current.default_webhook_url.clone()),
        default_metadata: if args.clear_metadata {
            HashMap::new()
        } else if metadata.is_empty() {
            current.default_metadata.clone()
        } else {
            metadata.iter().cloned().collect()
        },
    };
    fit_header(&mut content);
    Ok(content)
}

pub fn list_request(args: ListTemplatesArgs) -> ListTemplatesRequest {
    ListTemplatesRequest {
        channel: args.channel.map_or(0, |c| c as i32),
        department_id: args.department.unwrap_or_default(),
        name: args.name.unwrap_or_default(),
        include_archived: args.include_archived,
        page_size: args.page_size.unwrap_or(0),
        page_token: args.page_token.unwrap_or_default(),
    }
}

/// One page, or with `follow` every page (the templates concatenated, no next token).
pub async fn list_pages<F, Fut>(
    mut request: ListTemplatesRequest,
    follow: bool,
    mut fetch: F,
) -> Result<ListTemplatesResponse>
where
    F: FnMut(ListTemplatesRequest) -> Fut,
    Fut: std::future::Future<Output = Result<ListTemplatesResponse, tonic::Status>>,
{
    let mut result = ListTemplatesResponse::default();
    loop {
        let page = fetch(request.clone()).await?;
        result.templates.extend(page.templates);
        result.next_page_token = page.next_page_token;
        if !follow || result.next_page_token.is_empty() {
            return Ok(result);
        }
        if result.next_page_token == request.page_token {
            bail!("the server returned the same page token twice ({}); stopping", request.page_token);
        }
        request.page_token = std::mem::take(&mut result.next_page_token);
    }
}

pub fn preview_request(args: PreviewTemplateArgs) -> PreviewTemplateRequest {
    PreviewTemplateRequest {
        template_id: args.template_id,
        variables: args.vars,
        header_text: trimmed(&args.header_text).unwrap_or_default(),
        header_image_url: trimmed(&args.header_image_url).unwrap_or_default(),
    }
}

pub fn send_request(request_id: String, args: SendTemplateArgs) -> SendTemplateRequest {
    let recipient = match (args.phone, args.contact_id) {
        (Some(phone), _) => Some(Recipient::Phone(phone)),
        (None, Some(contact_id)) => Some(Recipient::ContactId(contact_id)),
        (None, None) => None,
    };
    SendTemplateRequest {
        request_id,
        template_id: args.template_id,
        recipient,
        header_text: trimmed(&args.header_text).unwrap_or_default(),
        header_image_url: trimmed(&args.header_image_url).unwrap_or_default(),
        variables: args.vars,
        department_id: args.department.unwrap_or_default(),
        webhook_url: trimmed(&args.webhook).unwrap_or_default(),
        metadata: args.metadata.into_iter().collect(),
        additional_information: trimmed(&args.info).unwrap_or_default(),
    }
}

/// Where a waited-for message stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    Reached,
    Pending,
    /// Failed, and failure was not what we wait for.
    Failed,
}

/// Whether `current` satisfies waiting for `target`: the statuses go requested → dispatched →
/// delivered → read, so a later one satisfies an earlier target (a read message was delivered);
/// `failed` only satisfies waiting for `failed`.
pub fn progress(current: i32, target: MessageStatus) -> Progress {
    let rank = |status: MessageStatus| match status {
        MessageStatus::Unspecified => 0,
        MessageStatus::Requested => 1,
        MessageStatus::Dispatched => 2,
        MessageStatus::Delivered => 3,
        MessageStatus::Read => 4,
        MessageStatus::Failed => 5,
    };
    let current = MessageStatus::try_from(current).unwrap_or(MessageStatus::Unspecified);
    match (current, target) {
        (MessageStatus::Failed, MessageStatus::Failed) => Progress::Reached,
        (MessageStatus::Failed, _) => Progress::Failed,
        (_, MessageStatus::Failed) => Progress::Pending,
        (current, target) if rank(current) >= rank(target) => Progress::Reached,
        _ => Progress::Pending,
    }
}

// ---------------------------------------------------------------------------------------------
// rendering

fn or_dash(value: &str) -> String {
    if value.is_empty() { "-".to_owned() } else { value.to_owned() }
}

/// `whatsapp`, `sms`.
pub fn channel(value: i32) -> String {
    match Channel::try_from(value) {
        Ok(Channel::Unspecified) => "-".to_owned(),
        Ok(channel) => out::enum_suffix(channel.as_str_name(), "CHANNEL_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `utility`, `marketing`, `authentication`.
pub fn category(value: i32) -> String {
    match TemplateCategory::try_from(value) {
        Ok(TemplateCategory::Unspecified) => "-".to_owned(),
        Ok(category) => out::enum_suffix(category.as_str_name(), "TEMPLATE_CATEGORY_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `none`, `text`, `image`.
pub fn header(value: i32) -> String {
    match HeaderKind::try_from(value) {
        Ok(kind) => out::enum_suffix(kind.as_str_name(), "HEADER_KIND_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `requested`, `dispatched`, `delivered`, `read`, `failed`.
pub fn message_status(value: i32) -> String {
    match MessageStatus::try_from(value) {
        Ok(MessageStatus::Unspecified) => "-".to_owned(),
        Ok(status) => out::enum_suffix(status.as_str_name(), "MESSAGE_STATUS_"),
        Err(_) => format!("unknown({value})"),
    }
}

/// `GSM-7`, `UCS-2`.
pub fn encoding(value: i32) -> String {
    match SmsEncoding::try_from(value) {
        Ok(SmsEncoding::Gsm7) => "GSM-7".to_owned(),
        Ok(SmsEncoding::Ucs2) => "UCS-2".to_owned(),
        Ok(SmsEncoding::Unspecified) => "-".to_owned(),
        Err(_) => format!("unknown({value})"),
    }
}

/// `k=v, k2=v2` sorted by key, or `-`.
fn metadata(map: &HashMap<String, String>) -> String {
    let mut pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
    pairs.sort();
    out::list(&pairs)
}

pub fn template_text(template: &Template, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("template", template.template_id.clone()),
        ("name", template.name.clone()),
        ("channel", channel(template.channel)),
        ("language", or_dash(&template.language)),
        ("category", category(template.category)),
    ];
    match HeaderKind::try_from(template.header_kind) {
        Ok(HeaderKind::Text) => rows.push(("header", format!("text: {}", or_dash(&template.header_text)))),
        Ok(HeaderKind::Image) => rows.push(("header", format!("image: {}", or_dash(&template.header_image_url)))),
        _ => rows.push(("header", "none".to_owned())),
    }
    rows.push(("body", template.body.clone()));
    rows.push(("variables", template.variable_count.to_string()));
    rows.push(("footer", or_dash(&template.footer)));
    rows.push(("department", or_dash(&template.department_id)));
    rows.push(("webhook", or_dash(&template.default_webhook_url)));
    rows.push(("metadata", metadata(&template.default_metadata)));
    rows.push(("archived", out::yes_no(template.archived).to_owned()));
    rows.push(("version", template.version.to_string()));
    rows.push(("updated", out::timestamp_ago(template.updated_at.as_ref(), now)));
    out::fields(&rows)
}

pub fn list_text(list: &ListTemplatesResponse) -> String {
    let rows: Vec<Vec<String>> = list
        .templates
        .iter()
        .map(|t| {
            vec![
                t.name.clone(),
                channel(t.channel),
                or_dash(&t.language),
                category(t.category),
                header(t.header_kind),
                t.variable_count.to_string(),
                or_dash(&t.department_id),
                if t.archived { "archived".to_owned() } else { "active".to_owned() },
                t.template_id.clone(),
            ]
        })
        .collect();
    let mut text = out::table(
        &["NAME", "CHANNEL", "LANGUAGE", "CATEGORY", "HEADER", "VARS", "DEPARTMENT", "STATE", "TEMPLATE"],
        &rows,
    );
    if !list.next_page_token.is_empty() {
        text.push_str(&format!("next page: --page-token {}  (or --all for every page)\n", list.next_page_token));
    }
    text
}

pub fn preview_text(preview: &PreviewTemplateResponse) -> String {
    let mut text = String::new();
    if !preview.rendered_header.is_empty() {
        text.push_str(&format!("header  {}\n", preview.rendered_header));
    }
    text.push_str("body\n");
    text.push_str(&out::indent(&preview.rendered_body, 2));
    text.push('\n');
    if !preview.footer.is_empty() {
        text.push_str(&format!("footer  {}\n", preview.footer));
    }
    if preview.sms_encoding != SmsEncoding::Unspecified as i32 {
        let unit = if preview.sms_encoding == SmsEncoding::Ucs2 as i32 { "UCS-2 code units" } else { "septets" };
        text.push_str(&format!(
            "sms     {} · {} {unit} · {} segment{}\n",
            encoding(preview.sms_encoding),
            preview.sms_units,
            preview.sms_segments,
            if preview.sms_segments == 1 { "" } else { "s" }
        ));
    }
    if preview.problems.is_empty() {
        text.push_str("ok: a send with these values would be accepted\n");
    } else {
        text.push_str("problems:\n");
        for problem in &preview.problems {
            text.push_str(&format!("  {}: {}\n", or_dash(&problem.field), problem.description));
        }
    }
    text
}

/// One line per status reached while waiting (stderr).
pub fn progress_line(message: &Message) -> String {
    let mut line = format!("{}  {}", Utc::now().format("%H:%M:%S%.3f"), message_status(message.status));
    if !message.provider_message_id.is_empty() {
        line.push_str(&format!("  provider id {}", message.provider_message_id));
    }
    if !message.failure_code.is_empty() || !message.failure_reason.is_empty() {
        line.push_str(&format!("  {}: {}", or_dash(&message.failure_code), or_dash(&message.failure_reason)));
    }
    line
}

pub fn message_text(message: &Message, now: DateTime<Utc>) -> String {
    let mut rows = vec![
        ("message", message.message_id.clone()),
        ("status", message_status(message.status)),
        ("template", format!("{} ({})", or_dash(&message.template_name), or_dash(&message.template_id))),
        ("channel", channel(message.channel)),
        ("to", or_dash(&message.recipient_phone)),
    ];
    if !message.contact_id.is_empty() {
        rows.push(("contact", message.contact_id.clone()));
    }
    if !message.language.is_empty() {
        rows.push(("language", message.language.clone()));
    }
    if !message.rendered_header.is_empty() {
        rows.push(("header", message.rendered_header.clone()));
    }
    if !message.header_image_url.is_empty() {
        rows.push(("header image", message.header_image_url.clone()));
    }
    rows.push(("text", message.rendered_body.clone()));
    rows.push(("department", or_dash(&message.department_id)));
    rows.push(("webhook", or_dash(&message.webhook_url)));
    rows.push(("metadata", metadata(&message.metadata)));
    if !message.additional_information.is_empty() {
        rows.push(("info", message.additional_information.clone()));
    }
    rows.push(("agent", or_dash(&message.agent_id)));
    rows.push(("provider id", or_dash(&message.provider_message_id)));
    if message.status == MessageStatus::Failed as i32 || !message.failure_code.is_empty() {
        rows.push((
            "failure",
            format!(
                "{}: {} ({})",
                or_dash(&message.failure_code),
                or_dash(&message.failure_reason),
                if message.failure_terminal { "terminal" } else { "retryable" }
            ),
        ));
    }
    rows.push(("requested", out::timestamp_ago(message.requested_at.as_ref(), now)));
    let mut text = out::fields(&rows);
    let history: Vec<Vec<String>> = message
        .history
        .iter()
        .map(|change| vec![out::timestamp(change.at.as_ref()), message_status(change.status), or_dash(&change.detail)])
        .collect();
    text.push_str("\nhistory:\n");
    text.push_str(&out::indent(&out::table(&["AT", "STATUS", "DETAIL"], &history), 2));
    text.push('\n');
    text
}

pub fn contact_text(contact: &Contact, now: DateTime<Utc>) -> String {
    out::fields(&[
        ("contact", contact.contact_id.clone()),
        ("name", contact.name.clone()),
        ("phone", contact.phone.clone()),
        ("external id", or_dash(&contact.external_id)),
        ("tags", out::list(&contact.tags)),
        ("sms opted out", out::yes_no(contact.sms_opted_out).to_owned()),
        ("version", contact.version.to_string()),
        ("updated", out::timestamp_ago(contact.updated_at.as_ref(), now)),
    ])
}

pub fn contacts_table(contacts: &[Contact]) -> String {
    let rows: Vec<Vec<String>> = contacts
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                c.phone.clone(),
                or_dash(&c.external_id),
                out::list(&c.tags),
                if c.sms_opted_out { "opted out".to_owned() } else { "-".to_owned() },
                c.contact_id.clone(),
            ]
        })
        .collect();
    out::table(&["NAME", "PHONE", "EXTERNAL ID", "TAGS", "SMS", "CONTACT"], &rows)
}

#[cfg(test)]
mod tests;
