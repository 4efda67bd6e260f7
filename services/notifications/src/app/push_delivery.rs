//! The Web Push worker: RFC 8030 delivery (`TTL`, `Urgency`), payloads encrypted per RFC 8291
//! (`aes128gcm`), VAPID per RFC 8292 (ES256), through `web-push-native`. It sends the pushes the
//! consumers queued (claimed with `FOR UPDATE SKIP LOCKED`, safe with replicas), each in a span
//! that continues the trace of the event that queued it; what follows an answer is decided by
//! [`crate::domain::push`]. An endpoint the [`DestinationPolicy`] refuses (before the request for
//! an IP literal, at connect time for a name) fails the push, logged with the reason, and drops the
//! subscription. Every attempt is counted by outcome (`dw_push_deliveries_total`) and timed
//! (`dw_push_request_duration_seconds`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;
use web_push_native::WebPushBuilder;
use web_push_native::jwt_simple::algorithms::ES256KeyPair;

use super::destination::{DestinationPolicy, OutboundClient, refusal_of};
use crate::domain::destination::Refused;
use crate::domain::push::{self, AfterPush, Outcome, parse_keys};

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

/// The VAPID key pair of `DW_VAPID_PRIVATE_KEY` when configured, or a new one (with a warning:
/// browsers subscribed with it must subscribe again after a restart).
pub fn vapid_key(configured: Option<&str>) -> Result<ES256KeyPair, String> {
    match configured {
        Some(encoded) => push::parse_vapid_key(encoded),
        None => {
            tracing::warn!(
                "DW_VAPID_PRIVATE_KEY not set: using an ephemeral VAPID key (subscriptions break on restart)"
            );
            Ok(ES256KeyPair::generate())
        }
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
             throttled (429, retried after Retry-After), retrying (5xx or no answer, retried), failed (given up), \
             refused (the endpoint is not a public destination: not sent, subscription dropped)",
            metrics.deliveries.clone(),
        );
        registry.register(
            "dw_push_request_duration_seconds",
            "Time the push service took to answer a Web Push request, by outcome",
            metrics.duration.clone(),
        );
        metrics
    }

    fn observe(&self, outcome: Outcome, elapsed: Option<Duration>) {
        let labels = OutcomeLabels { outcome: outcome.as_str() };
        self.deliveries.get_or_create(&labels).inc();
        if let Some(elapsed) = elapsed {
            self.duration.get_or_create(&labels).observe(elapsed.as_secs_f64());
        }
    }
}

/// Pushes in flight per replica: 64 at most, 16 of one tenant.
const IN_FLIGHT: super::InFlight = super::InFlight { total: 64, per_tenant: 16, batch: 32 };

/// What the worker's sends share.
struct Sender {
    pool: PgPool,
    http: OutboundClient,
    config: PushConfig,
    metrics: PushMetrics,
}

/// Sends due pushes until `cancel`, where `destinations` admits: at once when `wake` is told
/// pushes were queued, otherwise every `poll_interval` (retries, and pushes queued by another
/// replica whose announcement this one missed). Each push is sent in the background
/// ([`super::drive`], [`IN_FLIGHT`]); on `cancel`, the pushes in flight finish first.
pub async fn run_worker(
    pool: PgPool,
    config: PushConfig,
    destinations: DestinationPolicy,
    metrics: PushMetrics,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let http = match destinations.http_client(config.timeout) {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "push client unavailable");
            return;
        }
    };
    let idle = config.poll_interval;
    let sender = Arc::new(Sender { pool, http, config, metrics });
    let claim = |room: usize, full: Vec<String>| {
        let pool = sender.pool.clone();
        async move {
            match claim(&pool, room, &full).await {
                Ok(jobs) => jobs.into_iter().map(|job| (job.tenant.clone(), job)).collect(),
                Err(error) => {
                    tracing::warn!(%error, "push worker failed");
                    Vec::new()
                }
            }
        }
    };
    let send = |job: Job| {
        let sender = sender.clone();
        async move {
            if let Err(error) = push_one(&sender, job).await {
                tracing::warn!(%error, "push not recorded; retried when its claim expires");
            }
        }
    };
    super::drive(idle, &cancel, Some(&wake), IN_FLIGHT, claim, send).await;
}

