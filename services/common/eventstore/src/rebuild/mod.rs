//! Rebuilding a read model a service keeps from its own events (`<service> projections rebuild
//! NAME [--tenant T]`): after a release fixes how an event is projected, or when a table was
//! damaged.
//!
//! The rebuild writes a shadow copy while the live tables keep serving:
//! 1. a schema `dw_rebuild_<name>` with an empty copy of each of the model's tables (same
//!    columns, constraints and indexes), and a table of the events applied to it;
//! 2. the store's events, in global-position order a page per transaction, applied to the copy
//!    (`search_path` puts the shadow schema first, so the model's own SQL writes there and still
//!    reads every other table live); a model that says which events touch the same rows
//!    (`lane_key`) has each page split into lanes applied in parallel, each on its own
//!    connection and in order, while the next page is read;
//! 3. one swap transaction: it locks the live tables (commands that write them wait; reads of
//!    them wait too, so no caller ever sees a half-built table), applies what was committed
//!    since (every event of the last minute not applied yet: a command's transaction can commit
//!    an older position late, and lasts at most the RPC deadline), replaces the live rows (all,
//!    or the tenant's) by the copy's, and commits. The shadow schema is dropped.
//!
//! A command waiting on the swap then applies its own event on top of the rebuilt tables, so
//! nothing is lost or applied twice.

use std::future::Future;
use std::pin::Pin;
use std::time::{Duration, Instant};

use dw_ids::TenantId;
use sqlx::{Connection, PgConnection, PgPool, Row};
use uuid::Uuid;

mod lanes;
mod progress;

pub use progress::{RebuildStatus, statuses};

use crate::log::{Direction, LogQuery, read_log};
use crate::store::{RecordedEvent, recorded_event_from_row};

/// Events applied per shadow transaction.
const PAGE: i64 = 1000;

/// How far back the swap looks for events committed late (a command's transaction lasts at
/// most the RPC deadline, 30 s).
const LATE_COMMIT_WINDOW: Duration = Duration::from_secs(60);

/// How long the swap waits for the live tables' lock before giving up (and trying again).
const SWAP_LOCK_TIMEOUT: &str = "15s";

/// How long the swap first tries to take all the live tables' locks at once without waiting
/// (then queues for them, a short wait at a time: [`lock_live_tables`]).
const SWAP_NOWAIT_FOR: Duration = Duration::from_secs(5);
/// The pause between two tries without waiting.
const SWAP_NOWAIT_PAUSE: Duration = Duration::from_millis(10);
/// How long the swap then queues for the locks, a short wait at a time, before giving up.
const SWAP_QUEUE_FOR: Duration = Duration::from_secs(15);
/// The longest of those waits, in milliseconds (less still when `deadlock_timeout` is under
/// twice this).
const SWAP_QUEUE_TRY_MS: i64 = 300;

/// The future a read model's `apply` returns.
pub type ApplyFuture<'a> = Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;

/// A read model a service keeps from its own events (written in the command's transaction),
/// which the store can rebuild.
pub trait ReadModel: Send + Sync {
    /// What operators call it: `<service> projections rebuild NAME`.
    fn name(&self) -> &'static str;

    /// The tables it owns, each with a `tenant_id` column. Nothing else writes them.
    fn tables(&self) -> &'static [&'static str];

    /// Applies one stored event (one the model does not project is no change). Unqualified
    /// table names only: a rebuild runs it with the shadow schema first in `search_path`.
    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a>;

    /// Events with the same key read and write the same rows and are applied in order, in one
    /// lane; events with different keys touch disjoint rows and may be applied in parallel.
    /// `None` (the default, for every event or for one) applies the page in one lane.
    fn lane_key(&self, _event: &RecordedEvent) -> Option<String> {
        None
    }

    /// Applies a lane's events (in order) at once, set-based: what `apply` of each in turn would
    /// leave, in a few statements instead of some per event. `None` (the default): the events go
    /// to `apply` one by one. A batch is applied on top of what earlier batches wrote (a page
    /// follows another; the swap applies what committed since).
    fn apply_batch<'a>(
        &'a self,
        _conn: &'a mut PgConnection,
        _events: &'a [&'a RecordedEvent],
    ) -> Option<ApplyFuture<'a>> {
        None
    }

    /// The lanes a rebuild uses unless told (`--lanes`): 4, where events go one by one and
    /// round trips dominate.
    fn default_lanes(&self) -> usize {
        4
    }
}

