//! Replicas wake each other's relay over NATS core: a relay standing by sends a wake when its
//! process commits, and the active relay publishes on a wake at once instead of at its poll.
//!
//! A test binary of its own: tests of other files commit and wake every relay in their process,
//! which would wake the relay here too.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayMetrics};
use dw_eventstore::store;
use dw_eventstore::{EventMetadata, NewEvent};
use dw_testkit::{TestDb, TestNamespace};
use futures::StreamExt;
use sqlx::Row;
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

async fn relay_lock_holders(db: &TestDb) -> i64 {
    sqlx::query(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap()
    .get("n")
}

/// Appends one event and commits without waking any relay (as a commit in another process).
async fn append_unannounced(db: &TestDb, version: i64) -> Uuid {
    let event = NewEvent {
        published: None,
        event_id: Uuid::now_v7(),
        event_type: "test.v1.Woken".into(),
        subject: "thing.woken".into(),
        payload: b"woken".to_vec(),
    };
    let id = event.event_id;
    let mut tx = db.pool.begin().await.unwrap();
    let tenant = dw_ids::TenantId::parse("acme").unwrap();
    store::append(&mut tx, &tenant, "thing:1", version, vec![event], None, &EventMetadata::default()).await.unwrap();
    tx.commit().await.unwrap();
    id
}

#[tokio::test]
async fn a_standby_wakes_the_active_relay_which_publishes_without_waiting_for_its_poll() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("peerwake");
    let client = dw_testkit::connect_nats().await.unwrap();
    let js = jetstream::new(client.clone());
    let mut config = RelayConfig::new("test-service", &namespace.stream_name, &namespace.subject_prefix);
    // Only a wake can make either relay look at the outbox within this test.
    config.poll_interval = Duration::from_secs(3600);
    let mut wakes = client.subscribe(config.wake_subject()).await.unwrap();
    client.flush().await.unwrap();

    let setup = OutboxRelay::new(db.pool.clone(), js.clone(), config.clone(), RelayMetrics::unregistered());
    setup.ensure_stream().await.unwrap();

    let cancel = tokio_util::sync::CancellationToken::new();
    let active = OutboxRelay::new(db.pool.clone(), js.clone(), config.clone(), RelayMetrics::unregistered());
    let first = tokio::spawn(active.run(cancel.clone()));
    for _ in 0..200 {
        if relay_lock_holders(&db).await == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(relay_lock_holders(&db).await, 1, "the first relay is active");
    // The active relay sends no wake of its own: its process's commits wake it in process.
    tokio::time::sleep(Duration::from_millis(300)).await;
    dw_eventstore::wake_relay();
    let none = tokio::time::timeout(Duration::from_millis(500), wakes.next()).await;
    assert!(none.is_err(), "the active relay sent a wake");
    let standby = OutboxRelay::new(db.pool.clone(), js.clone(), config.clone(), RelayMetrics::unregistered());
    let second = tokio::spawn(standby.run(cancel.clone()));
    // The standby sends one per commit it is told of.
    tokio::time::sleep(Duration::from_millis(300)).await;
    dw_eventstore::wake_relay();
    let wake = tokio::time::timeout(Duration::from_secs(10), wakes.next()).await;
    assert!(wake.expect("the standby sent a wake").is_some());
    assert_eq!(relay_lock_holders(&db).await, 1, "still one active relay");

    // A commit nobody in this process announced, then a peer's wake: the active relay publishes
    // it (its poll is an hour away).
    let stream = js.get_stream(&namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config { deliver_policy: jetstream::consumer::DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let id = append_unannounced(&db, 0).await;
    client.publish(config.wake_subject(), bytes::Bytes::new()).await.unwrap();
    let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
        .await
        .expect("published on the wake")
        .unwrap()
        .unwrap();
    let header = message.headers.as_ref().and_then(|h| h.get("ce-id")).map(|v| v.as_str().to_owned());
    assert_eq!(header, Some(id.to_string()));

    cancel.cancel();
    first.await.unwrap();
    second.await.unwrap();
}
