//! Admission by dispatch backlog: a tenant whose accepted sends wait for the providers beyond
//! `DW_SEND_BACKLOG_LIMIT` messages (status `requested`: accepted, not yet handed over or still
//! being retried) is refused new sends with `RESOURCE_EXHAUSTED` and a `RetryInfo`, until the
//! dispatcher has caught up. Without it a sender faster than the providers (or than the machine
//! can hand over) piles up messages that leave minutes after they were accepted, and the
//! dispatcher's slots, which every tenant shares, are busy with one tenant's pile.
//!
//! The count is read from the messages' projection (a partial index on the `requested` ones) at
//! most every [`FRESH_FOR`] per tenant and replica; in between, each send this replica admits
//! adds one. So the limit holds to within what the other replicas admit in that time.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use dw_ids::TenantId;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::registry::Registry;
use sqlx::PgPool;

/// How long a tenant's counted backlog is trusted before it is read again.
pub const FRESH_FOR: Duration = Duration::from_millis(100);
/// What a refused sender is told to wait before trying again.
pub const RETRY_AFTER: Duration = Duration::from_millis(500);
/// The default limit per tenant (`DW_SEND_BACKLOG_LIMIT`).
pub const DEFAULT_LIMIT: u32 = 500;
/// Tenants whose count is kept at most (an idle one is forgotten first).
const TRACKED: usize = 10_000;

/// A tenant's backlog as last counted, plus what was admitted here since.
#[derive(Clone, Copy)]
struct Counted {
    at: Instant,
    backlog: i64,
}

pub struct SendBacklog {
    /// 0: no limit.
    limit: u32,
    counted: Mutex<HashMap<TenantId, Counted>>,
    /// `dw_send_backlog_refused_total{tenant}`.
    refused: Family<TenantLabel, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TenantLabel {
    tenant: String,
}

/// A send refused: the tenant's backlog, at or over the limit.
#[derive(Debug, PartialEq, Eq)]
pub struct Full {
    pub backlog: i64,
    pub limit: u32,
}

impl SendBacklog {
    /// Unregistered metrics (tests, tools).
    pub fn new(limit: u32) -> Self {
        Self { limit, counted: Mutex::new(HashMap::new()), refused: Family::default() }
    }

    /// With its refusals counted on `registry`.
    pub fn register(limit: u32, registry: &mut Registry) -> Self {
        let backlog = Self::new(limit);
        registry.register(
            "dw_send_backlog_refused",
            "SendTemplate calls refused because the tenant's messages waiting for the providers reached DW_SEND_BACKLOG_LIMIT",
            backlog.refused.clone(),
        );
        backlog
    }

    /// Admits one send of `tenant`, or says its backlog is full.
    pub async fn admit(&self, pool: &PgPool, tenant: &TenantId) -> Result<(), AdmitError> {
        if self.limit == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let cached = self.lock().get(tenant).copied().filter(|c| now.duration_since(c.at) < FRESH_FOR);
        let backlog = match cached {
            Some(counted) => counted.backlog,
            None => {
                let counted = count(pool, tenant, self.limit).await?;
                let mut map = self.lock();
                if map.len() >= TRACKED {
                    map.retain(|_, c| now.duration_since(c.at) < FRESH_FOR);
                }
                map.insert(tenant.clone(), Counted { at: now, backlog: counted });
                counted
            }
        };
        if backlog >= i64::from(self.limit) {
            self.refused.get_or_create(&TenantLabel { tenant: tenant.to_string() }).inc();
            return Err(AdmitError::Full(Full { backlog, limit: self.limit }));
        }
        if let Some(counted) = self.lock().get_mut(tenant) {
            counted.backlog += 1;
        }
        Ok(())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, Counted>> {
        self.counted.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AdmitError {
    #[error("the tenant's dispatch backlog is full ({} of {})", .0.backlog, .0.limit)]
    Full(Full),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The tenant's messages waiting for the providers, counted up to `limit` (no further: past it
/// the exact figure changes nothing).
async fn count(pool: &PgPool, tenant: &TenantId, limit: u32) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT 1 FROM messages WHERE tenant_id = $1 AND status = 'requested' LIMIT $2) waiting",
    )
    .bind(tenant)
    .bind(i64::from(limit))
    .fetch_one(pool)
    .await
}
