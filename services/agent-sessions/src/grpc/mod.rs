//! The gRPC transport: requests are parsed into domain types here, once, and every error leaves
//! through [`to_status`].

pub mod access;
pub mod admin;
pub mod service_day;

use tonic::Status;

use crate::domain::DomainError;

pub use dw_grpc_kit::command::command_context;
pub use dw_grpc_kit::errors::{db_status, parse_field, to_status};

pub fn domain_status(error: DomainError) -> Status {
    dw_grpc_kit::errors::rule_status(&error)
}
