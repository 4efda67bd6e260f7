//! The gRPC transport of task-distribution: requests parsed into domain types once, every error
//! leaves through [`to_status`].

pub mod access;
pub mod distribution;

use tonic::Status;

use crate::domain::DomainError;

pub use dw_grpc_kit::command::command_context;
pub use dw_grpc_kit::errors::{db_status, parse_field, to_status};

pub fn domain_status(error: DomainError) -> Status {
    dw_grpc_kit::errors::rule_status(&error)
}
