//! Durable consumers feeding a projection, against real Postgres and NATS JetStream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_nats::jetstream;
use dw_bus::dead_letters;
use dw_bus::{ConsumerConfig, ConsumerMetrics, InboundEvent, Projection, ProjectionConsumer, ProjectionError};
use dw_testkit::{TestDb, TestNamespace};
use futures::{FutureExt, StreamExt};
use sqlx::{PgConnection, Row};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

/// The test stream's contract: one event type, `test.v1.Thing`, whose payload is kept raw.
#[derive(Debug)]
struct Thing;

impl dw_proto::Contract for Thing {
    const PACKAGE: &'static str = "test.v1";

    fn decode(event_type: &str, _payload: &[u8]) -> Result<Option<Self>, prost::DecodeError> {
        Ok((event_type == "test.v1.Thing").then_some(Thing))
    }

    fn type_name(&self) -> &'static str {
        "test.v1.Thing"
    }
}

/// Counts applications per stream; events whose payload is `poison` fail until healed, and
/// those whose payload is `outage` find the database unavailable until it is back (counting
/// their tries).
#[derive(Clone)]
struct CountingProjection {
    healed: Arc<AtomicBool>,
    database_back: Arc<AtomicBool>,
    outage_tries: Arc<AtomicUsize>,
}

impl Projection for CountingProjection {
    type Contract = Thing;

    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent, _: Thing) -> Result<(), ProjectionError> {
        if event.payload.as_ref() == b"outage" && !self.database_back.load(Ordering::SeqCst) {
            self.outage_tries.fetch_add(1, Ordering::SeqCst);
            return Err(ProjectionError::Unavailable("connection refused".into()));
        }
        if event.payload.as_ref() == b"poison" && !self.healed.load(Ordering::SeqCst) {
            return Err(ProjectionError::Transient("cannot apply poison yet".into()));
        }
        sqlx::query(
            "INSERT INTO test_counts (stream_id, applied) VALUES ($1, 1) \
             ON CONFLICT (stream_id) DO UPDATE SET applied = test_counts.applied + 1",
        )
        .bind(&event.stream_id)
        .execute(conn)
        .await?;
        Ok(())
    }
}