/// Lanes a rebuild may use (each holds a connection).
pub const MAX_LANES: usize = 16;

/// How far a rebuild is (printed as it goes).
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Progress {
    /// Events read from the store so far.
    pub events: u64,
    /// Their rate since the start.
    pub events_per_second: f64,
    /// Positions left up to the store's head when the rebuild started (an estimate of the events
    /// left: other tenants' events count too with `--tenant`).
    pub remaining: i64,
}

/// What a finished rebuild did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Rebuilt {
    pub read_model: String,
    pub tenant: Option<String>,
    /// Events applied to the copy, the swap's included.
    pub events: u64,
    /// Of those, the ones the swap applied (committed during the rebuild).
    pub applied_at_swap: u64,
    /// Rows of the rebuilt tables after the swap (the tenant's, with `--tenant`).
    pub rows: i64,
    pub seconds: f64,
    pub events_per_second: f64,
    /// How long the live tables were locked.
    pub swap_seconds: f64,
}

#[derive(Debug, thiserror::Error)]
pub enum RebuildError {
    #[error("a rebuild of {0} is already running")]
    Running(String),
    #[error("table {table} of {model} has no tenant_id column: it cannot be rebuilt for one tenant")]
    NoTenantColumn { model: String, table: String },
    #[error("event {event_id} at position {position} ({event_type}) failed: {reason}")]
    Event { event_id: Uuid, position: i64, event_type: String, reason: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Rebuilds `model` (for one tenant, or all) in up to `lanes` parallel lanes (1 to
/// [`MAX_LANES`]; the pool needs `lanes` + 2 connections), reporting progress after each page.
pub async fn rebuild(
    pool: &PgPool,
    model: &dyn ReadModel,
    tenant: Option<&TenantId>,
    lanes: usize,
    mut report: impl FnMut(Progress),
) -> Result<Rebuilt, RebuildError> {
    let started = Instant::now();
    let lanes = lanes.clamp(1, MAX_LANES);
    let shadow = shadow_schema(model.name());
    let mut conn = pool.acquire().await?.detach();
    // One rebuild of a model at a time (the lock ends with the connection).
    let locked: bool =
        sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))").bind(&shadow).fetch_one(&mut conn).await?;
    if !locked {
        return Err(RebuildError::Running(model.name().to_owned()));
    }
    let live: String = sqlx::query_scalar("SELECT current_schema()").fetch_one(&mut conn).await?;
    if tenant.is_some() {
        check_tenant_columns(&mut conn, model, &live).await?;
    }
    create_shadow(&mut conn, model, &shadow, &live).await?;
    progress::start(&mut conn, model.name(), tenant.map(TenantId::as_str)).await?;
    let result = match acquire_lanes(pool, lanes).await {
        Ok(mut lane_conns) => {
            let target = Target { model, tenant, shadow: &shadow, live: &live };
            let filled = fill_and_swap(pool, &mut conn, &mut lane_conns, &target, started, &mut report).await;
            for lane in lane_conns {
                let _ = lane.close().await;
            }
            filled
        }
        Err(error) => Err(error),
    };
    // The copy goes whatever happened: a failed rebuild leaves the live tables as they were.
    let dropped =
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))).execute(&mut conn).await;
    let outcome = match &result {
        Ok(_) => "done".to_owned(),
        Err(error) => format!("failed: {error}"),
    };
    if let Err(error) = progress::finish(&mut conn, model.name(), &outcome, result.as_ref().ok()).await {
        tracing::warn!(%error, "the rebuild's outcome was not recorded");
    }
    let _ = conn.close().await;
    let rebuilt = result?;
    dropped?;
    Ok(rebuilt)
}

/// A connection per lane, out of the pool for the rebuild's duration.
async fn acquire_lanes(pool: &PgPool, lanes: usize) -> Result<Vec<PgConnection>, RebuildError> {
    let mut conns = Vec::with_capacity(lanes);
    for _ in 0..lanes {
        conns.push(pool.acquire().await?.detach());
    }
    Ok(conns)
}

