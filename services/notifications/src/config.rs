//! Configuration: the common service settings with notifications' defaults (gRPC 50054, metrics
//! 9104, database `dw_notifications`, stream `DW_NOTIFICATIONS`), and the streams it consumes.

use std::time::Duration;

pub use dw_grpc_kit::config::Upstream;
use dw_grpc_kit::config::{ConfigError, ServiceConfig, ServiceDefaults, parsed, secret, var};
use secrecy::ExposeSecret;

use crate::app::push_delivery::{PushConfig, vapid_key};
use crate::app::webhook_delivery::WebhookConfig;
use crate::domain::webhook::default_schedule;

pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    database: "dw_notifications",
    grpc_port: 50054,
    metrics_port: 9104,
    stream_name: "DW_NOTIFICATIONS",
    subject_prefix: "dw.notifications",
};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub messaging: Upstream,
    pub distribution: Upstream,
    pub agent_sessions: Upstream,
    pub consumer_prefix: String,
    pub webhooks: WebhookConfig,
    pub push: PushConfig,
}

dw_grpc_kit::shared_settings_in_field!(Config);

pub fn from_env() -> Result<Config, ConfigError> {
    // The VAPID key like every secret: the variable, or the file `DW_VAPID_PRIVATE_KEY_FILE` names.
    let vapid_secret = secret("DW_VAPID_PRIVATE_KEY", "DW_VAPID_PRIVATE_KEY_FILE", "")?;
    Ok(Config {
        service: ServiceConfig::from_env(DEFAULTS)?,
        messaging: Upstream::messaging(),
        distribution: Upstream::distribution(),
        agent_sessions: Upstream::agent_sessions(),
        consumer_prefix: var("DW_CONSUMER_PREFIX", "notifications"),
        webhooks: WebhookConfig {
            allowed_hosts: var("DW_WEBHOOK_ALLOWED_HOSTS", "")
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
            timeout: Duration::from_millis(parsed("DW_WEBHOOK_TIMEOUT_MS", "15000")?),
            schedule: default_schedule(),
            poll_interval: Duration::from_millis(parsed("DW_WEBHOOK_POLL_MS", "500")?),
        },
        push: PushConfig {
            vapid: std::sync::Arc::new(
                vapid_key(Some(vapid_secret.expose_secret()).filter(|k| !k.trim().is_empty()))
                    .map_err(|reason| ConfigError::Invalid { name: "DW_VAPID_PRIVATE_KEY", reason })?,
            ),
            contact: var("DW_VAPID_CONTACT", "mailto:ops@digital-workspace.local"),
            ttl: Duration::from_secs(parsed("DW_PUSH_TTL_SECONDS", "86400")?),
            timeout: Duration::from_millis(parsed("DW_PUSH_TIMEOUT_MS", "10000")?),
            poll_interval: Duration::from_millis(parsed("DW_PUSH_POLL_MS", "200")?),
            allowed_hosts: var("DW_PUSH_ALLOWED_HOSTS", "")
                .split(',')
                .map(str::trim)
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect(),
        },
    })
}
