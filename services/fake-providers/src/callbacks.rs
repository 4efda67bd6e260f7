//! The signed callbacks the fakes make after accepting a send: WhatsApp status notifications
//! (`delivered`, then `read`) and an SMS `delivered` status callback, each retried like the real
//! platforms retry theirs.

use std::time::Duration;

use axum::http::{StatusCode, header};
use tokio_util::sync::CancellationToken;

use crate::{
    SmsStatusWebhook, StatusWebhook, form_body, hub_signature, sms_status_params, status_payload, twilio_signature,
};

/// Attempts per callback (connection refused or HTTP 5xx are retried).
/// Like the real platforms, which retry a failed status webhook for hours, the fake keeps trying
/// for about 20 s (0.5 s, 1 s, … then every 3 s), so a receiver restarting meanwhile misses nothing.
const WEBHOOK_ATTEMPTS: u32 = 10;

/// One signed POST: where, with what body, under which signature header; `what` names it in logs.
struct Signed<'a> {
    url: &'a str,
    content_type: &'static str,
    signature_header: &'static str,
    signature: String,
    body: String,
    what: String,
}

fn now_unix() -> i64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    i64::try_from(now).unwrap_or(0)
}

/// Waits `delay`; false when shutdown came first.
async fn wait(cancel: &CancellationToken, delay: Duration) -> bool {
    tokio::select! {
        () = cancel.cancelled() => false,
        () = tokio::time::sleep(delay) => true,
    }
}

/// Sends `delivered`, then `read`, each after the configured delay; stops early on shutdown.
/// `sent_from` is the phone number id of the send's path, named unless the webhook names another.
pub(crate) async fn whatsapp_statuses(
    http: &reqwest::Client,
    webhook: &StatusWebhook,
    cancel: &CancellationToken,
    sent_from: &str,
    wamid: &str,
    recipient: &str,
) {
    let phone_number_id = webhook.names(sent_from);
    for status in ["delivered", "read"] {
        if !wait(cancel, webhook.delay).await {
            return;
        }
        let body = status_payload(phone_number_id, wamid, status, recipient, now_unix()).to_string();
        let signed = Signed {
            url: &webhook.url,
            content_type: "application/json",
            signature_header: "X-Hub-Signature-256",
            signature: hub_signature(webhook.app_secret.as_bytes(), body.as_bytes()),
            body,
            what: format!("status webhook {status} {wamid}"),
        };
        post_signed(http, cancel, &signed).await;
    }
}

/// An accepted SMS, as its status callback reports it.
pub(crate) struct SmsDelivered {
    pub account_sid: String,
    pub sid: String,
    pub to: String,
    pub from: String,
}

/// Reports the SMS `delivered` after the configured delay; nothing on shutdown.
pub(crate) async fn sms_delivered(
    http: &reqwest::Client,
    webhook: &SmsStatusWebhook,
    cancel: &CancellationToken,
    sms: &SmsDelivered,
) {
    if !wait(cancel, webhook.delay).await {
        return;
    }
    let params = sms_status_params(&sms.account_sid, &sms.sid, "delivered", &sms.to, &sms.from);
    let signed = Signed {
        url: &webhook.url,
        content_type: "application/x-www-form-urlencoded",
        signature_header: messaging_templates::domain::twilio_signature::HEADER,
        // Signed over the URL it posts to: the receiver's public URL, as the provider knows it.
        signature: twilio_signature(&webhook.auth_token, &webhook.url, &params),
        body: form_body(&params),
        what: format!("sms status callback delivered {}", sms.sid),
    };
    post_signed(http, cancel, &signed).await;
}

async fn post_signed(http: &reqwest::Client, cancel: &CancellationToken, signed: &Signed<'_>) {
    let (url, what) = (signed.url, &signed.what);
    for attempt in 1..=WEBHOOK_ATTEMPTS {
        let sent = http
            .post(url)
            .header(header::CONTENT_TYPE, signed.content_type)
            .header(signed.signature_header, &signed.signature)
            .body(signed.body.clone())
            .send()
            .await;
        let retry = match sent {
            Ok(response) if response.status().is_success() => {
                tracing::info!("{what} -> POST {url} {}", response.status().as_u16());
                return;
            }
            Ok(response) => {
                let code = response.status();
                let answer = response.text().await.unwrap_or_default();
                let answer: String = answer.chars().take(200).collect();
                tracing::warn!("{what} -> POST {url} {} {answer}", code.as_u16());
                code.is_server_error() || code == StatusCode::TOO_MANY_REQUESTS
            }
            // No answer (refused, reset by a receiver that died mid-request, timed out): again.
            Err(error) => {
                tracing::warn!("{what} -> POST {url}: {error}");
                true
            }
        };
        if !retry || attempt == WEBHOOK_ATTEMPTS {
            return;
        }
        if !wait(cancel, Duration::from_millis((500 * u64::from(attempt)).min(3000))).await {
            return;
        }
    }
}
