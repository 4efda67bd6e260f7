//! Configuration from the environment: the common service settings with messaging-templates'
//! defaults (gRPC 50053, metrics 9103, database `dw_messaging`, stream `DW_MESSAGING`).

use std::time::Duration;

use dw_grpc_kit::config::{ConfigError, ServiceConfig, ServiceDefaults, parsed, secret, var};

use secrecy::ExposeSecret as _;

use crate::domain::twilio_signature::WebhookBaseUrl;
use crate::provider_secrets::ProviderSecretsKey;
use crate::providers::{ProviderConfig, SmsConfig, WhatsappConfig};

#[derive(Debug, Clone)]
pub struct Config {
    pub service: ServiceConfig,
    pub providers: ProviderConfig,
    /// agent-sessions' stream (send permissions).
    pub agent_sessions_stream: String,
    pub agent_sessions_subject_prefix: String,
    /// Off only for maintenance (and the restart test): requested messages wait in the stream.
    pub dispatch_enabled: bool,
    /// Hand-overs to the providers at once per replica (`DW_DISPATCH_CONCURRENCY`, 1–64);
    /// unset: 8. The dispatcher has its own pool of two connections per hand-over, plus one.
    pub dispatch_concurrency: Option<usize>,
    pub consumer_prefix: String,
    /// Provider webhooks (HTTP), verified with each tenant's own accounts.
    pub webhook_addr: std::net::SocketAddr,
    /// Where the providers reach those webhooks (`DW_WEBHOOK_PUBLIC_URL`): the SMS
    /// provider signs the URL it calls, so the signature is checked against this public URL.
    pub webhook_public_url: WebhookBaseUrl,
    /// Encrypts the tenants' provider secrets at rest (`DW_PROVIDER_SECRETS_KEY`).
    pub provider_secrets_key: ProviderSecretsKey,
    /// What a send may render (`DW_SMS_MAX_SEGMENTS`).
    pub limits: crate::domain::preview::Limits,
    /// Hosts a send's webhook may name (and a tenant may allow) although they are local
    /// (`DW_WEBHOOK_ALLOWED_HOSTS`, the same variable as notifications' delivery worker reads;
    /// empty in production, where a send's webhook is https to a public host only).
    pub local_webhook_hosts: Vec<String>,
    /// Messages a tenant may have waiting for the providers before its sends are refused
    /// (`DW_SEND_BACKLOG_LIMIT`, default 500; 0: no limit). See [`crate::app::send_backlog`].
    pub send_backlog_limit: u32,
}

pub const DEFAULTS: ServiceDefaults = ServiceDefaults {
    database: "dw_messaging",
    grpc_port: 50053,
    metrics_port: 9103,
    stream_name: "DW_MESSAGING",
    subject_prefix: "dw.messaging",
};

dw_grpc_kit::shared_settings_in_field!(Config);

pub fn from_env() -> Result<Config, ConfigError> {
    let webhook_addr = parsed("DW_WEBHOOK_ADDR", "0.0.0.0:8083")?;
    Ok(Config {
        service: ServiceConfig::from_env(DEFAULTS)?,
        providers: ProviderConfig {
            whatsapp: WhatsappConfig {
                base_url: var("DW_WHATSAPP_BASE_URL", "http://127.0.0.1:8091/v21.0"),
                phone_number_id: var("DW_WHATSAPP_PHONE_NUMBER_ID", "100000000000001"),
                access_token: secret(
                    "DW_WHATSAPP_ACCESS_TOKEN",
                    "DW_WHATSAPP_ACCESS_TOKEN_FILE",
                    "local-whatsapp-token",
                )?,
            },
            sms: SmsConfig {
                base_url: var("DW_SMS_BASE_URL", "http://127.0.0.1:8092/2010-04-01"),
                account_sid: var("DW_SMS_ACCOUNT_SID", "AC00000000000000000000000000000001"),
                auth_token: secret("DW_SMS_AUTH_TOKEN", "DW_SMS_AUTH_TOKEN_FILE", "local-sms-token")?,
                from: var("DW_SMS_FROM", "+15550000001"),
            },
            timeout: Duration::from_millis(parsed("DW_PROVIDER_TIMEOUT_MS", "10000")?),
            max_attempts: parsed("DW_PROVIDER_MAX_ATTEMPTS", "5")?,
            backoff: vec![
                Duration::from_millis(200),
                Duration::from_millis(500),
                Duration::from_secs(1),
                Duration::from_secs(2),
            ],
        },
        agent_sessions_stream: var("DW_AGENT_SESSIONS_STREAM", "DW_AGENT_SESSIONS"),
        agent_sessions_subject_prefix: var("DW_AGENT_SESSIONS_SUBJECT_PREFIX", "dw.agentsessions"),
        dispatch_enabled: parsed("DW_DISPATCH_ENABLED", "true")?,
        dispatch_concurrency: dispatch_concurrency()?,
        limits: crate::domain::preview::Limits {
            sms_max_segments: parsed(
                "DW_SMS_MAX_SEGMENTS",
                &crate::domain::preview::DEFAULT_SMS_MAX_SEGMENTS.to_string(),
            )?,
        },
        consumer_prefix: var("DW_CONSUMER_PREFIX", "messaging-templates"),
        webhook_addr,
        webhook_public_url: webhook_public_url(webhook_addr)?,
        provider_secrets_key: provider_secrets_key()?,
        local_webhook_hosts: var("DW_WEBHOOK_ALLOWED_HOSTS", "")
            .split(',')
            .map(str::trim)
            .filter(|h| !h.is_empty())
            .map(str::to_owned)
            .collect(),
        send_backlog_limit: parsed("DW_SEND_BACKLOG_LIMIT", &crate::app::send_backlog::DEFAULT_LIMIT.to_string())?,
    })
}

