//! `ServiceDayService`: the calling agent acts on their own service day.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dw_auth::Role;
use dw_grpc_kit::{errors, principal, require_role};
use dw_proto::agentsessions::v1 as pb;
use dw_proto::agentsessions::v1::service_day_service_server::ServiceDayService;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{command_context, parse_field, to_status};
use crate::app::{App, new_day_id};
use crate::domain::service_day::Command;
use crate::domain::{AgentId, DomainError, ReasonId};
use crate::projections::queries::DayRange;
use dw_tenant_time::{DateRange, InstantRange};

pub struct ServiceDayGrpc {
    app: Arc<App>,
}

impl ServiceDayGrpc {
    pub fn new(app: Arc<App>) -> Self {
        Self { app }
    }

    async fn command<T: prost::Message>(
        &self,
        request: &Request<T>,
        request_id: &str,
        operation: &'static str,
        command: Command,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let principal = principal(request)?;
        require_role(&principal, &[Role::Agent])?;
        let ctx = command_context(request, &principal, request_id, operation)?;
        let state = self.app.service_day(&ctx, command).await.map_err(to_status)?;
        Ok(Response::new(state))
    }

    /// The calling agent, registered in the caller's tenant.
    async fn caller<T>(&self, request: &Request<T>) -> Result<(dw_auth::Principal, AgentId), Status> {
        let principal = principal(request)?;
        require_role(&principal, &[Role::Agent])?;
        let agent_id = AgentId::parse(principal.subject())
            .map_err(|_| super::domain_status(DomainError::AgentNotFound(principal.subject().to_owned())))?;
        Ok((principal, agent_id))
    }
}

fn reason_id(field: &str, value: &str) -> Result<ReasonId, Status> {
    parse_field(field, value, ReasonId::parse)
}

fn time_field(field: &str, value: &prost_types::Timestamp) -> Result<DateTime<Utc>, Status> {
    DateTime::from_timestamp(value.seconds, u32::try_from(value.nanos).unwrap_or(u32::MAX))
        .ok_or_else(|| errors::invalid_argument(field, "not a valid timestamp"))
}

#[tonic::async_trait]
impl ServiceDayService for ServiceDayGrpc {
    #[instrument(skip_all, fields(rpc = "StartServiceDay"))]
    async fn start_service_day(
        &self,
        request: Request<pb::StartServiceDayRequest>,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let command = Command::StartDay { day_id: new_day_id(), departments: Vec::new() };
        let request_id = request.get_ref().request_id.clone();
        self.command(&request, &request_id, "dw.agentsessions.v1.ServiceDayService/StartServiceDay", command).await
    }

    #[instrument(skip_all, fields(rpc = "NotifyExit"))]
    async fn notify_exit(
        &self,
        request: Request<pb::NotifyExitRequest>,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let body = request.get_ref();
        let command = Command::NotifyExit { reason_id: reason_id("reason_id", &body.reason_id)? };
        let request_id = body.request_id.clone();
        self.command(&request, &request_id, "dw.agentsessions.v1.ServiceDayService/NotifyExit", command).await
    }

    #[instrument(skip_all, fields(rpc = "CancelExit"))]
    async fn cancel_exit(
        &self,
        request: Request<pb::CancelExitRequest>,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let request_id = request.get_ref().request_id.clone();
        self.command(&request, &request_id, "dw.agentsessions.v1.ServiceDayService/CancelExit", Command::CancelExit)
            .await
    }

    #[instrument(skip_all, fields(rpc = "StartBreak"))]
    async fn start_break(
        &self,
        request: Request<pb::StartBreakRequest>,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let body = request.get_ref();
        let reason_id = if body.reason_id.is_empty() { None } else { Some(reason_id("reason_id", &body.reason_id)?) };
        let request_id = body.request_id.clone();
        self.command(
            &request,
            &request_id,
            "dw.agentsessions.v1.ServiceDayService/StartBreak",
            Command::StartBreak { reason_id },
        )
        .await
    }

    #[instrument(skip_all, fields(rpc = "EndBreak"))]
    async fn end_break(&self, request: Request<pb::EndBreakRequest>) -> Result<Response<pb::AgentDayState>, Status> {
        let body = request.get_ref();
        if !body.confirm {
            return Err(errors::invalid_argument("confirm", "ending a break must be confirmed (confirm: true)"));
        }
        let request_id = body.request_id.clone();
        self.command(&request, &request_id, "dw.agentsessions.v1.ServiceDayService/EndBreak", Command::EndBreak).await
    }

    #[instrument(skip_all, fields(rpc = "EndServiceDay"))]
    async fn end_service_day(
        &self,
        request: Request<pb::EndServiceDayRequest>,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let request_id = request.get_ref().request_id.clone();
        self.command(&request, &request_id, "dw.agentsessions.v1.ServiceDayService/EndServiceDay", Command::EndDay)
            .await
    }

