//! The gRPC transport of task-distribution: requests parsed into domain types once, every error
//! leaves through [`to_status`].

pub mod distribution;
pub mod task_feed;

use dw_auth::Principal;
use dw_grpc_kit::errors;
use tonic::{Request, Status};

use crate::app::{AppError, CommandContext};
use crate::domain::DomainError;

pub fn to_status(error: AppError) -> Status {
    match error {
        AppError::Domain(error) if error.is_not_found() => errors::not_found(error.reason(), error.to_string()),
        AppError::Domain(error) if error.is_permission() => {
            errors::permission_denied(error.reason(), error.to_string())
        }
        AppError::Domain(error) => errors::failed_precondition(error.reason(), error.to_string()),
        AppError::Conflict | AppError::Aborted(_) => errors::aborted("the resource changed concurrently; retry"),
        AppError::RequestIdReused(operation) => errors::invalid_argument(
            "request_id",
            format!("already used for another call ({operation}); use a new request id"),
        ),
        AppError::Invalid(field, reason) => errors::invalid_argument(field, reason),
        AppError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
            errors::unavailable("database unavailable")
        }
        error @ (AppError::Codec(_) | AppError::StoredResponse(_) | AppError::Database(_)) => errors::internal(&error),
    }
}

pub fn domain_status(error: DomainError) -> Status {
    to_status(AppError::Domain(error))
}

pub fn db_status(error: sqlx::Error) -> Status {
    to_status(AppError::Database(error))
}

pub fn parse_field<T>(field: &str, value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, Status> {
    parse(value).map_err(|reason| errors::invalid_argument(field, reason))
}

pub fn command_context<T>(
    request: &Request<T>,
    principal: &Principal,
    request_id: &str,
    operation: &'static str,
) -> Result<CommandContext, Status> {
    let request_id = dw_grpc_kit::command::request_id(request_id)?;
    let metadata = dw_grpc_kit::command::event_metadata(request, &request_id);
    let privileged = principal.has_role(dw_auth::Role::Manager) || principal.has_role(dw_auth::Role::Service);
    Ok(CommandContext {
        tenant: principal.tenant().clone(),
        actor: principal.subject().to_owned(),
        privileged,
        request_id,
        operation,
        metadata,
    })
}
