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
    /// The variable `event_log_url` came from, for configuration errors.
    pub event_log_var: &'static str,
    /// This service's own bearer token (role `service`) for calling it (`DW_SERVICE_TOKEN_FILE`).
    pub service_token_file: Option<std::path::PathBuf>,
    /// TLS towards an `https://` event log (`DW_EVENT_LOG_TLS_CA_FILE`,
    /// `DW_EVENT_LOG_TLS_CERT_FILE` + `DW_EVENT_LOG_TLS_KEY_FILE`), shared by the upstreams.
    pub tls: crate::event_source::EventLogTls,
}

impl Upstream {
    /// agent-sessions' events (`DW_AGENT_SESSIONS_STREAM`, `DW_AGENT_SESSIONS_SUBJECT_PREFIX`,
    /// `DW_AGENT_SESSIONS_EVENT_LOG_URL`).
    pub fn agent_sessions() -> Self {
        Self::read(
            var("DW_AGENT_SESSIONS_STREAM", "DW_AGENT_SESSIONS"),
            var("DW_AGENT_SESSIONS_SUBJECT_PREFIX", "dw.agentsessions"),
            (var("DW_AGENT_SESSIONS_EVENT_LOG_URL", ""), "DW_AGENT_SESSIONS_EVENT_LOG_URL"),
        )
    }

    /// task-distribution's events (`DW_DISTRIBUTION_STREAM`, `DW_DISTRIBUTION_SUBJECT_PREFIX`,
    /// `DW_DISTRIBUTION_EVENT_LOG_URL`).
    pub fn distribution() -> Self {
        Self::read(
            var("DW_DISTRIBUTION_STREAM", "DW_DISTRIBUTION"),
            var("DW_DISTRIBUTION_SUBJECT_PREFIX", "dw.distribution"),
            (var("DW_DISTRIBUTION_EVENT_LOG_URL", ""), "DW_DISTRIBUTION_EVENT_LOG_URL"),
        )
    }

    /// messaging-templates' events (`DW_MESSAGING_STREAM`, `DW_MESSAGING_SUBJECT_PREFIX`,
    /// `DW_MESSAGING_EVENT_LOG_URL`).
    pub fn messaging() -> Self {
        Self::read(
            var("DW_MESSAGING_STREAM", "DW_MESSAGING"),
            var("DW_MESSAGING_SUBJECT_PREFIX", "dw.messaging"),
            (var("DW_MESSAGING_EVENT_LOG_URL", ""), "DW_MESSAGING_EVENT_LOG_URL"),
        )
    }

    /// The upstream from its read variables (each name is spelled where it is read, so
    /// `deploy-check` sees which variables a service reads), plus `DW_SERVICE_TOKEN_FILE`.
    fn read(stream_name: String, subject_prefix: String, event_log: (String, &'static str)) -> Self {
        let (url, event_log_var) = event_log;
        let token_file = var("DW_SERVICE_TOKEN_FILE", "");
        Self {
            stream_name,
            subject_prefix,
            event_log_url: Some(url.trim().to_owned()).filter(|u| !u.is_empty()),
            event_log_var,
            service_token_file: Some(token_file.trim().to_owned())
                .filter(|f| !f.is_empty())
                .map(std::path::PathBuf::from),
            tls: crate::event_source::EventLogTls {
                ca_file: path_var("DW_EVENT_LOG_TLS_CA_FILE"),
                identity: path_var("DW_EVENT_LOG_TLS_CERT_FILE").zip(path_var("DW_EVENT_LOG_TLS_KEY_FILE")),
            },
        }
    }

    /// A stream without backfill (tests, tools).
    pub fn new(stream_name: &str, subject_prefix: &str) -> Self {
        Self {
            stream_name: stream_name.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
            event_log_url: None,
            event_log_var: "DW_<UPSTREAM>_EVENT_LOG_URL",
            service_token_file: None,
            tls: crate::event_source::EventLogTls::default(),
        }
    }

    /// The backfill source of a consumer of this upstream, when its event log is configured. A
    /// URL that is not one, or without a readable `DW_SERVICE_TOKEN_FILE`, stops the start; a
    /// token file alone (the upstreams without a URL) means no backfill.
    pub fn backfill(&self) -> Result<Option<std::sync::Arc<dyn dw_bus::backfill::EventSource>>, ConfigError> {
        let Some(url) = &self.event_log_url else { return Ok(None) };
        let Some(token_file) = &self.service_token_file else {
            return Err(ConfigError::Missing("DW_SERVICE_TOKEN_FILE (to read an upstream's event log)"));
        };
        std::fs::File::open(token_file).map_err(|e| ConfigError::Invalid {
            name: "DW_SERVICE_TOKEN_FILE",
            reason: format!("{}: {e}", token_file.display()),
        })?;
        if path_var("DW_EVENT_LOG_TLS_CERT_FILE").is_some() != path_var("DW_EVENT_LOG_TLS_KEY_FILE").is_some() {
            return Err(ConfigError::Missing(
                "DW_EVENT_LOG_TLS_CERT_FILE and DW_EVENT_LOG_TLS_KEY_FILE together (the client certificate for mTLS)",
            ));
        }
        let source =
            crate::event_source::EventLogSource::new(url, token_file.clone(), &self.subject_prefix, self.tls.clone())
                .map_err(|reason| ConfigError::Invalid { name: self.event_log_var, reason })?;
        Ok(Some(std::sync::Arc::new(source)))
    }
}

/// `name` as a path, `None` when unset or blank.
fn path_var(name: &'static str) -> Option<std::path::PathBuf> {
    Some(var(name, "").trim().to_owned()).filter(|p| !p.is_empty()).map(std::path::PathBuf::from)
}
