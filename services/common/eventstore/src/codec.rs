//! Stored events back into a context's contract: the one decoding error of every service's
//! codec, and the contract-driven decode (`<context>::v1::Event`) its replay starts from.

use dw_proto::Contract;

use crate::RecordedEvent;

/// A stored event that does not turn back into the domain's event: always a defect (a stream
/// holds only its aggregate's events, written by this service), never the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("unknown event type {0}")]
    UnknownType(String),
    #[error("undecodable {0}: {1}")]
    Decode(String, String),
    #[error("invalid field {0}: {1}")]
    Invalid(&'static str, String),
}

/// A stored event decoded by the contract `C`, upgraded first when it has an older shape
/// ([`dw_proto::decode_current`]); a type it does not have is
/// [`CodecError::UnknownType`].
pub fn decode_contract<C: Contract>(recorded: &RecordedEvent) -> Result<C, CodecError> {
    dw_proto::decode_current::<C>(&recorded.event_type, &recorded.payload)
        .map_err(|e| CodecError::Decode(recorded.event_type.clone(), e.to_string()))?
        .ok_or_else(|| CodecError::UnknownType(recorded.event_type.clone()))
}
