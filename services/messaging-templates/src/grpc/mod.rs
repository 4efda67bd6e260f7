//! The gRPC transport of messaging-templates.

pub mod access;
pub mod contacts;
pub mod provider_config;
pub mod templates;

use dw_grpc_kit::errors;
use tonic::Status;

pub use dw_grpc_kit::errors::{db_status, to_status};

pub use dw_grpc_kit::command::command_context;

pub fn uuid_field(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value).map_err(|_| errors::invalid_argument(field, "must be an id (UUID)"))
}
