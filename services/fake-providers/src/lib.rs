//! Local stand-ins for the providers messaging-templates talks to, over real HTTP:
//!
//! - a WhatsApp Cloud API-shaped endpoint, `POST /{version}/{phone_number_id}/messages` (bearer
//!   token), answering `{"messaging_product":"whatsapp","contacts":[…],"messages":[{"id":"wamid.…"}]}`;
//! - an SMS API of the common `Messages` shape, `POST /{version}/Accounts/{sid}/Messages.json`
//!   (form `To`, `From`, `Body`; basic auth with the account sid), answering
//!   `201 {"sid":"SM…","status":"queued",…}`.
//!
//! Every request is logged on one line (method, path, status, a short summary of the body). With a
//! status webhook configured, each accepted WhatsApp message is followed by two WhatsApp-shaped
//! status notifications, `delivered` then `read`, POSTed to the webhook and signed like Meta signs
//! them: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(app secret, raw body)>`, naming the
//! configured phone number id (`DW_FAKE_WHATSAPP_PHONE_NUMBER_ID`; by default the one the message
//! was sent from). With an SMS status webhook configured, each accepted SMS is followed by a
//! `delivered` status callback (form `AccountSid`, `MessageSid`, `MessageStatus`, `To`, `From`)
//! signed as Twilio signs: `X-Twilio-Signature: <base64 HMAC-SHA1(auth token, webhook URL + the
//! parameters sorted by name, each as name then value)>`, over the URL it posts to (so the
//! receiver's public webhook base must be the URL given here). messaging-templates
//! accepts them only when the tenant of the webhook URL has those secrets and that phone number id
//! and account sid (`dwctl providers set`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

mod callbacks;
mod protocol;

pub use protocol::*;

/// Default listen addresses (the defaults messaging-templates calls).
pub const DEFAULT_WHATSAPP_ADDR: &str = "127.0.0.1:8091";
pub const DEFAULT_SMS_ADDR: &str = "127.0.0.1:8092";
/// Delay before each status notification.
pub const DEFAULT_STATUS_DELAY_MS: u64 = 300;
/// `entry[].id` of the status notifications (the WhatsApp Business Account id).
pub const WABA_ID: &str = "WABA";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("{name}={value:?} is not a valid {what}")]
    Invalid { name: &'static str, value: String, what: &'static str },
    #[error("{set} is set but {missing} is not: set both to send signed status webhooks, or neither")]
    Incomplete { set: &'static str, missing: &'static str },
}

/// Where WhatsApp status notifications go and how they are signed.
#[derive(Clone, PartialEq, Eq)]
pub struct StatusWebhook {
    /// e.g. `http://127.0.0.1:8083/webhooks/whatsapp/demo`.
    pub url: String,
    /// The WhatsApp app secret the receiver verifies `X-Hub-Signature-256` with.
    pub app_secret: String,
    /// The phone number id the notifications name (`metadata.phone_number_id`); `None`: the one
    /// each message was sent from (the path of the send), as Meta does.
    pub phone_number_id: Option<String>,
    /// Before `delivered`, and again before `read`.
    pub delay: Duration,
}

impl StatusWebhook {
    /// The phone number id the notifications of a message sent from `sent_from` name.
    pub fn names<'a>(&'a self, sent_from: &'a str) -> &'a str {
        self.phone_number_id.as_deref().unwrap_or(sent_from)
    }
}

/// Where SMS status callbacks go and how they are signed.
#[derive(Clone, PartialEq, Eq)]
pub struct SmsStatusWebhook {
    /// e.g. `http://127.0.0.1:8083/webhooks/sms/demo/status`.
    pub url: String,
    /// The auth token the receiver verifies `X-Twilio-Signature` with.
    pub auth_token: String,
    /// Before `delivered`.
    pub delay: Duration,
}

/// Secrets print as `<redacted>`: the configuration may be logged.
impl std::fmt::Debug for StatusWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StatusWebhook")
            .field("url", &self.url)
            .field("app_secret", &"<redacted>")
            .field("phone_number_id", &self.phone_number_id)
            .field("delay", &self.delay)
            .finish()
    }
}

impl std::fmt::Debug for SmsStatusWebhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmsStatusWebhook")
            .field("url", &self.url)
            .field("auth_token", &"<redacted>")
            .field("delay", &self.delay)
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub whatsapp_addr: SocketAddr,
    pub sms_addr: SocketAddr,
    pub status_webhook: Option<StatusWebhook>,
    pub sms_status_webhook: Option<SmsStatusWebhook>,
}

/// `(url, secret)` from a pair of variables set both or neither; the URL must be http(s).
fn signed_webhook(
    var: &impl Fn(&str) -> Option<String>,
    url_name: &'static str,
    secret_name: &'static str,
) -> Result<Option<(String, String)>, ConfigError> {
    match (var(url_name), var(secret_name)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::Incomplete { set: url_name, missing: secret_name }),
        (None, Some(_)) => Err(ConfigError::Incomplete { set: secret_name, missing: url_name }),
        (Some(url), Some(secret)) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(ConfigError::Invalid { name: url_name, value: url, what: "http(s) URL" });
            }
            Ok(Some((url, secret)))
        }
    }
}