/// What a rebuild writes: the model, for whom, from where to where.
struct Target<'a> {
    model: &'a dyn ReadModel,
    tenant: Option<&'a TenantId>,
    shadow: &'a str,
    live: &'a str,
}

async fn fill_and_swap(
    pool: &PgPool,
    conn: &mut PgConnection,
    lane_conns: &mut [PgConnection],
    target: &Target<'_>,
    started: Instant,
    report: &mut impl FnMut(Progress),
) -> Result<Rebuilt, RebuildError> {
    let Target { model, tenant, live, .. } = *target;
    let head: i64 =
        sqlx::query_scalar("SELECT COALESCE(max(global_position), 0) FROM events").fetch_one(&mut *conn).await?;
    let page_after = |from_position: i64| LogQuery {
        from_position,
        direction: Direction::Forward,
        limit: PAGE,
        tenant: tenant.cloned(),
        event_type: None,
        stream_id: None,
    };
    // (when, the last position read then): the swap re-reads from a position read a minute
    // before it.
    let mut read_at: Vec<(Instant, i64)> = vec![(Instant::now(), 0)];
    let (mut after, mut events) = (0_i64, 0_u64);
    let mut page = read_log(pool, &page_after(after)).await?;
    loop {
        let next_after = page.next_position(after);
        let end = page.end_of_log;
        // The next page is read while this one is applied.
        let read_next = async {
            if end {
                return Ok(None);
            }
            let at = Instant::now();
            read_log(pool, &page_after(next_after)).await.map(|next| Some((at, next)))
        };
        let (applied, next) = tokio::join!(lanes::apply_page(lane_conns, target, &page.events), read_next);
        applied?;
        events += page.events.len() as u64;
        after = next_after;
        let seconds = started.elapsed().as_secs_f64().max(1e-9);
        let now = Progress { events, events_per_second: events as f64 / seconds, remaining: (head - after).max(0) };
        progress::record(&mut *conn, model.name(), &now).await?;
        report(now);
        match next? {
            Some((at, next)) => {
                read_at.push((at, after));
                page = next;
            }
            None => break,
        }
    }
    let swap_from =
        read_at.iter().rev().find(|(at, _)| at.elapsed() >= LATE_COMMIT_WINDOW).map_or(0, |(_, position)| *position);
    let mut attempt = 0;
    let (applied_at_swap, swap_seconds) = loop {
        attempt += 1;
        match swap(conn, target, swap_from).await {
            Ok(done) => break done,
            // A deadlock with a command, or the lock not granted in time: try again.
            Err(RebuildError::Database(sqlx::Error::Database(error)))
                if attempt < 5 && matches!(error.code().as_deref(), Some("40P01" | "55P03")) =>
            {
                tracing::warn!(%error, attempt, "rebuild swap retried");
            }
            Err(error) => return Err(error),
        }
    };
    let rows = count_rows(conn, model, tenant, live).await?;
    let events = events + applied_at_swap;
    let seconds = started.elapsed().as_secs_f64();
    Ok(Rebuilt {
        read_model: model.name().to_owned(),
        tenant: tenant.map(|t| t.as_str().to_owned()),
        events,
        applied_at_swap,
        rows,
        seconds,
        events_per_second: events as f64 / seconds.max(1e-9),
        swap_seconds,
    })
}

/// `dw_rebuild_<name>`, the name's other characters as `_`.
fn shadow_schema(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
    format!("dw_rebuild_{safe}")
}

/// A quoted identifier.
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

async fn check_tenant_columns(conn: &mut PgConnection, model: &dyn ReadModel, live: &str) -> Result<(), RebuildError> {
    for table in model.tables() {
        let has: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
                            WHERE table_schema = $1 AND table_name = $2 AND column_name = 'tenant_id')",
        )
        .bind(live)
        .bind(table)
        .fetch_one(&mut *conn)
        .await?;
        if !has {
            return Err(RebuildError::NoTenantColumn { model: model.name().to_owned(), table: (*table).to_owned() });
        }
    }
    Ok(())
}

