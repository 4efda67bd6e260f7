//! Paging through the whole log against real Postgres: every event once, in order, with the
//! tenant, type and stream filters, forward and newest first.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use dw_eventstore::log::{Direction, LogQuery, read_log};
use dw_eventstore::store;
use dw_eventstore::{EventMetadata, NewEvent};
use dw_ids::TenantId;
use dw_testkit::TestDb;
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

fn event(kind: &str) -> NewEvent {
    NewEvent {
        published: None,
        event_id: Uuid::now_v7(),
        event_type: format!("test.v1.{kind}"),
        subject: format!("thing.{}", kind.to_lowercase()),
        payload: kind.as_bytes().to_vec(),
    }
}

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

fn query(from_position: i64, limit: i64) -> LogQuery {
    LogQuery { from_position, direction: Direction::Forward, limit, tenant: None, event_type: None, stream_id: None }
}

/// 3 streams of 2 tenants, 25 events, `Created` first in each stream then `Changed`.
async fn seeded() -> TestDb {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    let metadata = EventMetadata { correlation_id: Some("corr".into()), ..Default::default() };
    let streams = [("acme", "thing:acme:1"), ("globex", "thing:globex:1"), ("acme", "thing:acme:2")];
    let mut versions = [0_i64; 3];
    for round in 0..25 {
        let index = round % 3;
        let (name, stream) = streams[index];
        let kind = if versions[index] == 0 { "Created" } else { "Changed" };
        store::append(&mut conn, &tenant(name), stream, versions[index], vec![event(kind)], None, &metadata)
            .await
            .unwrap();
        versions[index] += 1;
    }
    db
}

async fn read_all(db: &TestDb, template: LogQuery) -> Vec<i64> {
    let mut positions = Vec::new();
    let mut from = template.from_position;
    loop {
        let page = read_log(&db.pool, &LogQuery { from_position: from, ..template.clone() }).await.unwrap();
        positions.extend(page.events.iter().map(|e| e.global_position));
        let next = page.next_position(from);
        if page.end_of_log {
            return positions;
        }
        assert_ne!(next, from, "a page that is not the last moves on");
        from = next;
    }
}

#[tokio::test]
async fn paging_returns_every_event_once_in_order() {
    let db = seeded().await;
    let positions = read_all(&db, query(0, 4)).await;
    assert_eq!(positions.len(), 25);
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "ascending, no repeat: {positions:?}");

    let first = read_log(&db.pool, &query(0, 1)).await.unwrap();
    let event = &first.events[0];
    assert_eq!(
        (event.stream_id.as_str(), event.version, event.event_type.as_str()),
        ("thing:acme:1", 1, "test.v1.Created")
    );
    assert_eq!(event.payload, b"Created");
    assert_eq!(event.metadata.correlation_id.as_deref(), Some("corr"));

    let after_all = read_log(&db.pool, &query(positions[24], 10)).await.unwrap();
    assert!(after_all.events.is_empty() && after_all.end_of_log);
    assert_eq!(after_all.next_position(positions[24]), positions[24]);

    let exact = read_log(&db.pool, &query(0, 25)).await.unwrap();
    assert!(exact.end_of_log, "a page holding the last event says so");
}

#[tokio::test]
async fn newest_first_reads_the_tail_backwards() {
    let db = seeded().await;
    let forward = read_all(&db, query(0, 100)).await;
    let backward = read_all(&db, LogQuery { direction: Direction::Backward, ..query(0, 7) }).await;
    let mut reversed = forward.clone();
    reversed.reverse();
    assert_eq!(backward, reversed);
    let tail = read_log(&db.pool, &LogQuery { direction: Direction::Backward, ..query(0, 3) }).await.unwrap();
    let tail: Vec<i64> = tail.events.iter().map(|e| e.global_position).collect();
    assert_eq!(tail, reversed[..3]);
}

#[tokio::test]
async fn tenant_type_and_stream_filters_combine() {
    let db = seeded().await;
    let globex = read_all(&db, LogQuery { tenant: Some(tenant("globex")), ..query(0, 2) }).await;
    assert_eq!(globex.len(), 8, "rounds 1, 4, ..., 22");
    let acme = read_all(&db, LogQuery { tenant: Some(tenant("acme")), ..query(0, 2) }).await;
    assert_eq!(acme.len(), 17);
    assert!(globex.iter().all(|p| !acme.contains(p)));

    let created = read_all(&db, LogQuery { event_type: Some("test.v1.Created".into()), ..query(0, 2) }).await;
    assert_eq!(created.len(), 3);
    let acme_created = read_all(
        &db,
        LogQuery { tenant: Some(tenant("acme")), event_type: Some("test.v1.Created".into()), ..query(0, 2) },
    )
    .await;
    assert_eq!(acme_created.len(), 2);

    let stream = LogQuery { stream_id: Some("thing:acme:2".into()), ..query(0, 3) };
    let page = read_log(&db.pool, &stream).await.unwrap();
    assert_eq!(page.events.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(read_all(&db, stream).await.len(), 8);
    let foreign = LogQuery { tenant: Some(tenant("globex")), stream_id: Some("thing:acme:2".into()), ..query(0, 3) };
    assert!(read_log(&db.pool, &foreign).await.unwrap().events.is_empty(), "another tenant's stream is empty");
}
