//! Provider webhooks over HTTP (`DW_WEBHOOK_ADDR`, port 8083 by default), one path per tenant:
//!
//! - `GET  /webhooks/whatsapp/{tenant}`: the verify-token handshake (`hub.mode=subscribe`,
//!   `hub.verify_token`, answers `hub.challenge`).
//! - `POST /webhooks/whatsapp/{tenant}`: statuses and client messages, verified with
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, body)>`.
//! - `POST /webhooks/sms/{tenant}/status` and `/webhooks/sms/{tenant}/inbound`: form-encoded
//!   callbacks (`MessageSid`, `MessageStatus`, `ErrorCode` / `From`, `Body`), verified with
//!   `X-Signature-256: sha256=<hex HMAC-SHA256(webhook secret, body)>`.
//!
//! A bad signature is 401 and changes nothing; an unparseable body is 400; an accepted body is
//! 200 once recorded (so the provider retries what we failed to record).

use dw_ids::TenantId;
use std::net::SocketAddr;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::app::inbound::{self, Inbound};
use crate::app::message_status::{self, ReportedStatus};
use crate::domain::PhoneNumber;
use crate::domain::template::Channel;

#[derive(Clone)]
pub struct WebhookConfig {
    pub whatsapp_app_secret: secrecy::SecretString,
    pub whatsapp_verify_token: secrecy::SecretString,
    pub sms_secret: secrecy::SecretString,
}

impl std::fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookConfig { secrets: <redacted> }")
    }
}

#[derive(Clone)]
struct Hooks {
    pool: PgPool,
    config: WebhookConfig,
}

/// `sha256=<hex>` of `body` under `secret`.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mac) => mac,
        Err(_) => unreachable!("hmac accepts any key length"),
    };
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Constant-time check of a `sha256=<hex>` signature.
pub fn verify(secret: &str, body: &[u8], signature: Option<&str>) -> bool {
    let Some(hex) = signature.and_then(|s| s.strip_prefix("sha256=")) else {
        return false;
    };
    // Hex digits only: u8::from_str_radix alone would also take "+a" for 0a.
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return false;
    }
    let bytes: Option<Vec<u8>> = (0..32).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()).collect();
    let Some(bytes) = bytes else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&bytes).is_ok()
}

/// A provider's message id as we can store and look it up: Postgres text cannot hold NUL, so an id
/// with one is not an id of ours (a status for it is skipped, a form with it cannot be read).
fn is_storable_id(id: &&str) -> bool {
    !id.contains('\0')
}

/// Provider text as this service and its consumers can store it: Postgres text cannot hold NUL,
/// so one becomes U+FFFD (as undecodable form bytes already do).
fn storable_text(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn unix_time(value: &Value) -> DateTime<Utc> {
    value
        .as_str()
        .and_then(|s| s.parse::<i64>().ok())
        .or_else(|| value.as_i64())
        .and_then(|secs| DateTime::from_timestamp(secs, 0))
        .unwrap_or_else(Utc::now)
}

fn failed(error: crate::app::AppError) -> StatusCode {
    tracing::error!(%error, "webhook not recorded");
    StatusCode::SERVICE_UNAVAILABLE
}

async fn whatsapp_verify(State(hooks): State<Hooks>, Path(tenant): Path<String>, uri: Uri) -> (StatusCode, String) {
    if TenantId::parse(&tenant).is_err() {
        return (StatusCode::NOT_FOUND, String::new());
    }
    let params: Vec<(String, String)> =
        form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes()).into_owned().collect();
    let param = |name: &str| params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if param("hub.mode") == Some("subscribe")
        && param("hub.verify_token") == Some(secrecy::ExposeSecret::expose_secret(&hooks.config.whatsapp_verify_token))
    {
        return (StatusCode::OK, param("hub.challenge").unwrap_or_default().to_owned());
    }
    (StatusCode::FORBIDDEN, String::new())
}

async fn whatsapp_event(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Ok(tenant) = TenantId::parse(&tenant) else {
        return StatusCode::NOT_FOUND;
    };
    if !verify(
        secrecy::ExposeSecret::expose_secret(&hooks.config.whatsapp_app_secret),
        &body,
        header(&headers, "x-hub-signature-256"),
    ) {
        tracing::warn!(%tenant, "whatsapp webhook with a bad signature");
        return StatusCode::UNAUTHORIZED;
    }
    let Ok(payload) = serde_json::from_slice::<Value>(&body) else {
        return StatusCode::BAD_REQUEST;
    };
    let changes =
        payload["entry"].as_array().into_iter().flatten().flat_map(|e| e["changes"].as_array().into_iter().flatten());
    for change in changes {
        let value = &change["value"];
        for status in value["statuses"].as_array().into_iter().flatten() {
            let Some(id) = status["id"].as_str().filter(is_storable_id) else { continue };
            let reported = match status["status"].as_str() {
                Some("sent") => ReportedStatus::Sent,
                Some("delivered") => ReportedStatus::Delivered,
                Some("read") => ReportedStatus::Read,
                Some("failed") => {
                    let error = &status["errors"][0];
                    ReportedStatus::Failed {
                        code: error["code"].as_i64().map(|c| c.to_string()).unwrap_or_else(|| "failed".into()),
                        reason: storable_text(
                            error["title"].as_str().or(error["message"].as_str()).unwrap_or("failed"),
                        ),
                    }
                }
                _ => continue,
            };
            if let Err(error) =
                message_status::apply_status(&hooks.pool, &tenant, id, reported, unix_time(&status["timestamp"])).await
            {
                return failed(error);
            }
        }
        let profile = value["contacts"][0]["profile"]["name"].as_str().map(storable_text);
        for message in value["messages"].as_array().into_iter().flatten() {
            let (Some(from), Some(id)) = (message["from"].as_str(), message["id"].as_str().filter(is_storable_id))
            else {
                continue;
            };
            let Ok(phone) = PhoneNumber::parse(&format!("+{}", from.trim_start_matches('+'))) else { continue };
            let text = message["text"]["body"]
                .as_str()
                .map(storable_text)
                .unwrap_or_else(|| storable_text(&format!("[{}]", message["type"].as_str().unwrap_or("message"))));
            let inbound = Inbound {
                channel: Channel::Whatsapp,
                phone,
                profile_name: profile.clone(),
                text,
                provider_message_id: id.to_owned(),
                received_at: unix_time(&message["timestamp"]),
            };
            if let Err(error) = inbound::record_inbound(&hooks.pool, &tenant, inbound).await {
                return failed(error);
            }
        }
    }
    StatusCode::OK
}

fn form(body: &[u8]) -> Vec<(String, String)> {
    form_urlencoded::parse(body).into_owned().collect()
}

fn field<'a>(form: &'a [(String, String)], name: &str) -> Option<&'a str> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

async fn sms_status(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Ok(tenant) = TenantId::parse(&tenant) else {
        return StatusCode::NOT_FOUND;
    };
    if !verify(
        secrecy::ExposeSecret::expose_secret(&hooks.config.sms_secret),
        &body,
        header(&headers, "x-signature-256"),
    ) {
        return StatusCode::UNAUTHORIZED;
    }
    let form = form(&body);
    let Some(sid) = field(&form, "MessageSid").filter(is_storable_id) else {
        return StatusCode::BAD_REQUEST;
    };
    let reported = match field(&form, "MessageStatus") {
        Some("delivered") => ReportedStatus::Delivered,
        Some("read") => ReportedStatus::Read,
        Some("failed" | "undelivered") => ReportedStatus::Failed {
            code: storable_text(field(&form, "ErrorCode").unwrap_or("undelivered")),
            reason: storable_text(field(&form, "ErrorMessage").unwrap_or("not delivered")),
        },
        Some(_) => ReportedStatus::Sent,
        None => return StatusCode::BAD_REQUEST,
    };
    match message_status::apply_status(&hooks.pool, &tenant, sid, reported, Utc::now()).await {
        Ok(_) => StatusCode::OK,
        Err(error) => failed(error),
    }
}

async fn sms_inbound(
    State(hooks): State<Hooks>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    let Ok(tenant) = TenantId::parse(&tenant) else {
        return StatusCode::NOT_FOUND;
    };
    if !verify(
        secrecy::ExposeSecret::expose_secret(&hooks.config.sms_secret),
        &body,
        header(&headers, "x-signature-256"),
    ) {
        return StatusCode::UNAUTHORIZED;
    }
    let form = form(&body);
    let (Some(from), Some(sid)) = (field(&form, "From"), field(&form, "MessageSid").filter(is_storable_id)) else {
        return StatusCode::BAD_REQUEST;
    };
    let Ok(phone) = PhoneNumber::parse(from) else {
        return StatusCode::BAD_REQUEST;
    };
    let inbound = Inbound {
        channel: Channel::Sms,
        phone,
        profile_name: None,
        text: storable_text(field(&form, "Body").unwrap_or_default()),
        provider_message_id: sid.to_owned(),
        received_at: Utc::now(),
    };
    match inbound::record_inbound(&hooks.pool, &tenant, inbound).await {
        Ok(()) => StatusCode::OK,
        Err(error) => failed(error),
    }
}

pub fn router(pool: PgPool, config: WebhookConfig) -> Router {
    Router::new()
        .route("/webhooks/whatsapp/{tenant}", get(whatsapp_verify).post(whatsapp_event))
        .route("/webhooks/sms/{tenant}/status", post(sms_status))
        .route("/webhooks/sms/{tenant}/inbound", post(sms_inbound))
        .with_state(Hooks { pool, config })
}

/// Binds `addr` (failing start-up when taken) and serves until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    pool: PgPool,
    config: WebhookConfig,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(pool, config);
    Ok((local, async move {
        let result = axum::serve(listener, app).with_graceful_shutdown(async move { cancel.cancelled().await }).await;
        if let Err(error) = result {
            tracing::warn!(%error, "webhook server stopped");
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_verify_only_with_the_secret_and_body() {
        let signature = sign("secret", b"{\"a\":1}");
        assert!(signature.starts_with("sha256=") && signature.len() == 71);
        assert!(verify("secret", b"{\"a\":1}", Some(&signature)));
        assert!(!verify("other", b"{\"a\":1}", Some(&signature)));
        assert!(!verify("secret", b"{\"a\":2}", Some(&signature)));
        assert!(!verify("secret", b"{\"a\":1}", None));
        assert!(!verify("secret", b"{\"a\":1}", Some("sha256=zz")));
        // HMAC-SHA256("secret", {"a":17}) is 06414a…: "+6" parses as 6 too, but is no hex.
        let starts_with_zero = sign("secret", b"{\"a\":17}");
        assert!(starts_with_zero.starts_with("sha256=06414a"));
        assert!(verify("secret", b"{\"a\":17}", Some(&starts_with_zero.to_uppercase().replace("SHA", "sha"))));
        let plus = starts_with_zero.replacen("sha256=0", "sha256=+", 1);
        assert!(!verify("secret", b"{\"a\":17}", Some(&plus)));
    }
}
