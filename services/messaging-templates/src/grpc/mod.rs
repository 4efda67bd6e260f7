//! The gRPC transport of messaging-templates.

pub mod contacts;
pub mod templates;

use dw_auth::Principal;
use dw_grpc_kit::errors;
use tonic::{Request, Status};

use crate::app::{AppError, CommandContext};

pub fn to_status(error: AppError) -> Status {
    match error {
        AppError::Domain(error) if error.is_not_found() => errors::not_found(error.reason(), error.to_string()),
        AppError::Domain(error) if error.is_permission() => {
            errors::permission_denied(error.reason(), error.to_string())
        }
        AppError::Invalid(violations) => errors::invalid_arguments(violations),
        AppError::Domain(error) => errors::failed_precondition(error.reason(), error.to_string()),
        AppError::Conflict | AppError::Aborted(_) => errors::aborted("the resource changed concurrently; retry"),
        AppError::RequestIdReused(operation) => errors::invalid_argument(
            "request_id",
            format!("already used for another call ({operation}); use a new request id"),
        ),
        AppError::Database(sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed) => {
            errors::unavailable("database unavailable")
        }
        error @ (AppError::Snapshot(_) | AppError::StoredResponse(_) | AppError::Database(_)) => {
            errors::internal(&error)
        }
    }
}

pub fn db_status(error: sqlx::Error) -> Status {
    to_status(AppError::Database(error))
}

pub fn command_context<T>(
    request: &Request<T>,
    principal: &Principal,
    request_id: &str,
    operation: &'static str,
) -> Result<CommandContext, Status> {
    let request_id = dw_grpc_kit::command::request_id(request_id)?;
    let metadata = dw_grpc_kit::command::event_metadata(request, &request_id);
    Ok(CommandContext {
        tenant: principal.tenant().clone(),
        actor: principal.subject().to_owned(),
        request_id,
        operation,
        metadata,
    })
}

pub fn uuid_field(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value).map_err(|_| errors::invalid_argument(field, "must be an id (UUID)"))
}
