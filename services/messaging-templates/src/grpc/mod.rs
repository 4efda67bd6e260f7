//! The gRPC transport of messaging-templates.

pub mod contacts;
pub mod templates;

use dw_grpc_kit::errors;
use tonic::Status;

use crate::app::AppError;

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

pub use dw_grpc_kit::command::command_context;

pub fn uuid_field(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value).map_err(|_| errors::invalid_argument(field, "must be an id (UUID)"))
}
