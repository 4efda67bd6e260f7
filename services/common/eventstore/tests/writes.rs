//! A command's writes sent as one statement (`command::execute_planned`), against real Postgres:
//! the events, the read-model rows and the idempotency record land together or not at all.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;

use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, CommandContext, Plan};
use dw_eventstore::{CommandError, EventMetadata, NewEvent, Write, Writes, store};
use dw_ids::{RequestId, TenantId};
use dw_testkit::TestDb;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

/// Appends one event to `stream` (at `expected`, or where the stream is) and inserts `rows`
/// into `plan_rows` with the stream's new version; answers that version.
struct AppendAndRows {
    stream: &'static str,
    expected: Option<i64>,
    rows: Vec<&'static str>,
}

impl Plan<Infallible> for AppendAndRows {
    type Response = String;

    fn streams(&self) -> Vec<String> {
        vec![self.stream.to_owned()]
    }

    async fn plan(
        &self,
        conn: &mut PgConnection,
        _now: DateTime<Utc>,
        writes: &mut Writes,
    ) -> Result<String, CommandError<Infallible>> {
        let loaded = store::load_stream(conn, self.stream).await?;
        let expected = self.expected.unwrap_or(loaded.version);
        let event = happened();
        let version = writes.append(&tenant(), self.stream, expected, vec![event], None, &EventMetadata::default())?;
        for id in &self.rows {
            writes.push(
                Write::new("plan_rows", "INSERT INTO plan_rows (id, version) VALUES ($1, $2)")
                    .bind(id.to_string())
                    .bind(version),
            );
        }
        Ok(format!("v{version}"))
    }
}

/// One test event.
fn happened() -> NewEvent {
    NewEvent {
        event_id: Uuid::now_v7(),
        event_type: "test.v1.Happened".into(),
        subject: "thing.happened".into(),
        payload: b"x".to_vec(),
        published: None,
    }
}

fn tenant() -> TenantId {
    TenantId::parse("acme").unwrap()
}

fn context(request_id: &str, body: &[u8]) -> CommandContext {
    CommandContext {
        tenant: tenant(),
        actor: "ana".into(),
        privileged: false,
        request_id: RequestId::parse(request_id).unwrap(),
        operation: "test.v1.Things/Do",
        metadata: EventMetadata::default(),
        request_hash: body.to_vec(),
    }
}

async fn db() -> TestDb {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    sqlx::query("CREATE TABLE plan_rows (id TEXT PRIMARY KEY, version BIGINT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    db
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(&db.pool).await.unwrap().get("n")
}

#[tokio::test]
async fn events_rows_and_response_land_together_and_a_retry_gets_the_response() {
    let db = db().await;
    let command = AppendAndRows { stream: "thing:1", expected: None, rows: vec!["a"] };
    let first = command::execute_planned(&db.pool, &context("r-1", b"body"), &command).await.unwrap();
    assert_eq!(first, "v1");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM plan_rows WHERE version = 1").await, 1);

    // The same request again: the stored response, nothing written.
    let again = AppendAndRows { stream: "thing:1", expected: None, rows: vec!["b"] };
    let retried = command::execute_planned(&db.pool, &context("r-1", b"body"), &again).await.unwrap();
    assert_eq!(retried, "v1");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM plan_rows").await, 1);

    // The same request id with another body is refused.
    let reused = command::execute_planned(&db.pool, &context("r-1", b"other"), &again).await;
    assert!(matches!(reused, Err(CommandError::RequestIdReused(_))), "{reused:?}");
}

#[tokio::test]
async fn a_stream_that_moved_undoes_the_whole_statement() {
    let db = db().await;
    let setup = AppendAndRows { stream: "thing:2", expected: None, rows: vec![] };
    command::execute_planned(&db.pool, &context("r-setup", b""), &setup).await.unwrap();

    // Always planned at version 0 while the stream is at 1: every attempt raises.
    let stale = AppendAndRows { stream: "thing:2", expected: Some(0), rows: vec!["a"] };
    let result = command::execute_planned(&db.pool, &context("r-stale", b""), &stale).await;
    assert!(matches!(result, Err(CommandError::Aborted(_))), "{result:?}");
    // Planned ahead of the stream: the same.
    let ahead = AppendAndRows { stream: "thing:2", expected: Some(7), rows: vec!["b"] };
    let result = command::execute_planned(&db.pool, &context("r-ahead", b""), &ahead).await;
    assert!(matches!(result, Err(CommandError::Aborted(_))), "{result:?}");

    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM plan_rows").await, 0);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM idempotency_keys").await, 1);
    let version: i64 = sqlx::query("SELECT version FROM streams WHERE stream_id = 'thing:2'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get(0);
    assert_eq!(version, 1);
}