async fn create_shadow(
    conn: &mut PgConnection,
    model: &dyn ReadModel,
    shadow: &str,
    live: &str,
) -> Result<(), RebuildError> {
    let mut tx = conn.begin().await?;
    // A copy left by a rebuild that was killed goes first.
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {shadow} CASCADE"))).execute(&mut *tx).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {shadow}"))).execute(&mut *tx).await?;
    for table in model.tables() {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {shadow}.{t} (LIKE {live}.{t} INCLUDING ALL)",
            t = ident(table),
            live = ident(live)
        )))
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE TABLE {shadow}.dw_applied (event_id uuid PRIMARY KEY)")))
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

async fn set_shadow_path(conn: &mut PgConnection, shadow: &str, live: &str) -> Result<(), sqlx::Error> {
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL search_path TO {shadow}, {}", ident(live))))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

async fn apply_all<'e>(
    conn: &mut PgConnection,
    model: &dyn ReadModel,
    shadow: &str,
    events: impl IntoIterator<Item = &'e RecordedEvent>,
) -> Result<(), RebuildError> {
    let events: Vec<&RecordedEvent> = events.into_iter().collect();
    let Some(first) = events.first() else {
        return Ok(());
    };
    let ids: Vec<Uuid> = events.iter().map(|event| event.event_id).collect();
    let failed = |event: &RecordedEvent, reason: String| RebuildError::Event {
        event_id: event.event_id,
        position: event.global_position,
        event_type: event.event_type.clone(),
        reason,
    };
    let batched = match model.apply_batch(&mut *conn, &events) {
        Some(batch) => Some(batch.await),
        None => None,
    };
    match batched {
        Some(outcome) => {
            let reason = |reason: String| format!("in a batch of {} events from this one: {reason}", events.len());
            outcome.map_err(|r| failed(first, reason(r)))?;
        }
        None => {
            for event in &events {
                model.apply(&mut *conn, event).await.map_err(|reason| failed(event, reason))?;
            }
        }
    }
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "INSERT INTO {shadow}.dw_applied (event_id) SELECT unnest($1::uuid[]) ON CONFLICT DO NOTHING"
    )))
    .bind(&ids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The swap transaction; returns the events it applied and how long the tables were locked.
async fn swap(conn: &mut PgConnection, target: &Target<'_>, swap_from: i64) -> Result<(u64, f64), RebuildError> {
    let Target { model, tenant, shadow, live } = *target;
    let mut tx = conn.begin().await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")))
        .execute(&mut *tx)
        .await?;
    let live_tables: Vec<String> = model.tables().iter().map(|t| format!("{}.{}", ident(live), ident(t))).collect();
    lock_live_tables(&mut tx, &live_tables).await?;
    let locked = Instant::now();
    set_shadow_path(&mut tx, shadow, live).await?;
    // What committed since (or late) and is not in the copy yet, in position order.
    let mut applied = 0_u64;
    let mut after = swap_from;
    loop {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT global_position, event_id, tenant_id, stream_id, version, event_type, subject, payload, \
                    recorded_at, correlation_id, causation_id, traceparent \
             FROM {live}.events e \
             WHERE e.global_position > $1 AND ($2::text IS NULL OR e.tenant_id = $2) \
               AND NOT EXISTS (SELECT 1 FROM {shadow}.dw_applied a WHERE a.event_id = e.event_id) \
             ORDER BY e.global_position LIMIT $3",
            live = ident(live)
        )))
        .bind(after)
        .bind(tenant.map(TenantId::as_str))
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let events = rows.iter().map(recorded_event_from_row).collect::<Result<Vec<_>, _>>()?;
        let Some(last) = events.last() else { break };
        after = last.global_position;
        apply_all(&mut tx, model, shadow, &events).await?;
        applied += events.len() as u64;
    }
    for (table, live_table) in model.tables().iter().zip(&live_tables) {
        let copy = format!("{shadow}.{}", ident(table));
        match tenant {
            None => {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {live_table}"))).execute(&mut *tx).await?;
            }
            Some(tenant) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {live_table} WHERE tenant_id = $1")))
                    .bind(tenant.as_str())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        sqlx::query(sqlx::AssertSqlSafe(format!("INSERT INTO {live_table} SELECT * FROM {copy}")))
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok((applied, locked.elapsed().as_secs_f64()))
}

/// Takes the live tables' exclusive locks. Waiting for one while holding others could close a
/// cycle with a read that holds the one and asks for the others (a read names the tables in its
/// own order), and Postgres would then abort whichever of the two joined the cycle last: often
/// the read, and the reader's RPC would fail. So the swap first takes them all at once or none
/// (`NOWAIT`, undone to a savepoint), again every few milliseconds, holding nothing between
/// tries. After [`SWAP_NOWAIT_FOR`] without a free moment it queues for them (so reads arriving
/// later wait behind it), but each time for less than half of Postgres' `deadlock_timeout`
/// (at most [`SWAP_QUEUE_TRY_MS`]) before letting go of all of them: a read waiting on the swap
/// is never still waiting when its deadlock check runs, so the swap can never cost it its RPC.
/// It gives up with `lock_timeout`'s error after [`SWAP_QUEUE_FOR`] (the caller tries again).
async fn lock_live_tables(tx: &mut PgConnection, live_tables: &[String]) -> Result<(), sqlx::Error> {
    let lock = format!("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE", live_tables.join(", "));
    let give_up = Instant::now() + SWAP_NOWAIT_FOR;
    while Instant::now() < give_up {
        match locked_or_busy(tx, &format!("{lock} NOWAIT")).await? {
            true => return Ok(()),
            false => tokio::time::sleep(SWAP_NOWAIT_PAUSE).await,
        }
    }
    let give_up = Instant::now() + SWAP_QUEUE_FOR;
    loop {
        sqlx::query(
            "SELECT set_config('lock_timeout', \
                 LEAST($1::bigint, (EXTRACT(EPOCH FROM current_setting('deadlock_timeout')::interval) * 500)::bigint)::text \
                 || 'ms', \
                 true)",
        )
        .bind(SWAP_QUEUE_TRY_MS)
        .execute(&mut *tx)
        .await?;
        let locked = locked_or_busy(tx, &lock).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("SET LOCAL lock_timeout = '{SWAP_LOCK_TIMEOUT}'")))
            .execute(&mut *tx)
            .await?;
        if locked {
            return Ok(());
        }
        if Instant::now() >= give_up {
            // The caller retries as for any lock not granted in time.
            return sqlx::query(sqlx::AssertSqlSafe(format!("{lock} NOWAIT"))).execute(&mut *tx).await.map(|_| ());
        }
        tokio::time::sleep(SWAP_NOWAIT_PAUSE).await;
    }
}

