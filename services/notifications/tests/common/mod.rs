//! A notifications server per test (real Postgres and NATS) and helpers to publish the events
//! of the contexts it consumes.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_nats::jetstream;
use dw_auth::Role;
use dw_grpc_kit::config::ServiceConfig;
use dw_testkit::{TestDb, TestNamespace};
use notifications::config::{Config, Upstream};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

pub const SECRET: &str = "test-secret-for-notification-tests";

pub struct Harness {
    pub _db: TestDb,
    pub js: jetstream::Context,
    pub messaging: TestNamespace,
    pub distribution: TestNamespace,
    pub sessions: TestNamespace,
    pub channel: Channel,
    /// The service's metrics endpoint (`/metrics`).
    pub metrics_addr: std::net::SocketAddr,
    pub cancel: CancellationToken,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

pub async fn start() -> Harness {
    start_with(|_| {}).await
}

/// Starts with the test configuration changed by `configure`.
pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Harness {
    let db = TestDb::create(&notifications::MIGRATOR).await.unwrap();
    let own = TestNamespace::new("notifications");
    let (messaging, distribution, sessions) =
        (TestNamespace::new("nmessaging"), TestNamespace::new("ndistribution"), TestNamespace::new("nsessions"));
    let js = jetstream::new(dw_testkit::connect_nats().await.unwrap());
    for ns in [&messaging, &distribution, &sessions] {
        js.create_stream(jetstream::stream::Config {
            name: ns.stream_name.clone(),
            subjects: vec![format!("{}.>", ns.subject_prefix)],
            ..Default::default()
        })
        .await
        .unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let upstream = |ns: &TestNamespace| Upstream::new(&ns.stream_name, &ns.subject_prefix);
    let mut service = ServiceConfig::for_test(
        db.url.clone(),
        dw_testkit::nats_url(),
        addr,
        SECRET.as_bytes(),
        own.stream_name.clone(),
        own.subject_prefix.clone(),
    );
    service.metrics_addr = dw_testkit::metrics::free_local_addr().unwrap();
    let metrics_addr = service.metrics_addr;
    let config = Config {
        service,
        messaging: upstream(&messaging),
        distribution: upstream(&distribution),
        agent_sessions: upstream(&sessions),
        consumer_prefix: "notifications".into(),
        webhooks: notifications::app::webhook_delivery::WebhookConfig {
            allowed_hosts: vec!["127.0.0.1".into()],
            timeout: Duration::from_secs(5),
            schedule: vec![Duration::from_millis(100); 7],
            poll_interval: Duration::from_millis(50),
        },
        push: notifications::app::push_delivery::PushConfig {
            vapid: std::sync::Arc::new(web_push_native::jwt_simple::algorithms::ES256KeyPair::generate()),
            contact: "mailto:ops@example.com".into(),
            ttl: Duration::from_secs(60),
            timeout: Duration::from_secs(5),
            poll_interval: Duration::from_millis(50),
            allowed_hosts: vec!["127.0.0.1".into()],
        },
    };
    let mut config = config;
    configure(&mut config);
    let cancel = CancellationToken::new();
    tokio::spawn(notifications::server::run_with_listener(config, listener, cancel.clone()));
    for _ in 0..200 {
        if let Ok(channel) = Channel::from_shared(format!("http://{addr}")).unwrap().connect().await {
            return Harness { _db: db, js, messaging, distribution, sessions, channel, metrics_addr, cancel };
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("notifications did not start");
}

/// The trace every event published by [`publish`] belongs to (the user action behind it).
pub const EVENT_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

pub async fn publish(h: &Harness, ns: &TestNamespace, tenant: &str, subject: &str, event_type: &str, payload: Vec<u8>) {
    let id = uuid::Uuid::now_v7().to_string();
    let mut headers = async_nats::HeaderMap::new();
    for (name, value) in [
        ("Nats-Msg-Id", id.as_str()),
        ("ce-id", id.as_str()),
        ("ce-type", event_type),
        ("ce-source", "test"),
        ("ce-subject", "stream:test"),
        ("dw-tenant", tenant),
        ("dw-stream-version", "1"),
    ] {
        headers.insert(name, value);
    }
    headers.insert("ce-time", chrono::Utc::now().to_rfc3339().as_str());
    headers.insert("traceparent", format!("00-{EVENT_TRACE_ID}-00f067aa0ba902b7-01").as_str());
    let subject = format!("{}.{tenant}.{subject}", ns.subject_prefix);
    h.js.publish_with_headers(subject, headers, payload.into()).await.unwrap().await.unwrap();
}

/// messaging reports that agent ana sent a WhatsApp template in `tenant` (a `MessageRequested`).
pub async fn template_sent(h: &Harness, tenant: &str) {
    use prost::Message as _;
    let message = dw_proto::messaging::v1::Message {
        message_id: uuid::Uuid::now_v7().to_string(),
        template_name: "order_shipped".into(),
        channel: dw_proto::messaging::v1::Channel::Whatsapp as i32,
        recipient_phone: "+5511987654321".into(),
        agent_id: "ana".into(),
        requested_at: Some(dw_proto::time::timestamp(chrono::Utc::now())),
        ..Default::default()
    };
    let event = dw_proto::messaging::v1::MessageRequested { message: Some(message) };
    publish(h, &h.messaging, tenant, "message.requested", "dw.messaging.v1.MessageRequested", event.encode_to_vec())
        .await;
}

/// Scrapes `/metrics` until `check` finds what it waits for.
pub async fn wait_for_metrics<T>(h: &Harness, what: &str, check: impl Fn(&str) -> Option<T>) -> T {
    dw_testkit::metrics::wait_for(h.metrics_addr, what, check).await
}

/// Polls `check` every 25 ms until it finds what it waits for (at most 10 s).
pub async fn eventually<T>(what: &str, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    for _ in 0..400 {
        if let Some(value) = check().await {
            return value;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("timed out waiting for {what}");
}

/// A local HTTP server on 127.0.0.1 that answers every POST 204 and keeps what it received.
#[derive(Clone, Default)]
pub struct FakeReceiver {
    pub received: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
}

impl FakeReceiver {
    /// Serves on a free local port; its `host:port`.
    pub async fn start(&self) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap().to_string();
        let received = self.received.clone();
        // Any body (a push is binary), kept as text.
        let record = move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let received = received.clone();
            async move {
                received.lock().unwrap().push((headers, String::from_utf8_lossy(&body).into_owned()));
                axum::http::StatusCode::NO_CONTENT
            }
        };
        let app = axum::Router::new().fallback(axum::routing::post(record));
        tokio::spawn(async move { axum::serve(listener, app).await });
        address
    }

    pub fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }
}

pub fn token(tenant: &str, sub: &str, role: Role) -> String {
    dw_testkit::token(SECRET, tenant, sub, &[role])
}

pub use dw_testkit::authed;
