//! `DistributionService`.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use dw_auth::{Principal, Role};
use dw_eventstore::UpdateMask;
use dw_grpc_kit::errors::{self, Violation};
use dw_grpc_kit::{paging, principal, require_role};
use dw_proto::distribution::v1 as pb;
use dw_proto::distribution::v1::distribution_service_server::DistributionService;
use dw_tenant_time::DateRange;
use tonic::{Request, Response, Status};
use tracing::instrument;

use super::{command_context, domain_status, parse_field, to_status};
use crate::app::erasure::EraseClient;
use crate::app::reads::TaskKey;
use crate::app::task_feed::{TaskFeed, TaskStream};
use crate::app::tasks::{App, CreateTask, TaskOp};
use crate::codec::channel_from_pb;
use crate::domain::settings::{self, Field};
use crate::domain::task::Status as TaskStatus;
use crate::domain::values::parse_client_name;
use crate::domain::{AgentId, ClientContact, DepartmentId, DomainError, PhoneNumber, Priority, Protocol, TaskId};
use crate::projections::queries;

pub struct DistributionGrpc {
    app: Arc<App>,
    feed: TaskFeed,
}

impl DistributionGrpc {
    pub fn new(app: Arc<App>, feed: TaskFeed) -> Self {
        Self { app, feed }
    }

    async fn task_op<T: prost::Message>(
        &self,
        request: &Request<T>,
        principal: &Principal,
        request_id: &str,
        operation: &'static str,
        op: TaskOp,
    ) -> Result<Response<pb::Task>, Status> {
        let ctx = command_context(request, principal, request_id, operation)?;
        let task = self.app.task(&ctx, op).await.map_err(to_status)?;
        Ok(Response::new(task))
    }

    /// An agent sees their own tasks and their departments'; managers and services all.
    async fn visible(&self, principal: &Principal, task: &pb::Task) -> Result<bool, Status> {
        if principal.has_role(Role::Manager) || principal.has_role(Role::Service) {
            return Ok(true);
        }
        if task.agent_id == principal.subject() {
            return Ok(true);
        }
        let departments = self.app.departments_of(principal.tenant(), principal.subject()).await.map_err(to_status)?;
        Ok(departments.contains(&task.department_id))
    }
}

fn task_id(value: &str) -> Result<TaskId, Status> {
    parse_field("task_id", value, TaskId::parse)
}

