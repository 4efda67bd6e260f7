//! Web Push: RFC 8030 delivery (`TTL`, `Urgency`), payloads encrypted per RFC 8291
//! (`aes128gcm`), VAPID per RFC 8292 (ES256), through `web-push-native`. A push is owed for every
//! task assigned and every new client message to each of the agent's subscriptions: queued, with
//! the event's trace context (the `web push send` span continues it), in the projection's
//! transaction, sent by a worker (claims with `FOR UPDATE SKIP LOCKED`, safe with replicas).
//! 404/410 drop the subscription; 429 waits `Retry-After`; 5xx retries a few times. Every attempt
//! is counted by outcome (`dw_push_deliveries_total`) and timed (`dw_push_request_duration_seconds`).

use std::time::{Duration, Instant};
use tracing::Instrument as _;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::postgres::PgPool;
use sqlx::{PgConnection, Row};
use std::sync::Arc;
use tokio_util::sync::CancellationToken;

use web_push_native::jwt_simple::algorithms::{ECDSAP256PublicKeyLike, ES256KeyPair};
use web_push_native::p256::PublicKey;
use web_push_native::{Auth, WebPushBuilder};

#[derive(Clone)]
pub struct PushConfig {
    pub vapid: Arc<ES256KeyPair>,
    /// `mailto:` or https contact in the VAPID claims.
    pub contact: String,
    pub ttl: Duration,
    pub timeout: Duration,
    pub poll_interval: Duration,
    /// Hosts allowed for push endpoints despite being private or loopback.
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for PushConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PushConfig").field("vapid", &"<redacted>").field("contact", &self.contact).finish()
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

/// Web Push metrics, registered once per process.
#[derive(Clone)]
pub struct PushMetrics {
    deliveries: Family<OutcomeLabels, Counter>,
    duration: Family<OutcomeLabels, Histogram>,
}

impl PushMetrics {
    pub fn register(registry: &mut Registry) -> Self {
        let metrics = Self {
            deliveries: Family::default(),
            duration: Family::new_with_constructor(|| {
                Histogram::new([0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0])
            }),
        };
        registry.register(
            "dw_push_deliveries",
            "Web Push attempts by outcome: sent (2xx), gone (404/410 or an unusable subscription: dropped), \
             throttled (429, retried after Retry-After), retrying (5xx or no answer, retried), failed (given up)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "dw_push_request_duration_seconds",
            "Time the push service took to answer a Web Push request, by outcome",
            metrics.duration.clone(),
        );
        metrics
    }

    fn observe(&self, outcome: &'static str, elapsed: Option<Duration>) {
        let labels = OutcomeLabels { outcome };
        self.deliveries.get_or_create(&labels).inc();
        if let Some(elapsed) = elapsed {
            self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        }
    }
}

/// The VAPID key pair from `DW_VAPID_PRIVATE_KEY` (base64url raw 32-byte scalar), or a new one.
pub fn vapid_key(configured: Option<&str>) -> Result<ES256KeyPair, String> {
    match configured {
        Some(encoded) => {
            let raw = URL_SAFE_NO_PAD
                .decode(encoded.trim())
                .map_err(|_| "DW_VAPID_PRIVATE_KEY is not base64url".to_owned())?;
            ES256KeyPair::from_bytes(&raw).map_err(|e| format!("DW_VAPID_PRIVATE_KEY: {e}"))
        }
        None => {
            tracing::warn!(
                "DW_VAPID_PRIVATE_KEY not set: using an ephemeral VAPID key (subscriptions break on restart)"
            );
            Ok(ES256KeyPair::generate())
        }
    }
}

pub fn public_key(vapid: &ES256KeyPair) -> String {
    URL_SAFE_NO_PAD.encode(vapid.public_key().public_key().to_bytes_uncompressed())
}

/// Checks a browser subscription's keys.
pub fn parse_keys(p256dh: &str, auth: &str) -> Result<(PublicKey, Auth), (&'static str, String)> {
    let public = URL_SAFE_NO_PAD
        .decode(p256dh.trim())
        .ok()
        .and_then(|bytes| PublicKey::from_sec1_bytes(&bytes).ok())
        .ok_or(("p256dh", "must be a base64url P-256 public key".to_owned()))?;
    let auth = URL_SAFE_NO_PAD
        .decode(auth.trim())
        .ok()
        .filter(|bytes| bytes.len() == 16)
        .map(|bytes| Auth::clone_from_slice(&bytes))
        .ok_or(("auth", "must be 16 bytes, base64url".to_owned()))?;
    Ok((public, auth))
}

/// Queues a push of `payload` to each of the agent's subscriptions (in the caller's transaction),
/// with the current trace context: the worker's push span continues it.
pub async fn enqueue(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO push_jobs (job_id, tenant_id, endpoint, payload, status, next_attempt_at, traceparent) \
         SELECT gen_random_uuid(), tenant_id, endpoint, $3, 'pending', now(), $4 FROM push_subscriptions \
         WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(tenant)
    .bind(agent)
    .bind(payload.to_string())
    .bind(dw_telemetry::current_traceparent())
    .execute(conn)
    .await?;
    Ok(())
}

const MAX_ATTEMPTS: i32 = 5;

pub async fn run_worker(pool: PgPool, config: PushConfig, metrics: PushMetrics, cancel: CancellationToken) {
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "push client unavailable");
            return;
        }
    };
    while !cancel.is_cancelled() {
        let sent = match push_due(&pool, &http, &config, &metrics).await {
            Ok(n) => n,
            Err(error) => {
                tracing::warn!(%error, "push worker failed");
                0
            }
        };
        if sent == 0 {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(config.poll_interval) => {}
            }
        }
    }
}