/// `DW_WEBHOOK_PUBLIC_URL`: the public base the providers are given (e.g.
/// `https://hooks.example.com`). Never taken from a request's `Host` or `X-Forwarded-*`
/// headers, which whoever sends the request chooses: a signature then binds the URL the
/// operator configured. Unset, it is `http://127.0.0.1:<port of DW_WEBHOOK_ADDR>`, where a
/// provider on this machine (the local fake) calls; every deployment behind an ingress sets it.
/// (Not named `*_BASE_URL`: the manifest checks read those as egress destinations, and this one
/// is where requests come in.)
fn webhook_public_url(webhook_addr: std::net::SocketAddr) -> Result<WebhookBaseUrl, ConfigError> {
    let local = format!("http://127.0.0.1:{}", webhook_addr.port());
    let value = var("DW_WEBHOOK_PUBLIC_URL", &local);
    WebhookBaseUrl::parse(&value)
        .map_err(|reason| ConfigError::Invalid { name: "DW_WEBHOOK_PUBLIC_URL", reason: format!("{value:?} {reason}") })
}

/// `DW_DISPATCH_CONCURRENCY`: unset (the default, 8), or 1–64.
fn dispatch_concurrency() -> Result<Option<usize>, ConfigError> {
    parse_dispatch_concurrency(&var("DW_DISPATCH_CONCURRENCY", ""))
}

fn parse_dispatch_concurrency(value: &str) -> Result<Option<usize>, ConfigError> {
    if value.trim().is_empty() {
        return Ok(None);
    }
    match value.trim().parse::<usize>() {
        Ok(n @ 1..=64) => Ok(Some(n)),
        _ => Err(ConfigError::Invalid {
            name: "DW_DISPATCH_CONCURRENCY",
            reason: format!("{value:?} is not a number from 1 to 64"),
        }),
    }
}

/// `DW_PROVIDER_SECRETS_KEY` (or the file named by `DW_PROVIDER_SECRETS_KEY_FILE`): required, the
/// base64 of 32 bytes. Like `DW_JWT_SECRET` it has no default: a service that made one up would
/// encrypt the tenants' provider secrets under a key nobody keeps.
fn provider_secrets_key() -> Result<ProviderSecretsKey, ConfigError> {
    let encoded = secret("DW_PROVIDER_SECRETS_KEY", "DW_PROVIDER_SECRETS_KEY_FILE", "")?;
    if encoded.expose_secret().trim().is_empty() {
        return Err(ConfigError::Missing("DW_PROVIDER_SECRETS_KEY"));
    }
    ProviderSecretsKey::from_base64(&encoded)
        .map_err(|reason| ConfigError::Invalid { name: "DW_PROVIDER_SECRETS_KEY", reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_concurrency_is_unset_or_from_1_to_64() {
        assert_eq!(parse_dispatch_concurrency("").ok(), Some(None));
        assert_eq!(parse_dispatch_concurrency(" 12 ").ok(), Some(Some(12)));
        assert_eq!(parse_dispatch_concurrency("64").ok(), Some(Some(64)));
        for refused in ["0", "65", "-1", "many", "1.5"] {
            let error = parse_dispatch_concurrency(refused).expect_err(refused);
            assert!(error.to_string().contains("DW_DISPATCH_CONCURRENCY"), "{refused}: {error}");
        }
    }
}
