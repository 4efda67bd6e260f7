//! `WebhookService`: managers register endpoints, rotate their secrets, read the delivery log and
//! redeliver.

use dw_grpc_kit::errors::{self, db_status, parse_field, to_status};
use dw_grpc_kit::paging;
use dw_ids::WebhookId;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::webhook_service_server::WebhookService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::{manager, manager_command, page_limit};
use crate::app::destination::DestinationPolicy;
use crate::app::{self, CreateWebhook, DeleteWebhook, Redeliver, RotateSecret};
use crate::domain::webhook;
use crate::projections::queries::webhooks::{CreatedKey, list_deliveries, list_webhooks};

/// What the page tokens of the two lists are bound to, with the tenant (and the endpoint).
const LIST_WEBHOOKS: &str = "dw.notifications.v1.WebhookService/ListWebhooks";
const LIST_DELIVERIES: &str = "dw.notifications.v1.WebhookService/ListDeliveries";

pub struct WebhookGrpc {
    pool: PgPool,
    destinations: DestinationPolicy,
}

impl WebhookGrpc {
    /// Endpoints are registered where `destinations` admits.
    pub fn new(pool: PgPool, destinations: DestinationPolicy) -> Self {
        Self { pool, destinations }
    }
}

#[tonic::async_trait]
impl WebhookService for WebhookGrpc {
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::WebhookWithSecret>, Status> {
        let body = request.get_ref();
        let operation = "dw.notifications.v1.WebhookService/CreateWebhook";
        let ctx = manager_command(&request, &body.request_id, operation)?;
        if body.for_sends {
            // Its deliveries go to each send's URL, admitted by messaging-templates at the send.
            if !body.url.is_empty() {
                return Err(errors::invalid_argument("url", "must be empty for the sends endpoint"));
            }
            if !body.event_types.is_empty() {
                return Err(errors::invalid_argument("event_types", "must be empty for the sends endpoint"));
            }
            let description = parse_field("description", &body.description, webhook::parse_description)?;
            let create = CreateWebhook {
                tenant: &ctx.tenant,
                url: String::new(),
                description,
                event_types: vec![],
                for_sends: true,
            };
            return Ok(Response::new(app::execute(&self.pool, &ctx, &create).await.map_err(to_status)?));
        }
        self.destinations
            .admit(&body.url)
            .await
            .map_err(|refused| errors::invalid_argument("url", refused.to_string()))?;
        let event_types = webhook::parse_event_types(&body.event_types)
            .map_err(|reason| errors::invalid_argument("event_types", reason))?;
        let description = parse_field("description", &body.description, webhook::parse_description)?;
        let create =
            CreateWebhook { tenant: &ctx.tenant, url: body.url.clone(), description, event_types, for_sends: false };
        Ok(Response::new(app::execute(&self.pool, &ctx, &create).await.map_err(to_status)?))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let principal = manager(&request)?;
        let body = request.get_ref();
        let limit = page_limit(body.page_size)?;
        let scope = [principal.tenant().as_str()];
        let after = paging::decode_bound_token(&body.page_token, LIST_WEBHOOKS, &scope, CreatedKey::parse)?;
        let mut webhooks =
            list_webhooks(&self.pool, principal.tenant().as_str(), after, limit + 1).await.map_err(db_status)?;
        let next_page_token = paging::next_page(&mut webhooks, limit, |w| {
            let key = CreatedKey::of(w.created_at.as_ref(), uuid::Uuid::parse_str(&w.webhook_id).ok()?)?;
            Some(paging::encode_bound_token(LIST_WEBHOOKS, &scope, &key.parts().each_ref().map(String::as_str)))
        });
        Ok(Response::new(pb::ListWebhooksResponse { webhooks, next_page_token }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let body = request.get_ref();
        let ctx = manager_command(&request, &body.request_id, "dw.notifications.v1.WebhookService/DeleteWebhook")?;
        let webhook_id = parse_field("webhook_id", &body.webhook_id, WebhookId::parse)?;
        let delete = DeleteWebhook { tenant: &ctx.tenant, webhook_id };
        Ok(Response::new(app::execute(&self.pool, &ctx, &delete).await.map_err(to_status)?))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::WebhookWithSecret>, Status> {
        let body = request.get_ref();
        let operation = "dw.notifications.v1.WebhookService/RotateWebhookSecret";
        let ctx = manager_command(&request, &body.request_id, operation)?;
        let webhook_id = parse_field("webhook_id", &body.webhook_id, WebhookId::parse)?;
        let rotate = RotateSecret { tenant: &ctx.tenant, webhook_id };
        Ok(Response::new(app::execute(&self.pool, &ctx, &rotate).await.map_err(to_status)?))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let principal = manager(&request)?;
        let body = request.get_ref();
        let webhook_id = parse_field("webhook_id", &body.webhook_id, WebhookId::parse)?;
        let limit = page_limit(body.page_size)?;
        let webhook = webhook_id.as_uuid().to_string();
        let scope = [principal.tenant().as_str(), webhook.as_str()];
        let after = paging::decode_bound_token(&body.page_token, LIST_DELIVERIES, &scope, CreatedKey::parse)?;
        let tenant = principal.tenant().as_str();
        let mut deliveries =
            list_deliveries(&self.pool, tenant, webhook_id.as_uuid(), after, limit + 1).await.map_err(db_status)?;
        let next_page_token = paging::next_page(&mut deliveries, limit, |d| {
            let key =
                CreatedKey::of(d.created_at.as_ref(), webhook::DeliveryId::parse(&d.delivery_id).ok()?.as_uuid())?;
            Some(paging::encode_bound_token(LIST_DELIVERIES, &scope, &key.parts().each_ref().map(String::as_str)))
        });
        Ok(Response::new(pb::ListDeliveriesResponse { deliveries, next_page_token }))
    }

    async fn redeliver_webhook(
        &self,
        request: Request<pb::RedeliverWebhookRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let body = request.get_ref();
        let operation = "dw.notifications.v1.WebhookService/RedeliverWebhook";
        let ctx = manager_command(&request, &body.request_id, operation)?;
        let delivery_id = parse_field("delivery_id", &body.delivery_id, webhook::DeliveryId::parse)?;
        let redeliver = Redeliver { tenant: &ctx.tenant, delivery_id };
        Ok(Response::new(app::execute(&self.pool, &ctx, &redeliver).await.map_err(to_status)?))
    }
}
