//! The streams a service consumes (`Upstream`): names, subject prefixes, and where a new
//! consumer reads what a stream dropped (the owner's event log).

use super::{ConfigError, var};

/// A stream a service consumes: its name and subject prefix, each overridable for side-by-side
/// deployments and tests.
#[derive(Debug, Clone)]
pub struct Upstream {
    pub stream_name: String,
    pub subject_prefix: String,
    /// The upstream service's gRPC address for `ReadEvents` (`DW_<UPSTREAM>_EVENT_LOG_URL`,
    /// e.g. `http://agent-sessions:50051`): where a consumer created after the stream dropped
    /// old messages reads them ([`dw_bus::backfill`]). Empty: no backfill.
    pub event_log_url: Option<String>,
    /// This service's own bearer token (role `service`) for calling it (`DW_SERVICE_TOKEN_FILE`).
    pub service_token_file: Option<std::path::PathBuf>,
}

impl Upstream {
    /// agent-sessions' events (`DW_AGENT_SESSIONS_STREAM`, `DW_AGENT_SESSIONS_SUBJECT_PREFIX`).
    pub fn agent_sessions() -> Self {
        Self {
            stream_name: var("DW_AGENT_SESSIONS_STREAM", "DW_AGENT_SESSIONS"),
            subject_prefix: var("DW_AGENT_SESSIONS_SUBJECT_PREFIX", "dw.agentsessions"),
            event_log_url: optional_var("DW_AGENT_SESSIONS_EVENT_LOG_URL"),
            service_token_file: optional_var("DW_SERVICE_TOKEN_FILE").map(std::path::PathBuf::from),
        }
    }

    /// task-distribution's events (`DW_DISTRIBUTION_STREAM`, `DW_DISTRIBUTION_SUBJECT_PREFIX`).
    pub fn distribution() -> Self {
        Self {
            stream_name: var("DW_DISTRIBUTION_STREAM", "DW_DISTRIBUTION"),
            subject_prefix: var("DW_DISTRIBUTION_SUBJECT_PREFIX", "dw.distribution"),
            event_log_url: optional_var("DW_DISTRIBUTION_EVENT_LOG_URL"),
            service_token_file: optional_var("DW_SERVICE_TOKEN_FILE").map(std::path::PathBuf::from),
        }
    }

    /// messaging-templates' events (`DW_MESSAGING_STREAM`, `DW_MESSAGING_SUBJECT_PREFIX`).
    pub fn messaging() -> Self {
        Self {
            stream_name: var("DW_MESSAGING_STREAM", "DW_MESSAGING"),
            subject_prefix: var("DW_MESSAGING_SUBJECT_PREFIX", "dw.messaging"),
            event_log_url: optional_var("DW_MESSAGING_EVENT_LOG_URL"),
            service_token_file: optional_var("DW_SERVICE_TOKEN_FILE").map(std::path::PathBuf::from),
        }
    }
}

impl Upstream {
    /// A stream without backfill (tests, tools).
    pub fn new(stream_name: &str, subject_prefix: &str) -> Self {
        Self {
            stream_name: stream_name.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
            event_log_url: None,
            service_token_file: None,
        }
    }

    /// The backfill source of a consumer of this upstream, when its event log and a service
    /// token are configured. A URL without a token (or the reverse) is a configuration error.
    pub fn backfill(&self) -> Result<Option<std::sync::Arc<dyn dw_bus::backfill::EventSource>>, ConfigError> {
        match (&self.event_log_url, &self.service_token_file) {
            (None, None) => Ok(None),
            (Some(url), Some(token_file)) => {
                let source = crate::event_source::EventLogSource::new(url, token_file.clone(), &self.subject_prefix)
                    .map_err(|reason| ConfigError::Invalid { name: "DW_<UPSTREAM>_EVENT_LOG_URL", reason })?;
                Ok(Some(std::sync::Arc::new(source)))
            }
            (Some(_), None) => Err(ConfigError::Missing("DW_SERVICE_TOKEN_FILE (to read an upstream's event log)")),
            (None, Some(_)) => Ok(None),
        }
    }
}

fn optional_var(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|value| value.trim().to_owned()).filter(|value| !value.is_empty())
}
