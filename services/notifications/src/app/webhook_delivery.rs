//! The webhook delivery worker: claims due deliveries with `FOR UPDATE SKIP LOCKED` (safe with
//! replicas), signs and posts each in the Standard Webhooks format, logs every attempt, schedules
//! the next one by [`crate::domain::webhook`] and disables an endpoint answering 410 or failing for
//! 5 days. A destination the [`DestinationPolicy`] refuses (before the request for an IP literal,
//! at connect time for a name) is a failed attempt, logged with the reason and not retried.
//! Attempts are counted by outcome, failures by reason and disabled endpoints by why (`dw_webhook_*`).
//! A delivery of a send's own webhook goes to the send's URL, signed with the tenant's sends
//! endpoint's secret; one URL's answers never disable that endpoint (it serves every send).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use rand::Rng as _;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::destination::{DestinationPolicy, OutboundClient, refusal_of};
use crate::domain::destination::Refused;
use crate::domain::webhook::{self, Answer, DisableReason, EndpointChange, message_id, signature};

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

/// Deliveries in flight per replica: 64 at most, 16 of one tenant.
const IN_FLIGHT: super::InFlight = super::InFlight { total: 64, per_tenant: 16, batch: 16 };

/// What the worker's deliveries share.
struct Sender {
    pool: PgPool,
    http: OutboundClient,
    config: WebhookConfig,
    metrics: WebhookMetrics,
}

/// Delivers due deliveries until `cancel`, where `destinations` admits, each in the background
/// ([`super::drive`], [`IN_FLIGHT`]): a receiver slow to answer holds up its own deliveries, not
/// the next ones. On `cancel`, the deliveries in flight finish first.
pub async fn run_worker(
    pool: PgPool,
    config: WebhookConfig,
    destinations: DestinationPolicy,
    metrics: WebhookMetrics,
    cancel: CancellationToken,
) {
    let http = match destinations.http_client(config.timeout) {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "webhook client unavailable");
            return;
        }
    };
    let idle = config.poll_interval;
    let sender = Arc::new(Sender { pool, http, config, metrics });
    let claim = |room: usize, full: Vec<String>| {
        let sender = sender.clone();
        async move {
            match claim_due(&sender.pool, &sender.config, room, &full).await {
                Ok(due) => due.into_iter().map(|d| (d.tenant.clone(), d)).collect(),
                Err(error) => {
                    tracing::warn!(%error, "webhook worker failed");
                    Vec::new()
                }
            }
        }
    };
    let send = |d: Due| {
        let sender = sender.clone();
        async move {
            let attempted = attempt(&sender.http, &d).await;
            if let Err(error) = record(&sender.pool, &sender.config, &sender.metrics, &d, attempted).await {
                tracing::warn!(%error, "webhook attempt not recorded; retried when its lease expires");
            }
        }
    };
    super::drive(idle, &cancel, None, IN_FLIGHT, claim, send).await;
}

struct Due {
    delivery_id: uuid::Uuid,
    tenant: String,
    webhook_id: uuid::Uuid,
    body: String,
    attempt: i32,
    url: String,
    secret: String,
    /// The trace of the event that queued the delivery.
    traceparent: Option<String>,
}

/// Claims up to `limit` due deliveries, none of the tenants in `full`, with a lease (other
/// replicas skip them until it ends).
async fn claim_due(
    pool: &PgPool,
    config: &WebhookConfig,
    limit: usize,
    full: &[String],
) -> Result<Vec<Due>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT d.delivery_id, d.tenant_id, d.webhook_id, d.body, d.attempt_count, COALESCE(d.url, w.url) AS url, w.secret, \
                d.traceparent \
         FROM webhook_deliveries d JOIN webhooks w ON w.tenant_id = d.tenant_id AND w.webhook_id = d.webhook_id \
         WHERE d.status = 'pending' AND d.next_attempt_at <= now() AND d.tenant_id <> ALL($2) \
         ORDER BY d.next_attempt_at LIMIT $1 \
         FOR UPDATE OF d SKIP LOCKED",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(full)
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
                traceparent: r.try_get("traceparent")?,
            })
        })
        .collect::<Result<_, sqlx::Error>>()?;
    let ids: Vec<uuid::Uuid> = due.iter().map(|d| d.delivery_id).collect();
    let lease = config.timeout + Duration::from_secs(30);
    sqlx::query("UPDATE webhook_deliveries SET next_attempt_at = now() + $2 WHERE delivery_id = ANY($1)")
        .bind(&ids)
        .bind(lease)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(due)
}

/// What one attempt got.
struct Attempted {
    answer: Answer,
    latency_ms: i64,
    error: Option<String>,
    /// Why it failed, for the failures metric; `None` on success.
    failure: Option<&'static str>,
}

impl Attempted {
    fn not_sent(answer: Answer, error: String, failure: &'static str) -> Self {
        Self { answer, latency_ms: 0, error: Some(error), failure: Some(failure) }
    }

    fn refused(d: &Due, refused: &Refused, latency_ms: i64) -> Self {
        tracing::warn!(tenant = %d.tenant, webhook_id = %d.webhook_id, reason = %refused, "webhook destination refused");
        Self {
            answer: Answer::Refused,
            latency_ms,
            error: Some(format!("refused: {refused}")),
            failure: Some("refused"),
        }
    }
}

/// The failures metric's reason for an HTTP answer; `None` for 2xx.
fn failure_of_status(status: u16) -> Option<&'static str> {
    match status {
        200..=299 => None,
        410 => Some("gone"),
        400..=499 => Some("http_4xx"),
        500..=599 => Some("http_5xx"),
        _ => Some("http_other"),
    }
}

