//! An event as received from JetStream: payload plus the envelope read back from its headers.

use bytes::Bytes;
use chrono::{DateTime, Utc};
use dw_eventstore::envelope as h;
use dw_ids::TenantId;
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    #[error("missing header {0}")]
    Missing(&'static str),
    #[error("invalid header {0}: {1}")]
    Invalid(&'static str, String),
}

#[derive(Debug, Clone)]
pub struct InboundEvent {
    pub event_id: Uuid,
    pub event_type: String,
    pub source: String,
    pub tenant_id: TenantId,
    pub stream_id: String,
    pub stream_version: i64,
    pub time: DateTime<Utc>,
    pub subject: String,
    pub correlation_id: Option<String>,
    pub causation_id: Option<String>,
    pub traceparent: Option<String>,
    pub payload: Bytes,
    /// Position in the JetStream stream.
    pub stream_sequence: u64,
}

fn header<'a>(headers: &'a async_nats::HeaderMap, name: &'static str) -> Option<&'a str> {
    headers.get(name).map(|v| v.as_str())
}

fn required<'a>(headers: &'a async_nats::HeaderMap, name: &'static str) -> Result<&'a str, EnvelopeError> {
    header(headers, name).filter(|v| !v.is_empty()).ok_or(EnvelopeError::Missing(name))
}

impl InboundEvent {
    pub fn from_parts(
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: Bytes,
        stream_sequence: u64,
    ) -> Result<Self, EnvelopeError> {
        let headers = headers.ok_or(EnvelopeError::Missing(h::CE_ID))?;
        let event_id = required(headers, h::CE_ID)?;
        let event_id = Uuid::parse_str(event_id).map_err(|e| EnvelopeError::Invalid(h::CE_ID, e.to_string()))?;
        let time = required(headers, h::CE_TIME)?;
        let time = DateTime::parse_from_rfc3339(time)
            .map_err(|e| EnvelopeError::Invalid(h::CE_TIME, e.to_string()))?
            .with_timezone(&Utc);
        let stream_version = required(headers, h::DW_STREAM_VERSION)?;
        let stream_version =
            stream_version.parse().map_err(|_| EnvelopeError::Invalid(h::DW_STREAM_VERSION, stream_version.into()))?;
        Ok(Self {
            event_id,
            event_type: required(headers, h::CE_TYPE)?.to_owned(),
            source: header(headers, h::CE_SOURCE).unwrap_or_default().to_owned(),
            tenant_id: TenantId::parse(required(headers, h::DW_TENANT)?)
                .map_err(|reason| EnvelopeError::Invalid(h::DW_TENANT, reason))?,
            stream_id: required(headers, h::CE_SUBJECT)?.to_owned(),
            stream_version,
            time,
            subject: subject.to_owned(),
            correlation_id: header(headers, h::DW_CORRELATION_ID).map(str::to_owned),
            causation_id: header(headers, h::DW_CAUSATION_ID).map(str::to_owned),
            traceparent: header(headers, h::TRACEPARENT).map(str::to_owned),
            payload,
            stream_sequence,
        })
    }
}

/// Headers as JSON (for dead letters and tools).
pub fn headers_to_json(headers: Option<&async_nats::HeaderMap>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    if let Some(headers) = headers {
        for (name, values) in headers.iter() {
            let value = values.iter().map(|v| v.as_str()).collect::<Vec<_>>().join(",");
            map.insert(name.to_string(), serde_json::Value::String(value));
        }
    }
    serde_json::Value::Object(map)
}
