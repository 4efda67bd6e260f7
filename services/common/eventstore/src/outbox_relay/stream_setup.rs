//! The relay's JetStream stream: its configuration, how an existing stream's settings are
//! compared with it (drift), and its creation.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use super::RelayError;

/// How a service's relay publishes.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `ce-source`: the producing service, e.g. `agent-sessions`.
    pub source: String,
    /// JetStream stream holding this service's events, e.g. `DW_AGENT_SESSIONS`.
    pub stream_name: String,
    /// Subject prefix, e.g. `dw.agentsessions`; subjects are `<prefix>.<tenant>.<aggregate>.<event>`.
    pub subject_prefix: String,
    /// JetStream de-duplication window by `Nats-Msg-Id`.
    pub duplicate_window: Duration,
    /// Stream replicas (1 locally, 3 on a production cluster).
    pub replicas: usize,
    /// How long the stream keeps an event (`Duration::ZERO`: for ever).
    pub max_age: Duration,
    /// The most the stream holds, in bytes, before it drops its oldest events (`None`: no limit).
    pub max_bytes: Option<u64>,
    /// Whether an existing stream whose settings differ from these is updated to them. When
    /// false (the default) the difference is reported (`dw_stream_config_drift`, a warning) and
    /// the stream is left as an operator set it.
    pub apply_config: bool,
    /// How often the relay looks at the outbox when not woken (a transaction that did not call
    /// [`crate::wake_relay`], or a peer's wake that did not arrive).
    pub poll_interval: Duration,
    /// Whether replicas wake each other's relay over NATS core ([`RelayConfig::wake_subject`]):
    /// a commit in a replica whose relay stands by wakes the active one in another replica at
    /// once instead of at its next poll.
    pub peer_wake: bool,
    /// Events published per round trip.
    pub batch_size: i64,
    /// Advisory-lock key electing the active relay (unique per service database).
    pub lock_key: i64,
    /// The largest message (payload and headers) to publish, when lower than the server's
    /// `max_payload`; larger events are quarantined.
    pub max_message_bytes: Option<usize>,
}

impl RelayConfig {
    /// The NATS core subject the replicas of this service wake the active relay on (one empty
    /// message per wake; never stored: no stream captures `_dw.`).
    pub fn wake_subject(&self) -> String {
        format!("_dw.relay_wake.{}", self.stream_name)
    }

    pub fn new(source: &str, stream_name: &str, subject_prefix: &str) -> Self {
        Self {
            source: source.to_owned(),
            stream_name: stream_name.to_owned(),
            subject_prefix: subject_prefix.to_owned(),
            duplicate_window: Duration::from_secs(120),
            replicas: 1,
            max_age: Duration::ZERO,
            max_bytes: None,
            apply_config: false,
            poll_interval: Duration::from_millis(50),
            peer_wake: true,
            batch_size: 512,
            lock_key: 0x0044_5752_454c_4159, // "DWRELAY"
            max_message_bytes: None,
        }
    }

    pub fn stream_config(&self) -> stream::Config {
        stream::Config {
            name: self.stream_name.clone(),
            subjects: vec![format!("{}.>", self.subject_prefix)],
            duplicate_window: self.duplicate_window,
            num_replicas: self.replicas,
            storage: stream::StorageType::File,
            retention: stream::RetentionPolicy::Limits,
            max_age: self.max_age,
            max_bytes: self.max_bytes.map_or(-1, |bytes| i64::try_from(bytes).unwrap_or(i64::MAX)),
            ..Default::default()
        }
    }
}

/// One setting of an existing stream that differs from the service's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamDrift {
    pub setting: &'static str,
    pub configured: String,
    pub actual: String,
}

impl std::fmt::Display for StreamDrift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: configured {}, stream has {}", self.setting, self.configured, self.actual)
    }
}

/// The settings the services manage on their stream that differ between `configured` and
/// `actual` (what the server reports). Everything else (e.g. `max_msgs`) is the operator's.
pub fn stream_drift(configured: &stream::Config, actual: &stream::Config) -> Vec<StreamDrift> {
    let mut drift = Vec::new();
    let mut compare = |setting: &'static str, configured: String, actual: String| {
        if configured != actual {
            drift.push(StreamDrift { setting, configured, actual });
        }
    };
    compare("subjects", format!("{:?}", configured.subjects), format!("{:?}", actual.subjects));
    compare("num_replicas", configured.num_replicas.max(1).to_string(), actual.num_replicas.max(1).to_string());
    compare("duplicate_window", format!("{:?}", configured.duplicate_window), format!("{:?}", actual.duplicate_window));
    compare("max_age", format!("{:?}", configured.max_age), format!("{:?}", actual.max_age));
    compare("max_bytes", configured.max_bytes.max(-1).to_string(), actual.max_bytes.max(-1).to_string());
    compare("storage", format!("{:?}", configured.storage), format!("{:?}", actual.storage));
    compare("retention", format!("{:?}", configured.retention), format!("{:?}", actual.retention));
    drift
}

/// What [`ensure_stream`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSetup {
    /// The stream did not exist and was created with the configuration.
    Created,
    /// It exists with the configured settings.
    Unchanged,
    /// It differs and was left as it is (reported).
    Drifted(Vec<StreamDrift>),
    /// It differed and was updated to the configuration (`apply_config`).
    Updated(Vec<StreamDrift>),
}

/// Creates `config`'s stream when it does not exist. An existing stream is compared with
/// `config` ([`stream_drift`]) and updated to it only when `apply`: limits an operator changed
/// on the server are not silently reverted by a restart.
pub async fn ensure_stream(
    jetstream: &jetstream::Context,
    config: stream::Config,
    apply: bool,
) -> Result<StreamSetup, RelayError> {
    let name = config.name.clone();
    let existing = match jetstream.get_stream(&name).await {
        Ok(stream) => stream,
        Err(_) => {
            jetstream.create_stream(config).await.map_err(|e| RelayError::StreamSetup(e.to_string()))?;
            return Ok(StreamSetup::Created);
        }
    };
    let drift = stream_drift(&config, &existing.cached_info().config);
    if drift.is_empty() {
        return Ok(StreamSetup::Unchanged);
    }
    if !apply {
        return Ok(StreamSetup::Drifted(drift));
    }
    jetstream.update_stream(config).await.map_err(|e| RelayError::StreamSetup(e.to_string()))?;
    Ok(StreamSetup::Updated(drift))
}
