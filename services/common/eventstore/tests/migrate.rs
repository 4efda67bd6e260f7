//! `dw_eventstore::migrate::run`: replicas starting together apply a migration that builds an
//! index concurrently, and a build an earlier attempt left half done starts over.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use sqlx::SqlSafeStr;
use sqlx::migrate::{Migration, MigrationType, Migrator};

use dw_testkit::TestDb;

/// A table, filled in the migration's transaction, then an index built concurrently.
fn migrations(count: usize) -> Migrator {
    let all = [
        Migration::new(
            1,
            "items".into(),
            MigrationType::Simple,
            "CREATE TABLE items (id BIGINT PRIMARY KEY, v TEXT NOT NULL); \
             INSERT INTO items SELECT g, md5((g % 50000)::text) FROM generate_series(1, 100000) g"
                .into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            "items by v".into(),
            MigrationType::Simple,
            "-- no-transaction\nCREATE INDEX CONCURRENTLY IF NOT EXISTS items_v_idx ON items (v)".into_sql_str(),
            true,
        ),
    ];
    Migrator { migrations: all[..count].to_vec().into(), ..Migrator::DEFAULT }
}

/// Whether `items_v_idx` exists and is valid, and the migrations recorded as applied.
async fn state(db: &TestDb) -> (Option<bool>, Vec<i64>) {
    let valid: Option<bool> = sqlx::query_scalar(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_v_idx'",
    )
    .fetch_optional(&db.pool)
    .await
    .unwrap();
    let applied: Vec<i64> = sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success ORDER BY version")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    (valid, applied)
}

#[tokio::test]
async fn replicas_starting_together_build_an_index_concurrently_without_deadlocking() {
    let db = TestDb::create(&Migrator::DEFAULT).await.unwrap();
    let migrator = migrations(2);
    // Four replicas at once: three wait while one fills the table and builds the index. With
    // sqlx's blocking lock, a waiter's open statement makes the build wait for it: deadlock.
    let runs = (0..4).map(|_| dw_eventstore::migrate::run(&db.pool, &migrator));
    for outcome in futures::future::join_all(runs).await {
        outcome.expect("every replica's migrations succeed");
    }
    assert_eq!(state(&db).await, (Some(true), vec![1, 2]));
    // The lock is released: a later start finds nothing to do and does not wait.
    tokio::time::timeout(std::time::Duration::from_secs(30), dw_eventstore::migrate::run(&db.pool, &migrator))
        .await
        .expect("the lock was released")
        .unwrap();
}

#[tokio::test]
async fn an_index_an_interrupted_build_left_invalid_is_built_again() {
    let db = TestDb::create(&Migrator::DEFAULT).await.unwrap();
    dw_eventstore::migrate::run(&db.pool, &migrations(1)).await.unwrap();
    // A concurrent build that fails half way leaves its index behind, invalid (here a unique
    // index over duplicates, as an interrupted build would).
    let failed = sqlx::raw_sql("CREATE UNIQUE INDEX CONCURRENTLY items_v_idx ON items (v)").execute(&db.pool).await;
    assert!(failed.is_err());
    assert_eq!(state(&db).await, (Some(false), vec![1]));

    dw_eventstore::migrate::run(&db.pool, &migrations(2)).await.unwrap();
    assert_eq!(state(&db).await, (Some(true), vec![1, 2]), "built again, not skipped as existing");
    let unique: bool = sqlx::query_scalar(
        "SELECT i.indisunique FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = 'items_v_idx'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert!(!unique, "the migration's index, not the leftover");
}
