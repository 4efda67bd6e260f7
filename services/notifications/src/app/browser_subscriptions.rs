//! The mutations of agents' browser subscriptions to Web Push.

use chrono::{DateTime, Utc};
use dw_eventstore::command::Attempt;
use dw_ids::TenantId;
use dw_proto::notifications::v1 as pb;
use dw_proto::time::timestamp;
use sqlx::PgConnection;

use super::AppError;
use crate::domain::DomainError;

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