/// A push claimed for sending.
struct Job {
    id: uuid::Uuid,
    tenant: String,
    endpoint: String,
    payload: String,
    attempts: i32,
    traceparent: Option<String>,
    p256dh: String,
    auth: String,
}

/// Claims up to `limit` due pushes, none of the tenants in `full` (which have their share in
/// flight), for a minute: a replica that dies mid-send leaves them to be retried then. Jobs whose
/// subscription is gone are dropped.
async fn claim(pool: &PgPool, limit: usize, full: &[String]) -> Result<Vec<Job>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT j.job_id, j.tenant_id, j.endpoint, j.payload, j.attempts, j.traceparent, s.p256dh, s.auth \
         FROM push_jobs j JOIN push_subscriptions s ON s.tenant_id = j.tenant_id AND s.endpoint = j.endpoint \
         WHERE j.status = 'pending' AND j.next_attempt_at <= now() AND j.tenant_id <> ALL($2) \
         ORDER BY j.next_attempt_at LIMIT $1 \
         FOR UPDATE OF j SKIP LOCKED",
    )
    .bind(i64::try_from(limit).unwrap_or(i64::MAX))
    .bind(full)
    .fetch_all(&mut *tx)
    .await?;
    sqlx::query(
        "UPDATE push_jobs j SET status = 'dropped' WHERE j.status = 'pending' AND NOT EXISTS \
         (SELECT 1 FROM push_subscriptions s WHERE s.tenant_id = j.tenant_id AND s.endpoint = j.endpoint)",
    )
    .execute(&mut *tx)
    .await?;
    let jobs = rows
        .iter()
        .map(|row| {
            Ok(Job {
                id: row.try_get("job_id")?,
                tenant: row.try_get("tenant_id")?,
                endpoint: row.try_get("endpoint")?,
                payload: row.try_get("payload")?,
                attempts: row.try_get::<i32, _>("attempts")? + 1,
                traceparent: row.try_get("traceparent")?,
                p256dh: row.try_get("p256dh")?,
                auth: row.try_get("auth")?,
            })
        })
        .collect::<Result<Vec<Job>, sqlx::Error>>()?;
    let ids: Vec<uuid::Uuid> = jobs.iter().map(|job| job.id).collect();
    sqlx::query("UPDATE push_jobs SET next_attempt_at = now() + interval '1 minute' WHERE job_id = ANY($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(jobs)
}

