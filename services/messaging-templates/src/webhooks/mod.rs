//! Provider webhooks over HTTP (`DW_WEBHOOK_ADDR`, port 8083 by default), one path per tenant,
//! each verified with **that tenant's** provider account (`SetProviderConfig`):
//!
//! - `GET  /webhooks/whatsapp/{tenant}`: the verify-token handshake (`hub.mode=subscribe`,
//!   `hub.verify_token` = the tenant's verify token, answers `hub.challenge`).
//! - `POST /webhooks/whatsapp/{tenant}`: statuses and client messages, verified with
//!   `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(the tenant's app secret, body)>`; every change
//!   must be of the tenant's phone number (`value.metadata.phone_number_id`).
//! - `POST /webhooks/sms/{tenant}/status` and `/webhooks/sms/{tenant}/inbound`: form-encoded
//!   callbacks (`AccountSid`, `MessageSid`, `MessageStatus`, `ErrorCode` / `From`, `Body`),
//!   verified the way Twilio signs them: `X-Twilio-Signature: <base64 HMAC-SHA1(the tenant's auth
//!   token, public URL + every form parameter sorted by name, as name then value)>`
//!   ([`crate::domain::twilio_signature`]); `AccountSid` must be the tenant's.
//!
//! The public URL is `DW_WEBHOOK_PUBLIC_URL` followed by the request's path and query: the
//! provider signs the URL it was given, which behind an ingress is not the one the request
//! arrives on, and the `Host` / `X-Forwarded-*` headers are the sender's to choose, so they are
//! not used to rebuild it. A callback signed for another URL (another tenant's path, the status
//! path for an inbound message, another host) does not verify.
//!
//! Answers, checked in this order; nothing is recorded unless the answer is 200:
//! - **404** when the path's tenant has no account for that channel (or is no tenant id): the
//!   endpoint does not exist until a manager configures it, and "not here" sends whoever points a
//!   provider at the wrong URL to the right fix, where a 401 would send them chasing secrets
//!   (tenant ids are no secret: every provider is given one in its URL);
//! - **413** when an SMS form has more than 256 parameters (its signature covers them all, sorted:
//!   that work is not done for anyone);
//! - **401** when the signature is not made with the tenant's secret (another tenant's included)
//!   or, for SMS, not for the public URL called or not over the parameters received;
//! - **403** when a well-signed body names another account: a WhatsApp change of another phone
//!   number id (or carrying statuses or messages without one; a body that is not JSON is **400**
//!   first), an SMS form whose `AccountSid` is not the tenant's;
//! - **400** when the tenant's body cannot be read (no `MessageSid`, `From` not E.164, …);
//! - **503** when the accounts or the body could not be read or recorded on our side (the
//!   provider retries);
//! - **200** once recorded.
//!
//! The accounts are read through [`ProviderAccounts`] (decrypted, cached 30 s per replica).

mod sms;
mod whatsapp;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use dw_ids::TenantId;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::app::provider_config::ProviderAccounts;
use crate::domain::provider_config::TenantProviders;
use crate::domain::twilio_signature::WebhookBaseUrl;

pub use whatsapp::names_only_phone_number;

#[derive(Clone)]
struct Hooks {
    pool: PgPool,
    accounts: ProviderAccounts,
    /// Where the providers call these webhooks (`DW_WEBHOOK_PUBLIC_URL`).
    public_base: Arc<WebhookBaseUrl>,
}

impl Hooks {
    /// The path's tenant and its accounts; 404 for a path that names no tenant, 503 when the
    /// accounts cannot be read.
    async fn tenant(&self, tenant: &str) -> Result<(TenantId, Arc<TenantProviders>), StatusCode> {
        let tenant = TenantId::parse(tenant).map_err(|_| StatusCode::NOT_FOUND)?;
        match self.accounts.accounts(&tenant).await {
            Ok(accounts) => Ok((tenant, accounts)),
            Err(error) => {
                tracing::error!(%tenant, %error, "provider accounts unreadable: webhook not recorded");
                Err(StatusCode::SERVICE_UNAVAILABLE)
            }
        }
    }
}

/// `sha256=<hex>` of `body` under `secret`: Meta's `X-Hub-Signature-256` of a WhatsApp webhook.
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

/// The webhooks, verifying SMS callbacks as signed for URLs under `public_base`.
pub fn router(pool: PgPool, accounts: ProviderAccounts, public_base: WebhookBaseUrl) -> Router {
    Router::new()
        .route("/webhooks/whatsapp/{tenant}", get(whatsapp::handshake).post(whatsapp::event))
        .route("/webhooks/sms/{tenant}/status", post(sms::status))
        .route("/webhooks/sms/{tenant}/inbound", post(sms::inbound))
        .with_state(Hooks { pool, accounts, public_base: Arc::new(public_base) })
}

/// Binds `addr` (failing start-up when taken) and serves [`router`] until `cancel`.
pub async fn serve(
    addr: SocketAddr,
    pool: PgPool,
    accounts: ProviderAccounts,
    public_base: WebhookBaseUrl,
    cancel: CancellationToken,
) -> std::io::Result<(SocketAddr, impl Future<Output = ()>)> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let app = router(pool, accounts, public_base);
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
