//! What the handlers read: the read models and a template's state, reached through the app like
//! every command (no handler touches the pool). Missing things are the domain's `*NotFound`; a
//! database error leaves as `UNAVAILABLE` through the one error mapping.

use dw_ids::TenantId;
use dw_proto::messaging::v1 as pb;

use super::{App, AppError, load_template};
use crate::domain::DomainError;
use crate::domain::template::Template;
use crate::projections::{self, TemplateFilter};

impl App {
    /// A template's state, from its own stream (what an update or a preview starts from).
    pub async fn template_state(&self, tenant: &TenantId, id: uuid::Uuid) -> Result<Template, AppError> {
        let mut conn = self.pool.acquire().await?;
        let found = load_template(&mut conn, tenant, id).await?;
        found.map(|(template, _)| template).ok_or_else(|| DomainError::TemplateNotFound(id.to_string()).into())
    }

    pub async fn template(&self, tenant: &TenantId, id: uuid::Uuid) -> Result<pb::Template, AppError> {
        let mut conn = self.pool.acquire().await?;
        let found = projections::template(&mut conn, tenant, id).await?;
        found.ok_or_else(|| DomainError::TemplateNotFound(id.to_string()).into())
    }

    pub async fn templates(&self, tenant: &TenantId, filter: &TemplateFilter) -> Result<Vec<pb::Template>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(projections::templates(&mut conn, tenant, filter).await?)
    }

    /// A message, if it exists and `visible` says the caller may see it (else `MessageNotFound`,
    /// so a caller cannot learn that another's message exists).
    pub async fn message(
        &self,
        tenant: &TenantId,
        id: uuid::Uuid,
        visible: impl Fn(&pb::Message) -> bool,
    ) -> Result<pb::Message, AppError> {
        let mut conn = self.pool.acquire().await?;
        let found = projections::message(&mut conn, tenant, id).await?;
        found.filter(|m| visible(m)).ok_or_else(|| DomainError::MessageNotFound(id.to_string()).into())
    }

    /// Whether the agent holds `permission` (kept from agent-sessions' grants).
    pub async fn has_permission(&self, tenant: &TenantId, agent: &str, permission: &str) -> Result<bool, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(projections::has_permission(&mut conn, tenant, agent, permission).await?)
    }

    pub async fn contact(&self, tenant: &TenantId, id: uuid::Uuid) -> Result<pb::Contact, AppError> {
        let mut conn = self.pool.acquire().await?;
        let found = projections::contact(&mut conn, tenant, id).await?;
        found.ok_or_else(|| DomainError::ContactNotFound(id.to_string()).into())
    }

    /// A page of a contact search, each contact with its rank (see [`projections::search_contacts`]).
    pub async fn search_contacts(
        &self,
        tenant: &TenantId,
        search: &projections::ContactSearch<'_>,
    ) -> Result<Vec<(pb::Contact, f32)>, AppError> {
        let mut conn = self.pool.acquire().await?;
        Ok(projections::search_contacts(&mut conn, tenant, search).await?)
    }
}