/// Runs `lock` under a savepoint: true when it took its locks, false (holding none of them)
/// when one was not granted (`NOWAIT`, or `lock_timeout` passed).
async fn locked_or_busy(tx: &mut PgConnection, lock: &str) -> Result<bool, sqlx::Error> {
    sqlx::query("SAVEPOINT dw_swap_lock").execute(&mut *tx).await?;
    match sqlx::query(sqlx::AssertSqlSafe(lock.to_owned())).execute(&mut *tx).await {
        Ok(_) => {
            sqlx::query("RELEASE SAVEPOINT dw_swap_lock").execute(&mut *tx).await?;
            Ok(true)
        }
        Err(sqlx::Error::Database(error)) if error.code().as_deref() == Some("55P03") => {
            sqlx::query("ROLLBACK TO SAVEPOINT dw_swap_lock").execute(&mut *tx).await?;
            Ok(false)
        }
        Err(error) => Err(error),
    }
}

async fn count_rows(
    conn: &mut PgConnection,
    model: &dyn ReadModel,
    tenant: Option<&TenantId>,
    live: &str,
) -> Result<i64, RebuildError> {
    let mut rows = 0;
    for table in model.tables() {
        let count: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM {}.{} WHERE $1::text IS NULL OR tenant_id = $1",
            ident(live),
            ident(table)
        )))
        .bind(tenant.map(TenantId::as_str))
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
        rows += count;
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shadow_schema_is_a_plain_identifier() {
        assert_eq!(shadow_schema("read-models"), "dw_rebuild_read_models");
        assert_eq!(shadow_schema("Tasks; DROP"), "dw_rebuild_tasks__drop");
        assert_eq!(ident("a\"b"), "\"a\"\"b\"");
    }
}
