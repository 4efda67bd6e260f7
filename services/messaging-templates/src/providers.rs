//! The outside providers, over real HTTP: a WhatsApp Cloud API-shaped endpoint
//! (`POST {base}/{phone_number_id}/messages`, `type: template`) and an SMS API of the common
//! `Messages` shape (`POST {base}/Accounts/{sid}/Messages.json`, form-encoded, basic auth).
//!
//! Retries only what the provider certainly did not accept (connection refused, HTTP 429, 5xx):
//! a request that may have reached it (a timeout) is never repeated, so a message is handed over
//! at most once.

use std::time::Duration;

use serde_json::{Value, json};

use crate::domain::message::{Failure, OutboundMessage};
use crate::domain::template::Channel;

#[derive(Debug, Clone)]
pub struct WhatsappConfig {
    pub base_url: String,
    pub phone_number_id: String,
    pub access_token: String,
}

#[derive(Debug, Clone)]
pub struct SmsConfig {
    pub base_url: String,
    pub account_sid: String,
    pub auth_token: String,
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

#[derive(Clone)]
pub struct Providers {
    http: reqwest::Client,
    config: ProviderConfig,
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
    pub fn new(config: ProviderConfig) -> Result<Self, reqwest::Error> {
        let http =
            reqwest::Client::builder().timeout(config.timeout).connect_timeout(Duration::from_secs(3)).build()?;
        Ok(Self { http, config })
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
        let request = self.http.post(url).bearer_auth(&config.access_token).json(&Self::whatsapp_body(message));
        self.classify(
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
        let request = self.http.post(url).basic_auth(&config.account_sid, Some(&config.auth_token)).form(&form);
        self.classify(
            request,
            |body| body["sid"].as_str().map(str::to_owned),
            |body| (body["code"].as_i64().map(|c| c.to_string()), body["message"].as_str().map(str::to_owned)),
        )
        .await
    }

    async fn classify(
        &self,
        request: reqwest::RequestBuilder,
        accepted_id: impl Fn(&Value) -> Option<String>,
        error_of: impl Fn(&Value) -> (Option<String>, Option<String>),
    ) -> Attempt {
        let response = match request.send().await {
            Ok(response) => response,
            // Never reached the provider: safe to try again.
            Err(error) if error.is_connect() => {
                return Attempt::Retryable(failure("CONNECT", error.to_string(), false));
            }
            // It may have: never repeat.
            Err(error) => {
                return Attempt::Final(failure(
                    "OUTCOME_UNKNOWN",
                    format!("no answer from the provider: {error}"),
                    true,
                ));
            }
        };
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            return match accepted_id(&body) {
                Some(id) => Attempt::Accepted(id),
                None => Attempt::Final(failure("BAD_RESPONSE", "accepted without a message id", true)),
            };
        }
        let (code, reason) = error_of(&body);
        let code = code.unwrap_or_else(|| format!("HTTP_{}", status.as_u16()));
        let reason = reason.unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_owned());
        if status.as_u16() == 429 || status.is_server_error() {
            Attempt::Retryable(failure(code, reason, false))
        } else {
            Attempt::Final(failure(code, reason, true))
        }
    }
}
