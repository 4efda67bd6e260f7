//! `WebhookService`: managers register endpoints, rotate their secrets, read the delivery log and
//! redeliver.

use dw_grpc_kit::errors::{self, db_status, parse_field, to_status};
use dw_ids::WebhookId;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::webhook_service_server::WebhookService;
use sqlx::PgPool;
use tonic::{Request, Response, Status};

use super::{manager, manager_command, page_limit};
use crate::app::destination::DestinationPolicy;
use crate::app::{self, CreateWebhook, DeleteWebhook, Redeliver, RotateSecret};
use crate::domain::webhook;
use crate::projections::queries::webhooks::{list_deliveries, list_webhooks};

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
        self.destinations
            .admit(&body.url)
            .await
            .map_err(|refused| errors::invalid_argument("url", refused.to_string()))?;
        let event_types = webhook::parse_event_types(&body.event_types)
            .map_err(|reason| errors::invalid_argument("event_types", reason))?;
        let description = parse_field("description", &body.description, webhook::parse_description)?;
        let create = CreateWebhook { tenant: &ctx.tenant, url: body.url.clone(), description, event_types };
        Ok(Response::new(app::execute(&self.pool, &ctx, &create).await.map_err(to_status)?))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let principal = manager(&request)?;
        let webhooks = list_webhooks(&self.pool, principal.tenant().as_str()).await.map_err(db_status)?;
        Ok(Response::new(pb::ListWebhooksResponse { webhooks }))
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
        let deliveries = list_deliveries(&self.pool, principal.tenant().as_str(), webhook_id.as_uuid(), limit)
            .await
            .map_err(db_status)?;
        Ok(Response::new(pb::ListDeliveriesResponse { deliveries }))
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
