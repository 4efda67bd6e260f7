//! What the handlers read: the read models, reached through the app like every command (no
//! handler touches the pool). A database error leaves as `UNAVAILABLE` through the one error
//! mapping.

use chrono::{DateTime, Utc};
use dw_ids::TenantId;
use dw_proto::distribution::v1 as pb;

use super::AppError;
use super::tasks::App;
use crate::domain::{DomainError, TaskId};
use crate::projections::{self, queries};

/// How a caller names a task.
pub enum TaskKey<'a> {
    Id(TaskId),
    Protocol(&'a str),
}

impl App {
    /// The task, or `None` when the tenant has none by that key.
    pub async fn find_task(&self, tenant: &TenantId, key: TaskKey<'_>) -> Result<Option<pb::Task>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(match key {
            TaskKey::Id(id) => queries::task_by_id(&mut conn, tenant, id).await?,
            TaskKey::Protocol(protocol) => queries::task_by_protocol(&mut conn, tenant, protocol).await?,
        })
    }

    /// The departments an agent is linked to.
    pub async fn departments_of(&self, tenant: &TenantId, agent: &str) -> Result<Vec<String>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(projections::agents::departments_of(&mut conn, tenant, agent).await?)
    }

    /// Whether the agent holds `permission` (kept from agent-sessions' grants).
    pub async fn has_permission(&self, tenant: &TenantId, agent: &str, permission: &str) -> Result<bool, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(projections::agents::has_permission(&mut conn, tenant, agent, permission).await?)
    }

    pub async fn search(&self, tenant: &TenantId, search: &queries::Search) -> Result<Vec<pb::Task>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(queries::search(&mut conn, tenant, search).await?)
    }

    /// The agent's open tasks, and those closed since `include_closed_since`.
    pub async fn tasks_of_agent(
        &self,
        tenant: &TenantId,
        agent: &str,
        include_closed_since: Option<DateTime<Utc>>,
    ) -> Result<Vec<pb::Task>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(queries::tasks_of_agent(&mut conn, tenant, agent, include_closed_since).await?)
    }

    pub async fn queue_stats(
        &self,
        tenant: &TenantId,
        department: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Vec<pb::DepartmentQueueStats>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(queries::queue_stats(&mut conn, tenant, department, now).await?)
    }

    /// The task and every assignment decision taken for it.
    pub async fn explain(
        &self,
        tenant: &TenantId,
        id: TaskId,
    ) -> Result<(pb::Task, Vec<pb::AssignmentDecision>), AppError> {
        let mut conn = self.pool.acquire().await?;
        let task = queries::task_by_id(&mut conn, tenant, id)
            .await?
            .ok_or_else(|| AppError::from(DomainError::TaskNotFound(id.to_string())))?;
        let decisions = queries::decisions(&mut conn, tenant, id).await?;
        Ok((task, decisions))
    }

    pub async fn settings(&self, tenant: &TenantId) -> Result<pb::DistributionSettings, AppError> {
        let mut conn = self.pool.acquire().await?;
        let settings = projections::agents::settings(&mut conn, tenant).await?;
        Ok(queries::settings_to_pb(&settings))
    }
}