impl Config {
    /// From the environment: `DW_FAKE_WHATSAPP_ADDR`, `DW_FAKE_SMS_ADDR`, `DW_FAKE_STATUS_WEBHOOK`
    /// with `DW_FAKE_WHATSAPP_APP_SECRET` (and `DW_FAKE_WHATSAPP_PHONE_NUMBER_ID`),
    /// `DW_FAKE_SMS_STATUS_WEBHOOK` with `DW_FAKE_SMS_AUTH_TOKEN`, `DW_FAKE_STATUS_DELAY_MS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// From any lookup of variables (empty values count as unset).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| lookup(name).map(|v| v.trim().to_owned()).filter(|v| !v.is_empty());
        let addr = |name: &'static str, default: &str| {
            let value = var(name).unwrap_or_else(|| default.to_owned());
            value.parse::<SocketAddr>().map_err(|_| ConfigError::Invalid { name, value, what: "host:port address" })
        };
        let whatsapp_addr = addr("DW_FAKE_WHATSAPP_ADDR", DEFAULT_WHATSAPP_ADDR)?;
        let sms_addr = addr("DW_FAKE_SMS_ADDR", DEFAULT_SMS_ADDR)?;
        let delay_ms = match var("DW_FAKE_STATUS_DELAY_MS") {
            None => DEFAULT_STATUS_DELAY_MS,
            Some(value) => value.parse().map_err(|_| ConfigError::Invalid {
                name: "DW_FAKE_STATUS_DELAY_MS",
                value,
                what: "number of milliseconds",
            })?,
        };
        let delay = Duration::from_millis(delay_ms);
        let phone_number_id = match var("DW_FAKE_WHATSAPP_PHONE_NUMBER_ID") {
            Some(id) if id.bytes().all(|b| b.is_ascii_digit()) => Some(id),
            Some(value) => {
                return Err(ConfigError::Invalid {
                    name: "DW_FAKE_WHATSAPP_PHONE_NUMBER_ID",
                    value,
                    what: "phone number id (digits)",
                });
            }
            None => None,
        };
        let status_webhook = signed_webhook(&var, "DW_FAKE_STATUS_WEBHOOK", "DW_FAKE_WHATSAPP_APP_SECRET")?
            .map(|(url, app_secret)| StatusWebhook { url, app_secret, phone_number_id, delay });
        let sms_status_webhook = signed_webhook(&var, "DW_FAKE_SMS_STATUS_WEBHOOK", "DW_FAKE_SMS_AUTH_TOKEN")?
            .map(|(url, auth_token)| SmsStatusWebhook { url, auth_token, delay });
        Ok(Self { whatsapp_addr, sms_addr, status_webhook, sms_status_webhook })
    }
}

// ---------------------------------------------------------------------------------------------
// pure parts: ids, request checks, webhook payload and signature

// ---------------------------------------------------------------------------------------------
// HTTP

#[derive(Clone)]
struct AppState {
    webhook: Option<Arc<StatusWebhook>>,
    sms_webhook: Option<Arc<SmsStatusWebhook>>,
    http: reqwest::Client,
    tracker: TaskTracker,
    cancel: CancellationToken,
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

fn authorization(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok())
}

fn log_refusal(method: &Method, uri: &Uri, refusal: &Refusal) {
    tracing::warn!("{method} {} {} refused: {}", uri.path(), refusal.0.as_u16(), refusal.1);
}

async fn whatsapp_send(
    State(state): State<AppState>,
    Path((_version, phone_number_id)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let send = match check_whatsapp(authorization(&headers), &body) {
        Ok(send) => send,
        Err(refusal) => {
            log_refusal(&method, &uri, &refusal);
            return json_response(refusal.0, &refusal.1);
        }
    };
    let wamid = new_wamid();
    tracing::info!("{method} {} 200 {} -> {wamid}", uri.path(), send.summary);
    if let Some(webhook) = state.webhook.clone() {
        let (http, cancel) = (state.http.clone(), state.cancel.clone());
        let (wamid, recipient) = (wamid.clone(), send.wa_id.clone());
        state.tracker.spawn(async move {
            callbacks::whatsapp_statuses(&http, &webhook, &cancel, &phone_number_id, &wamid, &recipient).await;
        });
    }
    let answer = json!({
        "messaging_product": "whatsapp",
        "contacts": [{ "input": send.to, "wa_id": send.wa_id }],
        "messages": [{ "id": wamid, "message_status": "accepted" }],
    });
    json_response(StatusCode::OK, &answer)
}

async fn sms_send(
    State(state): State<AppState>,
    Path((version, account_sid)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let send = match check_sms(&account_sid, authorization(&headers), &body) {
        Ok(send) => send,
        Err(refusal) => {
            log_refusal(&method, &uri, &refusal);
            return json_response(refusal.0, &refusal.1);
        }
    };
    let sid = new_sms_sid();
    tracing::info!("{method} {} 201 {} -> {sid}", uri.path(), send.summary);
    if let Some(webhook) = state.sms_webhook.clone() {
        let (http, cancel) = (state.http.clone(), state.cancel.clone());
        let status = callbacks::SmsDelivered {
            account_sid: account_sid.clone(),
            sid: sid.clone(),
            to: send.to.clone(),
            from: send.from.clone(),
        };
        state.tracker.spawn(async move { callbacks::sms_delivered(&http, &webhook, &cancel, &status).await });
    }
    let answer = json!({
        "sid": sid,
        "account_sid": account_sid,
        "to": send.to,
        "from": send.from,
        "body": send.body,
        "status": "queued",
        "direction": "outbound-api",
        "api_version": version,
        "uri": format!("/{version}/Accounts/{account_sid}/Messages/{sid}.json"),
    });
    json_response(StatusCode::CREATED, &answer)
}

async fn not_found(method: Method, uri: Uri, body: Bytes) -> Response {
    tracing::warn!("{method} {} 404 ({} bytes): no such endpoint on this fake", uri.path(), body.len());
    json_response(StatusCode::NOT_FOUND, &json!({"error": {"message": format!("unknown path {}", uri.path())}}))
}

async fn healthz() -> &'static str {
    "ok"
}

fn whatsapp_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/{version}/{phone_number_id}/messages", post(whatsapp_send))
        .fallback(not_found)
        .with_state(state)
}

