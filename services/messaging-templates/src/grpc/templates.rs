//! `TemplateService`.

use std::sync::Arc;

use dw_auth::Role;
use dw_grpc_kit::errors;
use dw_grpc_kit::{paging, principal, require_role};
use dw_proto::messaging::v1 as pb;
use dw_proto::messaging::v1::template_service_server::TemplateService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{command_context, to_status, uuid_field};
use crate::app::send::{Recipient, SendInput, parse_webhook};
use crate::app::send_backlog::{self, AdmitError};
use crate::app::{App, TemplateChange};
use crate::codec::{category_from_pb, channel_from_pb, header_kind_from_pb};
use crate::domain::preview::render_send;
use crate::domain::sms::Encoding;
use crate::domain::template::{Channel, Content, ContentField, ContentInput, ContentUpdate, parse_name};
use crate::domain::{DepartmentId, PhoneNumber};
use crate::projections::TemplateFilter;
use dw_eventstore::UpdateMask;

pub struct TemplateGrpc {
    app: Arc<App>,
}

impl TemplateGrpc {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn content(channel: Channel, content: Option<&pb::TemplateContent>) -> Result<Content, Status> {
    let content = content.ok_or_else(|| errors::invalid_argument("content", "is required"))?;
    Content::parse(channel, content_input(content), "content.").map_err(errors::invalid_arguments)
}

fn content_input(content: &pb::TemplateContent) -> ContentInput {
    ContentInput {
        language: content.language.clone(),
        category: category_from_pb(content.category),
        header_kind: header_kind_from_pb(content.header_kind),
        header_text: content.header_text.clone(),
        header_image_url: content.header_image_url.clone(),
        body: content.body.clone(),
        footer: content.footer.clone(),
        department: content.department_id.clone(),
        default_webhook_url: content.default_webhook_url.clone(),
        default_metadata: content.default_metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    }
}

/// The update a request asks for: its mask (an empty one replaces the whole content, the
/// deprecated behaviour callers before masks rely on; see the contract) and the patch. The merged
/// content is checked against the template's channel in the command, where the template is read.
fn content_update(body: &pb::UpdateTemplateRequest) -> Result<ContentUpdate, Status> {
    let mask =
        errors::update_mask(body.update_mask.as_ref(), ContentField::UPDATABLE, ContentField::READ_ONLY, || {
            UpdateMask::All
        })?;
    let patch = match (body.content.as_ref(), &mask) {
        (Some(content), _) => content_input(content),
        // Replacing everything with nothing is far more likely a mistake than a wish.
        (None, UpdateMask::All) => return Err(errors::invalid_argument("content", "is required")),
        // A mask naming fields without values clears them.
        (None, UpdateMask::Fields(_)) => ContentInput::default(),
    };
    Ok(ContentUpdate { patch, mask, expected_version: body.expected_version })
}

macro_rules! operation {
    ($name:literal) => {
        concat!("dw.messaging.v1.TemplateService/", $name)
    };
}

#[tonic::async_trait]
impl TemplateService for TemplateGrpc {
    #[instrument(skip_all, fields(rpc = "CreateTemplate"))]
    async fn create_template(
        &self,
        request: Request<pb::CreateTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let channel =
            channel_from_pb(body.channel).ok_or_else(|| errors::invalid_argument("channel", "WHATSAPP or SMS"))?;
        let name = parse_name(&body.name).map_err(|e| errors::invalid_argument("name", e))?;
        let content = content(channel, body.content.as_ref())?;
        let ctx = command_context(&request, &principal, &body.request_id, operation!("CreateTemplate"))?;
        let template = self.app.create_template(&ctx, channel, name, content).await.map_err(to_status)?;
        Ok(Response::new(template))
    }

    #[instrument(skip_all, fields(rpc = "UpdateTemplate"))]
    async fn update_template(
        &self,
        request: Request<pb::UpdateTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let id = uuid_field("template_id", &body.template_id)?;
        let update = content_update(body)?;
        let ctx = command_context(&request, &principal, &body.request_id, operation!("UpdateTemplate"))?;
        let template =
            self.app.update_template(&ctx, id, TemplateChange::Update(Box::new(update))).await.map_err(to_status)?;
        Ok(Response::new(template))
    }

    #[instrument(skip_all, fields(rpc = "ArchiveTemplate"))]
    async fn archive_template(
        &self,
        request: Request<pb::ArchiveTemplateRequest>,
    ) -> Result<Response<pb::Template>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let id = uuid_field("template_id", &body.template_id)?;
        let ctx = command_context(&request, &principal, &body.request_id, operation!("ArchiveTemplate"))?;
        let template = self.app.update_template(&ctx, id, TemplateChange::Archive).await.map_err(to_status)?;
        Ok(Response::new(template))
    }

    #[instrument(skip_all, fields(rpc = "GetTemplate"))]
    async fn get_template(&self, request: Request<pb::GetTemplateRequest>) -> Result<Response<pb::Template>, Status> {
        let principal = principal(&request)?;
        let id = uuid_field("template_id", &request.get_ref().template_id)?;
        let template = self.app.template(principal.tenant(), id).await.map_err(to_status)?;
        Ok(Response::new(template))
    }

