//! Housekeeping of the bookkeeping tables that would otherwise grow forever: consumers'
//! processed event ids (only needed while a redelivery is possible) and request-id responses
//! (only needed while a client may retry).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// Keep processed event ids this long (redeliveries happen within minutes; a projection
    /// rebuild uses a new consumer name).
    pub processed_events: Duration,
    /// Keep request-id responses this long (clients retry within seconds to hours).
    pub idempotency_keys: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            processed_events: Duration::from_secs(7 * 24 * 3600),
            idempotency_keys: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Deletes what is older than `retention`; returns the rows removed from each table.
pub async fn prune(pool: &PgPool, retention: Retention) -> Result<(u64, u64), sqlx::Error> {
    let processed = sqlx::query("DELETE FROM processed_events WHERE processed_at < now() - $1")
        .bind(retention.processed_events)
        .execute(pool)
        .await?
        .rows_affected();
    let keys = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < now() - $1")
        .bind(retention.idempotency_keys)
        .execute(pool)
        .await?
        .rows_affected();
    Ok((processed, keys))
}

/// Prunes every `every` until `cancel`.
pub async fn run(pool: PgPool, retention: Retention, every: Duration, cancel: CancellationToken) {
    loop {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        match prune(&pool, retention).await {
            Ok((processed, keys)) if processed + keys > 0 => tracing::info!(processed, keys, "pruned bookkeeping rows"),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "pruning failed"),
        }
    }
}