fn sms_router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/{version}/Accounts/{account_sid}/Messages.json", post(sms_send))
        .fallback(not_found)
        .with_state(state)
}

/// Binds both addresses of `config`, then serves until `cancel`.
pub async fn run(config: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let whatsapp = TcpListener::bind(config.whatsapp_addr)
        .await
        .with_context(|| format!("binding the WhatsApp fake to {}", config.whatsapp_addr))?;
    let sms = TcpListener::bind(config.sms_addr)
        .await
        .with_context(|| format!("binding the SMS fake to {}", config.sms_addr))?;
    serve(whatsapp, sms, Callbacks { whatsapp: config.status_webhook, sms: config.sms_status_webhook }, cancel).await
}

/// The signed callbacks the fakes make, each optional.
#[derive(Debug, Clone, Default)]
pub struct Callbacks {
    pub whatsapp: Option<StatusWebhook>,
    pub sms: Option<SmsStatusWebhook>,
}

/// Serves the WhatsApp fake on `whatsapp` and the SMS fake on `sms` until `cancel`; pending
/// status notifications are dropped on shutdown.
pub async fn serve(
    whatsapp: TcpListener,
    sms: TcpListener,
    callbacks: Callbacks,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let http =
        reqwest::Client::builder().timeout(Duration::from_secs(5)).connect_timeout(Duration::from_secs(2)).build()?;
    let tracker = TaskTracker::new();
    match &callbacks.whatsapp {
        Some(webhook) => tracing::info!(
            "whatsapp status webhooks: delivered and read {} ms apart to {} (signed with X-Hub-Signature-256, phone number id {})",
            webhook.delay.as_millis(),
            webhook.url,
            webhook.phone_number_id.as_deref().unwrap_or("of each send")
        ),
        None => {
            tracing::info!("whatsapp status webhooks off (set DW_FAKE_STATUS_WEBHOOK and DW_FAKE_WHATSAPP_APP_SECRET)")
        }
    }
    match &callbacks.sms {
        Some(webhook) => tracing::info!(
            "sms status callbacks: delivered after {} ms to {} (signed with X-Twilio-Signature)",
            webhook.delay.as_millis(),
            webhook.url
        ),
        None => tracing::info!("sms status callbacks off (set DW_FAKE_SMS_STATUS_WEBHOOK and DW_FAKE_SMS_AUTH_TOKEN)"),
    }
    let state = AppState {
        webhook: callbacks.whatsapp.map(Arc::new),
        sms_webhook: callbacks.sms.map(Arc::new),
        http,
        tracker: tracker.clone(),
        cancel: cancel.clone(),
    };
    tracing::info!(
        "fake WhatsApp Cloud API on http://{}  (POST /v21.0/<phone_number_id>/messages)",
        whatsapp.local_addr()?
    );
    tracing::info!(
        "fake SMS Messages API on http://{}  (POST /2010-04-01/Accounts/<sid>/Messages.json)",
        sms.local_addr()?
    );
    let shutdown = |cancel: CancellationToken| async move { cancel.cancelled().await };
    let whatsapp =
        axum::serve(whatsapp, whatsapp_router(state.clone())).with_graceful_shutdown(shutdown(cancel.clone()));
    let sms = axum::serve(sms, sms_router(state)).with_graceful_shutdown(shutdown(cancel.clone()));
    // Either server stopping (on error) stops the other too.
    let stop_both = |server: std::io::Result<()>| {
        cancel.cancel();
        server
    };
    let (whatsapp, sms) = tokio::join!(async { stop_both(whatsapp.await) }, async { stop_both(sms.await) });
    tracker.close();
    let _ = tokio::time::timeout(Duration::from_secs(2), tracker.wait()).await;
    whatsapp?;
    sms?;
    Ok(())
}

#[cfg(test)]
mod tests;
