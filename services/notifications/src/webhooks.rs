//! Outbound webhooks in the Standard Webhooks format: endpoints managed over gRPC, one delivery
//! per event per endpoint (created in the projection's transaction, so exactly once), delivered
//! by a worker that claims due deliveries with `FOR UPDATE SKIP LOCKED` (safe with replicas),
//! retries on a schedule with jitter, logs every attempt, and disables an endpoint answering
//! 410 or failing for 5 days. Destinations on private or loopback addresses are refused unless
//! allow-listed. Attempts are counted by outcome and failures by reason, and disabled endpoints
//! by why (`dw_webhook_*`).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use dw_auth::Role;
use dw_grpc_kit::command::command_context;
use dw_grpc_kit::errors::{self, parse_field, to_status};
use dw_grpc_kit::{principal, require_role};
use dw_ids::WebhookId;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::webhook_service_server::WebhookService;
use dw_proto::time::timestamp;
use hmac::{Hmac, Mac};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rand::Rng as _;
use sha2::Sha256;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::{PgConnection, Row};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::app;

pub const EVENT_TYPES: [&str; 5] =
    ["template.sent", "message.dispatched", "message.delivered", "message.read", "message.failed"];

/// The Standard Webhooks retry schedule: delays before attempts 2..=8.
pub fn default_schedule() -> Vec<Duration> {
    [5, 300, 1800, 7200, 18000, 36000, 36000].into_iter().map(Duration::from_secs).collect()
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    /// Hosts allowed even though they are private or loopback (e.g. `127.0.0.1`).
    pub allowed_hosts: Vec<String>,
    pub timeout: Duration,
    pub schedule: Vec<Duration>,
    pub poll_interval: Duration,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Webhook delivery metrics, registered once per process.
#[derive(Clone)]
pub struct WebhookMetrics {
    deliveries: Family<OutcomeLabels, Counter>,
    failures: Family<ReasonLabels, Counter>,
    endpoints_disabled: Family<ReasonLabels, Counter>,
}

impl WebhookMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics =
            Self { deliveries: Family::default(), failures: Family::default(), endpoints_disabled: Family::default() };
        registry.register(
            "dw_webhook_deliveries",
            "Webhook delivery attempts by what became of the delivery: succeeded, retrying (failed, another \
             attempt is scheduled), failed (410 or refused destination: not retried), gave_up (retry schedule \
             exhausted)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "dw_webhook_failures",
            "Failed webhook delivery attempts by reason: timeout, connect, network, gone (410), http_4xx, \
             http_5xx, http_other, refused (private destination), bad_secret",
            metrics.failures.clone(),
        );
        registry.register(
            "dw_webhook_endpoints_disabled",
            "Webhook endpoints disabled by the worker: gone (answered 410) or failing (failing for 5 days)",
            metrics.endpoints_disabled.clone(),
        );
        metrics
    }
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>` with the key of a `whsec_` secret.
pub fn signature(secret: &str, id: &str, timestamp: i64, body: &str) -> Option<String> {
    let key = STANDARD.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    Some(format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes())))
}

pub fn new_secret() -> String {
    let bytes: [u8; 24] = rand::rng().random();
    format!("whsec_{}", STANDARD.encode(bytes))
}

fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            v4.is_private() || v4.is_loopback() || v4.is_link_local() || v4.is_unspecified() || v4.is_broadcast()
        }
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || v6.is_unspecified()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Checks a destination: http(s), and not private or loopback unless its host is allow-listed.
pub async fn check_destination(url: &str, allowed_hosts: &[String]) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|_| "not a valid URL".to_owned())?;
    if !matches!(parsed.scheme(), "https" | "http") {
        return Err("must be an http(s) URL".into());
    }
    let host = parsed.host_str().ok_or("has no host")?.trim_matches(['[', ']']).to_owned();
    if allowed_hosts.iter().any(|allowed| allowed == &host) {
        return Ok(());
    }
    let port = parsed.port_or_known_default().unwrap_or(443);
    let addresses =
        tokio::net::lookup_host((host.as_str(), port)).await.map_err(|_| "host does not resolve".to_owned())?;
    for address in addresses {
        if is_private(address.ip()) {
            return Err(format!("{host} is a private or loopback address"));
        }
    }
    Ok(())
}

/// Queues one delivery per enabled endpoint subscribed to `event_type` (and, for `template.sent`,
/// the endpoint registered under the send's own webhook URL). Runs in the projection's
/// transaction.
pub async fn enqueue(
    conn: &mut PgConnection,
    tenant: &str,
    event_type: &str,
    send_url: Option<&str>,
    data: serde_json::Value,
) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT webhook_id FROM webhooks WHERE tenant_id = $1 AND enabled \
         AND ($2 = ANY(event_types) OR ($3::text IS NOT NULL AND url = $3))",
    )
    .bind(tenant)
    .bind(event_type)
    .bind(send_url)
    .fetch_all(&mut *conn)
    .await?;
    let now = Utc::now();
    let body = serde_json::json!({"type": event_type, "timestamp": now, "data": data}).to_string();
    for row in &rows {
        let webhook_id: uuid::Uuid = row.try_get("webhook_id")?;
        sqlx::query(
            "INSERT INTO webhook_deliveries (delivery_id, tenant_id, webhook_id, event_type, body, status, next_attempt_at) \
             VALUES ($1, $2, $3, $4, $5, 'pending', now())",
        )
        .bind(uuid::Uuid::now_v7())
        .bind(tenant)
        .bind(webhook_id)
        .bind(event_type)
        .bind(&body)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Delivers due deliveries until `cancel`.
pub async fn run_worker(pool: PgPool, config: WebhookConfig, metrics: WebhookMetrics, cancel: CancellationToken) {
    let http =
        match reqwest::Client::builder().timeout(config.timeout).redirect(reqwest::redirect::Policy::none()).build() {
            Ok(http) => http,
            Err(error) => {
                tracing::error!(%error, "webhook client unavailable");
                return;
            }
        };
    while !cancel.is_cancelled() {
        let delivered = match deliver_due(&pool, &http, &config, &metrics).await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(%error, "webhook worker failed");
                0
            }
        };
        if delivered == 0 {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        }
    }
}

struct Due {
    delivery_id: uuid::Uuid,
    tenant: String,
    webhook_id: uuid::Uuid,
    body: String,
    attempt: i32,
    url: String,
    secret: String,
}

async fn deliver_due(
    pool: &PgPool,
    http: &reqwest::Client,
    config: &WebhookConfig,
    metrics: &WebhookMetrics,
) -> Result<usize, sqlx::Error> {
    // Claim a batch with a lease (other replicas skip them), then deliver outside the transaction.
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT d.delivery_id, d.tenant_id, d.webhook_id, d.body, d.attempt_count, w.url, w.secret \
         FROM webhook_deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= now() ORDER BY d.next_attempt_at LIMIT 16 \
         FOR UPDATE OF d SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    let due: Vec<Due> = rows
        .iter()
        .map(|r| {
            Ok(Due {
                delivery_id: r.try_get("delivery_id")?,
                tenant: r.try_get("tenant_id")?,
                webhook_id: r.try_get("webhook_id")?,
                body: r.try_get("body")?,
                attempt: r.try_get::<i32, _>("attempt_count")? + 1,
                url: r.try_get("url")?,
                secret: r.try_get("secret")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    for d in &due {
        let lease = config.timeout + Duration::from_secs(30);
        sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = now() + $2 WHERE delivery_id = $1")
            .bind(d.delivery_id)
            .bind(lease)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    let results = futures::future::join_all(due.iter().map(|d| attempt(http, config, d))).await;
    for (d, result) in due.iter().zip(results) {
        record(pool, config, metrics, d, result).await?;
    }
    Ok(due.len())
}

/// What one attempt got.
struct Attempted {
    /// 0 when no HTTP answer came.
    status_code: i32,
    latency_ms: i64,
    error: Option<String>,
    /// Why it failed, for the failures metric; `None` on success.
    failure: Option<&'static str>,
}

impl Attempted {
    fn not_sent(error: String, failure: &'static str) -> Self {
        Self { status_code: 0, latency_ms: 0, error: Some(error), failure: Some(failure) }
    }
}

async fn attempt(http: &reqwest::Client, config: &WebhookConfig, d: &Due) -> Attempted {
    let started = Instant::now();
    if let Err(reason) = check_destination(&d.url, &config.allowed_hosts).await {
        return Attempted::not_sent(format!("refused: {reason}"), "refused");
    }
    let id = format!("msg_{}", d.delivery_id.simple());
    let now = Utc::now().timestamp();
    let Some(signature) = signature(&d.secret, &id, now, &d.body) else {
        return Attempted::not_sent("unusable signing secret".into(), "bad_secret");
    };
    let response = http
        .post(&d.url)
        .header("content-type", "application/json")
        .header("webhook-id", &id)
        .header("webhook-timestamp", now.to_string())
        .header("webhook-signature", signature)
        .body(d.body.clone())
        .send()
        .await;
    let latency_ms = i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX);
    match response {
        Ok(response) => {
            let status = response.status().as_u16();
            let failure = match status {
                200..=299 => None,
                410 => Some("gone"),
                400..=499 => Some("http_4xx"),
                500..=599 => Some("http_5xx"),
                _ => Some("http_other"),
            };
            Attempted { status_code: i32::from(status), latency_ms, error: None, failure }
        }
        Err(error) => {
            let failure = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else {
                "network"
            };
            Attempted { status_code: 0, latency_ms, error: Some(error.to_string()), failure: Some(failure) }
        }
    }
}

async fn record(
    pool: &PgPool,
    config: &WebhookConfig,
    metrics: &WebhookMetrics,
    d: &Due,
    attempted: Attempted,
) -> Result<(), sqlx::Error> {
    let Attempted { status_code, latency_ms, error, failure } = attempted;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, latency_ms, error) VALUES ($1, $2, now(), $3, $4, $5)",
    )
    .bind(d.delivery_id)
    .bind(d.attempt)
    .bind(status_code)
    .bind(latency_ms)
    .bind(&error)
    .execute(&mut *tx)
    .await?;
    let success = (200..300).contains(&status_code);
    let refused = error.as_deref().is_some_and(|e| e.starts_with("refused"));
    let (status, next): (&str, Option<DateTime<Utc>>) = if success {
        ("succeeded", None)
    } else if status_code == 410 || refused {
        ("failed", None)
    } else {
        match config.schedule.get(usize::try_from(d.attempt - 1).unwrap_or(usize::MAX)) {
            Some(delay) => {
                // ±10% jitter spreads retries of many deliveries.
                let jitter = 0.9 + rand::rng().random::<f64>() * 0.2;
                let delay = chrono::Duration::from_std(delay.mul_f64(jitter)).unwrap_or_default();
                ("pending", Some(Utc::now() + delay))
            }
            None => ("gave_up", None),
        }
    };
    let outcome = if status == "pending" { "retrying" } else { status };
    metrics.deliveries.get_or_create(&OutcomeLabels { outcome }).inc();
    if let Some(reason) = failure {
        metrics.failures.get_or_create(&ReasonLabels { reason }).inc();
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempt_count = $3, next_attempt_at = $4 WHERE delivery_id = $1",
    )
    .bind(d.delivery_id)
    .bind(status)
    .bind(d.attempt)
    .bind(next)
    .execute(&mut *tx)
    .await?;
    // Disabling is counted once, by whichever attempt turns the endpoint off (the `enabled` guard).
    let mut disabled = None;
    if status_code == 410 {
        disabled = disable(&mut tx, &d.tenant, d.webhook_id, "endpoint answered 410 Gone").await?.then_some("gone");
    } else if success {
        sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE tenant_id = $1 AND webhook_id = $2")
            .bind(&d.tenant)
            .bind(d.webhook_id)
            .execute(&mut *tx)
            .await?;
    } else {
        let over_limit: Option<bool> = sqlx::query_scalar(
            "UPDATE webhooks SET failing_since = COALESCE(failing_since, now()) WHERE tenant_id = $1 AND webhook_id = $2 \
             RETURNING enabled AND failing_since < now() - interval '5 days'",
        )
        .bind(&d.tenant)
        .bind(d.webhook_id)
        .fetch_optional(&mut *tx)
        .await?;
        // Only on the attempt that crosses the limit: one more statement, once per endpoint.
        if over_limit == Some(true) {
            disabled = disable(&mut tx, &d.tenant, d.webhook_id, "failing for 5 days").await?.then_some("failing");
        }
    }
    tx.commit().await?;
    if let Some(reason) = disabled {
        metrics.endpoints_disabled.get_or_create(&ReasonLabels { reason }).inc();
    }
    Ok(())
}

pub struct WebhookGrpc {
    pool: PgPool,
    config: WebhookConfig,
}

impl WebhookGrpc {
    pub fn new(pool: PgPool, config: WebhookConfig) -> Self {
        Self { pool, config }
    }
}

/// Turns the endpoint off with `reason`; whether this call did it (it was still enabled).
async fn disable(
    tx: &mut sqlx::PgConnection,
    tenant: &str,
    webhook_id: uuid::Uuid,
    reason: &str,
) -> Result<bool, sqlx::Error> {
    let turned_off = sqlx::query(
        "UPDATE webhooks SET enabled = FALSE, disabled_reason = $3 WHERE tenant_id = $1 AND webhook_id = $2 AND enabled",
    )
    .bind(tenant)
    .bind(webhook_id)
    .bind(reason)
    .execute(tx)
    .await?
    .rows_affected();
    Ok(turned_off > 0)
}

use dw_grpc_kit::errors::db_status as db;

pub(crate) fn webhook_from_row(row: &PgRow) -> Result<pb::Webhook, sqlx::Error> {
    let id: uuid::Uuid = row.try_get("webhook_id")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    Ok(pb::Webhook {
        webhook_id: id.to_string(),
        url: row.try_get("url")?,
        description: row.try_get("description")?,
        event_types: row.try_get("event_types")?,
        enabled: row.try_get("enabled")?,
        disabled_reason: row.try_get::<Option<String>, _>("disabled_reason")?.unwrap_or_default(),
        created_at: Some(timestamp(created_at)),
    })
}

pub(crate) const WEBHOOK_COLUMNS: &str =
    "webhook_id, url, description, event_types, enabled, disabled_reason, created_at";

fn id_field(field: &str, value: &str) -> Result<uuid::Uuid, Status> {
    uuid::Uuid::parse_str(value).map_err(|_| errors::invalid_argument(field, "must be an id (UUID)"))
}

async fn manager(request: &Request<impl Send>) -> Result<dw_auth::Principal, Status> {
    let principal = principal(request)?;
    require_role(&principal, &[Role::Manager])?;
    Ok(principal)
}

#[tonic::async_trait]
impl WebhookService for WebhookGrpc {
    async fn create_webhook(
        &self,
        request: Request<pb::CreateWebhookRequest>,
    ) -> Result<Response<pb::WebhookWithSecret>, Status> {
        let principal = manager(&request).await?;
        let body = request.get_ref();
        let ctx = command_context(
            &request,
            &principal,
            &body.request_id,
            "dw.notifications.v1.WebhookService/CreateWebhook",
        )?;
        check_destination(&body.url, &self.config.allowed_hosts)
            .await
            .map_err(|e| errors::invalid_argument("url", e))?;
        if body.event_types.is_empty() || body.event_types.iter().any(|t| !EVENT_TYPES.contains(&t.as_str())) {
            return Err(errors::invalid_argument("event_types", format!("one or more of {}", EVENT_TYPES.join(", "))));
        }
        if body.description.chars().count() > 500 {
            return Err(errors::invalid_argument("description", "at most 500 characters"));
        }
        let create = app::CreateWebhook {
            tenant: &ctx.tenant,
            url: body.url.clone(),
            description: body.description.trim().to_owned(),
            event_types: body.event_types.clone(),
        };
        Ok(Response::new(app::execute(&self.pool, &ctx, &create).await.map_err(to_status)?))
    }

    async fn list_webhooks(
        &self,
        request: Request<pb::ListWebhooksRequest>,
    ) -> Result<Response<pb::ListWebhooksResponse>, Status> {
        let principal = manager(&request).await?;
        let sql = format!("SELECT {WEBHOOK_COLUMNS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at");
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(principal.tenant().as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let webhooks = rows.iter().map(webhook_from_row).collect::<Result<_, _>>().map_err(db)?;
        Ok(Response::new(pb::ListWebhooksResponse { webhooks }))
    }

    async fn delete_webhook(
        &self,
        request: Request<pb::DeleteWebhookRequest>,
    ) -> Result<Response<pb::Webhook>, Status> {
        let principal = manager(&request).await?;
        let body = request.get_ref();
        let ctx = command_context(
            &request,
            &principal,
            &body.request_id,
            "dw.notifications.v1.WebhookService/DeleteWebhook",
        )?;
        let webhook_id = parse_field("webhook_id", &body.webhook_id, WebhookId::parse)?;
        let delete = app::DeleteWebhook { tenant: &ctx.tenant, webhook_id };
        Ok(Response::new(app::execute(&self.pool, &ctx, &delete).await.map_err(to_status)?))
    }

    async fn rotate_webhook_secret(
        &self,
        request: Request<pb::RotateWebhookSecretRequest>,
    ) -> Result<Response<pb::WebhookWithSecret>, Status> {
        let principal = manager(&request).await?;
        let body = request.get_ref();
        let operation = "dw.notifications.v1.WebhookService/RotateWebhookSecret";
        let ctx = command_context(&request, &principal, &body.request_id, operation)?;
        let webhook_id = parse_field("webhook_id", &body.webhook_id, WebhookId::parse)?;
        let rotate = app::RotateSecret { tenant: &ctx.tenant, webhook_id };
        Ok(Response::new(app::execute(&self.pool, &ctx, &rotate).await.map_err(to_status)?))
    }

    async fn list_deliveries(
        &self,
        request: Request<pb::ListDeliveriesRequest>,
    ) -> Result<Response<pb::ListDeliveriesResponse>, Status> {
        let principal = manager(&request).await?;
        let body = request.get_ref();
        let id = id_field("webhook_id", &body.webhook_id)?;
        let limit = match body.page_size {
            0 => 50,
            size @ 1..=200 => i64::from(size),
            _ => return Err(errors::invalid_argument("page_size", "must be between 1 and 200")),
        };
        let rows = sqlx::query(
            "SELECT d.delivery_id, d.webhook_id, w.url, d.event_type, d.status, d.next_attempt_at, d.created_at \
             FROM webhook_deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
             WHERE d.tenant_id = $1 AND d.webhook_id = $2 ORDER BY d.created_at DESC LIMIT $3",
        )
        .bind(principal.tenant().as_str())
        .bind(id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut conn = self.pool.acquire().await.map_err(db)?;
        let mut deliveries = Vec::with_capacity(rows.len());
        for row in &rows {
            deliveries.push(delivery_view(&mut conn, row).await.map_err(db)?);
        }
        Ok(Response::new(pb::ListDeliveriesResponse { deliveries }))
    }

    async fn redeliver_webhook(
        &self,
        request: Request<pb::RedeliverWebhookRequest>,
    ) -> Result<Response<pb::Delivery>, Status> {
        let principal = manager(&request).await?;
        let body = request.get_ref();
        let operation = "dw.notifications.v1.WebhookService/RedeliverWebhook";
        let ctx = command_context(&request, &principal, &body.request_id, operation)?;
        let delivery_id = id_field("delivery_id", &body.delivery_id)?;
        let redeliver = app::Redeliver { tenant: &ctx.tenant, delivery_id };
        Ok(Response::new(app::execute(&self.pool, &ctx, &redeliver).await.map_err(to_status)?))
    }
}

pub(crate) async fn delivery_view(conn: &mut PgConnection, row: &PgRow) -> Result<pb::Delivery, sqlx::Error> {
    let delivery_id: uuid::Uuid = row.try_get("delivery_id")?;
    let webhook_id: uuid::Uuid = row.try_get("webhook_id")?;
    let next: Option<DateTime<Utc>> = row.try_get("next_attempt_at")?;
    let created_at: DateTime<Utc> = row.try_get("created_at")?;
    let attempts = sqlx::query(
        "SELECT at, status_code, latency_ms, error FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
    )
    .bind(delivery_id)
    .fetch_all(&mut *conn)
    .await?
    .iter()
    .map(|a| {
        let at: DateTime<Utc> = a.try_get("at")?;
        Ok(pb::DeliveryAttempt {
            at: Some(timestamp(at)),
            status_code: a.try_get("status_code")?,
            latency_ms: a.try_get("latency_ms")?,
            error: a.try_get::<Option<String>, _>("error")?.unwrap_or_default(),
        })
    })
    .collect::<Result<Vec<_>, sqlx::Error>>()?;
    let status: String = row.try_get("status")?;
    Ok(pb::Delivery {
        delivery_id: format!("msg_{}", delivery_id.simple()),
        webhook_id: webhook_id.to_string(),
        url: row.try_get("url")?,
        event_type: row.try_get("event_type")?,
        next_attempt_at: next.filter(|_| status == "pending").map(timestamp),
        status,
        attempts,
        created_at: Some(timestamp(created_at)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_standard_webhooks() {
        // The Standard Webhooks specification's example.
        let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let id = "msg_p5jXN8AQM9LWM0D4loKWxJek";
        let body = r#"{"test": 2432232314}"#;
        assert_eq!(
            signature(secret, id, 1614265330, body).as_deref(),
            Some("v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=")
        );
        assert!(signature("not-a-secret", id, 1, body).is_none());
        assert!(new_secret().starts_with("whsec_"));
    }

    #[tokio::test]
    async fn private_destinations_need_the_allow_list() {
        assert!(check_destination("http://127.0.0.1:9000/hook", &[]).await.is_err());
        assert!(check_destination("http://10.1.2.3/hook", &[]).await.is_err());
        assert!(check_destination("http://[::1]/hook", &[]).await.is_err());
        assert!(check_destination("http://127.0.0.1:9000/hook", &["127.0.0.1".to_owned()]).await.is_ok());
        assert!(check_destination("ftp://example.com/x", &[]).await.is_err());
    }
}
