//! The mutations of webhook endpoints (create, delete, rotate the secret) and manual redelivery.

use chrono::{DateTime, Utc};
use dw_eventstore::command::Attempt;
use dw_ids::{TenantId, WebhookId};
use dw_proto::notifications::v1 as pb;
use rand::Rng as _;
use sqlx::PgConnection;

use super::AppError;
use crate::domain::DomainError;
use crate::domain::webhook::{DeliveryId, secret_from_key};
use crate::projections::queries::webhooks::{DELIVERY_COLUMNS, WEBHOOK_COLUMNS, delivery_view, webhook_from_row};

fn new_secret() -> String {
    secret_from_key(&rand::rng().random())
}

/// A new endpoint, validated at the edge; its secret is made here. `for_sends`: the tenant's
/// sends endpoint (no url or event types; it signs the deliveries of each send's own webhook).
pub struct CreateWebhook<'c> {
    pub tenant: &'c TenantId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
    pub for_sends: bool,
}

impl Attempt<DomainError> for CreateWebhook<'_> {
    type Response = pb::WebhookWithSecret;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        if self.for_sends {
            let existing: Option<uuid::Uuid> =
                sqlx::query_scalar("SELECT webhook_id FROM webhooks WHERE tenant_id = $1 AND for_sends AND enabled")
                    .bind(self.tenant)
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some(existing) = existing {
                return Err(DomainError::SendsEndpointExists(WebhookId::from(existing)).into());
            }
        }
        let secret = new_secret();
        let sql = format!(
            "INSERT INTO webhooks (tenant_id, webhook_id, url, description, event_types, secret, for_sends) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant)
            .bind(WebhookId::new())
            .bind(&self.url)
            .bind(&self.description)
            .bind(&self.event_types)
            .bind(&secret)
            .bind(self.for_sends)
            .fetch_one(&mut *conn)
            .await?;
        Ok(pb::WebhookWithSecret { webhook: Some(webhook_from_row(&row)?), secret })
    }
}

/// Deleting an endpoint turns it off for good (its deliveries stay readable).
pub struct DeleteWebhook<'c> {
    pub tenant: &'c TenantId,
    pub webhook_id: WebhookId,
}

impl Attempt<DomainError> for DeleteWebhook<'_> {
    type Response = pb::Webhook;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let sql = format!(
            "UPDATE webhooks SET enabled = FALSE, disabled_reason = 'deleted' WHERE tenant_id = $1 AND webhook_id = $2 \
             RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant)
            .bind(self.webhook_id)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DomainError::WebhookNotFound(self.webhook_id))?;
        Ok(webhook_from_row(&row)?)
    }
}

/// A new signing secret for an endpoint.
pub struct RotateSecret<'c> {
    pub tenant: &'c TenantId,
    pub webhook_id: WebhookId,
}

impl Attempt<DomainError> for RotateSecret<'_> {
    type Response = pb::WebhookWithSecret;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let secret = new_secret();
        let sql = format!(
            "UPDATE webhooks SET secret = $3 WHERE tenant_id = $1 AND webhook_id = $2 RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant)
            .bind(self.webhook_id)
            .bind(&secret)
            .fetch_optional(&mut *conn)
            .await?
            .ok_or(DomainError::WebhookNotFound(self.webhook_id))?;
        Ok(pb::WebhookWithSecret { webhook: Some(webhook_from_row(&row)?), secret })
    }
}

/// Queues a delivery again, now.
pub struct Redeliver<'c> {
    pub tenant: &'c TenantId,
    pub delivery_id: DeliveryId,
}

impl Attempt<DomainError> for Redeliver<'_> {
    type Response = pb::Delivery;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let sql = format!(
            "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now() FROM webhooks w \
             WHERE d.tenant_id = $1 AND d.delivery_id = $2 AND w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
             RETURNING {DELIVERY_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant)
            .bind(self.delivery_id.as_uuid())
            .fetch_optional(&mut *conn)
            .await?
            .ok_or_else(|| DomainError::DeliveryNotFound(self.delivery_id.to_string()))?;
        Ok(delivery_view(conn, &row).await?)
    }
}