/// Sends one claimed push and keeps its outcome.
async fn push_one(sender: &Sender, job: Job) -> Result<(), sqlx::Error> {
    let Sender { pool, http, config, metrics } = sender;
    let Job { id, tenant, endpoint, payload, attempts, traceparent, p256dh, auth } = job;
    let span = dw_telemetry::http_client_span!("web push send", "POST", &endpoint, attempt = attempts);
    if let Some(traceparent) = traceparent {
        dw_telemetry::set_parent_from_traceparent(&span, &traceparent);
    }
    let pushed = send_one(http, config, &endpoint, &p256dh, &auth, payload).instrument(span.clone()).await;
    match &pushed {
        Pushed::Answered { status, .. } => dw_telemetry::http_client::record_status(&span, *status),
        Pushed::Refused(refused) => {
            dw_telemetry::http_client::record_failure(&span, "refused");
            tracing::warn!(%tenant, reason = %refused, "push destination refused");
        }
        Pushed::NoAnswer { .. } => dw_telemetry::http_client::record_failure(&span, "no_answer"),
        Pushed::Unusable => dw_telemetry::http_client::record_failure(&span, "unusable_subscription"),
    }
    let (status, elapsed) = (pushed.status(), pushed.elapsed());
    let next = pushed.next(attempts);
    if next.drops_subscription() {
        sqlx::query("DELETE FROM push_subscriptions WHERE tenant_id = $1 AND endpoint = $2")
            .bind(&tenant)
            .bind(&endpoint)
            .execute(pool)
            .await?;
    }
    metrics.observe(next.outcome, elapsed);
    sqlx::query(
        "UPDATE push_jobs SET status = $2, attempts = $3, last_status = $4, \
             next_attempt_at = CASE WHEN $5::bigint IS NULL THEN NULL ELSE now() + make_interval(secs => $5::bigint) END, \
             sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END WHERE job_id = $1",
    )
    .bind(id)
    .bind(next.state.as_str())
    .bind(attempts)
    .bind(status.map(i32::from))
    .bind(next.retry_in.map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
    .execute(pool)
    .await?;
    Ok(())
}

/// What became of one push.
enum Pushed {
    /// The push service answered, after `elapsed`.
    Answered { status: u16, retry_after: Option<Duration>, elapsed: Duration },
    /// No answer: a network failure after `elapsed`, or the request could not be built (`None`).
    NoAnswer { elapsed: Option<Duration> },
    /// The subscription cannot be pushed to (its keys or endpoint do not parse): as if gone.
    Unusable,
    /// The destination policy refused the endpoint; nothing was sent.
    Refused(Refused),
}

impl Pushed {
    /// The HTTP status as the job keeps it.
    fn status(&self) -> Option<u16> {
        match self {
            Self::Answered { status, .. } => Some(*status),
            Self::NoAnswer { .. } | Self::Refused(_) => None,
            Self::Unusable => Some(410),
        }
    }

    /// How long the push service took, when a request was made.
    fn elapsed(&self) -> Option<Duration> {
        match self {
            Self::Answered { elapsed, .. } => Some(*elapsed),
            Self::NoAnswer { elapsed } => *elapsed,
            Self::Unusable | Self::Refused(_) => None,
        }
    }

    /// What follows attempt number `attempt`.
    fn next(&self, attempt: i32) -> AfterPush {
        match self {
            Self::Answered { status, retry_after, .. } => push::after_push(Some(*status), *retry_after, attempt),
            Self::NoAnswer { .. } => push::after_push(None, None, attempt),
            Self::Unusable => push::after_push(Some(410), None, attempt),
            Self::Refused(_) => push::after_refused(),
        }
    }
}

/// One push to `endpoint`, if the destination policy admits it.
async fn send_one(
    http: &OutboundClient,
    config: &PushConfig,
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    payload: String,
) -> Pushed {
    let outgoing = match http.post(endpoint) {
        Ok(outgoing) => outgoing,
        Err(refused) => return Pushed::Refused(refused),
    };
    let Ok((public, auth)) = parse_keys(p256dh, auth) else {
        return Pushed::Unusable;
    };
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return Pushed::Unusable;
    };
    let builder = WebPushBuilder::new(uri, public, auth)
        .with_valid_duration(config.ttl)
        .with_vapid(config.vapid.as_ref(), &config.contact);
    let Ok(request) = builder.build(payload.into_bytes()) else {
        return Pushed::NoAnswer { elapsed: None };
    };
    let (parts, body) = request.into_parts();
    let mut outgoing = outgoing.header("Urgency", "high").body(body);
    // The push service may trace too: the call continues this span's trace.
    if let Some(traceparent) = dw_telemetry::current_traceparent() {
        outgoing = outgoing.header("traceparent", traceparent);
    }
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
            Pushed::Answered { status: response.status().as_u16(), retry_after, elapsed: started.elapsed() }
        }
        Err(error) => match refusal_of(&error) {
            Some(refused) => Pushed::Refused(refused.clone()),
            None => Pushed::NoAnswer { elapsed: Some(started.elapsed()) },
        },
    }
}
