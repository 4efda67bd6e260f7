//! Applying a service's migrations while several replicas start at once, so that a migration may
//! build an index without blocking the table's writes: `CREATE INDEX CONCURRENTLY`, alone in a
//! file that starts with `-- no-transaction`.
//!
//! sqlx's own runner waits for its advisory lock inside a statement (`pg_advisory_lock`). A
//! replica waiting there holds a transaction open; a concurrent index build waits for every such
//! transaction to end, while its replica holds the lock the other waits for: a deadlock, which
//! Postgres breaks by failing one of the two, often the build. So here the lock is polled with
//! `pg_try_advisory_lock`: between polls a waiting replica holds nothing the build waits for. The
//! lock id is sqlx's, so a replica of an earlier version still excludes this one.
//!
//! A build that was interrupted (the process killed, the deadlock above) leaves an invalid index
//! behind, which `CREATE INDEX CONCURRENTLY IF NOT EXISTS` would then take for done. Under the
//! lock, before any migration, the invalid indexes of the current schema that no build is
//! filling now are dropped, so the build starts over.

use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::{Connection, PgConnection, PgPool, Row};

/// How often a replica waiting for another's migrations asks for the lock again.
const POLL: Duration = Duration::from_millis(200);

/// Applies `migrator`'s pending migrations to `pool`'s database, one replica at a time.
pub async fn run(pool: &PgPool, migrator: &Migrator) -> Result<(), MigrateError> {
    // Detached: when this future is dropped half way, the connection closes and the session's
    // lock goes with it, instead of going back to the pool still held.
    let mut conn = pool.acquire().await?.detach();
    let lock_id = lock_id(&mut conn).await?;
    let mut waited = false;
    loop {
        let acquired: bool =
            sqlx::query_scalar("SELECT pg_try_advisory_lock($1)").bind(lock_id).fetch_one(&mut conn).await?;
        if acquired {
            break;
        }
        if !waited {
            tracing::info!("another replica is applying migrations; waiting for it");
            waited = true;
        }
        tokio::time::sleep(POLL).await;
    }
    let applied = async {
        drop_invalid_indexes(&mut conn).await?;
        let unlocked = Migrator {
            migrations: migrator.migrations.clone(),
            ignore_missing: migrator.ignore_missing,
            locking: false,
            no_tx: migrator.no_tx,
            table_name: migrator.table_name.clone(),
            create_schemas: migrator.create_schemas.clone(),
        };
        unlocked.run_direct(None, &mut conn, false).await
    }
    .await;
    // Closing the session releases its lock, whatever happened above.
    let _closed = conn.close().await;
    applied
}

/// sqlx's migration lock id for the connection's database.
async fn lock_id(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let database: String = sqlx::query_scalar("SELECT current_database()").fetch_one(&mut *conn).await?;
    const CRC_IEEE: crc::Crc<u32> = crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC);
    Ok(0x3d32_ad9e * i64::from(CRC_IEEE.checksum(database.as_bytes())))
}

/// Drops what interrupted concurrent builds left: invalid indexes of the current schema that no
/// build (`pg_stat_progress_create_index`) is filling now.
async fn drop_invalid_indexes(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let rows = sqlx::query(
        "SELECT format('%I.%I', n.nspname, c.relname) AS name FROM pg_index i \
         JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE NOT i.indisvalid AND n.nspname = current_schema() \
           AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.index_relid = i.indexrelid)",
    )
    .fetch_all(&mut *conn)
    .await?;
    for row in rows {
        let name: String = row.try_get("name")?;
        tracing::warn!(index = %name, "dropping an invalid index an interrupted build left");
        // `format('%I')` quoted the name.
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP INDEX CONCURRENTLY IF EXISTS {name}")))
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
