//! The gRPC transport of task-distribution: requests parsed into domain types once, every error
//! leaves through [`to_status`].

pub mod distribution;
pub mod task_feed;

use dw_grpc_kit::errors;
use tonic::Status;

use crate::app::AppError;
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

pub use dw_grpc_kit::command::command_context;
