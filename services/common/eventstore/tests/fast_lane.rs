//! The relay's fast lane: a command's events, handed over in process as it commits, reach
//! JetStream without the outbox being read, and never ahead of their stream's earlier events.
//!
//! A test binary of its own, with one test: the relay here polls once an hour, so only what this
//! test commits (and a wake of its own making) moves events; tests of other files would wake it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::convert::Infallible;
use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use chrono::{DateTime, Utc};
use dw_eventstore::command::{self, CommandContext, Plan};
use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayMetrics};
use dw_eventstore::{CommandError, EventMetadata, NewEvent, Writes, store};
use dw_ids::{RequestId, TenantId};
use dw_testkit::{TestDb, TestNamespace};
use futures::StreamExt;
use sqlx::{PgConnection, Row};
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

/// Appends `count` events to `stream`, where the stream is.
struct Append {
    stream: &'static str,
    count: usize,
}

impl Plan<Infallible> for Append {
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
        let events = (0..self.count).map(|_| event()).collect();
        let version = writes.append(&tenant(), self.stream, loaded.version, events, None, &EventMetadata::default())?;
        Ok(format!("v{version}"))
    }
}

fn event() -> NewEvent {
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

fn context(request_id: &str) -> CommandContext {
    CommandContext {
        tenant: tenant(),
        actor: "ana".into(),
        privileged: false,
        request_id: RequestId::parse(request_id).unwrap(),
        operation: "test.v1.Things/Do",
        metadata: EventMetadata::default(),
        request_hash: request_id.as_bytes().to_vec(),
    }
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    sqlx::query(sql).fetch_one(&db.pool).await.unwrap().get("n")
}

/// The value of the lane's counter in `registry`.
fn lane_published(registry: &prometheus_client::registry::Registry) -> u64 {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix("dw_relay_fast_lane_events_total "))
        .and_then(|value| value.trim().parse().ok())
        .expect("the lane's counter is registered")
}

/// The next `n` messages' streams and versions, in their order in JetStream.
async fn next_versions<S, E>(messages: &mut S, n: usize) -> Vec<(String, u64)>
where
    S: futures::Stream<Item = Result<jetstream::Message, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut seen = Vec::new();
    for _ in 0..n {
        let message = tokio::time::timeout(Duration::from_secs(10), messages.next())
            .await
            .expect("published within 10 s (the relay's poll is an hour away)")
            .unwrap()
            .unwrap();
        let headers = message.headers.as_ref().unwrap();
        seen.push((
            headers.get("ce-subject").unwrap().as_str().to_owned(),
            headers.get("dw-stream-version").unwrap().as_str().parse().unwrap(),
        ));
    }
    seen
}

