//! `AgentAdminService`: managers administer their tenant's agents and settings.

use std::collections::HashSet;
use std::sync::Arc;

use dw_auth::Role;
use dw_grpc_kit::errors::{self, Violation};
use dw_grpc_kit::{paging, principal, require_role};
use dw_proto::agentsessions::v1 as pb;
use dw_proto::agentsessions::v1::agent_admin_service_server::AgentAdminService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{command_context, parse_field, to_status};
use crate::app::App;
use crate::app::status_feed::{StatusFeed, StatusStream};
use crate::domain::tenant_settings::{self, Field, TenantSettings};
use crate::domain::{AgentId, DepartmentId, Permission, Reason, ReasonId, agent};
use dw_eventstore::UpdateMask;
use dw_tenant_time::TenantZone;

pub struct AgentAdminGrpc {
    app: Arc<App>,
    feed: StatusFeed,
}

impl AgentAdminGrpc {
    pub fn new(app: Arc<App>, feed: StatusFeed) -> Self {
        Self { app, feed }
    }

    async fn agent_command<T: prost::Message>(
        &self,
        request: &Request<T>,
        request_id: &str,
        operation: &'static str,
        agent_id: &str,
        command: impl FnOnce() -> Result<agent::Command, Status>,
    ) -> Result<Response<pb::Agent>, Status> {
        let principal = principal(request)?;
        require_role(&principal, &[Role::Manager])?;
        let agent_id = parse_field("agent_id", agent_id, AgentId::parse)?;
        let command = command()?;
        let ctx = command_context(request, &principal, request_id, operation)?;
        let agent = self.app.agent(&ctx, agent_id, command).await.map_err(to_status)?;
        Ok(Response::new(agent))
    }
}

fn display_name(value: &str) -> Result<String, String> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > 100 || trimmed.chars().any(char::is_control) {
        return Err("must be 1-100 printable characters".into());
    }
    Ok(trimmed.to_owned())
}

fn reasons(field: &str, values: &[pb::Reason], violations: &mut Vec<Violation>) -> Vec<Reason> {
    let mut seen = HashSet::new();
    let mut parsed = Vec::with_capacity(values.len());
    if values.len() > 50 {
        violations.push((field.to_owned(), "at most 50 reasons".into()));
    }
    for (index, value) in values.iter().enumerate() {
        let label = value.label.trim();
        if label.is_empty() || label.chars().count() > 100 {
            violations.push((format!("{field}[{index}].label"), "must be 1-100 characters".into()));
        }
        match ReasonId::parse(&value.id) {
            Ok(id) if !seen.insert(id.clone()) => {
                violations.push((format!("{field}[{index}].id"), "duplicate id".into()));
            }
            Ok(id) => parsed.push(Reason { id, label: label.to_owned() }),
            Err(reason) => violations.push((format!("{field}[{index}].id"), reason)),
        }
    }
    parsed
}