/// One attempt in a client span of its own; the request carries the span's `traceparent`.
async fn attempt(http: &OutboundClient, d: &Due) -> Attempted {
    let span = dw_telemetry::http_client_span!(
        "webhook deliver",
        "POST",
        &d.url,
        attempt = d.attempt,
        webhook_id = %d.webhook_id,
        delivery_id = %d.delivery_id,
    );
    if let Some(parent) = &d.traceparent {
        dw_telemetry::set_parent_from_traceparent(&span, parent);
    }
    let traceparent = dw_telemetry::http_client::traceparent(&span);
    let attempted = send(http, d, traceparent).instrument(span.clone()).await;
    match (attempted.answer, attempted.failure) {
        (Answer::Status(status), _) => dw_telemetry::http_client::record_status(&span, status),
        (_, failure) => dw_telemetry::http_client::record_failure(&span, failure.unwrap_or("no_answer")),
    }
    attempted
}

async fn send(http: &OutboundClient, d: &Due, traceparent: Option<String>) -> Attempted {
    let started = Instant::now();
    let request = match http.post(&d.url) {
        Ok(request) => request,
        Err(refused) => return Attempted::refused(d, &refused, 0),
    };
    let id = message_id(d.delivery_id);
    let now = Utc::now().timestamp();
    let Some(signature) = signature(&d.secret, &id, now, &d.body) else {
        return Attempted::not_sent(Answer::NoAnswer, "unusable signing secret".into(), "bad_secret");
    };
    let request = match traceparent {
        Some(traceparent) => request.header("traceparent", traceparent),
        None => request,
    };
    let response = request
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
            Attempted { answer: Answer::Status(status), latency_ms, error: None, failure: failure_of_status(status) }
        }
        Err(error) => {
            if let Some(refused) = refusal_of(&error) {
                return Attempted::refused(d, refused, latency_ms);
            }
            let failure = if error.is_timeout() {
                "timeout"
            } else if error.is_connect() {
                "connect"
            } else {
                "network"
            };
            Attempted { answer: Answer::NoAnswer, latency_ms, error: Some(error.to_string()), failure: Some(failure) }
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
    let Attempted { answer, latency_ms, error, failure } = attempted;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO webhook_attempts (delivery_id, attempt, at, status_code, latency_ms, error) VALUES ($1, $2, now(), $3, $4, $5)",
    )
    .bind(d.delivery_id)
    .bind(d.attempt)
    .bind(answer.status_code())
    .bind(latency_ms)
    .bind(&error)
    .execute(&mut *tx)
    .await?;
    let jitter = rand::rng().random::<f64>();
    let next = webhook::after_attempt(answer, d.attempt, &config.schedule, Utc::now(), jitter);
    metrics.deliveries.get_or_create(&OutcomeLabels { outcome: next.status.outcome() }).inc();
    if let Some(reason) = failure {
        metrics.failures.get_or_create(&ReasonLabels { reason }).inc();
    }
    sqlx::query(
        "UPDATE webhook_deliveries SET status = $2, attempt_count = $3, next_attempt_at = $4 WHERE delivery_id = $1",
    )
    .bind(d.delivery_id)
    .bind(next.status.as_str())
    .bind(d.attempt)
    .bind(next.next_attempt_at)
    .execute(&mut *tx)
    .await?;
    // Disabling is counted once, by whichever attempt turns the endpoint off (the `enabled` guard).
    let disabled = match next.endpoint {
        EndpointChange::Disable(reason) => disable(&mut tx, d, reason).await?,
        EndpointChange::Healthy => {
            sqlx::query("UPDATE webhooks SET failing_since = NULL WHERE tenant_id = $1 AND webhook_id = $2")
                .bind(&d.tenant)
                .bind(d.webhook_id)
                .execute(&mut *tx)
                .await?;
            None
        }
        EndpointChange::Failing => {
            let over_limit: Option<bool> = sqlx::query_scalar(
                "UPDATE webhooks SET failing_since = COALESCE(failing_since, now()) WHERE tenant_id = $1 AND webhook_id = $2 \
                 AND NOT for_sends RETURNING enabled AND failing_since < now() - interval '5 days'",
            )
            .bind(&d.tenant)
            .bind(d.webhook_id)
            .fetch_optional(&mut *tx)
            .await?;
            // Only on the attempt that crosses the limit: one more statement, once per endpoint.
            if over_limit == Some(true) { disable(&mut tx, d, DisableReason::Failing).await? } else { None }
        }
    };
    tx.commit().await?;
    if let Some(reason) = disabled {
        metrics.endpoints_disabled.get_or_create(&ReasonLabels { reason: reason.label() }).inc();
    }
    Ok(())
}

/// Turns the delivery's endpoint off for `reason`; `reason` again when this call did it (the
/// endpoint was still enabled).
async fn disable(tx: &mut PgConnection, d: &Due, reason: DisableReason) -> Result<Option<DisableReason>, sqlx::Error> {
    let turned_off = sqlx::query(
        "UPDATE webhooks SET enabled = FALSE, disabled_reason = $3 WHERE tenant_id = $1 AND webhook_id = $2 AND enabled \
         AND NOT for_sends",
    )
    .bind(&d.tenant)
    .bind(d.webhook_id)
    .bind(reason.description())
    .execute(tx)
    .await?
    .rows_affected();
    Ok((turned_off > 0).then_some(reason))
}
