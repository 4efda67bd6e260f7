//! `ContactService`.

use std::sync::Arc;

use dw_auth::Role;
use dw_grpc_kit::errors::{self, Violation};
use dw_grpc_kit::{paging, principal, require_role};
use dw_proto::messaging::v1 as pb;
use dw_proto::messaging::v1::contact_service_server::ContactService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{command_context, to_status, uuid_field};
use crate::app::App;
use crate::app::erasure::EraseClient;
use crate::domain::contact::ContactInput;
use crate::domain::{DomainError, PhoneNumber};
use crate::projections::{ContactKey, ContactSearch};

/// What a `SearchContacts` page token is bound to, with the tenant and the search.
const SEARCH_CONTACTS: &str = "dw.messaging.v1.ContactService/SearchContacts";

pub struct ContactGrpc {
    app: Arc<App>,
}

impl ContactGrpc {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }
}

fn parse_input(body: &pb::UpsertContactRequest) -> Result<ContactInput, Status> {
    let mut violations: Vec<Violation> = Vec::new();
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 200 || name.chars().any(char::is_control) {
        violations.push(("name".into(), "must be 1-200 printable characters".into()));
    }
    let phone = PhoneNumber::parse(&body.phone).map_err(|e| violations.push(("phone".into(), e))).ok();
    if body.external_id.len() > 128 {
        violations.push(("external_id".into(), "at most 128 characters".into()));
    }
    if body.tags.len() > 20 || body.tags.iter().any(|t| t.trim().is_empty() || t.len() > 64) {
        violations.push(("tags".into(), "at most 20 tags of 1-64 characters".into()));
    }
    match phone {
        Some(phone) if violations.is_empty() => Ok(ContactInput {
            name: name.to_owned(),
            phone,
            external_id: Some(body.external_id.trim().to_owned()).filter(|e| !e.is_empty()),
            tags: body.tags.iter().map(|t| t.trim().to_owned()).collect(),
        }),
        _ => Err(errors::invalid_arguments(violations)),
    }
}

/// The permission an agent needs to see contacts (managers and services see their tenant's).
pub const VIEW_PERMISSION: &str = "contacts.view";

async fn may_view_contacts(app: &App, principal: &dw_auth::Principal) -> Result<(), Status> {
    if principal.has_role(Role::Manager) || principal.has_role(Role::Service) {
        return Ok(());
    }
    let granted =
        app.has_permission(principal.tenant(), principal.subject(), VIEW_PERMISSION).await.map_err(to_status)?;
    if granted { Ok(()) } else { Err(to_status(DomainError::MissingPermission(VIEW_PERMISSION).into())) }
}

#[tonic::async_trait]
impl ContactService for ContactGrpc {
    #[instrument(skip_all, fields(rpc = "UpsertContact"))]
    async fn upsert_contact(
        &self,
        request: Request<pb::UpsertContactRequest>,
    ) -> Result<Response<pb::Contact>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager, Role::Service])?;
        let body = request.get_ref();
        let input = parse_input(body)?;
        let ctx =
            command_context(&request, &principal, &body.request_id, "dw.messaging.v1.ContactService/UpsertContact")?;
        let contact = self.app.upsert_contact(&ctx, input).await.map_err(to_status)?;
        Ok(Response::new(contact))
    }

    #[instrument(skip_all, fields(rpc = "SearchContacts"))]
    async fn search_contacts(
        &self,
        request: Request<pb::SearchContactsRequest>,
    ) -> Result<Response<pb::SearchContactsResponse>, Status> {
        let principal = principal(&request)?;
        let body = request.get_ref();
        may_view_contacts(&self.app, &principal).await?;
        let name = Some(body.name.trim()).filter(|n| !n.is_empty());
        if name.is_some_and(|n| n.chars().count() > 200) {
            return Err(errors::invalid_argument("name", "at most 200 characters"));
        }
        let phone = match body.phone.trim() {
            "" => None,
            phone => Some(PhoneNumber::parse(phone).map_err(|e| errors::invalid_argument("phone", e))?),
        };
        if name.is_none() && phone.is_none() {
            return Err(errors::invalid_argument("name", "a name or a phone is required"));
        }
        let limit = paging::page_size(body.page_size, 20, 100)?;
        let phone = phone.as_ref().map(PhoneNumber::as_str);
        // A token belongs to this search of this tenant (AIP-158: the filters stay the same).
        let scope = [principal.tenant().as_str(), name.unwrap_or_default(), phone.unwrap_or_default()];
        let after = paging::decode_bound_token(&body.page_token, SEARCH_CONTACTS, &scope, ContactKey::parse)?;
        let search = ContactSearch { name, phone, after, limit: limit + 1 };
        let mut contacts = self.app.search_contacts(principal.tenant(), &search).await.map_err(to_status)?;
        let next_page_token = paging::next_page(&mut contacts, limit, |(contact, rank)| {
            let key = ContactKey::of(contact, *rank)?;
            Some(paging::encode_bound_token(SEARCH_CONTACTS, &scope, &key.parts().each_ref().map(String::as_str)))
        });
        let contacts = contacts.into_iter().map(|(contact, _)| contact).collect();
        Ok(Response::new(pb::SearchContactsResponse { contacts, next_page_token }))
    }

    #[instrument(skip_all, fields(rpc = "EraseClientData"))]
    async fn erase_client_data(
        &self,
        request: Request<pb::EraseClientDataRequest>,
    ) -> Result<Response<pb::EraseClientDataResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager, Role::Service])?;
        let body = request.get_ref();
        let (phone, reason) = errors::erasure_request(&body.phone, &body.reason)?;
        let ctx =
            command_context(&request, &principal, &body.request_id, "dw.messaging.v1.ContactService/EraseClientData")?;
        let erased = self.app.erase_client(&ctx, EraseClient { phone, reason }).await.map_err(to_status)?;
        Ok(Response::new(erased))
    }

    #[instrument(skip_all, fields(rpc = "GetContact"))]
    async fn get_contact(&self, request: Request<pb::GetContactRequest>) -> Result<Response<pb::Contact>, Status> {
        let principal = principal(&request)?;
        let id = uuid_field("contact_id", &request.get_ref().contact_id)?;
        may_view_contacts(&self.app, &principal).await?;
        let contact = self.app.contact(principal.tenant(), id).await.map_err(to_status)?;
        Ok(Response::new(contact))
    }
}
