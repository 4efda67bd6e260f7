//! The event store and the outbox relay against real Postgres and NATS JetStream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayMetrics};
use dw_eventstore::store::{self, StoreError};
use dw_eventstore::{EventMetadata, NewEvent};
use dw_testkit::{TestDb, TestNamespace};
use futures::StreamExt;
use sqlx::Row;
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

fn event(name: &str) -> NewEvent {
    NewEvent {
        published: None,
        event_id: Uuid::now_v7(),
        event_type: format!("test.v1.{name}"),
        subject: format!("thing.{}", name.to_lowercase()),
        payload: name.as_bytes().to_vec(),
    }
}

fn acme() -> dw_ids::TenantId {
    dw_ids::TenantId::parse("acme").unwrap()
}

fn metadata() -> EventMetadata {
    EventMetadata {
        correlation_id: Some("corr-1".into()),
        causation_id: Some("cause-1".into()),
        traceparent: Some("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".into()),
    }
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(&db.pool).await.unwrap().get("n")
}

#[tokio::test]
async fn appends_with_a_stale_version_conflict_and_change_nothing() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let mut conn = db.pool.acquire().await.unwrap();
    store::append(&mut conn, &acme(), "thing:1", 0, vec![event("A")], None, &metadata()).await.unwrap();
    let stale = store::append(&mut conn, &acme(), "thing:1", 0, vec![event("B")], None, &metadata()).await;
    assert!(matches!(stale, Err(StoreError::Conflict { .. })));
    let ahead = store::append(&mut conn, &acme(), "thing:1", 5, vec![event("B")], None, &metadata()).await;
    assert!(matches!(ahead, Err(StoreError::Conflict { .. })), "a version gap is a conflict too");
    let stream = store::load_stream(&mut conn, "thing:1").await.unwrap();
    assert_eq!(stream.version, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
}

#[tokio::test]
async fn concurrent_appends_at_one_version_let_exactly_one_win() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..10 {
        let pool = db.pool.clone();
        tasks.spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            let result =
                store::append(&mut tx, &acme(), "thing:race", 0, vec![event(&format!("E{i}"))], None, &metadata())
                    .await;
            if result.is_ok() {
                tx.commit().await.unwrap();
            }
            result.is_ok()
        });
    }
    let mut winners = 0;
    while let Some(won) = tasks.join_next().await {
        winners += usize::from(won.unwrap());
    }
    assert_eq!(winners, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 1);
}

#[tokio::test]
async fn a_multi_event_append_is_all_or_nothing() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let mut tx = db.pool.begin().await.unwrap();
    let first = event("A");
    let mut duplicate = event("B");
    duplicate.event_id = first.event_id; // the second insert violates the event-id key
    let result = store::append(&mut tx, &acme(), "thing:2", 0, vec![first, duplicate], None, &metadata()).await;
    assert!(result.is_err());
    drop(tx); // rolled back
    assert_eq!(count(&db, "SELECT count(*) AS n FROM events").await, 0);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox").await, 0);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM streams").await, 0);

    let mut tx = db.pool.begin().await.unwrap();
    let recorded =
        store::append(&mut tx, &acme(), "thing:2", 0, vec![event("A"), event("B"), event("C")], None, &metadata())
            .await
            .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(recorded.iter().map(|e| e.version).collect::<Vec<_>>(), vec![1, 2, 3]);
    let mut conn = db.pool.acquire().await.unwrap();
    let read = store::read_stream(&mut conn, "thing:2", 1).await.unwrap();
    assert_eq!(read.iter().map(|e| e.payload.clone()).collect::<Vec<_>>(), vec![b"B".to_vec(), b"C".to_vec()]);
}

struct Harness {
    db: TestDb,
    namespace: TestNamespace,
    jetstream: jetstream::Context,
    relay: OutboxRelay,
}

async fn harness() -> Harness {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("relay");
    let jetstream = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let config = RelayConfig::new("test-service", &namespace.stream_name, &namespace.subject_prefix);
    let relay = OutboxRelay::new(db.pool.clone(), jetstream.clone(), config, RelayMetrics::unregistered());
    relay.ensure_stream().await.unwrap();
    Harness { db, namespace, jetstream, relay }
}

