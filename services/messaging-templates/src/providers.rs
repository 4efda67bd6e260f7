//! The outside providers, over real HTTP: a WhatsApp Cloud API-shaped endpoint
//! (`POST {base}/{phone_number_id}/messages`, `type: template`) and an SMS API of the common
//! `Messages` shape (`POST {base}/Accounts/{sid}/Messages.json`, form-encoded, basic auth).
//!
//! Retries only what the provider certainly did not accept (connection refused, HTTP 429, 5xx):
//! a request that may have reached it (a timeout) is never repeated, so a message is handed over
//! at most once.
//!
//! Every HTTP request (each attempt) is measured: `dw_provider_request_duration_seconds` and, when
//! it fails, `dw_provider_failures_total` with the reason.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use tracing::Instrument as _;

use crate::domain::message::{Failure, OutboundMessage};
use crate::domain::template::Channel;

#[derive(Debug, Clone)]
pub struct WhatsappConfig {
    pub base_url: String,
    pub phone_number_id: String,
    pub access_token: secrecy::SecretString,
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: secrecy::SecretString,
    pub from: String,
}

#[derive(Debug, Clone)]
pub struct ProviderConfig {
    pub whatsapp: WhatsappConfig,
    pub sms: SmsConfig,
    pub timeout: Duration,
    pub max_attempts: u32,
    /// Delay before attempt n+1 (the last one repeats).
    pub backoff: Vec<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Accepted { provider_message_id: String, attempts: u32 },
    Rejected { failure: Failure, attempts: u32 },
}

/// Which provider a request goes to, as the metrics name it.
#[derive(Debug, Clone, Copy)]
struct Target {
    provider: &'static str,
    channel: &'static str,
}

const WHATSAPP: Target = Target { provider: "whatsapp_cloud", channel: "whatsapp" };
const SMS: Target = Target { provider: "sms_messages", channel: "sms" };

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    provider: &'static str,
    channel: &'static str,
    /// `accepted`, or `failed` (the failure counter says why).
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    provider: &'static str,
    channel: &'static str,
    reason: &'static str,
}

/// Provider request metrics, registered once per process.
#[derive(Clone)]
pub struct ProviderMetrics {
    duration: Family<RequestLabels, Histogram>,
    failures: Family<FailureLabels, Counter>,
}

impl ProviderMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0])
            }),
            failures: Family::default(),
        };
        registry.register(
            "dw_provider_request_duration_seconds",
            "Provider HTTP requests (each attempt) and their latency until the response body, by provider, \
             channel and outcome (accepted or failed)",
            metrics.duration.clone(),
        );
        registry.register(
            "dw_provider_failures",
            "Provider HTTP requests (each attempt) that failed, by provider, channel and reason (timeout, connect, \
             network, http_429, http_4xx, http_5xx, http_other, bad_response)",
            metrics.failures.clone(),
        );
        metrics
    }

    fn observe(&self, target: Target, elapsed: Duration, failure: Option<&'static str>) {
        let outcome = if failure.is_some() { "failed" } else { "accepted" };
        let labels = RequestLabels { provider: target.provider, channel: target.channel, outcome };
        self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        if let Some(reason) = failure {
            let labels = FailureLabels { provider: target.provider, channel: target.channel, reason };
            self.failures.get_or_create(&labels).inc();
        }
    }
}

#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
    config: ProviderConfig,
    metrics: ProviderMetrics,
}

enum Attempt {
    Accepted(String),
    Retryable(Failure),
    Final(Failure),
}

fn failure(code: impl Into<String>, reason: impl Into<String>, terminal: bool) -> Failure {
    Failure { code: code.into(), reason: reason.into(), terminal }
}

impl Providers {
    pub fn new(config: ProviderConfig, metrics: ProviderMetrics) -> Result<Self, reqwest::Error> {
        let http =
            reqwest::Client::builder().timeout(config.timeout).connect_timeout(Duration::from_secs(3)).build()?;
        Ok(Self { http, config, metrics })
    }

