//! The mutations of notifications (webhook endpoints, redeliveries, browser subscriptions), each
//! an attempt run by the kernel's command path: idempotent by `request_id`, in one transaction.

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, Attempt};
use dw_eventstore::{CommandContext, CommandError, DomainRule, RuleKind};
use dw_ids::{TenantId, WebhookId};
use dw_proto::notifications::v1 as pb;
use dw_proto::time::timestamp;
use sqlx::{PgConnection, PgPool};

use crate::webhooks::{WEBHOOK_COLUMNS, delivery_view, new_secret, webhook_from_row};

/// A broken rule of notifications.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("webhook {0} not found")]
    WebhookNotFound(WebhookId),
    #[error("delivery {0} not found")]
    DeliveryNotFound(String),
}

impl DomainRule for DomainError {
    fn reason(&self) -> &'static str {
        match self {
            Self::WebhookNotFound(_) => "WEBHOOK_NOT_FOUND",
            Self::DeliveryNotFound(_) => "DELIVERY_NOT_FOUND",
        }
    }

    fn kind(&self) -> RuleKind {
        RuleKind::NotFound
    }
}

pub type AppError = CommandError<DomainError>;

/// Runs a mutation idempotently under the request's key.
pub async fn execute<A: Attempt<DomainError>>(
    pool: &PgPool,
    ctx: &CommandContext,
    mutation: &A,
) -> Result<A::Response, AppError> {
    command::execute(pool, ctx, mutation).await
}

/// A new endpoint, validated at the edge; its secret is made here.
pub struct CreateWebhook<'c> {
    pub tenant: &'c TenantId,
    pub url: String,
    pub description: String,
    pub event_types: Vec<String>,
}

impl Attempt<DomainError> for CreateWebhook<'_> {
    type Response = pb::WebhookWithSecret;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let secret = new_secret();
        let sql = format!(
            "INSERT INTO webhooks (tenant_id, webhook_id, url, description, event_types, secret) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING {WEBHOOK_COLUMNS}"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(self.tenant)
            .bind(WebhookId::new())
            .bind(&self.url)
            .bind(&self.description)
            .bind(&self.event_types)
            .bind(&secret)
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
    pub delivery_id: uuid::Uuid,
}

impl Attempt<DomainError> for Redeliver<'_> {
    type Response = pb::Delivery;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let row = sqlx::query(
            "UPDATE webhook_deliveries d SET status = 'pending', next_attempt_at = now() FROM webhooks w \
             WHERE d.tenant_id = $1 AND d.delivery_id = $2 AND w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
             RETURNING d.delivery_id, d.webhook_id, w.url, d.event_type, d.status, d.next_attempt_at, d.created_at",
        )
        .bind(self.tenant)
        .bind(self.delivery_id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| DomainError::DeliveryNotFound(self.delivery_id.to_string()))?;
        Ok(delivery_view(conn, &row).await?)
    }
}

/// An agent's browser, subscribed to Web Push (endpoint and keys validated at the edge).
pub struct EnableBrowser<'c> {
    pub tenant: &'c TenantId,
    pub agent: &'c str,
    pub endpoint: String,
    pub p256dh: String,
    pub auth: String,
}

impl Attempt<DomainError> for EnableBrowser<'_> {
    type Response = pb::BrowserSubscription;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let created_at: DateTime<Utc> = sqlx::query_scalar(
            "INSERT INTO push_subscriptions (tenant_id, agent_id, endpoint, p256dh, auth) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (tenant_id, endpoint) DO UPDATE SET agent_id = EXCLUDED.agent_id, p256dh = EXCLUDED.p256dh, \
                 auth = EXCLUDED.auth RETURNING created_at",
        )
        .bind(self.tenant)
        .bind(self.agent)
        .bind(&self.endpoint)
        .bind(&self.p256dh)
        .bind(&self.auth)
        .fetch_one(&mut *conn)
        .await?;
        Ok(pb::BrowserSubscription { endpoint: self.endpoint.clone(), created_at: Some(timestamp(created_at)) })
    }
}

/// An agent's browser, unsubscribed.
pub struct DisableBrowser<'c> {
    pub tenant: &'c TenantId,
    pub agent: &'c str,
    pub endpoint: String,
}

impl Attempt<DomainError> for DisableBrowser<'_> {
    type Response = pb::DisableBrowserNotificationsResponse;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<Self::Response, AppError> {
        let removed =
            sqlx::query("DELETE FROM push_subscriptions WHERE tenant_id = $1 AND agent_id = $2 AND endpoint = $3")
                .bind(self.tenant)
                .bind(self.agent)
                .bind(&self.endpoint)
                .execute(&mut *conn)
                .await?
                .rows_affected();
        Ok(pb::DisableBrowserNotificationsResponse { removed: removed > 0 })
    }
}