    #[instrument(skip_all, fields(rpc = "GetMyState"))]
    async fn get_my_state(
        &self,
        request: Request<pb::GetMyStateRequest>,
    ) -> Result<Response<pb::AgentDayState>, Status> {
        let (principal, agent_id) = self.caller(&request).await?;
        let state = self.app.day_state(principal.tenant(), &agent_id).await.map_err(to_status)?;
        Ok(Response::new(state))
    }

    #[instrument(skip_all, fields(rpc = "GetMyInformation"))]
    async fn get_my_information(
        &self,
        request: Request<pb::GetMyInformationRequest>,
    ) -> Result<Response<pb::GetMyInformationResponse>, Status> {
        let (principal, agent_id) = self.caller(&request).await?;
        let body = request.get_ref();
        let started = match (&body.from, &body.to) {
            (None, None) => InstantRange::default(),
            (Some(from), Some(to)) => {
                let from = time_field("from", from)?;
                let to = time_field("to", to)?;
                if to <= from {
                    return Err(errors::invalid_argument("to", "must be after from"));
                }
                InstantRange { from: Some(from), to: Some(to) }
            }
            (None, Some(_)) => return Err(errors::invalid_argument("from", "required when to is set")),
            (Some(_), None) => return Err(errors::invalid_argument("to", "required when from is set")),
        };
        // Service dates are already the tenant's local dates: compared as dates, no zone needed.
        let dates = DateRange::parse("from_date", &body.from_date, "to_date", &body.to_date)
            .map_err(|e| errors::invalid_argument(e.field, e.message))?;
        let range = if started == InstantRange::default() && dates.is_open() {
            DayRange::Latest
        } else {
            DayRange::Between { started, dates }
        };
        let tenant = principal.tenant();
        let agent = self.app.agent_view(tenant, &agent_id).await.map_err(to_status)?;
        let state = self.app.day_state(tenant, &agent_id).await.map_err(to_status)?;
        let days = self.app.service_days(tenant, &agent_id, range, Utc::now()).await.map_err(to_status)?;
        Ok(Response::new(pb::GetMyInformationResponse {
            agent_id: agent_id.to_string(),
            display_name: agent.display_name,
            status: state.status,
            days,
            department_ids: agent.department_ids,
        }))
    }

    #[instrument(skip_all, fields(rpc = "GetMyPermissions"))]
    async fn get_my_permissions(
        &self,
        request: Request<pb::GetMyPermissionsRequest>,
    ) -> Result<Response<pb::GetMyPermissionsResponse>, Status> {
        let (principal, agent_id) = self.caller(&request).await?;
        let permissions = self.app.permissions(principal.tenant(), &agent_id).await.map_err(to_status)?;
        Ok(Response::new(pb::GetMyPermissionsResponse { permissions }))
    }

    #[instrument(skip_all, fields(rpc = "ListExitReasons"))]
    async fn list_exit_reasons(
        &self,
        request: Request<pb::ListExitReasonsRequest>,
    ) -> Result<Response<pb::ListExitReasonsResponse>, Status> {
        let (principal, _) = self.caller(&request).await?;
        let settings = self.app.tenant_settings(principal.tenant()).await.map_err(to_status)?;
        Ok(Response::new(pb::ListExitReasonsResponse {
            exit_reasons: if settings.auto_distribution_enabled { settings.exit_reasons } else { Vec::new() },
            exit_available: settings.auto_distribution_enabled,
        }))
    }

    #[instrument(skip_all, fields(rpc = "ListBreakReasons"))]
    async fn list_break_reasons(
        &self,
        request: Request<pb::ListBreakReasonsRequest>,
    ) -> Result<Response<pb::ListBreakReasonsResponse>, Status> {
        let (principal, _) = self.caller(&request).await?;
        let settings = self.app.tenant_settings(principal.tenant()).await.map_err(to_status)?;
        Ok(Response::new(pb::ListBreakReasonsResponse { break_reasons: settings.break_reasons }))
    }

    #[instrument(skip_all, fields(rpc = "GetWorkspaceLinks"))]
    async fn get_workspace_links(
        &self,
        request: Request<pb::GetWorkspaceLinksRequest>,
    ) -> Result<Response<pb::GetWorkspaceLinksResponse>, Status> {
        let (principal, _) = self.caller(&request).await?;
        let settings = self.app.tenant_settings(principal.tenant()).await.map_err(to_status)?;
        Ok(Response::new(pb::GetWorkspaceLinksResponse { ticket_workspace_url: settings.ticket_workspace_url }))
    }
}
