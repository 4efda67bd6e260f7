//! `dwctl templates …`: register and change templates (role `manager`), list, preview and send
//! them; the requests are built from the options here, without I/O.

use std::collections::BTreeMap;

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
            BTreeMap::new()
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
