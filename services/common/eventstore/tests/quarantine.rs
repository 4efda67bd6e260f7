//! No event can block the outbox: an event JetStream would refuse is set aside while every other
//! stream's events keep flowing, its own stream's later events wait behind it, and once released
//! (after the operator made room for it) it is published with them, in order. Real Postgres and
//! NATS JetStream.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use dw_eventstore::outbox_relay::{OutboxRelay, RelayConfig, RelayMetrics};
use dw_eventstore::quarantine;
use dw_eventstore::store::{self, StoreError};
use dw_eventstore::{EventMetadata, NewEvent};
use dw_ids::TenantId;
use dw_testkit::{TestDb, TestNamespace};
use futures::StreamExt;
use sqlx::Row;
use uuid::Uuid;

static MIGRATOR: std::sync::LazyLock<sqlx::migrate::Migrator> =
    std::sync::LazyLock::new(|| dw_eventstore::migrator(&sqlx::migrate!("../../../migrations/agent_sessions")));

fn tenant(name: &str) -> TenantId {
    TenantId::parse(name).unwrap()
}

/// Appends one event of `size` payload bytes to `stream_id` at its next version; its id.
async fn append(db: &TestDb, tenant_id: &str, stream_id: &str, size: usize) -> Uuid {
    let mut tx = db.pool.begin().await.unwrap();
    let version = store::load_stream(&mut tx, stream_id).await.unwrap().version;
    let event = NewEvent {
        published: None,
        event_id: Uuid::now_v7(),
        event_type: "test.v1.Thing".into(),
        subject: "thing.happened".into(),
        payload: vec![b'x'; size],
    };
    let id = event.event_id;
    store::append(&mut tx, &tenant(tenant_id), stream_id, version, vec![event], None, &EventMetadata::default())
        .await
        .unwrap();
    tx.commit().await.unwrap();
    id
}

fn relay(db: &TestDb, namespace: &TestNamespace, js: &jetstream::Context, limit: Option<usize>) -> OutboxRelay {
    let mut config = RelayConfig::new("test-service", &namespace.stream_name, &namespace.subject_prefix);
    config.max_message_bytes = limit;
    OutboxRelay::new(db.pool.clone(), js.clone(), config, RelayMetrics::unregistered())
}

async fn drain(db: &TestDb, relay: &OutboxRelay) {
    let mut conn = db.pool.acquire().await.unwrap();
    while relay.publish_pending(&mut conn).await.unwrap() > 0 {}
}

/// The ids of the next `expected` messages on the stream (from `consumer`), and that no other follows.
async fn next_ids(messages: &mut pull::Stream, expected: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    while ids.len() < expected {
        let next = tokio::time::timeout(Duration::from_secs(5), messages.next()).await;
        let message = next.expect("a message within 5 s").unwrap().unwrap();
        message.ack().await.unwrap();
        let id = message.headers.as_ref().and_then(|h| h.get("ce-id")).map(|v| v.as_str().to_owned()).unwrap();
        ids.push(Uuid::parse_str(&id).unwrap());
    }
    let extra = tokio::time::timeout(Duration::from_millis(300), messages.next()).await;
    assert!(extra.is_err(), "no message beyond the expected ones");
    ids
}