/// The update a request asks for: its mask (an empty one replaces everything, the deprecated
/// behaviour callers before masks rely on; see the contract) and the fields it names, parsed.
/// Fields the mask does not name are neither read nor checked.
fn parse_settings_update(body: &pb::UpdateTenantSettingsRequest) -> Result<tenant_settings::Update, Status> {
    let mask = errors::update_mask(
        body.update_mask.as_ref(),
        tenant_settings::Field::UPDATABLE,
        tenant_settings::Field::READ_ONLY,
        || UpdateMask::All,
    )?;
    let cleared = pb::TenantSettings::default();
    let settings = match (body.settings.as_ref(), &mask) {
        (Some(settings), _) => settings,
        // Replacing everything with nothing is far more likely a mistake than a wish.
        (None, UpdateMask::All) => return Err(errors::invalid_argument("settings", "is required")),
        // A mask naming fields without values clears them.
        (None, UpdateMask::Fields(_)) => &cleared,
    };
    let mut violations = Vec::new();
    let exit_reasons = if mask.includes(Field::ExitReasons) {
        reasons("settings.exit_reasons", &settings.exit_reasons, &mut violations)
    } else {
        Vec::new()
    };
    let break_reasons = if mask.includes(Field::BreakReasons) {
        reasons("settings.break_reasons", &settings.break_reasons, &mut violations)
    } else {
        Vec::new()
    };
    let url = settings.ticket_workspace_url.trim();
    let url_ok = url.is_empty()
        || (url.starts_with("https://")
            && url.len() > "https://".len()
            && url.len() <= 2048
            && !url.contains(char::is_whitespace));
    if mask.includes(Field::TicketWorkspaceUrl) && !url_ok {
        violations
            .push(("settings.ticket_workspace_url".into(), "must be an https:// URL (at most 2048 characters)".into()));
    }
    // Named and empty: back to UTC, like every cleared field.
    let time_zone = if mask.includes(Field::TimeZone) {
        TenantZone::from_stored(settings.time_zone.trim()).unwrap_or_else(|unknown| {
            violations.push(("settings.time_zone".into(), unknown.to_string()));
            TenantZone::UTC
        })
    } else {
        TenantZone::UTC
    };
    if !violations.is_empty() {
        return Err(errors::invalid_arguments(violations));
    }
    let patch = TenantSettings {
        auto_distribution_enabled: settings.auto_distribution_enabled,
        exit_reasons,
        break_reasons,
        ticket_workspace_url: Some(url.to_owned()).filter(|u| !u.is_empty() && url_ok),
        time_zone,
        break_reason_optional: settings.break_reason_optional,
    };
    Ok(tenant_settings::Update { patch, mask, expected_version: body.expected_version })
}

