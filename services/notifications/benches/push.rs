//! `make bench`: inbound client message → Web Push latency. A `TaskMessageRecorded` event is
//! published on JetStream (as task-distribution publishes it when a client writes on an agent's
//! task); the time until a fake push service on 127.0.0.1 receives the encrypted push is
//! measured, for agents with one browser subscription each. Prints figures; asserts nothing.
//!
//! Knobs: `BENCH_AGENTS` (default 200), `BENCH_RATE` messages/s (default 100), `BENCH_SECONDS`
//! (default 10).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{authed, publish, start, token};
use dw_auth::Role;
use dw_proto::distribution::v1 as distribution;
use dw_proto::notifications::v1 as pb;
use dw_proto::notifications::v1::notification_service_client::NotificationServiceClient;
use dw_testkit::bench::{env_or, percentile_ms};
use prost::Message;

type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

#[derive(Clone)]
struct PushService {
    arrivals: Arrivals,
    secret: p256::SecretKey,
}

/// The fake push service decrypts each push (it holds the browser's key) to learn which
/// message it carries.
async fn receive(
    axum::extract::State(push): axum::extract::State<PushService>,
    body: axum::body::Bytes,
) -> axum::http::StatusCode {
    let at = Instant::now();
    let auth = web_push_native::Auth::clone_from_slice(b"0123456789abcdef");
    if let Ok(plain) = web_push_native::decrypt(body.to_vec(), &push.secret, &auth)
        && let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&plain)
        && let Some(id) = payload["message_id"].as_str()
    {
        push.arrivals.lock().unwrap().insert(id.to_owned(), at);
    }
    axum::http::StatusCode::CREATED
}

#[tokio::main]
async fn main() {
    let agents = env_or("BENCH_AGENTS", 200) as usize;
    let rate = env_or("BENCH_RATE", 100).max(1);
    let seconds = env_or("BENCH_SECONDS", 10);
    let h = start().await;
    let arrivals: Arrivals = Arc::default();
    let secret = p256::SecretKey::random(&mut p256::elliptic_curve::rand_core::OsRng);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let service = PushService { arrivals: arrivals.clone(), secret: secret.clone() };
    let app = axum::Router::new().route("/push/{agent}", axum::routing::post(receive)).with_state(service);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let p256dh = URL_SAFE_NO_PAD.encode(secret.public_key().to_sec1_bytes());
    let auth = URL_SAFE_NO_PAD.encode(*b"0123456789abcdef");
    let mut client = NotificationServiceClient::new(h.channel.clone());
    for i in 0..agents {
        let agent = format!("agent-{i:04}");
        let bearer = token("bench", &agent, Role::Agent);
        let request = pb::EnableBrowserNotificationsRequest {
            request_id: uuid::Uuid::now_v7().to_string(),
            endpoint: format!("{base}/push/{i}"),
            p256dh: p256dh.clone(),
            auth: auth.clone(),
        };
        client.enable_browser_notifications(authed(&bearer, request)).await.unwrap();
    }

    println!(
        "notifications push benchmark: {agents} agents with a browser subscription, {rate} client messages/s for {seconds} s"
    );
    let total = rate * seconds;
    let mut published: HashMap<String, Instant> = HashMap::new();
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let started = Instant::now();
    for n in 0..total {
        ticker.tick().await;
        let message_id = uuid::Uuid::now_v7().to_string();
        let event = distribution::TaskMessageRecorded {
            task_id: uuid::Uuid::now_v7().to_string(),
            message_id: message_id.clone(),
            text: format!("message {n}"),
            received_at: None,
            agent_id: format!("agent-{:04}", (n as usize) % agents),
        };
        published.insert(message_id, Instant::now());
        publish(
            &h,
            &h.distribution,
            "bench",
            "task.message_recorded",
            "dw.distribution.v1.TaskMessageRecorded",
            event.encode_to_vec(),
        )
        .await;
    }
    let sending = started.elapsed();
    println!("published       {} in {:.1} s", published.len(), sending.as_secs_f64());
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < published.len() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let arrived = arrivals.lock().unwrap().clone();
    let mut latencies: Vec<Duration> = published
        .iter()
        .filter_map(|(key, sent)| arrived.get(key).map(|at| at.saturating_duration_since(*sent)))
        .collect();
    latencies.sort();
    println!("pushes          {} of {} received", latencies.len(), published.len());
    println!(
        "message → push  p50 {:.2} ms   p95 {:.2} ms   p99 {:.2} ms   max {:.2} ms",
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.95),
        percentile_ms(&latencies, 0.99),
        percentile_ms(&latencies, 1.0)
    );
    dw_testkit::bench::record("push", "inbound message → Web Push p99", percentile_ms(&latencies, 0.99), "ms", None);
    println!("(path: JetStream → consumer → notification + push job committed → push worker → encrypt + VAPID → HTTP)");
    h.cancel.cancel();
}