#[tokio::test]
async fn a_refused_event_waits_aside_with_its_stream_while_other_tenants_flow_and_goes_out_in_order_once_released() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("quarantine");
    let js = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    // JetStream here takes 4 KiB: what a server with a small max_payload would.
    let strict = relay(&db, &namespace, &js, Some(4096));
    strict.ensure_stream().await.unwrap();

    let a1 = append(&db, "acme", "thing:acme-1", 100).await;
    let a2 = append(&db, "acme", "thing:acme-1", 8_000).await;
    let a3 = append(&db, "acme", "thing:acme-1", 100).await;
    let g1 = append(&db, "globex", "thing:globex-1", 100).await;
    let a_other = append(&db, "acme", "thing:acme-2", 100).await;
    drain(&db, &strict).await;

    let stream = js.get_stream(&namespace.stream_name).await.unwrap();
    let consumer = stream
        .create_consumer(pull::Config { deliver_policy: jetstream::consumer::DeliverPolicy::All, ..Default::default() })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    assert_eq!(next_ids(&mut messages, 3).await, [a1, g1, a_other], "everything but the held stream flows");

    let held = quarantine::list(&db.pool).await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].event_id, held[0].stream_id.as_str(), held[0].waiting), (a2, "thing:acme-1", 1));
    assert!(held[0].reason.contains("4096"), "{}", held[0].reason);
    let outbox: i64 = sqlx::query("SELECT count(*) AS n FROM outbox").fetch_one(&db.pool).await.unwrap().get("n");
    assert_eq!(outbox, 2, "the held event and the one waiting behind it stay in the outbox");

    // Later events keep flowing, for the other tenant and for acme's other streams; the held
    // stream's new events join the wait.
    let g2 = append(&db, "globex", "thing:globex-1", 100).await;
    let a4 = append(&db, "acme", "thing:acme-1", 100).await;
    drain(&db, &strict).await;
    assert_eq!(next_ids(&mut messages, 1).await, [g2]);

    // The operator makes room (here: a relay whose JetStream takes the server's own limit) and
    // releases the event: it goes out, then what waited behind it, in order.
    assert!(!quarantine::release(&db.pool, held[0].position + 1_000_000).await.unwrap(), "nothing held there");
    assert!(quarantine::release(&db.pool, held[0].position).await.unwrap());
    let roomy = relay(&db, &namespace, &js, None);
    drain(&db, &roomy).await;
    assert_eq!(next_ids(&mut messages, 3).await, [a2, a3, a4]);
    assert!(quarantine::list(&db.pool).await.unwrap().is_empty());
}

#[tokio::test]
async fn an_event_over_the_servers_max_payload_is_held_and_one_over_the_append_cap_is_never_stored() {
    let db = TestDb::create(&MIGRATOR).await.unwrap();
    let namespace = TestNamespace::new("quarantine");
    let nats = dw_testkit::connect_nats().await.unwrap();
    let max_payload = nats.server_info().max_payload;
    let js = jetstream::new(nats);
    let relay = relay(&db, &namespace, &js, None);
    relay.ensure_stream().await.unwrap();

    // A deployment whose append cap is set above what its NATS takes: the relay still holds the
    // event back instead of failing on it forever.
    store::set_max_event_bytes(max_payload * 2);
    let big = append(&db, "acme", "thing:big", max_payload + 1).await;
    append(&db, "globex", "thing:small", 10).await;
    drain(&db, &relay).await;
    let held = quarantine::list(&db.pool).await.unwrap();
    assert_eq!(held.iter().map(|h| h.event_id).collect::<Vec<_>>(), [big]);
    assert!(held[0].reason.contains(&max_payload.to_string()), "{}", held[0].reason);
    let published: i64 = sqlx::query("SELECT count(*) AS n FROM outbox").fetch_one(&db.pool).await.unwrap().get("n");
    assert_eq!(published, 1, "the small event went out: only the big one is left");

    // Over the cap, an append is refused and stores nothing.
    let mut tx = db.pool.begin().await.unwrap();
    let huge = NewEvent {
        published: None,
        event_id: Uuid::now_v7(),
        event_type: "test.v1.Thing".into(),
        subject: "thing.happened".into(),
        payload: vec![0; max_payload * 3],
    };
    let refused = store::append(&mut tx, &tenant("acme"), "thing:huge", 0, vec![huge], None, &EventMetadata::default())
        .await
        .unwrap_err();
    assert!(matches!(refused, StoreError::EventTooLarge { .. }), "{refused:?}");
    drop(tx);
    let stored: i64 = sqlx::query("SELECT count(*) AS n FROM events WHERE stream_id = 'thing:huge'")
        .fetch_one(&db.pool)
        .await
        .unwrap()
        .get("n");
    assert_eq!(stored, 0);
}