fn optional<T>(field: &str, value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<Option<T>, Status> {
    if value.is_empty() { Ok(None) } else { parse_field(field, value, parse).map(Some) }
}

/// The update a request asks for: its mask (an empty one names the fields the request sets, as
/// before masks existed; see the contract) and the values of the fields it names, parsed. Fields
/// the mask does not name are neither read nor checked.
fn settings_update(body: &pb::UpdateDistributionSettingsRequest) -> Result<settings::Update, Status> {
    let mask = errors::update_mask(body.update_mask.as_ref(), Field::UPDATABLE, Field::READ_ONLY, || {
        let set = [
            body.default_capacity.is_some().then_some(Field::DefaultCapacity),
            body.inbound_department_id.is_some().then_some(Field::InboundDepartment),
        ];
        UpdateMask::Fields(set.into_iter().flatten().collect())
    })?;
    let default_capacity = match body.default_capacity {
        Some(capacity) if mask.includes(Field::DefaultCapacity) && !(1..=100).contains(&capacity) => {
            return Err(errors::invalid_argument("default_capacity", "must be between 1 and 100"));
        }
        capacity => capacity,
    };
    let inbound_department = match &body.inbound_department_id {
        Some(value) if mask.includes(Field::InboundDepartment) => {
            optional("inbound_department_id", value, DepartmentId::parse)?
        }
        _ => None,
    };
    Ok(settings::Update { default_capacity, inbound_department, mask, expected_version: body.expected_version })
}

fn time_field(field: &str, value: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Status> {
    value
        .map(|ts| {
            DateTime::from_timestamp(ts.seconds, u32::try_from(ts.nanos).unwrap_or(u32::MAX))
                .ok_or_else(|| errors::invalid_argument(field, "not a valid timestamp"))
        })
        .transpose()
}

fn parse_create(body: &pb::CreateTaskRequest) -> Result<CreateTask, Status> {
    let mut violations: Vec<Violation> = Vec::new();
    let mut check = |field: &str, result: Result<(), String>| {
        if let Err(reason) = result {
            violations.push((field.to_owned(), reason));
        }
    };
    let department = DepartmentId::parse(&body.department_id);
    check("department_id", department.as_ref().map(|_| ()).map_err(Clone::clone));
    let channel = channel_from_pb(body.channel);
    check("channel", channel.map(|_| ()).ok_or_else(|| "one of WHATSAPP, SMS, VOICE, EMAIL, CHAT".to_owned()));
    let contact = body.contact.clone().unwrap_or_default();
    let name = parse_client_name(&contact.name);
    check("contact.name", name.as_ref().map(|_| ()).map_err(Clone::clone));
    let phone = PhoneNumber::parse(&contact.phone);
    check("contact.phone", phone.as_ref().map(|_| ()).map_err(Clone::clone));
    if contact.contact_id.len() > 128 {
        check("contact.contact_id", Err("at most 128 characters".into()));
    }
    let priority = Priority::parse(body.priority);
    check("priority", priority.as_ref().map(|_| ()).map_err(Clone::clone));
    let subject = body.subject.trim();
    if subject.chars().count() > 200 || subject.chars().any(char::is_control) {
        check("subject", Err("at most 200 printable characters".into()));
    }
    match (department, channel, name, phone, priority) {
        (Ok(department), Some(channel), Ok(name), Ok(phone), Ok(priority)) if violations.is_empty() => Ok(CreateTask {
            department,
            channel,
            contact: ClientContact { name, phone, contact_id: Some(contact.contact_id).filter(|c| !c.is_empty()) },
            priority,
            subject: subject.to_owned(),
            inbound_message_id: None,
        }),
        _ => Err(errors::invalid_arguments(violations)),
    }
}

fn status_filter(value: i32) -> Result<Option<TaskStatus>, Status> {
    match pb::TaskStatus::try_from(value) {
        Ok(pb::TaskStatus::Unspecified) => Ok(None),
        Ok(pb::TaskStatus::Queued) => Ok(Some(TaskStatus::Queued)),
        Ok(pb::TaskStatus::Assigned) => Ok(Some(TaskStatus::Assigned)),
        Ok(pb::TaskStatus::Completed) => Ok(Some(TaskStatus::Completed)),
        Ok(pb::TaskStatus::Cancelled) => Ok(Some(TaskStatus::Cancelled)),
        Err(_) => Err(errors::invalid_argument("status", "unknown status")),
    }
}

macro_rules! operation {
    ($name:literal) => {
        concat!("dw.distribution.v1.DistributionService/", $name)
    };
}

#[tonic::async_trait]
impl DistributionService for DistributionGrpc {
    #[instrument(skip_all, fields(rpc = "CreateTask"))]
    async fn create_task(&self, request: Request<pb::CreateTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Service, Role::Manager])?;
        let body = request.get_ref();
        let input = parse_create(body)?;
        let request_id = body.request_id.clone();
        self.task_op(&request, &principal, &request_id, operation!("CreateTask"), TaskOp::Create(input)).await
    }

    #[instrument(skip_all, fields(rpc = "GetTask"))]
    async fn get_task(&self, request: Request<pb::GetTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let principal = principal(&request)?;
        let tenant = principal.tenant();
        let (found, asked) = match &request.get_ref().key {
            Some(pb::get_task_request::Key::TaskId(id)) => {
                (self.app.find_task(tenant, TaskKey::Id(task_id(id)?)).await.map_err(to_status)?, id.clone())
            }
            Some(pb::get_task_request::Key::Protocol(protocol)) => {
                let protocol = parse_field("protocol", protocol, Protocol::parse)?;
                let found =
                    self.app.find_task(tenant, TaskKey::Protocol(protocol.as_str())).await.map_err(to_status)?;
                (found, protocol.as_str().to_owned())
            }
            None => return Err(errors::invalid_argument("key", "task_id or protocol is required")),
        };
        // The resource is named as the caller asked for it (its id or its protocol number).
        let not_found = || domain_status(DomainError::TaskNotFound(asked.clone()));
        let task = found.ok_or_else(not_found)?;
        if !self.visible(&principal, &task).await? {
            return Err(not_found());
        }
        Ok(Response::new(task))
    }

    #[instrument(skip_all, fields(rpc = "ClaimTask"))]
    async fn claim_task(&self, request: Request<pb::ClaimTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let body = request.get_ref();
        let (id, request_id) = (task_id(&body.task_id)?, body.request_id.clone());
        self.task_op(&request, &principal, &request_id, operation!("ClaimTask"), TaskOp::Claim(id)).await
    }

    #[instrument(skip_all, fields(rpc = "CompleteTask"))]
    async fn complete_task(&self, request: Request<pb::CompleteTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let principal = principal(&request)?;
        let body = request.get_ref();
        let (id, request_id) = (task_id(&body.task_id)?, body.request_id.clone());
        self.task_op(&request, &principal, &request_id, operation!("CompleteTask"), TaskOp::Complete(id)).await
    }

    #[instrument(skip_all, fields(rpc = "TransferTask"))]
    async fn transfer_task(&self, request: Request<pb::TransferTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let principal = principal(&request)?;
        let body = request.get_ref();
        let op = TaskOp::Transfer {
            task_id: task_id(&body.task_id)?,
            department: optional("department_id", &body.department_id, DepartmentId::parse)?,
            agent: optional("agent_id", &body.agent_id, AgentId::parse)?,
        };
        let request_id = body.request_id.clone();
        self.task_op(&request, &principal, &request_id, operation!("TransferTask"), op).await
    }

    #[instrument(skip_all, fields(rpc = "CancelTask"))]
    async fn cancel_task(&self, request: Request<pb::CancelTaskRequest>) -> Result<Response<pb::Task>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Service, Role::Manager])?;
        let body = request.get_ref();
        if body.reason.chars().count() > 500 {
            return Err(errors::invalid_argument("reason", "at most 500 characters"));
        }
        let op = TaskOp::Cancel { task_id: task_id(&body.task_id)?, reason: body.reason.trim().to_owned() };
        let request_id = body.request_id.clone();
        self.task_op(&request, &principal, &request_id, operation!("CancelTask"), op).await
    }

    #[instrument(skip_all, fields(rpc = "SearchProtocols"))]
    async fn search_protocols(
        &self,
        request: Request<pb::SearchProtocolsRequest>,
    ) -> Result<Response<pb::SearchProtocolsResponse>, Status> {
        let principal = principal(&request)?;
        let tenant = principal.tenant();
        let privileged = principal.has_role(Role::Manager) || principal.has_role(Role::Service);
        if !privileged {
            let allowed =
                self.app.has_permission(tenant, principal.subject(), "protocols.search").await.map_err(to_status)?;
            if !allowed {
                return Err(domain_status(DomainError::MissingPermission("protocols.search")));
            }
        }
        let body = request.get_ref();
        let limit = paging::page_size(body.page_size, 50, 200)?;
        let client_name = body.client_name.trim();
        if client_name.chars().count() > 200 {
            return Err(errors::invalid_argument("client_name", "at most 200 characters"));
        }
        let search = queries::Search {
            protocol: optional("protocol", &body.protocol, |p| Protocol::parse(p).map(|p| p.to_string()))?,
            protocol_prefix: optional("protocol_prefix", &body.protocol_prefix, Protocol::parse_prefix)?,
            client_name: Some(client_name.to_owned()).filter(|n| !n.is_empty()),
            phone: optional("phone", &body.phone, |p| PhoneNumber::parse(p).map(|p| p.as_str().to_owned()))?,
            status: status_filter(body.status)?,
            department: optional("department_id", &body.department_id, |d| {
                DepartmentId::parse(d).map(|d| d.to_string())
            })?,
            agent: optional("agent_id", &body.agent_id, |a| AgentId::parse(a).map(|a| a.to_string()))?,
            created_from: time_field("created_from", body.created_from.as_ref())?,
            created_to: time_field("created_to", body.created_to.as_ref())?,
            created_dates: DateRange::parse(
                "created_from_date",
                &body.created_from_date,
                "created_to_date",
                &body.created_to_date,
            )
            .map_err(|e| errors::invalid_argument(e.field, e.message))?,
            // The keyset (created_at, task id) of the last task of the previous page.
            after: paging::decode_token(&body.page_token, |parts| match parts {
                [micros, id] => {
                    Some((DateTime::from_timestamp_micros(micros.parse().ok()?)?, uuid::Uuid::parse_str(id).ok()?))
                }
                _ => None,
            })?,
            limit: limit + 1,
        };
        let mut tasks = self.app.search(tenant, &search).await.map_err(to_status)?;
        let next_page_token = paging::next_page(&mut tasks, limit, |t| {
            let created = t.created_at.as_ref()?;
            let at = DateTime::from_timestamp(created.seconds, u32::try_from(created.nanos).ok()?)?;
            Some(paging::encode_token(&[&at.timestamp_micros().to_string(), &t.task_id]))
        });
        Ok(Response::new(pb::SearchProtocolsResponse { tasks, next_page_token }))
    }

    #[instrument(skip_all, fields(rpc = "ListMyTasks"))]
    async fn list_my_tasks(
        &self,
        request: Request<pb::ListMyTasksRequest>,
    ) -> Result<Response<pb::ListMyTasksResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let since = request.get_ref().include_closed.then(|| Utc::now() - chrono::Duration::hours(24));
        let tasks = self.app.tasks_of_agent(principal.tenant(), principal.subject(), since).await.map_err(to_status)?;
        Ok(Response::new(pb::ListMyTasksResponse { tasks }))
    }

    type WatchMyTasksStream = TaskStream;

    #[instrument(skip_all, fields(rpc = "WatchMyTasks"))]
    async fn watch_my_tasks(
        &self,
        request: Request<pb::WatchMyTasksRequest>,
    ) -> Result<Response<Self::WatchMyTasksStream>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Agent])?;
        let agent = parse_field("sub", principal.subject(), AgentId::parse)?;
        let stream = self.feed.watch(principal.tenant(), &agent).await?;
        Ok(Response::new(stream))
    }

    #[instrument(skip_all, fields(rpc = "GetQueueStats"))]
    async fn get_queue_stats(
        &self,
        request: Request<pb::GetQueueStatsRequest>,
    ) -> Result<Response<pb::GetQueueStatsResponse>, Status> {
        let principal = principal(&request)?;
        let department = optional("department_id", &request.get_ref().department_id, DepartmentId::parse)?;
        let now = Utc::now();
        let department = department.as_ref().map(DepartmentId::as_str);
        let departments = self.app.queue_stats(principal.tenant(), department, now).await.map_err(to_status)?;
        Ok(Response::new(pb::GetQueueStatsResponse { departments, at: Some(crate::codec::timestamp(now)) }))
    }

    #[instrument(skip_all, fields(rpc = "ExplainAssignment"))]
    async fn explain_assignment(
        &self,
        request: Request<pb::ExplainAssignmentRequest>,
    ) -> Result<Response<pb::ExplainAssignmentResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let id = task_id(&request.get_ref().task_id)?;
        let tenant = principal.tenant();
        let (task, decisions) = self.app.explain(tenant, id).await.map_err(to_status)?;
        Ok(Response::new(pb::ExplainAssignmentResponse { task: Some(task), decisions }))
    }

    #[instrument(skip_all, fields(rpc = "GetDistributionSettings"))]
    async fn get_distribution_settings(
        &self,
        request: Request<pb::GetDistributionSettingsRequest>,
    ) -> Result<Response<pb::DistributionSettings>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager, Role::Service])?;
        Ok(Response::new(self.app.settings(principal.tenant()).await.map_err(to_status)?))
    }

    #[instrument(skip_all, fields(rpc = "UpdateDistributionSettings"))]
    async fn update_distribution_settings(
        &self,
        request: Request<pb::UpdateDistributionSettingsRequest>,
    ) -> Result<Response<pb::DistributionSettings>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let update = settings_update(body)?;
        let ctx = command_context(&request, &principal, &body.request_id, operation!("UpdateDistributionSettings"))?;
        let settings = self.app.update_settings(&ctx, update).await.map_err(to_status)?;
        Ok(Response::new(settings))
    }

    #[instrument(skip_all, fields(rpc = "SetAgentCapacity"))]
    async fn set_agent_capacity(
        &self,
        request: Request<pb::SetAgentCapacityRequest>,
    ) -> Result<Response<pb::AgentCapacity>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Manager])?;
        let body = request.get_ref();
        let agent = parse_field("agent_id", &body.agent_id, AgentId::parse)?;
        let capacity = match body.capacity {
            0 => None,
            c @ 1..=100 => Some(c),
            _ => {
                return Err(errors::invalid_argument(
                    "capacity",
                    "must be between 1 and 100, or 0 to remove the override",
                ));
            }
        };
        let ctx = command_context(&request, &principal, &body.request_id, operation!("SetAgentCapacity"))?;
        let capacity = self.app.set_capacity(&ctx, agent, capacity).await.map_err(to_status)?;
        Ok(Response::new(capacity))
    }

    #[instrument(skip_all, fields(rpc = "EraseClientData"))]
    async fn erase_client_data(
        &self,
        request: Request<pb::EraseClientDataRequest>,
    ) -> Result<Response<pb::EraseClientDataResponse>, Status> {
        let principal = principal(&request)?;
        require_role(&principal, &[Role::Service, Role::Manager])?;
        let (phone, reason) = errors::erasure_request(&request.get_ref().phone, &request.get_ref().reason)?;
        let input = EraseClient { phone, reason };
        let body = request.get_ref();
        let ctx = command_context(&request, &principal, &body.request_id, operation!("EraseClientData"))?;
        let erased = self.app.erase_client(&ctx, input).await.map_err(to_status)?;
        Ok(Response::new(erased))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_requests_are_checked_field_by_field() {
        let status = parse_create(&pb::CreateTaskRequest::default()).unwrap_err();
        let fields = errors::violated_fields(&status);
        for field in ["department_id", "channel", "contact.name", "contact.phone"] {
            assert!(fields.contains(&field.to_owned()), "{field} in {fields:?}");
        }
    }
}
