//! The gRPC transport: [`NotificationService`](notification_service) (the log, agents' live
//! streams, browser subscriptions) and [`WebhookService`](webhook_service). Requests are parsed
//! into domain types here, once; reads go to [`crate::projections::queries`], mutations to
//! [`crate::app`]; errors leave through the kernel's `to_status` and `db_status`.

pub mod access;
pub mod notification_service;
pub mod webhook_service;

use chrono::{DateTime, Utc};
use dw_auth::{Principal, Role};
use dw_grpc_kit::command::{CommandContext, command_context};
use dw_grpc_kit::errors;
use dw_grpc_kit::{principal, require_role};
use tonic::{Request, Status};

pub use crate::app::notifier::Notifier;
pub use notification_service::NotificationGrpc;
pub use webhook_service::WebhookGrpc;

/// An authenticated caller with the manager role.
fn manager<T>(request: &Request<T>) -> Result<Principal, Status> {
    let principal = principal(request)?;
    require_role(&principal, &[Role::Manager])?;
    Ok(principal)
}

/// The command context of a manager's mutation.
fn manager_command<T: prost::Message>(
    request: &Request<T>,
    request_id: &str,
    operation: &'static str,
) -> Result<CommandContext, Status> {
    let principal = manager(request)?;
    command_context(request, &principal, request_id, operation)
}

/// The command context of an agent's own mutation (the agent is its `actor`).
fn agent_command<T: prost::Message>(
    request: &Request<T>,
    request_id: &str,
    operation: &'static str,
) -> Result<CommandContext, Status> {
    let principal = principal(request)?;
    require_role(&principal, &[Role::Agent])?;
    command_context(request, &principal, request_id, operation)
}

/// Managers and services see every agent's notifications; agents only their own.
fn sees_every_agent(principal: &Principal) -> bool {
    principal.has_role(Role::Manager) || principal.has_role(Role::Service)
}

fn page_limit(page_size: i32) -> Result<i64, Status> {
    use crate::domain::paging::{DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE};
    dw_grpc_kit::paging::page_size(page_size, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)
}

fn time_field(field: &str, ts: Option<&prost_types::Timestamp>) -> Result<Option<DateTime<Utc>>, Status> {
    ts.map(|t| dw_proto::time::datetime(t).ok_or_else(|| errors::invalid_argument(field, "not a valid timestamp")))
        .transpose()
}
