//! The gRPC transport: requests are parsed into domain types here, once, and every error leaves
//! through [`to_status`].

pub mod admin;
pub mod service_day;
pub mod status_feed;

use dw_grpc_kit::errors;
use tonic::Status;

use crate::app::AppError;
use crate::domain::DomainError;

/// The one mapping of this service's errors to the wire.
pub fn to_status(error: AppError) -> Status {
    match error {
        AppError::Domain(error) if error.is_not_found() => errors::not_found(error.reason(), error.to_string()),
        AppError::Domain(error) => errors::failed_precondition(error.reason(), error.to_string()),
        AppError::Conflict | AppError::Aborted(_) => errors::aborted("the resource changed concurrently; retry"),
        AppError::RequestIdReused(operation) => errors::invalid_argument(
            "request_id",
            format!("already used for another call ({operation}); use a new request id"),
        ),
        AppError::Database(error) if is_unavailable(&error) => errors::unavailable("database unavailable"),
        error @ (AppError::Codec(_) | AppError::StoredResponse(_) | AppError::Database(_)) => errors::internal(&error),
    }
}

fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::PoolTimedOut | sqlx::Error::Io(_) | sqlx::Error::PoolClosed)
}

pub fn domain_status(error: DomainError) -> Status {
    to_status(AppError::Domain(error))
}

/// Parses a field with `parse`, naming it on failure.
pub fn parse_field<T>(field: &str, value: &str, parse: impl Fn(&str) -> Result<T, String>) -> Result<T, Status> {
    parse(value).map_err(|reason| errors::invalid_argument(field, reason))
}

/// The command context of a mutating RPC.
pub use dw_grpc_kit::command::command_context;