#[tokio::test]
async fn a_table_written_twice_goes_in_a_second_statement_of_one_transaction() {
    let db = db().await;
    let command = AppendAndRows { stream: "thing:3", expected: None, rows: vec!["a", "b", "c"] };
    assert_eq!(command::execute_planned(&db.pool, &context("r-1", b""), &command).await.unwrap(), "v1");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM plan_rows WHERE version = 1").await, 3);

    // A later write that fails (a row already there) undoes the earlier statements too.
    let clash = AppendAndRows { stream: "thing:3", expected: None, rows: vec!["d", "a"] };
    let result = command::execute_planned(&db.pool, &context("r-2", b""), &clash).await;
    assert!(result.is_err(), "{result:?}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM plan_rows").await, 3);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM idempotency_keys").await, 1);
}

#[tokio::test]
async fn concurrent_requests_with_one_id_act_once_and_all_get_the_response() {
    let db = db().await;
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let pool = db.pool.clone();
        calls.spawn(async move {
            let command = AppendAndRows { stream: "thing:4", expected: None, rows: vec![] };
            command::execute_planned(&pool, &context("r-same", b"body"), &command).await
        });
    }
    while let Some(result) = calls.join_next().await {
        assert_eq!(result.unwrap().unwrap(), "v1");
    }
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM idempotency_keys").await, 1);
}

#[tokio::test]
async fn a_guard_that_changes_no_row_undoes_the_whole_statement() {
    let db = db().await;
    sqlx::query("CREATE TABLE seats (id TEXT PRIMARY KEY, taken INT NOT NULL, capacity INT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    sqlx::query("INSERT INTO seats VALUES ('s', 0, 1)").execute(&db.pool).await.unwrap();
    let take = |stream: &str| {
        let mut writes = Writes::default();
        let event = happened();
        writes.append(&tenant(), stream, 0, vec![event], None, &EventMetadata::default()).unwrap();
        writes.push(
            Write::new("seats", "UPDATE seats SET taken = taken + 1 WHERE id = 's' AND taken < capacity RETURNING 1")
                .guard("seat s is full"),
        );
        writes
    };
    let mut conn = db.pool.acquire().await.unwrap();
    take("thing:5").execute(&mut conn).await.unwrap();
    // The seat is full: the guard matches nothing, and neither its event nor its outbox row stays.
    let refused = take("thing:6").execute(&mut conn).await;
    assert!(matches!(refused, Err(store::StoreError::Conflict { .. })), "{refused:?}");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox").await, 1);
    assert_eq!(count(&db, "SELECT taken::bigint AS n FROM seats").await, 1);
}

/// Appends one event to its stream and leaves the writes to the kernel
/// ([`command::leave_last_writes`]), with a row of `plan_rows`.
struct LeavesItsWrites {
    stream: &'static str,
    row: &'static str,
}

impl command::Attempt<Infallible> for LeavesItsWrites {
    type Response = String;

    async fn attempt(&self, conn: &mut PgConnection, _now: DateTime<Utc>) -> Result<String, CommandError<Infallible>> {
        let loaded = store::load_stream(conn, self.stream).await?;
        let event = happened();
        let mut writes = Writes::default();
        let version =
            writes.append(&tenant(), self.stream, loaded.version, vec![event], None, &EventMetadata::default())?;
        writes.push(
            Write::new("plan_rows", "INSERT INTO plan_rows (id, version) VALUES ($1, $2)")
                .bind(self.row.to_owned())
                .bind(version),
        );
        assert!(command::leave_last_writes(writes).is_none(), "the kernel takes them");
        // Not sent yet: nothing of the attempt sees them.
        assert_eq!(store::load_stream(conn, self.stream).await?.version, loaded.version);
        Ok(format!("v{version}"))
    }
}

#[tokio::test]
async fn writes_left_to_the_kernel_land_with_the_response_or_not_at_all() {
    let db = db().await;
    let first = LeavesItsWrites { stream: "thing:7", row: "a" };
    assert_eq!(command::execute(&db.pool, &context("r-1", b""), &first).await.unwrap(), "v1");
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM plan_rows WHERE version = 1").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM idempotency_keys").await, 1);
    // Retried: the stored response.
    assert_eq!(command::execute(&db.pool, &context("r-1", b""), &first).await.unwrap(), "v1");

    // A row already there fails the statement: no event, no response stored.
    let clash = LeavesItsWrites { stream: "thing:7", row: "a" };
    assert!(command::execute(&db.pool, &context("r-2", b""), &clash).await.is_err());
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM idempotency_keys").await, 1);

    // Outside a command the writes come back to be sent by the caller.
    assert!(command::leave_last_writes(Writes::default()).is_some());
}