async fn append_many(db: &TestDb, streams: usize, per_stream: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for round in 0..per_stream {
        for s in 0..streams {
            let mut tx = db.pool.begin().await.unwrap();
            let e = event(&format!("S{s}R{round}"));
            ids.push(e.event_id);
            store::append(&mut tx, &acme(), &format!("thing:{s}"), round as i64, vec![e], None, &metadata())
                .await
                .unwrap();
            tx.commit().await.unwrap();
        }
    }
    ids
}

async fn read_all(h: &Harness, expected: usize) -> Vec<jetstream::Message> {
    let stream = h.jetstream.get_stream(&h.namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config { deliver_policy: jetstream::consumer::DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let mut out = Vec::new();
    while out.len() < expected {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let message = next.expect("message within 5 s").unwrap().unwrap();
        message.ack().await.unwrap();
        out.push(message);
    }
    // Nothing more arrives.
    let extra = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
    assert!(extra.is_err(), "no message beyond the expected ones");
    out
}

#[tokio::test]
async fn the_relay_publishes_in_commit_order_with_the_envelope_headers() {
    let h = harness().await;
    let ids = append_many(&h.db, 3, 4).await;
    let mut conn = h.db.pool.acquire().await.unwrap();
    while h.relay.publish_pending(&mut conn).await.unwrap() > 0 {}
    assert_eq!(count(&h.db, "SELECT count(*) AS n FROM outbox").await, 0);

    let messages = read_all(&h, ids.len()).await;
    let received: Vec<Uuid> = messages
        .iter()
        .map(|m| Uuid::parse_str(m.headers.as_ref().unwrap().get("ce-id").unwrap().as_str()).unwrap())
        .collect();
    assert_eq!(received, ids, "commit order");

    let first = &messages[0];
    let headers = first.headers.as_ref().unwrap();
    let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(first.subject.as_str(), format!("{}.acme.thing.s0r0", h.namespace.subject_prefix));
    assert_eq!(header("Nats-Msg-Id"), Some(ids[0].to_string()));
    assert_eq!(header("ce-type").as_deref(), Some("test.v1.S0R0"));
    assert_eq!(header("ce-source").as_deref(), Some("test-service"));
    assert_eq!(header("ce-subject").as_deref(), Some("thing:0"));
    assert_eq!(header("dw-tenant").as_deref(), Some("acme"));
    assert_eq!(header("dw-stream-version").as_deref(), Some("1"));
    assert_eq!(header("dw-correlation-id").as_deref(), Some("corr-1"));
    assert_eq!(header("dw-causation-id").as_deref(), Some("cause-1"));
    assert!(chrono::DateTime::parse_from_rfc3339(&header("ce-time").unwrap()).is_ok());
    let traceparent = header("traceparent").unwrap();
    assert!(traceparent.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"), "same trace: {traceparent}");
    assert_eq!(first.payload.as_ref(), b"S0R0");
}

#[tokio::test]
async fn a_relay_that_dies_between_publish_and_delete_republishes_without_duplicates() {
    let h = harness().await;
    let ids = append_many(&h.db, 2, 3).await;
    // Keep the outbox as it was before the publish: a relay that died after the JetStream acks
    // but before its delete committed leaves exactly these rows behind.
    let pending: Vec<i64> = sqlx::query("SELECT global_position FROM outbox ORDER BY position")
        .fetch_all(&h.db.pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get("global_position"))
        .collect();
    let mut conn = h.db.pool.acquire().await.unwrap();
    while h.relay.publish_pending(&mut conn).await.unwrap() > 0 {}
    sqlx::query("INSERT INTO outbox (global_position) SELECT unnest($1::bigint[])")
        .bind(&pending)
        .execute(&h.db.pool)
        .await
        .unwrap();

    // The next relay (a new instance, as after a restart) publishes them all again.
    let config = RelayConfig::new("test-service", &h.namespace.stream_name, &h.namespace.subject_prefix);
    let restarted = OutboxRelay::new(h.db.pool.clone(), h.jetstream.clone(), config, RelayMetrics::unregistered());
    while restarted.publish_pending(&mut conn).await.unwrap() > 0 {}
    assert_eq!(count(&h.db, "SELECT count(*) AS n FROM outbox").await, 0);

    let info = h.jetstream.get_stream(&h.namespace.stream_name).await.unwrap().info().await.unwrap().clone();
    assert_eq!(info.state.messages, ids.len() as u64, "JetStream dropped the republished copies");
    let messages = read_all(&h, ids.len()).await;
    let unique: HashSet<String> =
        messages.iter().map(|m| m.headers.as_ref().unwrap().get("ce-id").unwrap().as_str().to_owned()).collect();
    assert_eq!(unique.len(), ids.len());
}

#[tokio::test]
async fn the_running_relay_is_woken_by_commits_and_one_instance_is_active() {
    let h = harness().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let config = RelayConfig::new("test-service", &h.namespace.stream_name, &h.namespace.subject_prefix);
    let active = OutboxRelay::new(h.db.pool.clone(), h.jetstream.clone(), config, RelayMetrics::unregistered());
    let first = tokio::spawn(active.run(cancel.clone()));
    let config = RelayConfig::new("test-service", &h.namespace.stream_name, &h.namespace.subject_prefix);
    let standby = OutboxRelay::new(h.db.pool.clone(), h.jetstream.clone(), config, RelayMetrics::unregistered());
    let second = tokio::spawn(standby.run(cancel.clone()));

    let ids = append_many(&h.db, 2, 2).await;
    let messages = read_all(&h, ids.len()).await;
    assert_eq!(messages.len(), ids.len());
    let holders = count(
        &h.db,
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND granted \
         AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .await;
    assert_eq!(holders, 1, "one relay holds the lock, the other stands by");
    cancel.cancel();
    first.await.unwrap();
    second.await.unwrap();
    assert_eq!(count(&h.db, "SELECT count(*) AS n FROM outbox").await, 0);
}

#[tokio::test]
async fn the_pipelined_relay_keeps_each_streams_order_across_batches() {
    let h = harness().await;
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut config = RelayConfig::new("test-service", &h.namespace.stream_name, &h.namespace.subject_prefix);
    // Small batches: a stream's events span many of them, read while earlier ones are in flight.
    config.batch_size = 3;
    let relay = OutboxRelay::new(h.db.pool.clone(), h.jetstream.clone(), config, RelayMetrics::unregistered());
    let running = tokio::spawn(relay.run(cancel.clone()));

    let (streams, per_stream) = (4, 25);
    let mut writers = tokio::task::JoinSet::new();
    for s in 0..streams {
        let pool = h.db.pool.clone();
        writers.spawn(async move {
            for version in 0..per_stream {
                let mut tx = pool.begin().await.unwrap();
                let e = event(&format!("S{s}R{version}"));
                store::append(&mut tx, &acme(), &format!("thing:{s}"), version, vec![e], None, &metadata())
                    .await
                    .unwrap();
                dw_eventstore::commit(tx).await.unwrap();
            }
        });
    }
    while let Some(done) = writers.join_next().await {
        done.unwrap();
    }
    let messages = read_all(&h, (streams * per_stream) as usize).await;
    let mut seen: std::collections::HashMap<String, Vec<i64>> = std::collections::HashMap::new();
    for message in &messages {
        let headers = message.headers.as_ref().unwrap();
        let stream = headers.get("ce-subject").unwrap().as_str().to_owned();
        let version: i64 = headers.get("dw-stream-version").unwrap().as_str().parse().unwrap();
        seen.entry(stream).or_default().push(version);
    }
    assert_eq!(seen.len(), streams as usize);
    for (stream, versions) in &seen {
        assert_eq!(versions, &(1..=per_stream).collect::<Vec<_>>(), "{stream} in order, each once");
    }
    cancel.cancel();
    running.await.unwrap();
    assert_eq!(count(&h.db, "SELECT count(*) AS n FROM outbox").await, 0, "acknowledged events deleted");
}

#[tokio::test]
async fn old_bookkeeping_rows_are_pruned_and_recent_ones_kept() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    for (age, id) in [("10 days", Uuid::now_v7()), ("1 hour", Uuid::now_v7())] {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO processed_events (consumer, event_id, processed_at) VALUES ('c', '{id}', now() - interval '{age}')"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO idempotency_keys (tenant_id, principal, request_id, operation, response, created_at) \
             VALUES ('t', 'p', '{id}', 'op', '', now() - interval '{age}')"
        )))
        .execute(&db.pool)
        .await
        .unwrap();
    }
    let removed =
        dw_eventstore::maintenance::prune(&db.pool, dw_eventstore::maintenance::Retention::default()).await.unwrap();
    assert_eq!(removed, (1, 1));
    assert_eq!(count(&db, "SELECT count(*) AS n FROM processed_events").await, 1);
    assert_eq!(count(&db, "SELECT count(*) AS n FROM idempotency_keys").await, 1);
}
