//! A rebuild's progress in the service's database (`dw_rebuild_progress`, a row per read model,
//! kept after the rebuild as its last outcome), so that the serving replicas export it as metrics
//! and `projections list` shows it, wherever the rebuild runs.

use sqlx::{PgConnection, PgPool, Row};

use super::Progress;

/// How long a rebuild that stopped writing progress still counts as running (a killed one
/// stops counting after this).
const RUNNING_FOR: &str = "2 minutes";

/// A read model's latest rebuild, as recorded.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RebuildStatus {
    pub read_model: String,
    /// The tenant it rebuilt, or none for all.
    pub tenant: Option<String>,
    pub started_at: chrono::DateTime<chrono::Utc>,
    /// Events applied so far.
    pub events: i64,
    /// Positions left when last recorded.
    pub remaining: i64,
    pub events_per_second: f64,
    /// Progress recorded within the last two minutes and not finished.
    pub running: bool,
    /// `done`, or `failed: <reason>`; none while it runs (or when it was killed).
    pub outcome: Option<String>,
    pub finished_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Records the start of a rebuild of `read_model` (creating the table the first time).
pub(super) async fn start(conn: &mut PgConnection, read_model: &str, tenant: Option<&str>) -> Result<(), sqlx::Error> {
    let created = sqlx::query(
        "CREATE TABLE IF NOT EXISTS dw_rebuild_progress (
            read_model text PRIMARY KEY,
            tenant_id text,
            started_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            events bigint NOT NULL,
            remaining bigint NOT NULL,
            events_per_second double precision NOT NULL,
            finished_at timestamptz,
            outcome text)",
    )
    .execute(&mut *conn)
    .await;
    match created {
        // Two rebuilds of different models creating it at once: the other one did.
        Err(sqlx::Error::Database(error)) if matches!(error.code().as_deref(), Some("23505" | "42P07")) => {}
        other => {
            other?;
        }
    }
    sqlx::query(
        "INSERT INTO dw_rebuild_progress \
             (read_model, tenant_id, started_at, updated_at, events, remaining, events_per_second) \
         VALUES ($1, $2, now(), now(), 0, 0, 0) \
         ON CONFLICT (read_model) DO UPDATE SET tenant_id = $2, started_at = now(), updated_at = now(), events = 0, \
             remaining = 0, events_per_second = 0, finished_at = NULL, outcome = NULL",
    )
    .bind(read_model)
    .bind(tenant)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records how far it is.
pub(super) async fn record(conn: &mut PgConnection, read_model: &str, progress: &Progress) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dw_rebuild_progress SET updated_at = now(), events = $2, remaining = $3, events_per_second = $4 \
         WHERE read_model = $1",
    )
    .bind(read_model)
    .bind(i64::try_from(progress.events).unwrap_or(i64::MAX))
    .bind(progress.remaining)
    .bind(progress.events_per_second)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Records how it ended.
pub(super) async fn finish(
    conn: &mut PgConnection,
    read_model: &str,
    outcome: &str,
    finished: Option<&super::Rebuilt>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE dw_rebuild_progress SET updated_at = now(), finished_at = now(), outcome = $2, \
             events = COALESCE($3, events), remaining = CASE WHEN $3 IS NULL THEN remaining ELSE 0 END, \
             events_per_second = COALESCE($4, events_per_second) \
         WHERE read_model = $1",
    )
    .bind(read_model)
    .bind(outcome)
    .bind(finished.map(|r| i64::try_from(r.events).unwrap_or(i64::MAX)))
    .bind(finished.map(|r| r.events_per_second))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The latest rebuild of each read model of this database (none when nothing was ever rebuilt).
pub async fn statuses(pool: &PgPool) -> Result<Vec<RebuildStatus>, sqlx::Error> {
    let exists: bool =
        sqlx::query_scalar("SELECT to_regclass('dw_rebuild_progress') IS NOT NULL").fetch_one(pool).await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT read_model, tenant_id, started_at, events, remaining, events_per_second, outcome, finished_at, \
                finished_at IS NULL AND updated_at > now() - interval '{RUNNING_FOR}' AS running \
         FROM dw_rebuild_progress ORDER BY read_model"
    )))
    .fetch_all(pool)
    .await?;
    rows.iter()
        .map(|row| {
            Ok(RebuildStatus {
                read_model: row.try_get("read_model")?,
                tenant: row.try_get("tenant_id")?,
                started_at: row.try_get("started_at")?,
                events: row.try_get("events")?,
                remaining: row.try_get("remaining")?,
                events_per_second: row.try_get("events_per_second")?,
                running: row.try_get("running")?,
                outcome: row.try_get("outcome")?,
                finished_at: row.try_get("finished_at")?,
            })
        })
        .collect()
}
