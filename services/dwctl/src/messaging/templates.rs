//! `dwctl templates …`: register and change templates (role `manager`), list, preview and send
//! them; the requests are built from the options here, without I/O.

use anyhow::Result;
use chrono::Utc;
use dw_proto::messaging::v1::send_template_request::Recipient;
use dw_proto::messaging::v1::template_service_client::TemplateServiceClient;
use dw_proto::messaging::v1::{
    ArchiveTemplateRequest, CreateTemplateRequest, GetTemplateRequest, HeaderKind, ListTemplatesRequest,
    PreviewTemplateRequest, SendTemplateRequest, Template, TemplateContent, UpdateTemplateRequest,
};

use super::messages::message_text;
use super::template_text::{list_text, preview_text, template_text};
use crate::cli::{
    ContentOptions, CreateTemplateArgs, ListTemplatesArgs, PreviewTemplateArgs, SendTemplateArgs, TemplatesCommand,
    UpdateTemplateArgs,
};
use crate::failure::UsageError;
use crate::output::{Printer, names};
use crate::paging;
use crate::rpc::Rpc;

/// Local checks done before connecting (exit status 2 on failure).
pub fn validate(command: &TemplatesCommand) -> Result<()> {
    match command {
        TemplatesCommand::Create(args) => create_request(String::new(), args).map(drop),
        TemplatesCommand::Update(args) => update_request(args).map(drop),
        _ => Ok(()),
    }
}

pub async fn run(command: TemplatesCommand, rpc: &Rpc, printer: &Printer) -> Result<()> {
    let mut client = TemplateServiceClient::new(rpc.channel.clone());
    let now = Utc::now();
    let print = |template: &Template| printer.emit(names::TEMPLATE, template, |t| template_text(t, now));
    match command {
        TemplatesCommand::Create(args) => {
            let request = create_request(rpc.request_id(), &args)?;
            print(&client.create_template(rpc.request(request)).await?.into_inner())
        }
        TemplatesCommand::Update(args) => {
            let mut request = update_request(&args)?;
            request.request_id = rpc.request_id();
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
            let follow = args.paging.all;
            let result = paging::collect(list_request(args), follow, |request| {
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

fn trimmed(value: &Option<String>) -> Option<String> {
    value.as_ref().map(|v| v.trim().to_owned())
}

pub fn create_request(request_id: String, args: &CreateTemplateArgs) -> Result<CreateTemplateRequest> {
    let options = &args.content;
    let kind = header_kind(
        options.header_kind,
        options.header_text.as_deref(),
        options.header_image_url.as_deref(),
        HeaderKind::Unspecified,
    )?;
    let content = TemplateContent {
        language: args.language.clone().unwrap_or_default(),
        category: args.category.map_or(0, |category| category as i32),
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

/// The update the options of `args` ask for: their values and a mask naming exactly the parts
/// they change, so the server keeps every other part (no read-modify-write that could undo another
/// manager's change). A new header kind also clears the header part it does not use. The request
/// id is the caller's to set.
pub fn update_request(args: &UpdateTemplateArgs) -> Result<UpdateTemplateRequest> {
    let ContentOptions { header_kind: kind, header_text, header_image_url, footer, department, webhook, metadata } =
        &args.content;
    let mut content = TemplateContent::default();
    let mut paths = Vec::new();
    let mut set = |path: &'static str, given: bool| {
        if given {
            paths.push(path);
        }
        given
    };
    if set("language", args.language.is_some()) {
        content.language = args.language.clone().unwrap_or_default();
    }
    if let Some(category) = args.category {
        set("category", true);
        content.category = category as i32;
    }
    if set("body", args.body.is_some()) {
        content.body = args.body.clone().unwrap_or_default();
    }
    // `None` as the current kind: no header option given, no header change.
    let given = |value: &Option<String>| value.as_ref().is_some_and(|v| !v.trim().is_empty());
    let header_given = kind.is_some() || given(header_text) || given(header_image_url);
    if header_given {
        let kind = header_kind(*kind, header_text.as_deref(), header_image_url.as_deref(), HeaderKind::Unspecified)?;
        set("header_kind", true);
        content.header_kind = kind as i32;
        // The part the kind uses when given; the other part is cleared (the service rejects it).
        if set("header_text", header_text.is_some() || kind != HeaderKind::Text) && kind == HeaderKind::Text {
            content.header_text = trimmed(header_text).unwrap_or_default();
        }
        if set("header_image_url", header_image_url.is_some() || kind != HeaderKind::Image) && kind == HeaderKind::Image
        {
            content.header_image_url = trimmed(header_image_url).unwrap_or_default();
        }
    } else {
        // An empty value (`--header-text ''`) removes that part alone.
        if set("header_text", header_text.is_some()) {
            content.header_text = String::new();
        }
        if set("header_image_url", header_image_url.is_some()) {
            content.header_image_url = String::new();
        }
    }
    if set("footer", footer.is_some()) {
        content.footer = trimmed(footer).unwrap_or_default();
    }
    if set("department_id", department.is_some()) {
        content.department_id = trimmed(department).unwrap_or_default();
    }
    if set("default_webhook_url", webhook.is_some()) {
        content.default_webhook_url = trimmed(webhook).unwrap_or_default();
    }
    if set("default_metadata", args.clear_metadata || !metadata.is_empty()) {
        content.default_metadata = metadata.iter().cloned().collect();
    }
    if paths.is_empty() {
        return Err(UsageError("nothing to change: give at least one content option".into()).into());
    }
    Ok(UpdateTemplateRequest {
        request_id: String::new(),
        template_id: args.template_id.clone(),
        content: Some(content),
        update_mask: Some(crate::admin::field_mask(&paths)),
        expected_version: args.expected_version,
    })
}

pub fn list_request(args: ListTemplatesArgs) -> ListTemplatesRequest {
    ListTemplatesRequest {
        channel: args.channel.map_or(0, |c| c as i32),
        department_id: args.department.unwrap_or_default(),
        name: args.name.unwrap_or_default(),
        include_archived: args.include_archived,
        page_size: args.paging.page_size.unwrap_or(0),
        page_token: args.paging.page_token.unwrap_or_default(),
    }
}

pub fn preview_request(args: PreviewTemplateArgs) -> PreviewTemplateRequest {
    let render = args.render;
    PreviewTemplateRequest {
        template_id: args.template_id,
        variables: render.vars,
        header_text: trimmed(&render.header_text).unwrap_or_default(),
        header_image_url: trimmed(&render.header_image_url).unwrap_or_default(),
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
        header_text: trimmed(&args.render.header_text).unwrap_or_default(),
        header_image_url: trimmed(&args.render.header_image_url).unwrap_or_default(),
        variables: args.render.vars,
        department_id: args.department.unwrap_or_default(),
        webhook_url: trimmed(&args.webhook).unwrap_or_default(),
        metadata: args.metadata.into_iter().collect(),
        additional_information: trimmed(&args.info).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests;