async fn push_due(
    pool: &PgPool,
    http: &reqwest::Client,
    config: &PushConfig,
    metrics: &PushMetrics,
) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT j.job_id, j.tenant_id, j.endpoint, j.payload, j.attempts, j.traceparent, s.p256dh, s.auth \
         FROM push_jobs j JOIN push_subscriptions s ON s.tenant_id = j.tenant_id AND s.endpoint = j.endpoint \
         WHERE j.status = 'pending' AND j.next_attempt_at <= now() ORDER BY j.next_attempt_at LIMIT 32 \
         FOR UPDATE OF j SKIP LOCKED",
    )
    .fetch_all(&mut *tx)
    .await?;
    // Jobs whose subscription is gone are dropped.
    sqlx::query(
        "UPDATE push_jobs j SET status = 'dropped' WHERE j.status = 'pending' AND NOT EXISTS \
         (SELECT 1 FROM push_subscriptions s WHERE s.tenant_id = j.tenant_id AND s.endpoint = j.endpoint)",
    )
    .execute(&mut *tx)
    .await?;
    for row in &rows {
        let id: uuid::Uuid = row.try_get("job_id")?;
        sqlx::query("UPDATE push_jobs SET next_attempt_at = now() + interval '1 minute' WHERE job_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    for row in &rows {
        let id: uuid::Uuid = row.try_get("job_id")?;
        let tenant: String = row.try_get("tenant_id")?;
        let endpoint: String = row.try_get("endpoint")?;
        let payload: String = row.try_get("payload")?;
        let attempts: i32 = row.try_get::<i32, _>("attempts")? + 1;
        let span = tracing::info_span!(
            "web push send",
            otel.kind = "client",
            http.request.method = "POST",
            http.response.status_code = tracing::field::Empty,
            attempt = attempts,
        );
        if let Some(traceparent) = row.try_get::<Option<String>, _>("traceparent")? {
            dw_telemetry::set_parent_from_traceparent(&span, &traceparent);
        }
        let (status, retry_after, elapsed) = send_one(
            http,
            config,
            &endpoint,
            &row.try_get::<String, _>("p256dh")?,
            &row.try_get::<String, _>("auth")?,
            payload,
        )
        .instrument(span.clone())
        .await;
        if let Some(code) = status {
            span.record("http.response.status_code", code);
        }
        let (state, next): (&str, Option<Duration>) = match status {
            Some(code) if (200..300).contains(&code) => ("sent", None),
            Some(404 | 410) => {
                sqlx::query("DELETE FROM push_subscriptions WHERE tenant_id = $1 AND endpoint = $2")
                    .bind(&tenant)
                    .bind(&endpoint)
                    .execute(pool)
                    .await?;
                ("dropped", None)
            }
            Some(429) => ("pending", Some(retry_after.unwrap_or(Duration::from_secs(30)))),
            Some(code) if code >= 500 && attempts < MAX_ATTEMPTS => {
                ("pending", Some(Duration::from_secs(u64::from(attempts.unsigned_abs()) * 2)))
            }
            None if attempts < MAX_ATTEMPTS => {
                ("pending", Some(Duration::from_secs(u64::from(attempts.unsigned_abs()) * 2)))
            }
            _ => ("failed", None),
        };
        let outcome = match (status, state) {
            (Some(code), _) if (200..300).contains(&code) => "sent",
            (Some(404 | 410), _) => "gone",
            (Some(429), _) => "throttled",
            (_, "pending") => "retrying",
            _ => "failed",
        };
        metrics.observe(outcome, elapsed);
        sqlx::query(
            "UPDATE push_jobs SET status = $2, attempts = $3, last_status = $4, \
                 next_attempt_at = CASE WHEN $5::bigint IS NULL THEN NULL ELSE now() + make_interval(secs => $5::bigint) END, \
                 sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END WHERE job_id = $1",
        )
        .bind(id)
        .bind(state)
        .bind(attempts)
        .bind(status.map(i32::from))
        .bind(next.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
        .execute(pool)
        .await?;
    }
    Ok(rows.len())
}

/// One push; the HTTP status (None when no answer), any `Retry-After`, and how long the push
/// service took (None when no request was made).
async fn send_one(
    http: &reqwest::Client,
    config: &PushConfig,
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    payload: String,
) -> (Option<u16>, Option<Duration>, Option<Duration>) {
    if crate::webhooks::check_destination(endpoint, &config.allowed_hosts).await.is_err() {
        return (Some(410), None, None);
    }
    let Ok((public, auth)) = parse_keys(p256dh, auth) else {
        return (Some(410), None, None);
    };
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return (Some(410), None, None);
    };
    let builder = WebPushBuilder::new(uri, public, auth)
        .with_valid_duration(config.ttl)
        .with_vapid(config.vapid.as_ref(), &config.contact);
    let Ok(request) = builder.build(payload.into_bytes()) else {
        return (None, None, None);
    };
    let (parts, body) = request.into_parts();
    let mut outgoing = http.post(endpoint).header("Urgency", "high").body(body);
    for (name, value) in &parts.headers {
        outgoing = outgoing.header(name.as_str(), value.as_bytes());
    }
    let started = Instant::now();
    match outgoing.send().await {
        Ok(response) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            (Some(response.status().as_u16()), retry_after, Some(started.elapsed()))
        }
        Err(_) => (None, None, Some(started.elapsed())),
    }
}
