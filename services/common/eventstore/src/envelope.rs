//! Header names of the CloudEvents-style envelope every event carries on NATS (DESIGN.md §3).

pub const CE_ID: &str = "ce-id";
pub const CE_TYPE: &str = "ce-type";
pub const CE_SOURCE: &str = "ce-source";
pub const CE_TIME: &str = "ce-time";
pub const CE_SUBJECT: &str = "ce-subject";
pub const CE_SPECVERSION: &str = "ce-specversion";
pub const CONTENT_TYPE: &str = "content-type";
pub const DW_TENANT: &str = "dw-tenant";
pub const DW_STREAM_VERSION: &str = "dw-stream-version";
pub const DW_CORRELATION_ID: &str = "dw-correlation-id";
pub const DW_CAUSATION_ID: &str = "dw-causation-id";
pub const TRACEPARENT: &str = "traceparent";
pub const NATS_MSG_ID: &str = "Nats-Msg-Id";

/// Protobuf payloads.
pub const PROTOBUF_CONTENT_TYPE: &str = "application/protobuf";
