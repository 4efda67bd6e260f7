//! Configuration from the environment: the common service settings with task-distribution's
//! defaults, plus where the events it consumes come from.

use std::time::Duration;

pub use dw_grpc_kit::config::Upstream;
use dw_grpc_kit::config::{ConfigError, ServiceConfig, ServiceDefaults, parsed, var};

pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    database: "dw_task_distribution",
    grpc_port: 50052,
    metrics_port: 9102,
    stream_name: "DW_DISTRIBUTION",
    subject_prefix: "dw.distribution",
};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    /// agent-sessions' events: availability, departments, permissions, tenant settings.
    pub agent_sessions: Upstream,
    /// messaging's events: inbound client messages.
    pub messaging: Upstream,
    /// Prefix of the durable consumers' names (one set per deployment).
    pub consumer_prefix: String,
    /// How often the queue gauges are sampled (`DW_QUEUE_METRICS_INTERVAL_MS`, default 15 s).
    pub queue_metrics_interval: Duration,
}

dw_grpc_kit::shared_settings_in_field!(Config);

pub fn from_env() -> Result<Config, ConfigError> {
    Ok(Config {
        service: ServiceConfig::from_env(DEFAULTS)?,
        agent_sessions: Upstream::agent_sessions(),
        messaging: Upstream::messaging(),
        consumer_prefix: var("DW_CONSUMER_PREFIX", "task-distribution"),
        queue_metrics_interval: queue_metrics_interval(parsed("DW_QUEUE_METRICS_INTERVAL_MS", "15000")?)?,
    })
}

fn queue_metrics_interval(millis: u64) -> Result<Duration, ConfigError> {
    if millis == 0 {
        return Err(ConfigError::Invalid { name: "DW_QUEUE_METRICS_INTERVAL_MS", reason: "must be above 0".into() });
    }
    Ok(Duration::from_millis(millis))
}