    #[instrument(skip_all, fields(rpc = "ListTemplates"))]
    async fn list_templates(
        &self,
        request: Request<pb::ListTemplatesRequest>,
    ) -> Result<Response<pb::ListTemplatesResponse>, Status> {
        let principal = principal(&request)?;
        let body = request.get_ref();
        let limit = paging::page_size(body.page_size, 50, 200)?;
        let channel = match body.channel {
            0 => None,
            value => {
                Some(channel_from_pb(value).ok_or_else(|| errors::invalid_argument("channel", "WHATSAPP or SMS"))?)
            }
        };
        // The keyset (name, id) of the last template of the previous page.
        let after = paging::decode_token(&body.page_token, |parts| {
            let (id, name) = parts.split_last()?;
            Some((name.join("|"), uuid::Uuid::parse_str(id).ok()?))
        })?;
        let filter = TemplateFilter {
            channel,
            department: Some(body.department_id.clone()).filter(|d| !d.is_empty()),
            name: Some(body.name.trim().to_owned()).filter(|n| !n.is_empty()),
            include_archived: body.include_archived,
            after,
            limit: limit + 1,
        };
        let mut templates = self.app.templates(principal.tenant(), &filter).await.map_err(to_status)?;
        let next_page_token = paging::next_page(&mut templates, limit, |t| {
            Some(paging::encode_token(&[t.name.as_str(), t.template_id.as_str()]))
        });
        Ok(Response::new(pb::ListTemplatesResponse { templates, next_page_token }))
    }

    #[instrument(skip_all, fields(rpc = "PreviewTemplate"))]
    async fn preview_template(
        &self,
        request: Request<pb::PreviewTemplateRequest>,
    ) -> Result<Response<pb::PreviewTemplateResponse>, Status> {
        let principal = principal(&request)?;
        let body = request.get_ref();
        let id = uuid_field("template_id", &body.template_id)?;
        let template = self.app.template_state(principal.tenant(), id).await.map_err(to_status)?;
        let rendered = render_send(
            &template,
            &body.variables,
            Some(&body.header_text),
            Some(&body.header_image_url),
            self.app.limits(),
        );
        let (encoding, segments, units) = match rendered.sms {
            Some(analysis) => (
                match analysis.encoding {
                    Encoding::Gsm7 => pb::SmsEncoding::Gsm7,
                    Encoding::Ucs2 => pb::SmsEncoding::Ucs2,
                },
                analysis.segments,
                analysis.units,
            ),
            None => (pb::SmsEncoding::Unspecified, 0, 0),
        };
        Ok(Response::new(pb::PreviewTemplateResponse {
            rendered_header: rendered.header_text.or(rendered.header_image_url).unwrap_or_default(),
            rendered_body: rendered.body,
            footer: rendered.footer.unwrap_or_default(),
            problems: rendered
                .problems
                .into_iter()
                .map(|(field, description)| pb::PreviewProblem { field, description })
                .collect(),
            sms_encoding: encoding as i32,
            sms_segments: i32::try_from(segments).unwrap_or(i32::MAX),
            sms_units: i32::try_from(units).unwrap_or(i32::MAX),
        }))
    }

    #[instrument(skip_all, fields(rpc = "SendTemplate"))]
    async fn send_template(&self, request: Request<pb::SendTemplateRequest>) -> Result<Response<pb::Message>, Status> {
        let principal = principal(&request)?;
        let body = request.get_ref();
        let template_id = uuid_field("template_id", &body.template_id)?;
        let recipient = match &body.recipient {
            Some(pb::send_template_request::Recipient::Phone(phone)) => {
                Recipient::Phone(PhoneNumber::parse(phone).map_err(|e| errors::invalid_argument("phone", e))?)
            }
            Some(pb::send_template_request::Recipient::ContactId(id)) => {
                Recipient::Contact(uuid_field("contact_id", id)?)
            }
            None => return Err(errors::invalid_argument("phone", "a phone or a contact_id is required")),
        };
        let department = match body.department_id.trim() {
            "" => None,
            d => Some(DepartmentId::parse(d).map_err(|e| errors::invalid_argument("department_id", e))?),
        };
        let webhook_url = parse_webhook(&body.webhook_url).map_err(|e| errors::invalid_argument("webhook_url", e))?;
        if body.additional_information.chars().count() > 2000 {
            return Err(errors::invalid_argument("additional_information", "at most 2000 characters"));
        }
        let input = SendInput {
            template_id,
            recipient,
            header_text: Some(body.header_text.clone()).filter(|t| !t.trim().is_empty()),
            header_image_url: Some(body.header_image_url.clone()).filter(|t| !t.trim().is_empty()),
            variables: body.variables.clone(),
            department,
            webhook_url,
            metadata: body.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            additional_information: body.additional_information.trim().to_owned(),
        };
        let privileged = principal.has_role(Role::Manager) || principal.has_role(Role::Service);
        let ctx = command_context(&request, &principal, &body.request_id, operation!("SendTemplate"))?;
        self.app.admit_send(&ctx.tenant).await.map_err(|error| match error {
            AdmitError::Full(full) => errors::resource_exhausted(
                "SEND_BACKLOG_FULL",
                format!(
                    "{} of the tenant's messages wait for the providers (the limit is {}); try again later",
                    full.backlog, full.limit
                ),
                send_backlog::RETRY_AFTER,
            ),
            AdmitError::Database(error) => errors::db_status(error),
        })?;
        let message = self.app.send(&ctx, privileged, input).await.map_err(to_status)?;
        Ok(Response::new(message))
    }

    #[instrument(skip_all, fields(rpc = "GetMessage"))]
    async fn get_message(&self, request: Request<pb::GetMessageRequest>) -> Result<Response<pb::Message>, Status> {
        let principal = principal(&request)?;
        let id = uuid_field("message_id", &request.get_ref().message_id)?;
        // Agents see their own sends; managers and services all of the tenant's.
        let everyone = principal.has_role(Role::Manager) || principal.has_role(Role::Service);
        let visible = |m: &pb::Message| everyone || m.agent_id == principal.subject();
        let message = self.app.message(principal.tenant(), id, visible).await.map_err(to_status)?;
        Ok(Response::new(message))
    }
}