#[tonic::async_trait]
impl AgentAdminService for AgentAdminGrpc {
    #[instrument(skip_all, fields(rpc = "RegisterAgent"))]
    async fn register_agent(&self, request: Request<pb::RegisterAgentRequest>) -> Result<Response<pb::Agent>, Status> {
        let body = request.get_ref();
        let name = body.display_name.clone();
        let (request_id, agent_id) = (body.request_id.clone(), body.agent_id.clone());
        self.agent_command(
            &request,
            &request_id,
            "dw.agentsessions.v1.AgentAdminService/RegisterAgent",
            &agent_id,
            || Ok(agent::Command::Register { display_name: parse_field("display_name", &name, display_name)? }),
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "GetAgent"))]
    async fn get_agent(&self, request: Request<pb::GetAgentRequest>) -> Result<Response<pb::Agent>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let agent_id = parse_field("agent_id", &request.get_ref().agent_id, AgentId::parse)?;
        let agent = self.app.agent_view(principal.tenant(), &agent_id).await.map_err(to_status)?;
        Ok(Response::new(agent))
    }

    #[instrument(skip_all, fields(rpc = "LinkDepartment"))]
    async fn link_department(
        &self,
        request: Request<pb::LinkDepartmentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let body = request.get_ref();
        let (request_id, agent_id, department) =
            (body.request_id.clone(), body.agent_id.clone(), body.department_id.clone());
        self.agent_command(
            &request,
            &request_id,
            "dw.agentsessions.v1.AgentAdminService/LinkDepartment",
            &agent_id,
            || Ok(agent::Command::LinkDepartment(parse_field("department_id", &department, DepartmentId::parse)?)),
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "UnlinkDepartment"))]
    async fn unlink_department(
        &self,
        request: Request<pb::UnlinkDepartmentRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let body = request.get_ref();
        let (request_id, agent_id, department) =
            (body.request_id.clone(), body.agent_id.clone(), body.department_id.clone());
        self.agent_command(
            &request,
            &request_id,
            "dw.agentsessions.v1.AgentAdminService/UnlinkDepartment",
            &agent_id,
            || Ok(agent::Command::UnlinkDepartment(parse_field("department_id", &department, DepartmentId::parse)?)),
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "GrantPermission"))]
    async fn grant_permission(
        &self,
        request: Request<pb::GrantPermissionRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let body = request.get_ref();
        let (request_id, agent_id, permission) =
            (body.request_id.clone(), body.agent_id.clone(), body.permission.clone());
        self.agent_command(
            &request,
            &request_id,
            "dw.agentsessions.v1.AgentAdminService/GrantPermission",
            &agent_id,
            || Ok(agent::Command::Grant(parse_field("permission", &permission, Permission::parse)?)),
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "RevokePermission"))]
    async fn revoke_permission(
        &self,
        request: Request<pb::RevokePermissionRequest>,
    ) -> Result<Response<pb::Agent>, Status> {
        let body = request.get_ref();
        let (request_id, agent_id, permission) =
            (body.request_id.clone(), body.agent_id.clone(), body.permission.clone());
        self.agent_command(
            &request,
            &request_id,
            "dw.agentsessions.v1.AgentAdminService/RevokePermission",
            &agent_id,
            || Ok(agent::Command::Revoke(parse_field("permission", &permission, Permission::parse)?)),
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "ListPermissionCatalog"))]
    async fn list_permission_catalog(
        &self,
        request: Request<pb::ListPermissionCatalogRequest>,
    ) -> Result<Response<pb::ListPermissionCatalogResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let permissions = Permission::ALL
            .iter()
            .map(|p| pb::PermissionDescription { permission: p.to_string(), description: p.description().to_owned() })
            .collect();
        Ok(Response::new(pb::ListPermissionCatalogResponse { permissions }))
    }

    #[instrument(skip_all, fields(rpc = "UpdateTenantSettings"))]
    async fn update_tenant_settings(
        &self,
        request: Request<pb::UpdateTenantSettingsRequest>,
    ) -> Result<Response<pb::TenantSettings>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let update = parse_settings_update(body)?;
        let ctx = command_context(
            &request,
            &principal,
            &body.request_id,
            "dw.agentsessions.v1.AgentAdminService/UpdateTenantSettings",
        )?;
        let settings = self.app.update_settings(&ctx, update).await.map_err(to_status)?;
        Ok(Response::new(settings))
    }

    #[instrument(skip_all, fields(rpc = "GetTenantSettings"))]
    async fn get_tenant_settings(
        &self,
        request: Request<pb::GetTenantSettingsRequest>,
    ) -> Result<Response<pb::TenantSettings>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        Ok(Response::new(self.app.tenant_settings(principal.tenant()).await.map_err(to_status)?))
    }

    #[instrument(skip_all, fields(rpc = "ListAgentStatuses"))]
    async fn list_agent_statuses(
        &self,
        request: Request<pb::ListAgentStatusesRequest>,
    ) -> Result<Response<pb::ListAgentStatusesResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let department = optional_department(&body.department_id)?;
        let page_size = paging::page_size(body.page_size, 100, 500)?;
        let after = paging::decode_token(&body.page_token, |parts| match parts {
            [agent_id] => Some((*agent_id).to_owned()),
            _ => None,
        })?
        .unwrap_or_default();
        let agents = self
            .app
            .agent_statuses(principal.tenant(), department.as_ref().map(DepartmentId::as_str), &after, page_size + 1)
            .await
            .map_err(to_status)?;
        let mut agents = agents;
        let next_page_token =
            paging::next_page(&mut agents, page_size, |a| Some(paging::encode_token(&[a.agent_id.as_str()])));
        Ok(Response::new(pb::ListAgentStatusesResponse { agents, next_page_token }))
    }

    type WatchAgentStatusesStream = StatusStream;

    #[instrument(skip_all, fields(rpc = "WatchAgentStatuses"))]
    async fn watch_agent_statuses(
        &self,
        request: Request<pb::WatchAgentStatusesRequest>,
    ) -> Result<Response<Self::WatchAgentStatusesStream>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let department = optional_department(&request.get_ref().department_id)?;
        let stream = self.feed.watch(principal.tenant().clone(), department.map(|d| d.to_string())).await?;
        Ok(Response::new(stream))
    }
}

fn optional_department(value: &str) -> Result<Option<DepartmentId>, Status> {
    if value.is_empty() {
        return Ok(None);
    }
    parse_field("department_id", value, DepartmentId::parse).map(Some)
}
