//! Web Push: RFC 8030 delivery (`TTL`, `Urgency`), payloads encrypted per RFC 8291
//! (`aes128gcm`), VAPID per RFC 8292 (ES256), through `web-push-native`. A push is owed for every
//! new client message to each of the agent's subscriptions: queued in the projection's
//! transaction, sent by a worker (claims with `FOR UPDATE SKIP LOCKED`, safe with replicas).
//! 404/410 drop the subscription; 429 waits `Retry-After`; 5xx retries a few times.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
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

/// Queues a push of `payload` to each of the agent's subscriptions (in the caller's transaction).
pub async fn enqueue(
    conn: &mut PgConnection,
    tenant: &str,
    agent: &str,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO push_jobs (job_id, tenant_id, endpoint, payload, status, next_attempt_at) \
         SELECT gen_random_uuid(), tenant_id, endpoint, $3, 'pending', now() FROM push_subscriptions \
         WHERE tenant_id = $1 AND agent_id = $2",
    )
    .bind(tenant)
    .bind(agent)
    .bind(payload.to_string())
    .execute(conn)
    .await?;
    Ok(())
}

const MAX_ATTEMPTS: i32 = 5;

pub async fn run_worker(pool: PgPool, config: PushConfig, cancel: CancellationToken) {
    let http = match reqwest::Client::builder().timeout(config.timeout).build() {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "push client unavailable");
            return;
        }
    };
    while !cancel.is_cancelled() {
        let sent = match push_due(&pool, &http, &config).await {
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

async fn push_due(pool: &PgPool, http: &reqwest::Client, config: &PushConfig) -> Result<usize, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows = sqlx::query(
        "SELECT j.job_id, j.tenant_id, j.endpoint, j.payload, j.attempts, s.p256dh, s.auth \
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
        let (status, retry_after) = send_one(
            http,
            config,
            &endpoint,
            &row.try_get::<String, _>("p256dh")?,
            &row.try_get::<String, _>("auth")?,
            payload,
        )
        .await;
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

/// One push; the HTTP status (None when no answer) and any `Retry-After`.
async fn send_one(
    http: &reqwest::Client,
    config: &PushConfig,
    endpoint: &str,
    p256dh: &str,
    auth: &str,
    payload: String,
) -> (Option<u16>, Option<Duration>) {
    if crate::webhooks::check_destination(endpoint, &config.allowed_hosts).await.is_err() {
        return (Some(410), None);
    }
    let Ok((public, auth)) = parse_keys(p256dh, auth) else {
        return (Some(410), None);
    };
    let Ok(uri) = endpoint.parse::<http::Uri>() else {
        return (Some(410), None);
    };
    let builder = WebPushBuilder::new(uri, public, auth)
        .with_valid_duration(config.ttl)
        .with_vapid(config.vapid.as_ref(), &config.contact);
    let Ok(request) = builder.build(payload.into_bytes()) else {
        return (None, None);
    };
    let (parts, body) = request.into_parts();
    let mut outgoing = http.post(endpoint).header("Urgency", "high").body(body);
    for (name, value) in &parts.headers {
        outgoing = outgoing.header(name.as_str(), value.as_bytes());
    }
    match outgoing.send().await {
        Ok(response) => {
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok())
                .map(Duration::from_secs);
            (Some(response.status().as_u16()), retry_after)
        }
        Err(_) => (None, None),
    }
}