struct Harness {
    db: TestDb,
    namespace: TestNamespace,
    jetstream: jetstream::Context,
    projection: CountingProjection,
    cancel: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

async fn start() -> Harness {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    sqlx::query("CREATE TABLE test_counts (stream_id TEXT PRIMARY KEY, applied INT NOT NULL)")
        .execute(&db.pool)
        .await
        .unwrap();
    let namespace = TestNamespace::new("bus");
    let jetstream = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    jetstream
        .create_stream(jetstream::stream::Config {
            name: namespace.stream_name.clone(),
            subjects: vec![format!("{}.>", namespace.subject_prefix)],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut config = ConsumerConfig::new("test-projection", &namespace.stream_name);
    config.max_deliver = 3;
    config.backoff = vec![Duration::from_millis(50)];
    let projection = CountingProjection {
        healed: Arc::new(AtomicBool::new(false)),
        database_back: Arc::new(AtomicBool::new(false)),
        outage_tries: Arc::new(AtomicUsize::new(0)),
    };
    let consumer = ProjectionConsumer::new(
        db.pool.clone(),
        jetstream.clone(),
        config,
        projection.clone(),
        ConsumerMetrics::unregistered(),
    );
    let cancel = CancellationToken::new();
    let task = tokio::spawn(consumer.run(cancel.clone()));
    Harness { db, namespace, jetstream, projection, cancel, task }
}

async fn publish(h: &Harness, event_id: Uuid, msg_id: &str, stream_id: &str, payload: &'static [u8]) {
    publish_typed(h, "test.v1.Thing", event_id, msg_id, stream_id, payload).await;
}

async fn publish_typed(
    h: &Harness,
    event_type: &str,
    event_id: Uuid,
    msg_id: &str,
    stream_id: &str,
    payload: &'static [u8],
) {
    let mut headers = async_nats::HeaderMap::new();
    headers.insert("Nats-Msg-Id", msg_id);
    headers.insert("ce-id", event_id.to_string().as_str());
    headers.insert("ce-type", event_type);
    headers.insert("ce-source", "test");
    headers.insert("ce-time", chrono::Utc::now().to_rfc3339().as_str());
    headers.insert("ce-subject", stream_id);
    headers.insert("dw-tenant", "acme");
    headers.insert("dw-stream-version", "1");
    let subject = format!("{}.acme.thing.happened", h.namespace.subject_prefix);
    h.jetstream.publish_with_headers(subject, headers, payload.into()).await.unwrap().await.unwrap();
}

async fn applied(h: &Harness, stream_id: &str) -> Option<i32> {
    sqlx::query("SELECT applied FROM test_counts WHERE stream_id = $1")
        .bind(stream_id)
        .fetch_optional(&h.db.pool)
        .await
        .unwrap()
        .map(|r| r.get("applied"))
}

async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..200 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

/// The table [`OrderProjection`] and [`SlowProjection`] record applied events in.
async fn create_order_table(h: &Harness) {
    sqlx::query("CREATE TABLE test_order (position BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL)")
        .execute(&h.db.pool)
        .await
        .unwrap();
}

async fn order_count(h: &Harness) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM test_order").fetch_one(&h.db.pool).await.unwrap()
}

/// Once `n` events are recorded: their streams, in the order they were applied.
async fn applied_order(h: &Harness, n: i64) -> Vec<String> {
    eventually("every event applied", || order_count(h).map(|count| count == n)).await;
    sqlx::query_scalar("SELECT stream_id FROM test_order ORDER BY position").fetch_all(&h.db.pool).await.unwrap()
}

#[tokio::test]
async fn the_same_event_delivered_twice_changes_the_read_model_once() {
    let h = start().await;
    let event_id = Uuid::now_v7();
    // Two copies of one event (as after a redelivery): JetStream sees two messages.
    publish(&h, event_id, "copy-1", "thing:1", b"hello").await;
    publish(&h, event_id, "copy-2", "thing:1", b"hello").await;
    publish(&h, Uuid::now_v7(), "marker", "thing:marker", b"marker").await;
    eventually("the marker", || async { applied(&h, "thing:marker").await == Some(1) }).await;
    assert_eq!(applied(&h, "thing:1").await, Some(1));
    let processed: i64 =
        sqlx::query("SELECT count(*) AS n FROM processed_events").fetch_one(&h.db.pool).await.unwrap().get("n");
    assert_eq!(processed, 2);
    h.cancel.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn a_poison_event_lands_in_dead_letters_and_the_consumer_goes_on() {
    let h = start().await;
    publish(&h, Uuid::now_v7(), "poison", "thing:poison", b"poison").await;
    // An event without an envelope can never be applied.
    let subject = format!("{}.acme.thing.garbage", h.namespace.subject_prefix);
    h.jetstream.publish(subject, "no headers".into()).await.unwrap().await.unwrap();
    publish(&h, Uuid::now_v7(), "after", "thing:after", b"fine").await;

    eventually("the event after the poison", || async { applied(&h, "thing:after").await == Some(1) }).await;
    eventually("two dead letters", || async {
        dead_letters::list_pending(&h.db.pool, Some("test-projection"), 10).await.unwrap().len() == 2
    })
    .await;
    let letters = dead_letters::list_pending(&h.db.pool, Some("test-projection"), 10).await.unwrap();
    let poison = letters.iter().find(|l| l.payload == b"poison").expect("poison dead letter");
    assert_eq!(poison.deliveries, 3, "tried max_deliver times");
    assert!(poison.error.contains("cannot apply poison yet"));
    let garbage = letters.iter().find(|l| l.payload == b"no headers").expect("garbage dead letter");
    assert!(garbage.error.contains("envelope"), "{}", garbage.error);
    assert_eq!(applied(&h, "thing:poison").await, None);

    // After the fix, an operator replays it: applied once, marked replayed.
    h.projection.healed.store(true, Ordering::SeqCst);
    dead_letters::replay(&h.db.pool, &h.projection, poison.id).await.unwrap();
    assert_eq!(applied(&h, "thing:poison").await, Some(1));
    assert!(dead_letters::replay(&h.db.pool, &h.projection, poison.id).await.is_err(), "replayed once");
    let pending = dead_letters::list_pending(&h.db.pool, Some("test-projection"), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    h.cancel.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn a_database_outage_is_waited_out_in_order_and_never_dead_lettered() {
    let h = start().await;
    publish(&h, Uuid::now_v7(), "outage", "thing:outage", b"outage").await;
    publish(&h, Uuid::now_v7(), "behind", "thing:behind", b"fine").await;
    // Tried well past max_deliver (3): still held, and nothing after it overtook it.
    eventually("tries past max_deliver", || async { h.projection.outage_tries.load(Ordering::SeqCst) > 4 }).await;
    assert_eq!(applied(&h, "thing:behind").await, None, "an event overtook one waiting for the database");
    assert!(dead_letters::list_pending(&h.db.pool, Some("test-projection"), 10).await.unwrap().is_empty());

    h.projection.database_back.store(true, Ordering::SeqCst);
    eventually("both applied once the database is back", || async {
        applied(&h, "thing:outage").await == Some(1) && applied(&h, "thing:behind").await == Some(1)
    })
    .await;
    assert!(
        dead_letters::list_pending(&h.db.pool, Some("test-projection"), 10).await.unwrap().is_empty(),
        "an outage is not the event's fault"
    );
    h.cancel.cancel();
    h.task.await.unwrap();
}

#[tokio::test]
async fn an_event_type_outside_the_contract_is_skipped_not_dead_lettered() {
    let h = start().await;
    publish_typed(&h, "test.v1.Newer", Uuid::now_v7(), "newer", "thing:newer", b"hello").await;
    publish(&h, Uuid::now_v7(), "marker", "thing:marker", b"marker").await;
    eventually("the marker", || async { applied(&h, "thing:marker").await == Some(1) }).await;
    assert_eq!(applied(&h, "thing:newer").await, None, "the projection never saw it");
    let letters = dead_letters::list_pending(&h.db.pool, Some("test-projection"), 10).await.unwrap();
    assert!(letters.is_empty(), "skipped, not dead-lettered: {letters:?}");
    h.cancel.cancel();
    h.task.await.unwrap();
}

/// Records the order in which events are applied; slow enough that replicas would interleave.
#[derive(Clone)]
struct OrderProjection;

impl Projection for OrderProjection {
    type Contract = Thing;

    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent, _: Thing) -> Result<(), ProjectionError> {
        let jitter = u64::from(event.event_id.as_bytes()[15] % 8);
        tokio::time::sleep(Duration::from_millis(jitter)).await;
        sqlx::query("INSERT INTO test_order (stream_id) VALUES ($1)").bind(&event.stream_id).execute(conn).await?;
        Ok(())
    }
}

#[tokio::test]
async fn an_ordered_consumer_keeps_the_stream_order_across_replicas() {
    let h = start().await;
    h.cancel.cancel();
    create_order_table(&h).await;
    // An older deployment left the durable consumer without an in-flight limit.
    let stream = h.jetstream.get_stream(&h.namespace.stream_name).await.unwrap();
    stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some("ordered".into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ..Default::default()
        })
        .await
        .unwrap();

    // Two replicas of the service pull from it.
    let cancel = CancellationToken::new();
    for _ in 0..2 {
        let consumer = ProjectionConsumer::new(
            h.db.pool.clone(),
            h.jetstream.clone(),
            ConsumerConfig::new("ordered", &h.namespace.stream_name),
            OrderProjection,
            ConsumerMetrics::unregistered(),
        );
        tokio::spawn(consumer.run(cancel.clone()));
    }
    let names: Vec<String> = (0..40).map(|i| format!("thing-{i:02}")).collect();
    for name in &names {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    let order = applied_order(&h, 40).await;
    assert_eq!(order, names, "applied in the stream's order although two replicas pulled");
    let mut consumer: jetstream::consumer::PullConsumer = stream.get_consumer("ordered").await.unwrap();
    let config = consumer.info().await.unwrap().config.clone();
    assert_eq!(config.max_ack_pending, 2 * dw_bus::consumer::ORDERED_BATCH as i64, "the old consumer was updated");
    // The service counts deliveries and dead-letters; the server never drops an event for it.
    assert_eq!(config.max_deliver, -1, "no server-side delivery limit");
    cancel.cancel();
}

/// Records each event's aggregate, its number within the aggregate (the payload) and the
/// connection that applied it.
#[derive(Clone)]
struct LaneProjection;

impl Projection for LaneProjection {
    type Contract = Thing;

    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent, _: Thing) -> Result<(), ProjectionError> {
        let number: i32 = std::str::from_utf8(&event.payload).ok().and_then(|n| n.parse().ok()).unwrap_or(-1);
        sqlx::query("INSERT INTO test_lanes (stream_id, number, backend) VALUES ($1, $2, pg_backend_pid())")
            .bind(&event.stream_id)
            .bind(number)
            .execute(conn)
            .await?;
        Ok(())
    }
}

#[tokio::test]
async fn an_ordered_consumer_with_lanes_applies_aggregates_side_by_side_each_in_order() {
    let h = start().await;
    h.cancel.cancel();
    sqlx::query(
        "CREATE TABLE test_lanes (position BIGSERIAL PRIMARY KEY, stream_id TEXT NOT NULL, number INT NOT NULL, \
         backend INT NOT NULL)",
    )
    .execute(&h.db.pool)
    .await
    .unwrap();
    // The stream holds 12 aggregates' events, interleaved, before any replica pulls: batches are
    // full and split into lanes.
    let per_aggregate = 30;
    for number in 0..per_aggregate {
        for aggregate in 0..12 {
            let id = Uuid::now_v7();
            let payload: &'static [u8] = Box::leak(number.to_string().into_bytes().into_boxed_slice());
            publish(&h, id, &id.to_string(), &format!("thing-{aggregate:02}"), payload).await;
        }
    }
    let cancel = CancellationToken::new();
    for _ in 0..2 {
        let mut config = ConsumerConfig::new("laned", &h.namespace.stream_name);
        config.lanes = 4;
        let consumer = ProjectionConsumer::new(
            h.db.pool.clone(),
            h.jetstream.clone(),
            config,
            LaneProjection,
            ConsumerMetrics::unregistered(),
        );
        tokio::spawn(consumer.run(cancel.clone()));
    }
    let pool = h.db.pool.clone();
    eventually("every event applied", || {
        let pool = pool.clone();
        async move {
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM test_lanes").fetch_one(&pool).await.unwrap();
            n >= 12 * i64::from(per_aggregate)
        }
    })
    .await;
    let rows: Vec<(String, i32, i32)> =
        sqlx::query_as("SELECT stream_id, number, backend FROM test_lanes ORDER BY position")
            .fetch_all(&h.db.pool)
            .await
            .unwrap();
    assert_eq!(rows.len(), 12 * per_aggregate as usize, "each event applied exactly once");
    for aggregate in 0..12 {
        let name = format!("thing-{aggregate:02}");
        let numbers: Vec<i32> = rows.iter().filter(|(stream, _, _)| *stream == name).map(|(_, n, _)| *n).collect();
        assert_eq!(numbers, (0..per_aggregate).collect::<Vec<_>>(), "{name} applied in its order");
    }
    let backends: HashSet<i32> = rows.iter().map(|(_, _, backend)| *backend).collect();
    assert!(backends.len() > 1, "the lanes applied on more than one connection: {backends:?}");
    cancel.cancel();
}

#[tokio::test]
async fn when_the_replica_holding_an_ordered_consumer_stops_a_standby_takes_over_in_order() {
    let h = start().await;
    h.cancel.cancel();
    create_order_table(&h).await;
    let replica = |cancel: &CancellationToken| {
        let consumer = ProjectionConsumer::new(
            h.db.pool.clone(),
            h.jetstream.clone(),
            ConsumerConfig::new("failover", &h.namespace.stream_name),
            OrderProjection,
            ConsumerMetrics::unregistered(),
        );
        tokio::spawn(consumer.run(cancel.clone()))
    };
    let names: Vec<String> = (0..60).map(|i| format!("thing-{i:02}")).collect();

    // The first replica takes the lease and applies the first events.
    let first = CancellationToken::new();
    let first_task = replica(&first);
    for name in &names[..30] {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    eventually("the first replica applied the first events", || order_count(&h).map(|n| n == 30)).await;
    // A second replica stands by; the first stops (a rollout) and releases the lease.
    let second = CancellationToken::new();
    let _second_task = replica(&second);
    first.cancel();
    first_task.await.unwrap();
    for name in &names[30..] {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    let order = applied_order(&h, 60).await;
    assert_eq!(order, names, "every event once, in the stream's order, across the handover");
    second.cancel();
}

/// A holder of the ordered consumer `durable` (as the service creates it, `ack_wait` 1 s) that
/// pulled the stream's first `n` events and has not answered for them.
async fn holder_pulls(h: &Harness, durable: &str, n: usize) -> Vec<jetstream::Message> {
    let stream = h.jetstream.get_stream(&h.namespace.stream_name).await.unwrap();
    let holder: jetstream::consumer::PullConsumer = stream
        .create_consumer(jetstream::consumer::pull::Config {
            durable_name: Some(durable.into()),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(1),
            max_ack_pending: dw_bus::consumer::ORDERED_BATCH as i64,
            ..Default::default()
        })
        .await
        .unwrap();
    let pulled: Vec<_> = holder.fetch().max_messages(n).messages().await.unwrap().collect().await;
    assert_eq!(pulled.len(), n);
    pulled.into_iter().map(Result::unwrap).collect()
}

#[tokio::test]
async fn events_a_dead_holder_had_pulled_are_applied_before_newer_ones() {
    let h = start().await;
    h.cancel.cancel();
    create_order_table(&h).await;
    let mut config = ConsumerConfig::new("crash", &h.namespace.stream_name);
    config.ack_wait = Duration::from_secs(1);
    let names: Vec<String> = (0..20).map(|i| format!("thing-{i:02}")).collect();
    for name in &names[..10] {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    // A holder pulls the first ten and dies without a word (SIGKILL: no ack, no nak).
    drop(holder_pulls(&h, "crash", 10).await);
    // Newer events arrive; the standby takes the lease.
    for name in &names[10..] {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    let consumer = ProjectionConsumer::new(
        h.db.pool.clone(),
        h.jetstream.clone(),
        config,
        OrderProjection,
        ConsumerMetrics::unregistered(),
    );
    let cancel = CancellationToken::new();
    tokio::spawn(consumer.run(cancel.clone()));
    let order = applied_order(&h, 20).await;
    assert_eq!(order, names, "the dead holder's events first, then the newer ones");
    cancel.cancel();
}

#[tokio::test]
async fn events_handed_back_out_of_order_by_a_failed_holder_are_still_applied_in_stream_order() {
    let h = start().await;
    h.cancel.cancel();
    create_order_table(&h).await;
    let mut config = ConsumerConfig::new("handed-back", &h.namespace.stream_name);
    config.ack_wait = Duration::from_secs(1);
    let names = ["sent", "delivered", "read"];
    for name in names {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    // A holder pulled all three, lost the first on its way (no answer: it comes back when its
    // ack_wait runs out) and handed the two others back at once (a failed batch's Nak). JetStream
    // queues the two for redelivery now and the first only a second later: redelivered as they
    // are, "delivered" and "read" would be applied before "sent".
    let pulled = holder_pulls(&h, "handed-back", 3).await;
    for message in &pulled[1..] {
        message.ack_with(jetstream::AckKind::Nak(None)).await.unwrap();
    }
    h.jetstream.client().flush().await.unwrap();
    drop(pulled);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let consumer = ProjectionConsumer::new(
        h.db.pool.clone(),
        h.jetstream.clone(),
        config,
        OrderProjection,
        ConsumerMetrics::unregistered(),
    );
    let cancel = CancellationToken::new();
    tokio::spawn(consumer.run(cancel.clone()));
    let order = applied_order(&h, 3).await;
    assert_eq!(order, names, "applied in the stream's order whatever JetStream redelivers first");
    // And the consumer goes on from there with what comes next.
    let id = Uuid::now_v7();
    publish(&h, id, &id.to_string(), "replied", b"{}").await;
    let order = applied_order(&h, 4).await;
    assert_eq!(order.last().map(String::as_str), Some("replied"));
    cancel.cancel();
}

#[tokio::test]
async fn a_delivery_lost_on_its_way_comes_back_before_what_followed_it() {
    let h = start().await;
    h.cancel.cancel();
    create_order_table(&h).await;
    let mut config = ConsumerConfig::new("lossy", &h.namespace.stream_name);
    config.ack_wait = Duration::from_secs(1);
    let consumer = ProjectionConsumer::new(
        h.db.pool.clone(),
        h.jetstream.clone(),
        config,
        OrderProjection,
        ConsumerMetrics::unregistered(),
    );
    let mut durable = consumer.ensure().await.unwrap();
    // A pull that is first in line and whose delivery never reaches the replica (as one in
    // flight when a NATS node dies): it takes the next event and never answers.
    let mut lost = durable.batch().max_messages(1).expires(Duration::from_secs(30)).messages().await.unwrap();
    h.jetstream.client().flush().await.unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(consumer.run(cancel.clone()));
    for _ in 0..200 {
        if durable.info().await.unwrap().num_waiting >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(durable.info().await.unwrap().num_waiting >= 2, "the replica's pull queued behind the lost one");
    let names = ["sent", "delivered", "read"];
    for name in names {
        let id = Uuid::now_v7();
        publish(&h, id, &id.to_string(), name, b"{}").await;
    }
    let taken = lost.next().await.unwrap().unwrap();
    assert_eq!(taken.headers.as_ref().and_then(|h| h.get("ce-subject")).map(|v| v.as_str()), Some("sent"));
    let order = applied_order(&h, 3).await;
    assert_eq!(order, names, "the lost delivery applied first once it came back");
    drop(taken);
    cancel.cancel();
}

/// Takes longer than the consumer's `ack_wait` to apply.
#[derive(Clone)]
struct SlowProjection;

impl Projection for SlowProjection {
    type Contract = Thing;

    async fn apply(&self, conn: &mut PgConnection, event: &InboundEvent, _: Thing) -> Result<(), ProjectionError> {
        tokio::time::sleep(Duration::from_millis(2500)).await;
        sqlx::query("INSERT INTO test_order (stream_id) VALUES ($1)").bind(&event.stream_id).execute(conn).await?;
        Ok(())
    }
}

#[tokio::test]
async fn work_longer_than_ack_wait_is_kept_in_hand_and_not_redelivered() {
    let h = start().await;
    h.cancel.cancel();
    create_order_table(&h).await;
    let mut config = ConsumerConfig::new("slow", &h.namespace.stream_name);
    config.ack_wait = Duration::from_secs(1);
    let consumer = ProjectionConsumer::new(
        h.db.pool.clone(),
        h.jetstream.clone(),
        config,
        SlowProjection,
        ConsumerMetrics::unregistered(),
    );
    let cancel = CancellationToken::new();
    tokio::spawn(consumer.run(cancel.clone()));
    let id = Uuid::now_v7();
    publish(&h, id, &id.to_string(), "slow-thing", b"{}").await;

    eventually("the slow event applied", || order_count(&h).map(|n| n == 1)).await;
    let stream = h.jetstream.get_stream(&h.namespace.stream_name).await.unwrap();
    let mut consumer: jetstream::consumer::PullConsumer = stream.get_consumer("slow").await.unwrap();
    let info = consumer.info().await.unwrap().clone();
    // Every delivery, redeliveries included, takes a consumer sequence number.
    assert_eq!(
        info.delivered.consumer_sequence, 1,
        "in-progress acks kept the event in hand for 2.5 s with ack_wait 1 s"
    );
    assert_eq!(info.num_ack_pending, 0);
    cancel.cancel();
}