#[tokio::test]
async fn committed_events_reach_jetstream_through_the_lane_and_never_ahead_of_their_stream() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("fastlane");
    let js = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    let mut config = RelayConfig::new("test-service", &namespace.stream_name, &namespace.subject_prefix);
    config.poll_interval = Duration::from_secs(3600);
    config.peer_wake = false;
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = RelayMetrics::register(&mut registry);

    // One event committed before the relay starts, without any wake: its stream's next event
    // has a predecessor the lane has not seen acknowledged.
    let mut tx = db.pool.begin().await.unwrap();
    store::append(&mut tx, &tenant(), "thing:old", 0, vec![event()], None, &EventMetadata::default()).await.unwrap();
    tx.commit().await.unwrap();

    let relay = OutboxRelay::new(db.pool.clone(), js.clone(), config.clone(), metrics);
    relay.ensure_stream().await.unwrap();
    let stream = js.get_stream(&namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(pull::OrderedConfig {
            deliver_policy: jetstream::consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let running = tokio::spawn(relay.run(cancel.clone()));
    // The relay's first round drains what is there.
    assert_eq!(next_versions(&mut messages, 1).await, vec![("thing:old".to_owned(), 1)]);
    assert_eq!(lane_published(&registry), 0);

    // A new stream's events, command after command: the lane publishes each at once (nothing
    // wakes the outbox path, whose poll is an hour away).
    for (i, expected) in [(1, 1), (2, 3), (3, 4)] {
        let count = if i == 2 { 2 } else { 1 };
        let answer =
            command::execute_planned(&db.pool, &context(&format!("new-{i}")), &Append { stream: "thing:new", count })
                .await
                .unwrap();
        assert_eq!(answer, format!("v{expected}"));
    }
    let new: Vec<u64> = next_versions(&mut messages, 4).await.into_iter().map(|(_, version)| version).collect();
    assert_eq!(new, vec![1, 2, 3, 4]);
    assert_eq!(lane_published(&registry), 4);

    // The lane leaves an event whose predecessor it has not seen acknowledged to the outbox
    // path, which it wakes: the earlier event goes first.
    let mut tx = db.pool.begin().await.unwrap();
    store::append(&mut tx, &tenant(), "thing:old", 1, vec![event()], None, &EventMetadata::default()).await.unwrap();
    tx.commit().await.unwrap();
    command::execute_planned(&db.pool, &context("old-3"), &Append { stream: "thing:old", count: 1 }).await.unwrap();
    let old = next_versions(&mut messages, 2).await;
    assert_eq!(old, vec![("thing:old".to_owned(), 2), ("thing:old".to_owned(), 3)]);
    assert_eq!(lane_published(&registry), 4, "the outbox path published them");
    // Acknowledged by the outbox path: the stream's next event goes by the lane.
    command::execute_planned(&db.pool, &context("old-4"), &Append { stream: "thing:old", count: 1 }).await.unwrap();
    assert_eq!(next_versions(&mut messages, 1).await, vec![("thing:old".to_owned(), 4)]);
    assert_eq!(lane_published(&registry), 5);

    // What the lane published leaves the outbox (the lane deletes it: no poll runs).
    let mut left = i64::MAX;
    for _ in 0..200 {
        left = count(&db, "SELECT count(*) AS n FROM outbox").await;
        if left == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(left, 0, "the lane deleted what it published");

    // Commands on three streams at once, one after the other on each: every event once, each
    // stream in order.
    let writers = ["thing:a", "thing:b", "thing:c"].map(|stream| {
        let pool = db.pool.clone();
        async move {
            for i in 0..20 {
                let request = format!("{stream}-{i}");
                command::execute_planned(&pool, &context(&request), &Append { stream, count: 1 }).await.unwrap();
            }
        }
    });
    futures::future::join_all(writers).await;
    // Some may have gone by the outbox path (a stream busy in the lane): wake it once.
    dw_eventstore::wake_relay();
    let many = next_versions(&mut messages, 60).await;
    for stream in ["thing:a", "thing:b", "thing:c"] {
        let versions: Vec<u64> = many.iter().filter(|(s, _)| s == stream).map(|(_, v)| *v).collect();
        assert_eq!(versions, (1..=20).collect::<Vec<_>>(), "{stream}: each event once, in order");
    }
    let extra = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
    assert!(extra.is_err(), "no event twice");

    // A transaction outside the kernel (a bus consumer's reaction) that appended and rolled back:
    // its outbox positions never existed, so nothing of it is handed to the lane…
    let lane_before = lane_published(&registry);
    dw_eventstore::handing_over(&db.pool, async {
        let mut tx = db.pool.begin().await?;
        store::append(&mut tx, &tenant(), "thing:rolled-back", 0, vec![event()], None, &EventMetadata::default())
            .await
            .unwrap();
        tx.rollback().await
    })
    .await
    .unwrap();
    // …while one that committed through `dw_eventstore::commit` goes by the lane, as a command.
    dw_eventstore::handing_over(&db.pool, async {
        let mut tx = db.pool.begin().await?;
        store::append(&mut tx, &tenant(), "thing:reaction", 0, vec![event()], None, &EventMetadata::default())
            .await
            .unwrap();
        dw_eventstore::commit(tx).await
    })
    .await
    .unwrap();
    assert_eq!(next_versions(&mut messages, 1).await, vec![("thing:reaction".to_owned(), 1)]);
    assert_eq!(lane_published(&registry), lane_before + 1, "the reaction's event went by the lane");
    let extra = tokio::time::timeout(Duration::from_millis(500), messages.next()).await;
    assert!(extra.is_err(), "nothing of the rolled-back transaction was published");

    cancel.cancel();
    running.await.unwrap();
    assert_eq!(count(&db, "SELECT count(*) AS n FROM outbox").await, 0);
}
