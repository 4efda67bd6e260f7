//! The kernel's aggregate load and append against real Postgres: the snapshot is used while it
//! decodes, a stream is replayed when it no longer does (a snapshot an older release wrote),
//! and a concurrent writer is a conflict.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dw_eventstore::aggregate::{self, Aggregate};
use dw_eventstore::{CommandError, EventMetadata, NewEvent, RecordedEvent};
use dw_testkit::TestDb;
use serde::{Deserialize, Serialize};

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate::Migrator::DEFAULT));

/// A counter: its events add to it.
struct Counter;

#[derive(Debug, Default, Clone, PartialEq, Serialize, Deserialize)]
struct Total {
    total: i64,
}

impl Aggregate for Counter {
    type State = Total;
    type Event = i64;

    fn stream_id(&self) -> String {
        "counter:acme:1".into()
    }

    fn decode(&self, recorded: &RecordedEvent) -> Result<i64, String> {
        let bytes: [u8; 8] = recorded.payload.as_slice().try_into().map_err(|_| "not 8 bytes".to_owned())?;
        Ok(i64::from_be_bytes(bytes))
    }

    fn encode(&self, event: &i64) -> NewEvent {
        NewEvent {
            published: None,
            event_id: uuid::Uuid::now_v7(),
            event_type: "test.v1.Added".into(),
            subject: "counter.added".into(),
            payload: event.to_be_bytes().to_vec(),
        }
    }

    fn evolve(state: Total, event: &i64) -> Total {
        Total { total: state.total + event }
    }
}

#[derive(Debug)]
struct NoRule;

impl std::fmt::Display for NoRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no rule")
    }
}

impl std::error::Error for NoRule {}

impl dw_eventstore::DomainRule for NoRule {
    fn reason(&self) -> &'static str {
        "NO_RULE"
    }
}

type Loaded = std::result::Result<aggregate::Loaded<Total>, CommandError<NoRule>>;

#[tokio::test]
async fn a_snapshot_that_no_longer_decodes_falls_back_to_replaying_the_stream() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let tenant = dw_ids::TenantId::parse("acme").unwrap();
    let mut conn = db.pool.acquire().await.unwrap();

    let empty: aggregate::Loaded<Total> = aggregate::load::<_, NoRule>(&mut conn, &Counter).await.unwrap();
    assert_eq!((empty.state.total, empty.version), (0, 0), "no events: the default state");
    let appended =
        aggregate::append::<_, NoRule>(&mut conn, &tenant, &Counter, empty, &[2, 3], &EventMetadata::default())
            .await
            .unwrap();
    assert_eq!((appended.state.total, appended.version), (5, 2));
    let loaded: Loaded = aggregate::load(&mut conn, &Counter).await;
    assert_eq!(loaded.unwrap().state, Total { total: 5 });

    // An older release wrote a snapshot of another shape; the events still say 5.
    sqlx::query("UPDATE streams SET snapshot = '{\"count\": \"five\"}' WHERE stream_id = 'counter:acme:1'")
        .execute(&mut *conn)
        .await
        .unwrap();
    let replayed = aggregate::load::<_, NoRule>(&mut conn, &Counter).await.unwrap();
    assert_eq!((replayed.state.total, replayed.version), (5, 2), "replayed from the events");

    // A writer that loaded before this append conflicts.
    let stale = aggregate::Loaded { state: Total { total: 5 }, version: 1 };
    let conflict: std::result::Result<_, CommandError<NoRule>> =
        aggregate::append(&mut conn, &tenant, &Counter, stale, &[1], &EventMetadata::default()).await;
    assert!(matches!(conflict, Err(CommandError::Conflict)));

    // An event that no longer decodes is a defect, reported as such, never a wrong state.
    sqlx::query("UPDATE events SET payload = 'x' WHERE stream_id = 'counter:acme:1' AND version = 1")
        .execute(&mut *conn)
        .await
        .unwrap();
    let corrupt: Loaded = aggregate::load(&mut conn, &Counter).await;
    assert!(matches!(corrupt, Err(CommandError::Corrupt(_))), "{corrupt:?}");
}

/// Adds `add` to the counter; on its first attempt another writer commits first, between the
/// command's read of the stream and its append.
struct AddOnce<'p> {
    pool: &'p sqlx::PgPool,
    add: i64,
    attempts: std::sync::atomic::AtomicU32,
}

impl dw_eventstore::command::Attempt<NoRule> for AddOnce<'_> {
    /// The total after the append, as a load after it reads it.
    type Response = i64;

    fn streams(&self) -> Vec<String> {
        vec![Counter.stream_id()]
    }

    async fn attempt(
        &self,
        conn: &mut sqlx::PgConnection,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<i64, CommandError<NoRule>> {
        let tenant = dw_ids::TenantId::parse("acme").map_err(|_| CommandError::Aborted(0))?;
        let loaded = aggregate::load(conn, &Counter).await?;
        if self.attempts.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            let mut other = self.pool.acquire().await?;
            let current = aggregate::load(&mut other, &Counter).await?;
            aggregate::append(&mut other, &tenant, &Counter, current, &[100], &EventMetadata::default()).await?;
        }
        aggregate::append(conn, &tenant, &Counter, loaded, &[self.add], &EventMetadata::default()).await?;
        // A second load in the same attempt reads the table, not the copy read up front.
        let reloaded = aggregate::load(conn, &Counter).await?;
        Ok(reloaded.state.total * 1000 + reloaded.version)
    }
}

#[tokio::test]
async fn a_command_reads_its_declared_streams_with_its_request_and_a_writer_in_between_is_a_retried_conflict() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let tenant = dw_ids::TenantId::parse("acme").unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let first = aggregate::Loaded::default();
    aggregate::append::<_, NoRule>(&mut conn, &tenant, &Counter, first, &[5], &EventMetadata::default()).await.unwrap();

    let ctx = dw_eventstore::command::CommandContext {
        tenant: tenant.clone(),
        actor: "agent-1".into(),
        privileged: false,
        request_id: dw_ids::RequestId::parse("req-1").unwrap(),
        operation: "test.v1.Counter/Add",
        metadata: EventMetadata::default(),
        request_hash: vec![1],
    };
    let command = AddOnce { pool: &db.pool, add: 1, attempts: 0.into() };
    let response = dw_eventstore::command::execute::<NoRule, _>(&db.pool, &ctx, &command).await.unwrap();
    // 5, then the other writer's 100 (version 2), then this command's 1 (version 3).
    assert_eq!(response, 106 * 1000 + 3, "the retry read the stream again and appended after the other writer");
    assert_eq!(command.attempts.load(std::sync::atomic::Ordering::SeqCst), 2);

    // The same request again: the stored response, nothing appended.
    let again = dw_eventstore::command::execute::<NoRule, _>(&db.pool, &ctx, &command).await.unwrap();
    assert_eq!(again, response);
    assert_eq!(command.attempts.load(std::sync::atomic::Ordering::SeqCst), 2);
    let stream = dw_eventstore::store::load_stream(&mut conn, "counter:acme:1").await.unwrap();
    assert_eq!(stream.version, 3);

    // The same request id with another body is refused.
    let reused = dw_eventstore::command::CommandContext { request_hash: vec![2], ..ctx };
    let refused = dw_eventstore::command::execute::<NoRule, _>(&db.pool, &reused, &command).await;
    assert!(refused.is_err(), "{refused:?}");
}
