//! What the handlers read: the read models, reached through the app like every command (no
//! handler touches the pool). A missing agent is the domain's `AgentNotFound`; a database error
//! leaves as `UNAVAILABLE` through the one error mapping.

use chrono::{DateTime, Utc};
use dw_ids::TenantId;
use dw_proto::agentsessions::v1 as pb;

use super::{App, AppError};
use crate::domain::{AgentId, DomainError};
use crate::projections::queries::{self, DayRange};

impl App {
    /// The agent's registration, departments and permissions.
    pub async fn agent_view(&self, tenant: &TenantId, agent: &AgentId) -> Result<pb::Agent, AppError> {
        queries::agent(&self.pool, tenant.as_str(), agent)
            .await?
            .ok_or_else(|| AppError::Rule(DomainError::AgentNotFound(agent.to_string())))
    }

    /// The permissions a registered agent holds.
    pub async fn permissions(&self, tenant: &TenantId, agent: &AgentId) -> Result<Vec<pb::PermissionGrant>, AppError> {
        self.agent_view(tenant, agent).await?;
        Ok(queries::permissions(&self.pool, tenant.as_str(), agent).await?)
    }

    /// The agent's service days in `range` (the latest when none).
    pub async fn service_days(
        &self,
        tenant: &TenantId,
        agent: &AgentId,
        range: DayRange,
        now: DateTime<Utc>,
    ) -> Result<Vec<pb::ServiceDay>, AppError> {
        Ok(queries::service_days(&self.pool, tenant.as_str(), agent, range, now).await?)
    }

    /// The tenant's settings (the defaults until a manager changed them).
    pub async fn tenant_settings(&self, tenant: &TenantId) -> Result<pb::TenantSettings, AppError> {
        let (settings, version) = queries::tenant_settings(&self.pool, tenant.as_str()).await?;
        Ok(queries::settings_to_pb(&settings, version))
    }

    /// One page of the supervisor's board, after `after_agent_id`.
    pub async fn agent_statuses(
        &self,
        tenant: &TenantId,
        department: Option<&str>,
        after_agent_id: &str,
        limit: i64,
    ) -> Result<Vec<pb::AgentStatusView>, AppError> {
        Ok(queries::agent_statuses(&self.pool, tenant.as_str(), department, after_agent_id, limit).await?)
    }
}