    /// The WhatsApp Cloud API request body for a template message.
    pub fn whatsapp_body(message: &OutboundMessage) -> Value {
        let mut components = Vec::new();
        if let Some(url) = &message.header_image_url {
            components.push(json!({"type": "header", "parameters": [{"type": "image", "image": {"link": url}}]}));
        } else if let Some(text) = &message.header_text {
            components.push(json!({"type": "header", "parameters": [{"type": "text", "text": text}]}));
        }
        if !message.variables.is_empty() {
            let parameters: Vec<Value> = message.variables.iter().map(|v| json!({"type": "text", "text": v})).collect();
            components.push(json!({"type": "body", "parameters": parameters}));
        }
        json!({
            "messaging_product": "whatsapp",
            "recipient_type": "individual",
            "to": message.phone.as_str().trim_start_matches('+'),
            "type": "template",
            "template": {
                "name": message.template_name,
                "language": {"code": message.language},
                "components": components,
            }
        })
    }

    /// Hands `message` to its channel's provider, retrying what is safe to retry.
    pub async fn send(&self, message: &OutboundMessage) -> Outcome {
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = match message.channel {
                Channel::Whatsapp => self.whatsapp_once(message).await,
                Channel::Sms => self.sms_once(message).await,
            };
            match result {
                Attempt::Accepted(provider_message_id) => return Outcome::Accepted { provider_message_id, attempts },
                Attempt::Final(failure) => return Outcome::Rejected { failure, attempts },
                Attempt::Retryable(failure) if attempts >= self.config.max_attempts => {
                    return Outcome::Rejected { failure, attempts };
                }
                Attempt::Retryable(failure) => {
                    let index = usize::try_from(attempts - 1).unwrap_or(usize::MAX);
                    let delay =
                        self.config.backoff.get(index).or(self.config.backoff.last()).copied().unwrap_or_default();
                    tracing::warn!(attempts, code = %failure.code, reason = %failure.reason, "provider refused, retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    async fn whatsapp_once(&self, message: &OutboundMessage) -> Attempt {
        let config = &self.config.whatsapp;
        let url = format!("{}/{}/messages", config.base_url.trim_end_matches('/'), config.phone_number_id);
        let request = self
            .http
            .post(&url)
            .bearer_auth(secrecy::ExposeSecret::expose_secret(&config.access_token))
            .json(&Self::whatsapp_body(message));
        self.classify(
            WHATSAPP,
            &url,
            request,
            |body| body["messages"][0]["id"].as_str().map(str::to_owned),
            |body| {
                let error = &body["error"];
                (error["code"].as_i64().map(|c| c.to_string()), error["message"].as_str().map(str::to_owned))
            },
        )
        .await
    }

    async fn sms_once(&self, message: &OutboundMessage) -> Attempt {
        let config = &self.config.sms;
        let url = format!("{}/Accounts/{}/Messages.json", config.base_url.trim_end_matches('/'), config.account_sid);
        let form = [("To", message.phone.as_str()), ("From", config.from.as_str()), ("Body", message.body.as_str())];
        let request = self
            .http
            .post(&url)
            .basic_auth(&config.account_sid, Some(secrecy::ExposeSecret::expose_secret(&config.auth_token)))
            .form(&form);
        self.classify(
            SMS,
            &url,
            request,
            |body| body["sid"].as_str().map(str::to_owned),
            |body| (body["code"].as_i64().map(|c| c.to_string()), body["message"].as_str().map(str::to_owned)),
        )
        .await
    }

    /// Sends one request to `url` in a client span carrying its `traceparent`, measures it and
    /// classifies the answer.
    async fn classify(
        &self,
        target: Target,
        url: &str,
        request: reqwest::RequestBuilder,
        accepted_id: impl Fn(&Value) -> Option<String>,
        error_of: impl Fn(&Value) -> (Option<String>, Option<String>),
    ) -> Attempt {
        let span = dw_telemetry::http_client_span!(
            "provider request",
            "POST",
            url,
            provider = target.provider,
            channel = target.channel,
        );
        let request = match dw_telemetry::http_client::traceparent(&span) {
            Some(traceparent) => request.header("traceparent", traceparent),
            None => request,
        };
        let started = Instant::now();
        let (attempt, failure_reason) = exchange(request, accepted_id, error_of).instrument(span).await;
        self.metrics.observe(target, started.elapsed(), failure_reason);
        attempt
    }
}

/// One request and what came of it, with the failure's metric reason; the outcome is recorded on
/// the current (client) span.
async fn exchange(
    request: reqwest::RequestBuilder,
    accepted_id: impl Fn(&Value) -> Option<String>,
    error_of: impl Fn(&Value) -> (Option<String>, Option<String>),
) -> (Attempt, Option<&'static str>) {
    let span = tracing::Span::current();
    let response = match request.send().await {
        Ok(response) => response,
        // Never reached the provider: safe to try again.
        Err(error) if error.is_connect() => {
            dw_telemetry::http_client::record_failure(&span, "connect");
            return (Attempt::Retryable(failure("CONNECT", error.to_string(), false)), Some("connect"));
        }
        // It may have: never repeat.
        Err(error) => {
            let reason = if error.is_timeout() { "timeout" } else { "network" };
            dw_telemetry::http_client::record_failure(&span, reason);
            let unknown = failure("OUTCOME_UNKNOWN", format!("no answer from the provider: {error}"), true);
            return (Attempt::Final(unknown), Some(reason));
        }
    };
    let status = response.status();
    dw_telemetry::http_client::record_status(&span, status.as_u16());
    let body: Value = response.json().await.unwrap_or(Value::Null);
    if status.is_success() {
        return match accepted_id(&body) {
            Some(id) => (Attempt::Accepted(id), None),
            None => {
                dw_telemetry::http_client::record_failure(&span, "bad_response");
                let bad = failure("BAD_RESPONSE", "accepted without a message id", true);
                (Attempt::Final(bad), Some("bad_response"))
            }
        };
    }
    let (code, reason) = error_of(&body);
    let code = code.unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
    let reason = reason.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
    let metric_reason = match status.as_u16() {
        429 => "http_429",
        400..=499 => "http_4xx",
        500..=599 => "http_5xx",
        _ => "http_other",
    };
    if status.as_u16() == 429 || status.is_server_error() {
        (Attempt::Retryable(failure(code, reason, false)), Some(metric_reason))
    } else {
        (Attempt::Final(failure(code, reason, true)), Some(metric_reason))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::PhoneNumber;
    use crate::domain::message::Status;

    fn sms_message() -> OutboundMessage {
        OutboundMessage {
            message_id: uuid::Uuid::from_u128(1),
            template_id: uuid::Uuid::from_u128(2),
            template_name: "code".into(),
            language: "pt_BR".into(),
            channel: Channel::Sms,
            phone: PhoneNumber::parse("+5511900000001").unwrap(),
            contact_id: None,
            header_text: None,
            header_image_url: None,
            body: "Codigo 1".into(),
            variables: vec!["1".into()],
            department: None,
            webhook_url: None,
            metadata: Default::default(),
            additional_information: String::new(),
            agent: "ana".into(),
            status: Status::Requested,
            provider_message_id: None,
            failure: None,
            history: Vec::new(),
            requested_at: chrono::Utc::now(),
        }
    }

    fn providers(sms_base: String, registry: &mut Registry) -> Providers {
        let config = ProviderConfig {
            whatsapp: WhatsappConfig {
                base_url: "http://127.0.0.1:9/v21.0".into(),
                phone_number_id: "1".into(),
                access_token: "t".into(),
            },
            sms: SmsConfig {
                base_url: sms_base,
                account_sid: "AC1".into(),
                auth_token: "t".into(),
                from: "+15550001111".into(),
            },
            timeout: Duration::from_millis(300),
            max_attempts: 2,
            backoff: vec![Duration::from_millis(1)],
        };
        Providers::new(config, ProviderMetrics::register(registry)).unwrap()
    }

    fn failures(registry: &Registry, reason: &str) -> Option<f64> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
        let labels = [("provider", "sms_messages"), ("channel", "sms"), ("reason", reason)];
        dw_testkit::metrics::sample(&text, "dw_provider_failures_total", &labels)
    }

    #[tokio::test]
    async fn a_refused_connection_counts_as_connect_on_every_attempt() {
        // A port nobody listens on.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let mut registry = Registry::default();
        let providers = providers(format!("http://{closed}"), &mut registry);
        let outcome = providers.send(&sms_message()).await;
        assert!(matches!(outcome, Outcome::Rejected { attempts: 2, .. }), "{outcome:?}");
        assert_eq!(failures(&registry, "connect"), Some(2.0));
    }

    #[tokio::test]
    async fn a_provider_that_never_answers_counts_as_a_timeout_and_is_not_retried() {
        // Accepts connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = silent.local_addr().unwrap();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = silent.accept().await {
                open.push(socket);
            }
        });
        let mut registry = Registry::default();
        let providers = providers(format!("http://{addr}"), &mut registry);
        let outcome = providers.send(&sms_message()).await;
        assert!(matches!(outcome, Outcome::Rejected { attempts: 1, .. }), "{outcome:?}");
        assert_eq!(failures(&registry, "timeout"), Some(1.0));
        held.abort();
    }
}
