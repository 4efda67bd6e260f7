//! The kernel's read-model rebuild against real Postgres, with a model that refuses events out
//! of order: every stream's events reach it once and in order across parallel lanes and pages,
//! damage is repaired, a failed rebuild leaves the live table as it was, and the serving
//! replica's metrics show the latest rebuild of each model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use dw_eventstore::rebuild::{ApplyFuture, ReadModel, rebuild, statuses};
use dw_eventstore::{EventMetadata, NewEvent, RecordedEvent, store};
use dw_ids::TenantId;
use dw_testkit::TestDb;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

/// Per stream: its last version and how many events it saw; an event out of order, or one whose
/// payload is `poison`, fails.
struct Tallies;

impl ReadModel for Tallies {
    fn name(&self) -> &'static str {
        "tallies"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["tallies"]
    }

    fn apply<'a>(&'a self, conn: &'a mut PgConnection, event: &'a RecordedEvent) -> ApplyFuture<'a> {
        Box::pin(async move {
            if event.payload == b"poison" {
                return Err("poison".to_owned());
            }
            let last: Option<i64> =
                sqlx::query_scalar("SELECT last_version FROM tallies WHERE tenant_id = $1 AND stream_id = $2")
                    .bind(event.tenant_id.as_str())
                    .bind(&event.stream_id)
                    .fetch_optional(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())?;
            if last.unwrap_or(0) + 1 != event.version {
                return Err(format!("{} version {} after {last:?}", event.stream_id, event.version));
            }
            sqlx::query(
                "INSERT INTO tallies (tenant_id, stream_id, last_version, events) VALUES ($1, $2, $3, 1) \
                 ON CONFLICT (tenant_id, stream_id) DO UPDATE SET last_version = $3, events = tallies.events + 1",
            )
            .bind(event.tenant_id.as_str())
            .bind(&event.stream_id)
            .bind(event.version)
            .execute(&mut *conn)
            .await
            .map_err(|e| e.to_string())?;
            Ok(())
        })
    }

    fn lane_key(&self, event: &RecordedEvent) -> Option<String> {
        Some(event.stream_id.clone())
    }
}

fn events(n: usize, payload: &[u8]) -> Vec<NewEvent> {
    (0..n)
        .map(|_| NewEvent {
            event_id: Uuid::now_v7(),
            event_type: "test.v1.Counted".into(),
            subject: "thing.counted".into(),
            payload: payload.to_vec(),
            published: None,
        })
        .collect()
}

async fn tallies(db: &TestDb) -> Vec<(String, String, i64, i64)> {
    sqlx::query("SELECT tenant_id, stream_id, last_version, events FROM tallies ORDER BY 1, 2")
        .fetch_all(&db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2), r.get(3)))
        .collect()
}

/// The registry's text once `dw_rebuild_events` for `model` shows up (the watcher reads at once).
async fn scraped(db: &TestDb, model: &str, needle: &str) -> String {
    let mut registry = prometheus_client::registry::Registry::default();
    let cancel = tokio_util::sync::CancellationToken::new();
    let watch =
        tokio::spawn(dw_grpc_kit::observability::watch_rebuilds(db.pool.clone(), &mut registry, cancel.clone()));
    let mut text = String::new();
    for _ in 0..100 {
        text.clear();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        if text.contains(needle) && text.contains(&format!("read_model=\"{model}\"")) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cancel.cancel();
    watch.await.unwrap();
    text
}

#[tokio::test]
async fn a_rebuild_applies_each_stream_in_order_across_lanes_and_reports_its_outcome() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    sqlx::query(
        "CREATE TABLE tallies (tenant_id text NOT NULL, stream_id text NOT NULL, last_version bigint NOT NULL, \
                               events bigint NOT NULL, PRIMARY KEY (tenant_id, stream_id))",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    assert!(statuses(&db.pool).await.unwrap().is_empty(), "nothing rebuilt yet");

    // 2 tenants × 20 streams × 60 events (2,400: three pages), appended round-robin so that
    // every page mixes every stream.
    let metadata = EventMetadata::default();
    let mut conn = db.pool.acquire().await.unwrap();
    for round in 0..10_i64 {
        for tenant in ["acme", "globex"] {
            for stream in 0..20 {
                let tenant_id = TenantId::parse(tenant).unwrap();
                let stream_id = format!("thing:{tenant}:{stream}");
                store::append(&mut conn, &tenant_id, &stream_id, round * 6, events(6, b"ok"), None, &metadata)
                    .await
                    .unwrap();
            }
        }
    }
    drop(conn);

    // The live table starts empty (damaged): a rebuild in 4 lanes fills it.
    let rebuilt = rebuild(&db.pool, &Tallies, None, 4, |_| {}).await.unwrap();
    assert_eq!(rebuilt.events, 2_400);
    assert_eq!(rebuilt.rows, 40);
    let healthy = tallies(&db).await;
    assert_eq!(healthy.len(), 40);
    assert!(healthy.iter().all(|(_, _, last, seen)| *last == 60 && *seen == 60), "{healthy:?}");
    let status = statuses(&db.pool).await.unwrap();
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].events, status[0].remaining, status[0].running), (2_400, 0, false));
    assert_eq!(status[0].outcome.as_deref(), Some("done"));
    let text = scraped(&db, "tallies", "dw_rebuild_events{read_model=\"tallies\"} 2400").await;
    assert!(text.contains("dw_rebuild_events{read_model=\"tallies\"} 2400"), "{text}");
    assert!(text.contains("dw_rebuild_failed{read_model=\"tallies\"} 0"), "{text}");
    assert!(text.contains("dw_rebuild_running{read_model=\"tallies\"} 0"), "{text}");

    // One tenant, one lane: the other tenant's damage stays.
    sqlx::query("UPDATE tallies SET events = 0").execute(&db.pool).await.unwrap();
    let acme = TenantId::parse("acme").unwrap();
    let rebuilt = rebuild(&db.pool, &Tallies, Some(&acme), 1, |_| {}).await.unwrap();
    assert_eq!((rebuilt.events, rebuilt.rows), (1_200, 20));
    let partly = tallies(&db).await;
    assert!(partly.iter().all(|(t, _, _, seen)| (*seen == 60) == (t == "acme")), "{partly:?}");

    // A poisoned event: the rebuild fails, the live table is as it was, the outcome says why.
    let mut conn = db.pool.acquire().await.unwrap();
    store::append(&mut conn, &acme, "thing:acme:0", 60, events(1, b"poison"), None, &metadata).await.unwrap();
    drop(conn);
    let failed = rebuild(&db.pool, &Tallies, None, 4, |_| {}).await.unwrap_err();
    assert!(failed.to_string().contains("poison"), "{failed}");
    assert_eq!(tallies(&db).await, partly);
    let status = statuses(&db.pool).await.unwrap();
    assert!(
        status[0].outcome.as_deref().is_some_and(|o| o.starts_with("failed") && o.contains("poison")),
        "{status:?}"
    );
    let text = scraped(&db, "tallies", "dw_rebuild_failed{read_model=\"tallies\"} 1").await;
    assert!(text.contains("dw_rebuild_failed{read_model=\"tallies\"} 1"), "{text}");
    let shadows: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'dw_rebuild_%'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(shadows, 0, "no shadow copy is left");
}
