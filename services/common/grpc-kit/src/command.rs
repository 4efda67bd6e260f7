//! What every mutating RPC needs before its command runs: a valid `request_id` and the metadata
//! its events will carry (correlation from `x-correlation-id` or the request id, causation = the
//! request id, the RPC span's `traceparent`).

use dw_eventstore::EventMetadata;
use dw_ids::RequestId;
use tonic::{Request, Status};

use crate::errors;

pub fn request_id(value: &str) -> Result<RequestId, Status> {
    RequestId::parse(value).map_err(|reason| errors::invalid_argument("request_id", reason))
}

pub fn event_metadata<T>(request: &Request<T>, request_id: &RequestId) -> EventMetadata {
    let correlation_id = request
        .metadata()
        .get("x-correlation-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| request_id.to_string());
    EventMetadata {
        correlation_id: Some(correlation_id),
        causation_id: Some(request_id.to_string()),
        traceparent: dw_telemetry::current_traceparent(),
    }
}

pub use dw_eventstore::CommandContext;

/// The command context of a mutating RPC from an authenticated caller.
pub fn command_context<T: prost::Message>(
    request: &Request<T>,
    principal: &dw_auth::Principal,
    request_id: &str,
    operation: &'static str,
) -> Result<CommandContext, Status> {
    let request_id = self::request_id(request_id)?;
    let metadata = event_metadata(request, &request_id);
    let privileged = principal.has_role(dw_auth::Role::Manager) || principal.has_role(dw_auth::Role::Service);
    Ok(CommandContext {
        tenant: principal.tenant().clone(),
        actor: principal.subject().to_owned(),
        privileged,
        request_id,
        operation,
        metadata,
        request_hash: request_hash(request.get_ref()),
    })
}

/// SHA-256 of the request's protobuf encoding. prost encodes fields in field-number order and the
/// contract's maps are `BTreeMap`s, so one request body always hashes the same.
pub fn request_hash(body: &impl prost::Message) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(body.encode_to_vec()).to_vec()
}
